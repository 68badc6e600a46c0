#!/usr/bin/env python3
"""Open N keep-alive connections, one completed request each, and measure what holding
them idle costs the server in resident memory.

Used by idle_conns.sh, which starts the server; this only needs its pids:

    idle_client.py --port 18480 --pids 100,101,102 --conns 10000

Steps: read the servers' VmRSS (summed over --pids, from /proc/PID/status); open the
connections, at most --parallel at a time, each sending one GET and reading the whole
response (status 200, not "Connection: close"); wait --settle seconds; read VmRSS again;
check that every connection is still open (the server closed none); close them all.
Prints one JSON object on stdout. Only the standard library (selectors, sockets).
"""
import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def snapshot(pids):
    out = {}
    for pid in pids:
        try:
            out[pid] = {
                "rss_kib": status_kib(pid, "VmRSS"),
                "anon_kib": status_kib(pid, "RssAnon"),
                "fds": len(os.listdir(f"/proc/{pid}/fd")),
            }
        except FileNotFoundError:
            sys.exit(f"idle_client: process {pid} is gone")
    return out


class Conn:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connect"
        self.buf = b""
        self.need = None  # total bytes of the response, once the head is in


def response_complete(c):
    """True when c.buf holds one whole response; raises on a bad one."""
    if c.need is None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = c.buf[:end].decode("latin-1").split("\r\n")
        if not head[0].startswith("HTTP/1.1 200"):
            raise ValueError("status line %r" % head[0])
        length = None
        for h in head[1:]:
            name, _, value = h.partition(":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and "close" in value:
                raise ValueError("the server closes the connection after one request")
        if length is None:
            raise ValueError("no Content-Length")
        c.need = end + 4 + length
    return len(c.buf) >= c.need


def open_idle(host, port, n, parallel, deadline, path):
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    idle = []
    started = 0
    active = 0
    while len(idle) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(idle)} of {n} connections done in time")
        while started < n and active < parallel:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect: {os.strerror(err)}")
            c = Conn(s)
            sel.register(s, selectors.EVENT_WRITE, c)
            started += 1
            active += 1
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            s = c.sock
            if c.state == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"connect: {os.strerror(err)}")
                s.send(request)  # 40-odd bytes into an empty socket buffer: all of it
                c.state = "response"
                sel.modify(s, selectors.EVENT_READ, c)
                continue
            data = s.recv(65536)
            if not data:
                raise ConnectionError("the server closed a connection mid-response")
            c.buf += data
            if response_complete(c):
                if len(c.buf) != c.need:
                    raise ValueError("more bytes than one response")
                sel.unregister(s)
                c.buf = b""
                idle.append(s)
                active -= 1
    sel.close()
    return idle


def still_open(socks):
    """How many of socks the server has not closed (nothing readable: no EOF, no RST)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = len(sel.select(timeout=0))
    sel.close()
    return len(socks) - closed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/v1/hello")
    ap.add_argument("--pids", required=True, help="comma-separated: master and workers")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200, help="connections in progress at once")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before the second reading")
    ap.add_argument("--timeout", type=float, default=60.0, help="for opening them all")
    args = ap.parse_args()
    pids = [int(p) for p in args.pids.split(",") if p]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.conns + 100:
        want = min(hard, args.conns + 1000)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        if want < args.conns + 100:
            sys.exit(f"idle_client: the fd limit ({hard}) is too low for {args.conns} connections")

    before = snapshot(pids)
    t0 = time.monotonic()
    socks = open_idle(args.host, args.port, args.conns, args.parallel,
                      t0 + args.timeout, args.path)
    opened_s = time.monotonic() - t0
    time.sleep(args.settle)
    after = snapshot(pids)
    alive = still_open(socks)
    for s in socks:
        s.close()

    def total(snap, field):
        return sum(v[field] for v in snap.values())

    rss_delta = total(after, "rss_kib") - total(before, "rss_kib")
    anon_delta = total(after, "anon_kib") - total(before, "anon_kib")
    print(json.dumps({
        "conns": args.conns,
        "still_open": alive,
        "open_seconds": round(opened_s, 2),
        "rss_before_kib": total(before, "rss_kib"),
        "rss_after_kib": total(after, "rss_kib"),
        "rss_delta_kib": rss_delta,
        "rss_bytes_per_conn": round(rss_delta * 1024 / args.conns, 1),
        "anon_delta_kib": anon_delta,
        "anon_bytes_per_conn": round(anon_delta * 1024 / args.conns, 1),
        "per_process": {
            str(pid): {
                "rss_delta_kib": after[pid]["rss_kib"] - before[pid]["rss_kib"],
                "fds_added": after[pid]["fds"] - before[pid]["fds"],
            }
            for pid in pids
        },
    }))
    return 0 if alive == args.conns else 1


if __name__ == "__main__":
    sys.exit(main())
