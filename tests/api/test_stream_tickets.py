"""Stream tickets (API.md, Conventions; px_ticket_issue and PX_ROUTE_TICKET): a caller gets
a ticket, a route flagged PX_ROUTE_TICKET accepts it once as ?ticket= in place of a bearer
token and sees the caller it was issued to; a used, forged, expired or garbled ticket is
401; ?access_token= is always 401; the ticket never reaches the access log; while Redis is
down a ticket cannot be proven unused and redemption is 503."""
import os
import time

import pytest
import requests

from panthera_server import Server
from services import redis_lock
from sse_client import SSE
from test_gateway_auth import AUTH, bearer, claims, make_jwt

REDIS_SOCKET = os.environ.get("PANTHERA_REDIS_SOCKET")
pytestmark = pytest.mark.skipif(not REDIS_SOCKET, reason="PANTHERA_REDIS_SOCKET is unset")


@pytest.fixture(scope="module")
def server():
    s = Server(workers=2, plugins=("streamkit",), sections={
        "auth": AUTH, "redis": {"address": "unix:" + (REDIS_SOCKET or "")}})
    with redis_lock(exclusive=False):
        s.start()
        yield s
        s.stop()
    s.cleanup()


def token(sub="alice", role="user"):
    return bearer(make_jwt(claims(sub=sub, role=role)))


def new_ticket(server, sub="alice", role="user"):
    r = requests.post(server.url("/v1/streamkit/ticket"), headers=token(sub, role), timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expiresIn"] == 60
    return body["ticket"]


def whoami(server, query, headers=None):
    return requests.get(server.url("/v1/streamkit/whoami?" + query), headers=headers, timeout=10)


def test_ticket_stands_for_its_caller_once(server):
    t = new_ticket(server, sub="alice", role="user")
    r = whoami(server, "ticket=" + t)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "alice", "role": "user"}
    again = whoami(server, "ticket=" + t)
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "unauthorized"
    assert "already used" in again.json()["error"]["message"]
    assert again.headers["WWW-Authenticate"] == "Bearer"


def test_tickets_are_random_and_single_use_across_workers(server):
    tickets = [new_ticket(server) for _ in range(10)]
    assert len(set(tickets)) == 10
    # Two workers share one Redis: each ticket gets in exactly once, whichever answers.
    results = [whoami(server, "ticket=" + t).status_code for t in tickets for _ in range(2)]
    assert results.count(200) == 10 and results.count(401) == 10


def test_forged_garbled_and_missing_tickets_are_401(server):
    t = new_ticket(server)
    body, mac = t.rsplit(".", 1)
    forged_sub = body.replace(body.split(".")[3], "626f62")  # "bob"
    cases = [forged_sub + "." + mac, t[:-1] + ("0" if t[-1] != "0" else "1"), "garbage",
             "t1." + "0" * 200, "", make_jwt(claims())]
    for bad in cases:
        r = whoami(server, "ticket=" + requests.utils.quote(bad))
        assert r.status_code == 401, (bad, r.text)
    # The ticket still works: failed attempts did not burn it.
    assert whoami(server, "ticket=" + t).status_code == 200
    # Not a bearer token either.
    t2 = new_ticket(server)
    assert whoami(server, "", headers={"Authorization": "Bearer " + t2}).status_code == 401


def test_access_token_in_the_url_is_never_accepted(server):
    jwt = make_jwt(claims())
    r = whoami(server, "access_token=" + jwt)
    assert r.status_code == 401 and "URL" in r.json()["error"]["message"]
    # Not even next to a valid Authorization header.
    r = whoami(server, "access_token=" + jwt, headers=token())
    assert r.status_code == 401


def test_bearer_still_works_on_a_ticket_route(server):
    r = whoami(server, "", headers=token(sub="carol", role="admin"))
    assert r.status_code == 200 and r.json() == {"id": "carol", "role": "admin"}


def test_ticket_opens_an_sse_stream_and_stays_out_of_the_access_log(server):
    t = new_ticket(server, sub="dave")
    s = SSE(server.port, "/v1/streamkit/sse?channel=t&ticket=" + t)
    try:
        assert s.status == 200
        hello = s.events_until(lambda e: e["event"] == "hello")[-1]
        assert '"caller":"dave"' in hello["data"]
        rid = s.headers["x-request-id"]
    finally:
        s.close()
    server.wait_access_log(lambda ls: any(e["request_id"] == rid for e in ls), timeout=20)
    with open(server.access_log_path) as f:
        text = f.read()
    assert t not in text and t[:40] not in text
    assert "/v1/streamkit/sse" in text


def test_redemption_while_redis_is_unreachable_is_503(make_server):
    s = make_server(workers=1, plugins=("streamkit",), sections={
        "auth": AUTH, "redis": {"address": "unix:/nonexistent/redis.sock"}})
    s.start()
    t = new_ticket(s)
    r = whoami(s, "ticket=" + t)
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert r.headers.get("Retry-After")


def test_client_leaving_while_its_ticket_is_checked_is_answered_once(server):
    # The handler runs after the ticket's Redis round trip, when the client may be gone:
    # its answer is logged as 499 and the request must stay the handler's until it
    # returns. It used to be freed inside the answer, answered again ("the handler did
    # not answer", 500, no method), released twice and handed to two connections.
    import socket
    ids = []
    for i in range(150):
        t = new_ticket(server, sub="eve")
        path = ("/v1/streamkit/whoami?ticket=%s" % t) if i % 2 else (
            "/v1/streamkit/sse?channel=gone&ticket=%s" % t)
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: leave-%d\r\n\r\n"
                   % (path, i)).encode())
        s.close()
        ids.append("leave-%d" % i)
    # Every other connection still gets its answers, two on one keep-alive connection.
    with requests.Session() as k:
        for _ in range(2):
            assert k.get(server.url("/healthz"), timeout=10).status_code == 200
    lines = server.wait_access_log(
        lambda ls: sum(1 for e in ls if e["request_id"].startswith("leave-")) >= len(ids),
        timeout=30)
    mine = [e for e in lines if e["request_id"].startswith("leave-")]
    assert sorted(e["request_id"] for e in mine) == sorted(ids)  # each logged exactly once
    assert not [e for e in lines if e["method"] == "-"], [e for e in lines if e["method"] == "-"]
    assert "returned without answering" not in server.error_log()
