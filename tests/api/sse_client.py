"""A small Server-Sent Events client for the API tests and tests/bench/sse.sh: a raw
socket, the response head, chunked (or close-delimited) body decoding and the SSE field
parser, with nothing hidden (the tests look at the raw bytes too).

    s = SSE(port, "/v1/streamkit/sse", headers={"Last-Event-ID": "12.3"})
    s.status, s.headers            # after the head
    ev = s.next_event(timeout=5)   # {"id", "event", "data", "retry", "comments"} or None at EOF
    s.events_until(pred, timeout)  # events read until pred(event) (raises on timeout)
"""
import socket
import time


class SSE:
    def __init__(self, port, path, headers=None, host="127.0.0.1", timeout=10.0, connect=True):
        self.port, self.path, self.host = port, path, host
        self.extra = dict(headers or {})
        self.timeout = timeout
        self.sock = None
        self.raw = b""       # every byte received
        self.body = b""      # decoded body bytes not parsed into events yet
        self._wire = b""     # received bytes not decoded yet
        self.eof = False
        self.chunked = False
        self.status = None
        self.headers = {}
        self.last_id = None
        self.retry = None
        self.comments = 0
        if connect:
            self.open()

    def open(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        lines = ["GET %s HTTP/1.1" % self.path, "Host: x", "Accept: text/event-stream"]
        lines += ["%s: %s" % kv for kv in self.extra.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._read_head()

    def _recv(self, deadline):
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from the server in time")
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
        self.raw += data
        return data

    def _read_head(self):
        deadline = time.time() + self.timeout
        while b"\r\n\r\n" not in self._wire:
            data = self._recv(deadline)
            if not data:
                raise ConnectionError("closed before the head: %r" % self.raw)
            self._wire += data
        head, self._wire = self._wire.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if not self.chunked and "content-length" in self.headers:
            # An error answer with a length: read it whole.
            n = int(self.headers["content-length"])
            while len(self._wire) < n:
                data = self._recv(deadline)
                if not data:
                    break
                self._wire += data
            self.body = self._wire[:n]
            self._wire = b""
            self.eof = True
        self._decode()

    def _decode(self):
        """Move whole chunks from the wire to the body; b"0\\r\\n\\r\\n" ends the body."""
        if not self.chunked:
            self.body += self._wire
            self._wire = b""
            return
        while True:
            line_end = self._wire.find(b"\r\n")
            if line_end < 0:
                return
            size = int(self._wire[:line_end].split(b";")[0], 16)
            if len(self._wire) < line_end + 2 + size + 2:
                return
            self.body += self._wire[line_end + 2:line_end + 2 + size]
            self._wire = self._wire[line_end + 2 + size + 2:]
            if size == 0:
                self.eof = True
                return

    def _take_event(self):
        """One event (or comment block) from the body, or None when incomplete."""
        text = self.body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = text.find(b"\n\n")
        if end < 0:
            return None
        block, rest = text[:end], text[end + 2:]
        self.body = rest
        ev = {"id": None, "event": None, "data": None, "retry": None, "comments": 0}
        data = []
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                ev["comments"] += 1
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name in ("id", "event", "retry"):
                ev[name] = value
        if data:
            ev["data"] = "\n".join(data)
        if ev["id"] is not None:
            self.last_id = ev["id"]
        if ev["retry"] is not None:
            self.retry = int(ev["retry"])
        self.comments += ev["comments"]
        return ev

    def next_event(self, timeout=5.0, comments=False):
        """The next event (comment-only blocks skipped unless `comments`), or None at EOF."""
        deadline = time.time() + timeout
        while True:
            ev = self._take_event()
            if ev is not None:
                if comments or ev["id"] or ev["event"] or ev["data"] is not None or ev["retry"]:
                    return ev
                continue
            if self.eof:
                return None
            data = self._recv(deadline)
            self._wire += data
            self._decode()

    def events_until(self, pred, timeout=10.0):
        deadline = time.time() + timeout
        seen = []
        while True:
            ev = self.next_event(timeout=max(0.01, deadline - time.time()))
            if ev is None:
                raise ConnectionError("stream ended before the event came: %r" % seen)
            seen.append(ev)
            if pred(ev):
                return seen

    def read_to_end(self, timeout=10.0):
        """Every event until the server ends the stream."""
        deadline = time.time() + timeout
        events = []
        while True:
            ev = self.next_event(timeout=max(0.01, deadline - time.time()))
            if ev is None:
                return events
            events.append(ev)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None
