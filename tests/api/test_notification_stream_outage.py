"""The notification stream through a Redis outage and a reload (API.md "Notifications"):
with Redis stopped the stream polls PostgreSQL and misses nothing; on SIGHUP every one of
100 open streams ends with retry:, resumes with Last-Event-ID on the new workers, and in
the end each client has every notification exactly once, in order. A module of its own:
it stops the shared Redis, so it holds Redis's lock exclusively."""
import json
import signal

import pytest

from notif_helpers import (CEILING, add_member, call, create_database, describe,
                           drop_database, inbox, needs_services, new_project, new_task,
                           notif_server, notifications, open_stream, processed, register)
from services import Redis, pg_lock, redis_lock

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    # Not notif_env: its shared Redis lock would wait for this exclusive one forever.
    with pg_lock(False), redis_lock(exclusive=True):
        db = create_database("ntfoutage")
        srv = notif_server(db)
        try:
            srv.start(timeout=30)
            yield db, srv
        finally:
            srv.cleanup()
            drop_database(db)


def test_redis_stopped_during_a_stream_misses_nothing(env):
    db, srv = env
    owner, bob = register(srv), register(srv)
    p = new_project(srv, owner)
    add_member(srv, owner, p["id"], bob, "member")
    processed(db)
    s = open_stream(srv, bob)
    tasks = [new_task(srv, owner, p["id"], assigneeId=bob.id)]
    got = notifications(s, 1)
    redis = Redis()
    redis.stop()
    try:
        # Made while Redis is away: no live message can be published; the stream polls.
        tasks += [new_task(srv, owner, p["id"], assigneeId=bob.id) for _ in range(3)]
        got += notifications(s, 3)
    finally:
        redis.start()
    tasks += [new_task(srv, owner, p["id"], assigneeId=bob.id) for _ in range(2)]
    got += notifications(s, 2)
    processed(db)
    ids = [e["id"] for e in got]
    assert len(set(ids)) == 6
    assert ids == [n["id"] for n in inbox(srv, bob)["notifications"]
                   if n["type"] == "task.assigned"][::-1]
    assert sorted(json.loads(e["data"])["payload"]["taskId"] for e in got) == sorted(
        t["id"] for t in tasks)
    s.close()


def test_sighup_with_100_open_streams_no_gap_no_duplicate(env):
    db, srv = env
    owner = register(srv)
    p = new_project(srv, owner)
    users = [register(srv) for _ in range(20)]
    for u in users:
        add_member(srv, owner, p["id"], u, "member")
    t = new_task(srv, owner, p["id"])
    processed(db)
    path = "/v1/tasks/%s/comments" % t["id"]
    body = "ping " + " ".join("@" + u.username for u in users)

    def mention_all():
        r = call(srv, "POST", path, token=owner.access, json_body={"body": body})
        assert r.status_code == 201, describe(r)

    clients = [(u, open_stream(srv, u)) for u in users for _ in range(5)]
    seen = {id(c): [] for _, c in clients}
    mention_all()
    mention_all()
    for _, c in clients:
        seen[id(c)] += [e["id"] for e in notifications(c, 2)]
    old = set(srv.wait_workers(2))
    srv.signal(signal.SIGHUP)
    mention_all()  # while the old workers drain
    for _, c in clients:
        for ev in c.read_to_end(timeout=CEILING):
            if ev["event"] == "notification":
                seen[id(c)].append(ev["id"])
        assert c.eof and c.retry and c.retry > 0, c.raw[-200:]
    srv.wait_workers(2, exclude=old, timeout=CEILING)
    resumed = []
    for u, c in clients:
        c.close()
        n = open_stream(srv, u, headers={"Last-Event-ID": seen[id(c)][-1]})
        assert not n.before_ready, n.before_ready
        resumed.append((u, c, n))
    mention_all()
    processed(db)
    for u, c, n in resumed:
        want = [x["id"] for x in inbox(srv, u)["notifications"] if x["type"] == "mention"][::-1]
        assert len(want) == 4
        have = seen[id(c)]
        rest = len(want) - len(have)
        assert rest >= 1, (have, want)
        have += [e["id"] for e in notifications(n, rest)]
        assert have == want  # every one, once, in order
        n.close()
