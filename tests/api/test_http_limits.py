"""Deadlines and connection limits, against servers configured with small timeouts.

Every wait here is bounded by socket timeouts; the module takes about half a minute.
The server checks deadlines on a 250 ms tick, so "at the deadline" means within a
second of it here.
"""
import json
import selectors
import socket
import threading
import time

import pytest

from panthera_server import (CEILING, Server, parse_response, read_response,
                             recv_until_close)

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
KEEPALIVE_TIMEOUT = 2.0
SEND_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def slow():
    s = Server(workers=2, http={
        "header_timeout": "2s", "body_timeout": "2s", "keepalive_timeout": "2s",
        "send_timeout": "2s", "keepalive_requests": "5", "max_connections": "1000",
        "max_connections_per_client": "1000",
    })
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


def error_of(resp, status):
    assert resp.status == status, resp
    doc = json.loads(resp.body)
    assert set(doc) == {"error"} and doc["error"]["code"] and doc["error"]["message"], doc
    assert resp.headers.get("connection", "").lower() == "close"
    return doc["error"]


def wait_closed(sock, limit):
    """Read until the server closes; -> (bytes, seconds waited).  Fails if still open
    after `limit` seconds."""
    t0 = time.monotonic()
    data, closed = recv_until_close(sock, timeout=limit)
    waited = time.monotonic() - t0
    assert closed, "connection still open after %.1f s (got %r)" % (waited, data[:200])
    return data, waited


class Prober(threading.Thread):
    """Makes normal requests on fresh connections until stopped; records failures. Its
    timeouts are the suite's ceiling: a slow answer on a loaded machine is served, only a
    refused or hung one is a failure."""

    def __init__(self, server, interval=0.1):
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.ok, self.failures = 0, []
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                with self.server.connect(timeout=CEILING) as s:
                    s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    r = read_response(s, timeout=CEILING)
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append(("status", r.status))
            except Exception as e:  # noqa: BLE001 - any failure counts
                self.failures.append((type(e).__name__, str(e), round(time.monotonic() - t0, 2)))
            self.stop_flag.wait(self.interval)

    def finish(self):
        self.stop_flag.set()
        self.join(CEILING)


def test_slowloris_200_dripping_connections(slow):
    """200 connections each sending one header byte per second: the header deadline runs
    from the first byte and is not extended by more bytes, so all are cut off around
    header_timeout, while normal clients are served throughout."""
    request = b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 50 + b"\r\n\r\n"
    n = 200
    prober = Prober(slow)
    socks = []
    try:
        for _ in range(n):
            socks.append(slow.connect(timeout=3))
        t0 = time.monotonic()
        prober.start()
        sel = selectors.DefaultSelector()
        state = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            state[s] = {"pos": 0, "data": b"", "closed_at": None}
        next_drip = t0
        # Dripping goes on for longer than any deadline: if bytes extended it, they would
        # still be open when this ceiling (reached only by a hang) runs out.
        limit = CEILING
        while time.monotonic() - t0 < limit:
            now = time.monotonic()
            if now >= next_drip:
                for s, st in state.items():
                    if st["closed_at"] is None and st["pos"] < len(request):
                        try:
                            s.send(request[st["pos"]:st["pos"] + 1])
                            st["pos"] += 1
                        except (BrokenPipeError, ConnectionResetError):
                            st["closed_at"] = time.monotonic() - t0
                next_drip += 1.0
            for key, _ in sel.select(timeout=max(0.0, min(0.1, next_drip - time.monotonic()))):
                s = key.fileobj
                st = state[s]
                try:
                    chunk = s.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    chunk = b""
                except BlockingIOError:
                    continue
                if chunk:
                    st["data"] += chunk
                else:
                    st["closed_at"] = time.monotonic() - t0
                    sel.unregister(s)
            if all(st["closed_at"] is not None for st in state.values()):
                break
        sel.close()
    finally:
        prober.finish()
        for s in socks:
            s.close()

    open_ = [i for i, st in enumerate(state.values()) if st["closed_at"] is None]
    assert not open_, "%d of %d dripping connections still open after %.1f s" % (
        len(open_), n, limit)
    times = sorted(st["closed_at"] for st in state.values())
    assert times[0] >= HEADER_TIMEOUT - 0.5, "closed before the deadline: %.2f s" % times[0]
    for st in state.values():
        assert b"200 OK" not in st["data"]
        if st["data"]:  # a started request is told why: 408
            (resp,) = parse_response(st["data"])
            error_of(resp, 408)
    assert not prober.failures, "probe requests failed during the attack: %r" % prober.failures[:5]
    assert prober.ok >= 10


def test_partial_request_line_gets_408(slow):
    with slow.connect() as s:
        s.sendall(b"GET /v1/hel")
        data, waited = wait_closed(s, CEILING)
    assert waited >= HEADER_TIMEOUT - 0.5  # not before the deadline; after it, closed
    (resp,) = parse_response(data)
    error_of(resp, 408)


def test_idle_connection_without_bytes_closed_at_header_timeout(slow):
    with slow.connect() as s:
        data, waited = wait_closed(s, CEILING)
    assert data == b""  # nothing was asked, nothing is answered
    assert waited >= HEADER_TIMEOUT - 0.5  # not before the deadline; after it, closed


def test_slow_body_gets_408(slow):
    with slow.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 100\r\n\r\n0123456789")
        data, waited = wait_closed(s, CEILING)
    assert waited >= BODY_TIMEOUT - 0.5
    (resp,) = parse_response(data)
    error_of(resp, 408)


def test_slow_chunked_body_gets_408(slow):
    with slow.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        data, waited = wait_closed(s, CEILING)
    assert waited >= BODY_TIMEOUT - 0.5
    (resp,) = parse_response(data)
    error_of(resp, 408)


def test_trickled_body_cut_off(slow):
    """One body byte every 0.3 s keeps re-arming the body timer, but is far below
    min_body_rate (default 1024 B/s): cut off with 408 soon after body_timeout."""
    with slow.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 1000\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        closed = False
        while time.monotonic() - t0 < CEILING:
            try:
                s.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            chunk, closed = recv_until_close(s, timeout=0.3)
            data += chunk
            if closed or data:
                break
        if not closed:
            more, closed = recv_until_close(s, timeout=3)
            data += more
        waited = time.monotonic() - t0
    assert data, "no answer to a body trickling at ~3 B/s after %.1f s" % waited
    (resp,) = parse_response(data)
    error_of(resp, 408)


def test_idle_keepalive_closed_after_keepalive_timeout(slow):
    with slow.connect() as s:
        s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).status == 200
        data, waited = wait_closed(s, CEILING)
    assert data == b""  # an idle close sends nothing
    assert waited >= KEEPALIVE_TIMEOUT - 0.5


def test_keepalive_timer_restarts_per_request(slow):
    """Requests 1.2 s apart (each under keepalive_timeout) keep one connection alive for
    longer than the timeout itself."""
    with slow.connect() as s:
        for i in range(3):
            s.sendall(b"GET /v1/hello/t%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert read_response(s).status == 200
            time.sleep(1.2)
        s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).status == 200


def test_keepalive_requests_limit(slow):
    """keepalive_requests = 5: the fifth response says Connection: close and the
    connection closes; a sixth pipelined request is not executed."""
    req = b"".join(b"GET /v1/hello/n%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(6))
    data, closed = slow.exchange(req, timeout=3)
    rs = parse_response(data)
    assert [r.status for r in rs] == [200] * 5
    assert [r.headers.get("connection", "").lower() for r in rs[:4]] == ["", "", "", ""]
    assert rs[4].headers.get("connection", "").lower() == "close"
    assert closed


def open_connections(server):
    with server.connect(timeout=CEILING) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        (resp,) = parse_response(recv_until_close(c, timeout=CEILING)[0])
    for line in resp.body.decode().splitlines():
        if line.startswith("panthera_connections_open "):
            return int(line.split()[1])
    raise AssertionError("no panthera_connections_open in /metrics")


def test_send_timeout_closes_stuck_reader(slow):
    """A client that never reads a large response is dropped after send_timeout."""
    body = b"\x01" * (1024 * 1024 - 1)  # JSON-escaped as \\u0001: a ~6 MB response
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(("127.0.0.1", slow.port))
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        # Reading would be progress: wait, without reading, until the server counts this
        # connection closed (only the /metrics request itself is then open).
        deadline = time.monotonic() + CEILING
        while open_connections(slow) > 1:
            assert time.monotonic() < deadline, "a stuck reader is still connected"
            time.sleep(0.2)
        s.settimeout(2)
        got = 0
        closed = False
        while True:
            try:
                chunk = s.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            got += len(chunk)
    finally:
        s.close()
    assert closed, "server kept a stuck connection open past send_timeout"
    assert got < 6 * len(body), "whole response was delivered (%d bytes)" % got


# ---- connection cap ----

@pytest.fixture(scope="module")
def capped():
    s = Server(workers=1, http={"max_connections": "20", "max_connections_per_client": "100",
                                "header_timeout": "30s", "keepalive_timeout": "30s"})
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


def test_max_connections_closes_the_oldest_idle_to_make_room(capped):
    """At the cap, idle keep-alive connections make room, oldest first: the 21st client
    is served and the first idle one is closed."""
    held = []
    try:
        for i in range(20):
            s = capped.connect(timeout=5)
            s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s).status == 200, "connection %d not served" % i
            held.append(s)
        with capped.connect(timeout=5) as extra:
            extra.sendall(b"GET /v1/hello/extra HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(extra, timeout=10).json() == {"message": "Hello, extra!"}
        data, closed = recv_until_close(held[0], timeout=10)
        assert closed and data == b"", "the oldest idle connection was not closed"
        held[-1].sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(held[-1]).status == 200
    finally:
        for s in held:
            s.close()


def test_max_connections_with_every_connection_busy_waits(capped):
    """Connections in the middle of a request are never closed for room: with all 20 so,
    the 21st waits in the backlog until one of them ends."""
    held = []
    extra = None
    try:
        for i in range(20):
            s = capped.connect(timeout=5)
            s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Partial: ")
            held.append(s)
        # Wait until the server has taken all 20 (the /metrics probe is the 21st or is
        # refused once the worker is full).
        deadline = time.monotonic() + 20
        while True:
            text = requests_get_metrics(capped)
            if text is None or "panthera_connections_open 21" in text or \
                    "panthera_connections_open 20" in text:
                break
            assert time.monotonic() < deadline, "the 20 connections were never all open"
            time.sleep(0.1)
        extra = capped.connect(timeout=5)
        extra.sendall(b"GET /v1/hello/extra HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(socket.timeout):
            read_response(extra, timeout=1.5)
        held.pop().close()
        r = read_response(extra, timeout=CEILING)
        assert r.status == 200
        assert r.json() == {"message": "Hello, extra!"}
    finally:
        for s in held:
            s.close()
        if extra:
            extra.close()
    with capped.connect() as s:
        s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(s).status == 200


def requests_get_metrics(server):
    """/metrics, or None when the server cannot take one more connection right now."""
    try:
        with server.connect(timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return read_response(s, timeout=2).body.decode()
    except (socket.timeout, OSError):
        return None


def test_max_connections_per_client(make_server):
    """One address holds at most max_connections_per_client of a worker's connections;
    the next is closed at once, counted, and logged; other addresses are unaffected."""
    s = make_server(workers=1, http={"max_connections_per_client": "3"})
    held = []
    try:
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                         source_address=("127.0.0.2", 0))
            c.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(c).status == 200
            held.append(c)
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                     source_address=("127.0.0.2", 0))
        held.append(c)
        try:
            c.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            pass
        data, closed = recv_until_close(c, timeout=10)
        assert closed and b"200 OK" not in data
        with socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                      source_address=("127.0.0.3", 0)) as other:
            other.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            text = read_response(other).body.decode()
        assert 'panthera_connections_shed_total{reason="per_client"} 1' in text, text
        assert s.wait_error_log("refused over max_connections_per_client = 3", timeout=10)
        # One of the three leaves: the address may connect again.
        held[0].close()
        deadline = time.monotonic() + 20
        while True:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                         source_address=("127.0.0.2", 0))
            held.append(c)
            try:
                c.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
                if read_response(c, timeout=5).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the address never got its slot back"
            time.sleep(0.1)
    finally:
        for c in held:
            c.close()


def test_trusted_proxy_is_not_capped_per_client(make_server):
    s = make_server(workers=1, http={"max_connections_per_client": "2"},
                    sections={"ratelimit": {"trusted_proxies": "127.0.0.4"}})
    held = []
    try:
        for _ in range(5):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                         source_address=("127.0.0.4", 0))
            c.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(c).status == 200
            held.append(c)
    finally:
        for c in held:
            c.close()


def test_silent_connection_gets_first_byte_timeout(make_server):
    s = make_server(workers=1, http={"first_byte_timeout": "1s", "header_timeout": "30s"})
    with s.connect(timeout=20) as c:
        data, closed = recv_until_close(c, timeout=20)
    assert closed and data == b""
    with s.connect(timeout=20) as c:  # one that started a request is not cut off at 1 s
        c.sendall(b"GET /v1/hel")
        time.sleep(2.5)
        c.sendall(b"lo HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(c, timeout=10).status == 200
