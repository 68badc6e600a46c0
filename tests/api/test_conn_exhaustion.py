"""Connection exhaustion (issue 11 item 1): idle and silent connections must not lock
everybody else out.

The attack, with the default limits (2 workers x max_connections 4096): 9,000 keep-alive
connections from 127.0.0.2, each idle after one request, and 9,000 connections from
127.0.0.3-127.0.0.50 that never send a byte. Meanwhile a probe from 127.0.0.1 opens a
fresh connection every 200 ms and asks for /healthz. Every probe must be answered (the
ceiling per probe is generous: only a hang reaches it); the probes' latencies are
printed, not asserted (that is a benchmark's business). Afterwards /metrics counts the
shed connections by reason and the error log has said so, once, not per connection.

Linux routes all of 127.0.0.0/8 to lo, so binding a client socket to 127.0.0.N gives the
server distinct client addresses without any setup. The test raises its own
RLIMIT_NOFILE to the hard limit and skips when that cannot hold 18,000 sockets.
"""
import re
import resource
import selectors
import socket
import threading
import time

import pytest
import requests

from panthera_server import read_response

IDLE = 9000
SILENT = 9000
SILENT_ADDRS = ["127.0.0.%d" % i for i in range(3, 51)]
PROBE_EVERY = 0.2
PROBE_CEILING = 15.0  # seconds: only a hang reaches it
ATTACK_CEILING = 240.0  # seconds to open everything, however loaded the machine


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Probe(threading.Thread):
    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.latencies = []
        self.failures = []

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.server.port),
                                              timeout=PROBE_CEILING,
                                              source_address=("127.0.0.1", 0)) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    r = read_response(s, timeout=PROBE_CEILING)
                    if r.status != 200:
                        self.failures.append("status %d" % r.status)
                    else:
                        self.latencies.append(time.monotonic() - t0)
            except OSError as e:
                self.failures.append(repr(e))
            self.stop.wait(max(0.0, PROBE_EVERY - (time.monotonic() - t0)))


def open_idle(port, n, deadline):
    """n connections from 127.0.0.2, one request each, left open. Returns the sockets the
    server kept (it may refuse some: that is the per-client cap working)."""
    sel = selectors.DefaultSelector()
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    pending, kept, refused = {}, [], 0
    todo = n
    while (todo or pending) and time.monotonic() < deadline:
        while todo and len(pending) < 500:
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.0.2", 0))
            s.connect_ex(("127.0.0.1", port))
            pending[s] = b""
            sel.register(s, selectors.EVENT_WRITE)
            todo -= 1
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                try:
                    s.send(req)
                    sel.modify(s, selectors.EVENT_READ)
                except OSError:
                    sel.unregister(s)
                    del pending[s]
                    s.close()
                    refused += 1
                continue
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(s)
                del pending[s]
                s.close()
                refused += 1
                continue
            pending[s] += chunk
            if pending[s].endswith(b'{"status":"ok"}'):
                sel.unregister(s)
                del pending[s]
                kept.append(s)
    for s in pending:
        s.close()
    sel.close()
    return kept, refused


def open_silent(port, n):
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.bind((SILENT_ADDRS[i % len(SILENT_ADDRS)], 0))
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def metric(text, name, reason):
    m = re.search(r'^%s\{reason="%s"\} (\d+)$' % (name, reason), text, re.M)
    return int(m.group(1)) if m else 0


def test_idle_and_silent_connections_do_not_lock_others_out(make_server):
    if raise_nofile(IDLE + SILENT + 500) < IDLE + SILENT + 500:
        pytest.skip("RLIMIT_NOFILE cannot hold %d sockets" % (IDLE + SILENT + 500))
    s = make_server(workers=2)
    probe = Probe(s)
    idle, silent = [], []
    try:
        probe.start()
        deadline = time.monotonic() + ATTACK_CEILING
        idle, refused = open_idle(s.port, IDLE, deadline)
        silent = open_silent(s.port, SILENT)
        # Hold the attack while the probe keeps asking: 50 more probes.
        target = len(probe.latencies) + len(probe.failures) + 50
        while len(probe.latencies) + len(probe.failures) < target:
            assert time.monotonic() < deadline + PROBE_CEILING * 50, "the probe stalled"
            time.sleep(0.2)
    finally:
        probe.stop.set()
        probe.join(PROBE_CEILING + 5)
        for sock in idle + silent:
            sock.close()
    lat = sorted(probe.latencies)
    p99 = lat[int(len(lat) * 0.99) - 1] if lat else None
    print("probe: %d answered, %d failed, p50 %.3f s, p99 %s s; idle kept %d, refused %d" % (
        len(lat), len(probe.failures), lat[len(lat) // 2] if lat else -1,
        "%.3f" % p99 if p99 is not None else "-", len(idle), refused))
    assert not probe.failures, probe.failures[:5]
    assert len(lat) >= 50

    text = requests.get(s.url("/metrics"), timeout=PROBE_CEILING).text
    assert metric(text, "panthera_connections_shed_total", "per_client") > 0, text[-800:]
    assert metric(text, "panthera_connections_shed_total", "idle_evicted") > 0, text[-800:]
    log = s.error_log()
    assert "max_connections_per_client" in log and "to make room" in log, log[-2000:]
    # Rate-limited: a handful of lines per worker, not one per connection.
    assert log.count("to make room") < 40, log.count("to make room")
