"""Shared helpers for the black-box tests of the `notification` plugin (API.md,
"Notifications"): a fresh database with the user, task, content and notification plugins,
and ways to wait for what the consumer produced (observed, never timed)."""
import contextlib
import json
import os
import time
import uuid

from user_helpers import (  # noqa: F401 (re-exported for the test modules)
    FAST_SCRYPT, SECRET, assert_error, call, conninfo, create_database, describe,
    drop_database, make_admin, needs_services, psql, register, shared_services)
from task_helpers import add_member, new_project  # noqa: F401
from panthera_server import REPO, Server

PLUGIN_README = os.path.join(REPO, "plugins", "notification", "README.md")
NOTIF_KEYS = {"id", "type", "payload", "read", "createdAt"}
TYPES = ["task.assigned", "task.status_changed", "task.commented", "mention",
         "post.commented", "post.liked", "project.member_added"]
# Only a hang reaches these.
CEILING = 60


def notif_server(db, *, workers=2, config=None, redis_address=None, sections=None):
    sec = {
        "postgres": {"conninfo": conninfo(db), "wait_timeout": "2s"},
        "redis": {"address": redis_address or "unix:" + os.environ["PANTHERA_REDIS_SOCKET"]},
        "auth": {"token_secret": SECRET},
    }
    sec.update(sections or {})
    conf = {"heartbeat": "1s", "poll_interval": "300ms"}
    conf.update(config or {})
    return Server(workers=workers, plugins=("user", "task", "content", "notification"),
                  plugin_config={"user": dict(FAST_SCRYPT), "notification": conf},
                  sections=sec)


@contextlib.contextmanager
def notif_env(prefix="ntf", **kw):
    """A fresh database and a started server on it; both gone afterwards."""
    with shared_services():
        db = create_database(prefix)
    s = notif_server(db, **kw)
    s.db = db
    try:
        with shared_services():
            s.start(timeout=30)
        yield db, s
    finally:
        s.cleanup()
        drop_database(db)


def inbox(srv, acct, **params):
    params.setdefault("limit", 100)
    r = call(srv, "GET", "/v1/notifications", token=acct.access, params=params)
    assert r.status_code == 200, describe(r)
    doc = r.json()
    for n in doc["notifications"]:
        assert set(n) == NOTIF_KEYS, n
    return doc


def rows(db, where="true"):
    """Every inbox row (hidden ones included) matching `where`, oldest first."""
    out = psql(db, "SELECT user_id, type, source_event, in_app FROM notification WHERE %s "
                   "ORDER BY seq" % where)
    return [tuple(line.split("|")) for line in out.splitlines() if line.strip()]


SOURCE_EVENTS = ("(type LIKE 'task.%' OR type = 'comment.mentioned' OR type LIKE 'post.%' "
                 "OR type = 'project.member_added')")


def processed(db):
    """Wait until the consumer is done with every source event in the log (observed in
    the host's delivery table; a dead-lettered event fails the wait)."""
    deadline = time.time() + CEILING
    while True:
        left = psql(db, "SELECT count(*) FROM panthera_events e WHERE %s AND NOT EXISTS "
                        "(SELECT 1 FROM panthera_event_deliveries d WHERE d.event_id = e.id "
                        "AND d.group_name LIKE 'notification-%%' AND d.state = 'done')"
                    % SOURCE_EVENTS).strip()
        if left == "0":
            return
        dead = psql(db, "SELECT count(*) FROM panthera_event_deliveries WHERE group_name "
                        "LIKE 'notification-%' AND state = 'dead'").strip()
        assert dead == "0", psql(db, "SELECT last_error FROM panthera_event_deliveries "
                                     "WHERE state = 'dead'")
        if time.time() > deadline:
            raise AssertionError("the consumer did not catch up: %s left" % left)
        time.sleep(0.05)


def created_items(db, source_event):
    """The notification.created items of one source event (README.md, "Events": an event
    carries the items of a whole consumer batch), and how many events carried them."""
    out = psql(db, "SELECT e.id, i::text FROM panthera_events e,"
                   " jsonb_array_elements(e.payload -> 'created') i"
                   " WHERE e.type = 'notification.created'"
                   " AND (i ->> 'sourceEventId')::bigint = %s" % int(source_event))
    lines = [line.split("|", 1) for line in out.splitlines() if line.strip()]
    return [json.loads(item) for _, item in lines], len({ev for ev, _ in lines})


def wait_inbox(srv, acct, n, **params):
    """The inbox once it has at least `n` notifications (the consumer runs after commit)."""
    deadline = time.time() + CEILING
    while True:
        doc = inbox(srv, acct, **params)
        if doc["total"] >= n:
            return doc
        if time.time() > deadline:
            raise AssertionError("inbox has %d, wanted %d" % (doc["total"], n))
        time.sleep(0.05)


def new_task(srv, owner, pid, **fields):
    body = {"title": "task %s" % uuid.uuid4().hex[:8]}
    body.update(fields)
    r = call(srv, "POST", "/v1/projects/%s/tasks" % pid, token=owner.access, json_body=body)
    assert r.status_code == 201, describe(r)
    return r.json()


def open_stream(srv, acct=None, *, query="", headers=None, ready=True, port=None):
    """An SSE connection to the stream (bearer `acct`, or whatever `query` carries); with
    `ready`, returns once the stream announced its starting point (": ready"), so what
    happens next is sent to it."""
    from sse_client import SSE
    h = dict(headers or {})
    if acct is not None:
        h["Authorization"] = "Bearer " + acct.access
    s = SSE(port or srv.port, "/v1/notifications/stream" + query, headers=h, timeout=CEILING)
    if ready and s.status == 200:
        wait_ready(s)
    return s


def wait_ready(s):
    """Read until the ": ready" comment; the events before it (a reset) are kept in
    s.before_ready, the ones after it stay for next_event."""
    s.before_ready = []
    deadline = time.time() + CEILING
    while True:
        text = s.body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        ev = s._take_event()
        if ev is None:
            if s.eof:
                raise ConnectionError("stream ended before it was ready: %r" % s.raw[-300:])
            s._wire += s._recv(deadline)
            s._decode()
            continue
        if text[:text.find(b"\n\n")].strip() == b": ready":
            return
        if ev["event"] or ev["id"]:
            s.before_ready.append(ev)


def notifications(s, n):
    """The next `n` notification events of stream `s` (heartbeats skipped)."""
    out = []
    while len(out) < n:
        ev = s.next_event(timeout=CEILING)
        if ev is None:
            raise ConnectionError("stream ended after %d of %d: %r" % (len(out), n, out))
        if ev["event"] == "notification":
            out.append(ev)
    return out
