"""Keep-alive connections pinned to a known worker, for tests of what each worker keeps in
its own memory (the content plugin's copies, the task plugin's lists).

Which worker serves a connection is read from /proc (the worker holding the server side
of the socket), so "the other worker" is a fact of the test, not a probability."""
import http.client
import json
import os


def _socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def _server_inode(server_port, client_port):
    """The inode of the server side of 127.0.0.1:client_port -> server_port."""
    want_local = "0100007F:%04X" % server_port
    want_remote = "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want_local and cols[2] == want_remote:
                return cols[9]
    return None


class Pinned:
    """A keep-alive connection and the worker pid that serves it. `request` asserts a 2xx
    answer and returns its JSON; `raw` returns the response and its body as they came."""

    def __init__(self, s):
        self.s = s
        self.conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        self.raw("GET", "/healthz")  # connected and accepted
        inode = _server_inode(s.port, self.conn.sock.getsockname()[1])
        self.worker = next((pid for pid in s.worker_pids() if inode in _socket_inodes(pid)),
                           None)

    def raw(self, method, path, token=None, body=None, headers=None, **params):
        if params:
            path += "?" + "&".join("%s=%s" % kv for kv in params.items())
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        return r, r.read()

    def request(self, method, path, token=None, body=None, **params):
        r, raw = self.raw(method, path, token, body, **params)
        assert r.status < 300, (method, path, r.status, raw[:300])
        return json.loads(raw) if raw else None

    def get(self, path, token=None, **params):
        return self.request("GET", path, token, **params)

    def close(self):
        self.conn.close()


def pinned_pair(s):
    """Two connections served by different workers."""
    first, tries = Pinned(s), []
    assert first.worker, "no worker holds the connection"
    for _ in range(200):
        c = Pinned(s)
        if c.worker and c.worker != first.worker:
            for t in tries:
                t.close()
            return first, c
        tries.append(c)
    raise AssertionError("200 connections all went to worker %d" % first.worker)
