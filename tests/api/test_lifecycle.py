"""README claims about starting and stopping that had no test of their own: SIGINT stops
like SIGTERM, shutdown_timeout bounds a request that would outlive it, Type=notify
readiness reaches NOTIFY_SOCKET, and header_timeout counts from a keep-alive request's
first byte rather than from the previous answer.

As everywhere in tests/api, nothing here reads a clock to decide: a request "outlives"
shutdown_timeout because it sleeps ten of the suite's ceilings, and an idle gap "longer
than header_timeout" is a sleep, a lower bound that load only lengthens.
"""
import os
import shutil
import signal
import socket
import tempfile
import threading
import time

import pytest
import requests

from panthera_server import CEILING, ConnectionClosed, Server, read_response, recv_until_close
from services import pg_lock

PGHOST = os.environ.get("PANTHERA_PGHOST")
needs_pg = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")


def conninfo():
    return "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))


def wait_until(pred):
    end = time.monotonic() + CEILING
    while not pred():
        assert time.monotonic() < end, "not within %s s" % CEILING
        time.sleep(0.02)


def test_sigint_stops_gracefully(make_server):
    """README: SIGTERM and SIGINT are the same graceful stop: the request in flight is
    finished, then the master exits 0."""
    s = make_server(workers=2)
    result = {}

    def slow():
        r = requests.get(s.url("/v1/test/sleep?ms=1000"), timeout=CEILING)
        result["status"], result["body"] = r.status_code, r.json()

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    s.wait_error_log("sleep of 1000 ms started")
    s.signal(signal.SIGINT)
    t.join(CEILING)
    assert result == {"status": 200, "body": {"slept_ms": 1000}}, result
    assert s.proc.wait(timeout=CEILING) == 0, s.error_log()
    assert "shutting down (signal %d)" % signal.SIGINT in s.error_log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((s.host, s.port), timeout=CEILING).close()


@needs_pg
def test_shutdown_timeout_bounds_a_request(make_server):
    """A request waiting on PostgreSQL far longer than shutdown_timeout: the worker closes
    it when the timeout is up, cancels the statement on the server (closing the socket
    alone would let it run on until PostgreSQL next writes) and exits by itself; the master
    never has to kill it."""
    from test_pools import psql, sleeping_statements
    with pg_lock(exclusive=False):
        s = make_server(workers=1, plugins=("pgkit",), extra_server={"shutdown_timeout": "1s"},
                        sections={"postgres": {"conninfo": conninfo(),
                                               "statement_timeout": "%ds" % (20 * CEILING)}})
        sock = s.connect(timeout=CEILING)
        try:
            sock.sendall(b"GET /v1/pgkit/sleep?s=%d HTTP/1.1\r\nHost: x\r\n\r\n"
                         % (10 * CEILING))
            wait_until(lambda: sleeping_statements() >= 1)
            s.signal(signal.SIGTERM)
            data, closed = recv_until_close(sock, timeout=CEILING)
            assert s.proc.wait(timeout=CEILING) == 0, s.error_log()
            # Nothing but the cancel ends a ten-ceiling sleep within the ceiling.
            wait_until(lambda: sleeping_statements() == 0)
        finally:
            sock.close()
            # Should the cancel not have worked, end the statement so the next tests do
            # not see it.
            psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE query LIKE 'SELECT pg_sleep($1::float8)%' AND pid <> pg_backend_pid()")
        assert closed and b"200 OK" not in data, data[:300]
        log = s.error_log()
        assert "shutdown timeout: closing 1 connections that are still busy" in log, log
        assert "workers did not stop in time" not in log, log
        assert "cancelling a statement still running as the pool closes" in log, log


def test_type_notify_ready_and_stopping(make_server, monkeypatch):
    """README: the systemd unit is Type=notify. A fake NOTIFY_SOCKET gets READY=1 once the
    workers are ready (so before /healthz could answer) and STOPPING=1 at SIGTERM."""
    d = tempfile.mkdtemp(prefix="px-notify-")
    path = os.path.join(d, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        sock.settimeout(CEILING)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        s = make_server(workers=2)  # returns once /healthz answers
        assert sock.recv(256) == b"READY=1"
        s.signal(signal.SIGHUP)  # a reload is not a second start
        s.wait_error_log("reload complete: generation 2 serving")
        s.signal(signal.SIGTERM)
        assert sock.recv(256) == b"STOPPING=1"
        assert s.proc.wait(timeout=CEILING) == 0
    finally:
        sock.close()
        shutil.rmtree(d, ignore_errors=True)


def test_header_timeout_counts_from_a_keepalive_requests_first_byte(make_server):
    """header_timeout 1 s, keepalive_timeout far longer: a connection idle for more than
    header_timeout after an answer still takes a request (the clock had not started),
    and a request whose head never ends is cut with 408 (the clock started at its first
    byte), long before keepalive_timeout could close it."""
    s = make_server(workers=1, http={"header_timeout": "1s",
                                     "keepalive_timeout": "%ds" % (10 * CEILING)})
    with s.connect(timeout=CEILING) as sock:
        sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, timeout=CEILING).status == 200
        time.sleep(2.5)  # idle for more than header_timeout: a lower bound
        sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert read_response(sock, timeout=CEILING).status == 200
        except ConnectionClosed:
            pytest.fail("closed while idle: header_timeout ran from the previous answer")
        sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        data, closed = recv_until_close(sock, timeout=CEILING)
    assert closed, "the unfinished head was never cut off"
    assert data.startswith(b"HTTP/1.1 408 "), data[:300]


def test_old_workers_drain_only_after_every_new_one_is_ready(make_server, tmp_path):
    """README (SIGHUP): only once all new workers are ready do the old ones drain. The new
    generation's testkit waits at a start gate the test opens one worker at a time: with
    one new worker serving and the other still starting, the old workers must all still
    be there; when the last one is ready, the reload completes and they go."""
    s = make_server(workers=2, log_level="debug")
    old = s.wait_workers(2)
    gate = tmp_path / "gate"
    gate.mkdir()
    s.plugin_config["testkit"] = {"start_gate": str(gate), "label": "gen2"}
    s.write_conf()
    s.signal(signal.SIGHUP)
    wait_until(lambda: s.error_log().count("waiting at the start gate") == 2)
    (gate / "ticket-1").write_text("")
    wait_until(lambda: s.error_log().count("passed the start gate") == 1)

    def label():
        return requests.get(s.url("/v1/test/config"), timeout=CEILING).json()["label"]

    # The new worker that passed is ready: it answers (fresh connections reach it).
    wait_until(lambda: label() == "gen2")
    log = s.error_log()
    assert "reload complete" not in log, log
    for pid in old:
        assert "[%d]: draining" % pid not in log, log
    alive = [pid for pid in old if pid in s.worker_pids()]
    assert alive == old, "old workers gone before the last new one was ready: %r" % old
    (gate / "ticket-2").write_text("")
    s.wait_error_log("reload complete: generation 2 serving")
    new = s.wait_workers(2, exclude=old)
    assert not set(new) & set(old)
    s.wait_gone(old)  # until then an old worker may still take a connection
    assert all(label() == "gen2" for _ in range(4))


def test_sighup_during_a_reload_is_not_lost(make_server, tmp_path):
    """apt's postinst reloads, then `panthera-plugin enable` changes the config and sends
    SIGHUP again while that reload's workers are still starting. The second signal must
    not be dropped: once the first reload ends, another reads the config as it is now."""
    s = make_server(workers=2, log_level="debug")
    old = s.wait_workers(2)
    gate = tmp_path / "gate"
    gate.mkdir()
    s.plugin_config["testkit"] = {"start_gate": str(gate), "label": "gen2"}
    s.write_conf()
    s.signal(signal.SIGHUP)
    wait_until(lambda: s.error_log().count("waiting at the start gate") == 2)
    s.plugin_config["testkit"] = {"label": "gen3"}
    s.write_conf()
    s.signal(signal.SIGHUP)
    s.wait_error_log("another follows once it ends")
    (gate / "ticket-1").write_text("")
    (gate / "ticket-2").write_text("")
    s.wait_error_log("reload complete: generation 3 serving")
    s.wait_gone(old)

    def label():
        return requests.get(s.url("/v1/test/config"), timeout=CEILING).json()["label"]

    # Generation 2 drains once generation 3 is ready; until then it may take a connection.
    wait_until(lambda: all(label() == "gen3" for _ in range(4)))
