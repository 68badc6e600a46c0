"""A client that closes or resets its connection while its request is in flight (an
answer that comes later, here from PostgreSQL): the server notices at once, not when the
answer would be written, ends the request as 499 in the access log and metrics, and
cancels what it started. Bytes pipelined behind an in-flight request are still answered
in order."""
import json
import os
import socket
import struct
import time

import pytest
import requests

from panthera_server import Server
from services import pg_lock

PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")


@pytest.fixture(scope="module")
def server():
    conninfo = "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))
    s = Server(workers=1, plugins=("pgkit", "hello"), sections={"postgres": {"conninfo": conninfo}})
    with pg_lock(exclusive=False):
        s.start()
        yield s
        s.stop()
    s.cleanup()


def sleeping_statements():
    from test_pools import psql
    return int(psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep($1::float8)%'").strip())


def access_lines(server, path):
    lines = []
    with open(server.access_log_path) as f:
        for line in f:
            entry = json.loads(line)
            if entry["path"] == path:
                lines.append(entry)
    return lines


def wait_for_status(server, path, status, seen, seconds):
    """The first entry with `status` after the `seen` such entries there were already."""
    end = time.time() + seconds
    while time.time() < end:
        found = [e for e in access_lines(server, path) if e["status"] == status]
        if len(found) > seen:
            return found[seen]
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("how", ["close", "reset"])
def test_hang_up_during_a_slow_query_is_499_at_once(server, how):
    path = "/v1/pgkit/sleep"
    before = len(access_lines(server, path))
    seen = len([e for e in access_lines(server, path) if e["status"] == 499])
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(b"GET /v1/pgkit/sleep?s=3&n=%s HTTP/1.1\r\nHost: x\r\n\r\n" % how.encode())
    time.sleep(0.3)
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    started = time.time()
    sock.close()
    entry = wait_for_status(server, path, 499, seen, 2.0)
    assert entry is not None, "no 499 within 2 s of the hang-up (the query sleeps 3 s)"
    assert time.time() - started < 2.0
    assert len(access_lines(server, path)) == before + 1
    # PostgreSQL was asked to cancel it: the statement is not left running for 3 s.
    end = time.time() + 2.0
    while time.time() < end and sleeping_statements() > 0:
        time.sleep(0.05)
    assert sleeping_statements() == 0
    # The worker is fine and the pool serves the next request.
    r = requests.get(server.url("/v1/pgkit/echo"), params={"v": "after"}, timeout=10)
    assert r.status_code == 200 and r.json()["value"] == "after"
    metrics = requests.get(server.url("/metrics"), timeout=5).text
    assert 'status="499"' in metrics


def test_pipelined_behind_an_in_flight_request_is_answered_in_order(server):
    sock = socket.create_connection((server.host, server.port))
    sock.settimeout(10)
    try:
        sock.sendall(b"GET /v1/pgkit/sleep?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)  # in flight now: what follows is read while it works
        sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /v1/pgkit/echo?v=third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    assert data.count(b"HTTP/1.1 200 ") == 3, data
    first, second, third = (data.index(b'"value"'), data.index(b"Hello, World!"),
                            data.index(b'"third"'))
    assert first < second < third, data
