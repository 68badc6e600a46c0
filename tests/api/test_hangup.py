"""A client that closes or resets its connection while its request is in flight (an
answer that comes later, here from PostgreSQL): the server notices at once, not when the
answer would be written, ends the request as 499 in the access log and metrics, and
cancels what it started. Bytes pipelined behind an in-flight request are still answered
in order.

"At once" is proved without a clock: the query sleeps far longer than any wait here
(statement_timeout too), so a 499 and a vanished statement can only come from the
hang-up path, never from the query ending on its own."""
import json
import os
import socket
import struct
import time

import pytest
import requests

from panthera_server import CEILING, Server
from services import pg_lock

PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")


@pytest.fixture(scope="module")
def server():
    conninfo = "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))
    # statement_timeout beyond the query's 10 ceilings: only a cancel ends it early.
    s = Server(workers=1, plugins=("pgkit", "hello"),
               sections={"postgres": {"conninfo": conninfo,
                                      "statement_timeout": "%ds" % (20 * CEILING)}})
    with pg_lock(exclusive=False):
        s.start()
        yield s
        s.stop()
    s.cleanup()


def sleeping_statements():
    from test_pools import sleeping_statements as count
    return count()


def access_lines(server, path):
    lines = []
    with open(server.access_log_path) as f:
        for line in f:
            entry = json.loads(line)
            if entry["path"] == path:
                lines.append(entry)
    return lines


def wait_for(pred):
    end = time.monotonic() + CEILING
    while not pred() and time.monotonic() < end:
        time.sleep(0.05)
    return pred()


def wait_for_status(server, path, status, seen):
    """The first entry with `status` after the `seen` such entries there were already."""
    end = time.monotonic() + CEILING
    while time.monotonic() < end:
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
    assert sleeping_statements() == 0
    query_s = 10 * CEILING
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(b"GET /v1/pgkit/sleep?s=%d&n=%s HTTP/1.1\r\nHost: x\r\n\r\n"
                 % (query_s, how.encode()))
    # In flight: PostgreSQL runs the statement.
    assert wait_for(lambda: sleeping_statements() == 1), "the query never started"
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    entry = wait_for_status(server, path, 499, seen)
    assert entry is not None, "no 499 after the hang-up (the query sleeps %d s)" % query_s
    assert len(access_lines(server, path)) == before + 1
    # PostgreSQL was asked to cancel it: the statement is not left running.
    assert wait_for(lambda: sleeping_statements() == 0), "the statement was not cancelled"
    # The worker is fine and the pool serves the next request.
    r = requests.get(server.url("/v1/pgkit/echo"), params={"v": "after"}, timeout=10)
    assert r.status_code == 200 and r.json()["value"] == "after"
    metrics = requests.get(server.url("/metrics"), timeout=5).text
    assert 'status="499"' in metrics


def answered(sock):
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def test_pipelined_behind_an_in_flight_request_is_answered_in_order(server):
    sock = socket.create_connection((server.host, server.port))
    sock.settimeout(CEILING)
    try:
        sock.sendall(b"GET /v1/pgkit/sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        # In flight (or, on a machine slower than the query, already answered): what follows
        # is read while it works.
        wait_for(lambda: sleeping_statements() == 1 or answered(sock))
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
