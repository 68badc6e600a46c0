"""The notification stream (API.md "Notifications" and Conventions): SSE with id = the
notification id, bearer or single-use ticket, never ?access_token=, resume with
Last-Event-ID / ?lastEventId= (exactly the missed ones, in order), reset when the point
is gone, live across two hosts sharing PostgreSQL and Redis. Events are observed, never
timed."""
import json
import time

import pytest
import requests

from notif_helpers import (CEILING, add_member, assert_error, call, describe, inbox,
                           needs_services, new_project, new_task, notif_env, notif_server,
                           notifications, open_stream, processed, register, shared_services)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with notif_env("ntfstream") as (db, srv):
        # Issued now, checked by the module's last test once it is older than 60 s.
        owner = register(srv)
        r = call(srv, "POST", "/v1/notifications/stream-tickets", token=owner.access)
        assert r.status_code == 200, describe(r)
        srv.old_ticket = (time.time(), r.json()["ticket"])
        yield db, srv


def pair(srv):
    owner, bob = register(srv), register(srv)
    p = new_project(srv, owner)
    return owner, bob, p


def assign(srv, owner, p, bob, n=1):
    """n new tasks assigned to bob (bob is made a member first if needed)."""
    return [new_task(srv, owner, p["id"], assigneeId=bob.id) for _ in range(n)]


def test_live_notification_with_bearer(env):
    db, srv = env
    owner, bob, p = pair(srv)
    s = open_stream(srv, bob)
    assert s.headers["content-type"].startswith("text/event-stream")
    add_member(srv, owner, p["id"], bob, "member")
    (t,) = assign(srv, owner, p, bob)
    evs = notifications(s, 2)
    docs = [json.loads(e["data"]) for e in evs]
    # Two aggregates (the project, the task), two consumer groups: either may come first.
    assert sorted(d["type"] for d in docs) == ["project.member_added", "task.assigned"]
    assert [e["id"] for e in evs] == [d["id"] for d in docs]
    (assigned,) = [d for d in docs if d["type"] == "task.assigned"]
    assert assigned["payload"]["taskId"] == t["id"] and assigned["read"] is False
    # The inbox has the same ids, newest first.
    assert [n["id"] for n in inbox(srv, bob)["notifications"]] == [evs[1]["id"], evs[0]["id"]]
    s.close()


def test_ticket_is_single_use_and_never_logged(env):
    db, srv = env
    owner, bob, p = pair(srv)
    r = call(srv, "POST", "/v1/notifications/stream-tickets", token=bob.access)
    assert r.status_code == 200, describe(r)
    body = r.json()
    assert set(body) == {"ticket", "expiresIn"} and body["expiresIn"] == 60
    ticket = body["ticket"]
    s = open_stream(srv, query="?ticket=" + ticket)
    assert s.status == 200
    add_member(srv, owner, p["id"], bob, "viewer")
    (ev,) = notifications(s, 1)
    assert json.loads(ev["data"])["type"] == "project.member_added"
    s.close()
    again = open_stream(srv, query="?ticket=" + ticket, ready=False)
    assert again.status == 401, again.raw[:300]
    again.close()
    srv.wait_access_log(lambda line: "/v1/notifications/stream" in json.dumps(line))
    log = "\n".join(json.dumps(line) for line in srv.access_log_lines())
    assert ticket not in log and ticket[:20] not in log
    # A ticket for the stream routes only; anonymous cannot get one.
    assert_error(call(srv, "POST", "/v1/notifications/stream-tickets"), 401, "unauthorized")


def test_access_token_in_the_url_is_401(env):
    db, srv = env
    bob = register(srv)
    s = open_stream(srv, query="?access_token=" + bob.access, ready=False)
    assert s.status == 401
    s.close()
    # Even next to a valid bearer header.
    s = open_stream(srv, bob, query="?access_token=" + bob.access, ready=False)
    assert s.status == 401
    s.close()
    s = open_stream(srv, ready=False)
    assert s.status == 401 and s.headers.get("www-authenticate") == "Bearer"
    s.close()


def test_resume_delivers_exactly_the_missed_ones(env):
    db, srv = env
    owner, bob, p = pair(srv)
    add_member(srv, owner, p["id"], bob, "member")
    processed(db)  # so the stream starts after that one
    s = open_stream(srv, bob)
    assign(srv, owner, p, bob, 2)
    first = notifications(s, 2)
    s.close()
    # Missed while away: three more.
    assign(srv, owner, p, bob, 3)
    processed(db)
    missed = [n["id"] for n in inbox(srv, bob, limit=3)["notifications"]][::-1]
    for how in ("header", "query"):
        if how == "header":
            s = open_stream(srv, bob, headers={"Last-Event-ID": first[-1]["id"]})
        else:
            s = open_stream(srv, bob, query="?lastEventId=" + first[-1]["id"])
        assert not s.before_ready
        got = notifications(s, 3)
        assert [e["id"] for e in got] == missed
        if how == "query":
            # Then live: the next one and nothing in between.
            assign(srv, owner, p, bob)
            (live,) = notifications(s, 1)
            assert live["id"] not in missed + [e["id"] for e in first]
        s.close()


def test_unknown_point_gets_reset_then_live(env):
    db, srv = env
    owner, bob, p = pair(srv)
    add_member(srv, owner, p["id"], bob, "member")
    processed(db)
    other = register(srv)
    mine = inbox(srv, bob)["notifications"][0]["id"]
    for point in ("00000000-0000-4000-8000-000000000000", "garbage", mine):
        who = other if point == mine else bob  # someone else's id names nothing either
        s = open_stream(srv, who, headers={"Last-Event-ID": point})
        assert [e["event"] for e in s.before_ready] == ["reset"], s.raw[-400:]
        s.close()
    s = open_stream(srv, bob, headers={"Last-Event-ID": "00000000-0000-4000-8000-000000000000"})
    assign(srv, owner, p, bob)
    (ev,) = notifications(s, 1)
    assert json.loads(ev["data"])["type"] == "task.assigned"
    s.close()


def test_hidden_types_never_stream(env):
    db, srv = env
    owner, bob, p = pair(srv)
    r = call(srv, "PUT", "/v1/notifications/preferences", token=bob.access,
             json_body={"project.member_added": {"inApp": False, "email": "off"}})
    assert r.status_code == 200
    s = open_stream(srv, bob)
    add_member(srv, owner, p["id"], bob, "member")
    assign(srv, owner, p, bob)
    (ev,) = notifications(s, 1)
    assert json.loads(ev["data"])["type"] == "task.assigned"
    s.close()


def test_two_hosts_share_postgres_and_redis(env):
    db, srv = env
    other = notif_server(db, workers=1)
    with shared_services():
        other.start(timeout=30)
    try:
        owner, bob, p = pair(srv)
        add_member(srv, owner, p["id"], bob, "member")
        processed(db)
        s = open_stream(other, bob)  # on host B
        tasks = assign(srv, owner, p, bob, 3)  # acted on host A
        got = notifications(s, 3)
        # Three tasks are three aggregates: their events may be consumed in any order, so
        # the stream's order is the inbox's (seq), not the order the tasks were made in.
        processed(db)
        assert [e["id"] for e in got] == [n["id"] for n in inbox(srv, bob)["notifications"]
                                          if n["type"] == "task.assigned"][::-1]
        assert sorted(json.loads(e["data"])["payload"]["taskId"] for e in got) == sorted(
            t["id"] for t in tasks)
        s.close()
    finally:
        other.stop()
        other.cleanup()


def test_heartbeat_comments_keep_an_idle_stream_alive(env):
    """heartbeat = 1s in the tests' config: comment-only blocks come while nothing
    happens (observed: the test waits for one, it does not time it)."""
    db, srv = env
    s = open_stream(srv, register(srv))
    ev = s.next_event(timeout=CEILING, comments=True)
    assert ev is not None and ev["comments"] == 1 and not ev["event"] and not ev["id"], ev
    s.close()


def test_old_ticket_expired(env):
    """Last in the module: the ticket the fixture issued is over 60 s old by now."""
    db, srv = env
    issued, ticket = srv.old_ticket
    left = issued + 61 - time.time()
    if left > 0:
        time.sleep(left)  # the ticket's fixed lifetime, not a measurement
    s = open_stream(srv, query="?ticket=" + ticket, ready=False)
    assert s.status == 401, s.raw[:300]
    s.close()
