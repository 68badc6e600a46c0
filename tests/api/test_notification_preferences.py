"""Notification preferences (API.md "Notifications"): per type {inApp, email}, defaults
from [plugin:notification], and what they do to the inbox and to notification.created,
the event the delivery side (email, webhooks) reads."""
import pytest

from notif_helpers import (TYPES, add_member, assert_error, call, created_items, describe, inbox,
                           needs_services, new_project, new_task, notif_env, processed, psql,
                           register, rows)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    # Defaults: the built-in ones, with a per-type override.
    with notif_env("ntfpref", config={"email_post_liked": "daily",
                                      "in_app_task_commented": "no"}) as (db, srv):
        yield db, srv


def prefs(srv, acct):
    r = call(srv, "GET", "/v1/notifications/preferences", token=acct.access)
    assert r.status_code == 200, describe(r)
    return r.json()


def test_defaults_then_changes(env):
    db, srv = env
    u = register(srv)
    doc = prefs(srv, u)
    assert set(doc) == set(TYPES)
    assert doc["task.assigned"] == {"inApp": True, "email": "instant"}
    assert doc["post.liked"] == {"inApp": True, "email": "daily"}
    assert doc["task.commented"] == {"inApp": False, "email": "instant"}
    r = call(srv, "PUT", "/v1/notifications/preferences", token=u.access,
             json_body={"task.assigned": {"inApp": False, "email": "off"},
                        "mention": {"inApp": True, "email": "daily"}})
    assert r.status_code == 200, describe(r)
    after = r.json()
    assert after["task.assigned"] == {"inApp": False, "email": "off"}
    assert after["mention"] == {"inApp": True, "email": "daily"}
    assert after["post.liked"] == doc["post.liked"]
    assert prefs(srv, u) == after
    # Another user still has the defaults.
    assert prefs(srv, register(srv)) == doc


@pytest.mark.parametrize("body, field", [
    ({"task.assigned": {"inApp": True}}, "task.assigned.email"),
    ({"task.assigned": {"inApp": True, "email": "weekly"}}, "task.assigned.email"),
    ({"task.assigned": {"inApp": "yes", "email": "off"}}, "task.assigned.inApp"),
    ({"task.assigned": {"inApp": True, "email": "off", "sms": 1}}, "task.assigned.sms"),
    ({"nope": {"inApp": True, "email": "off"}}, "nope"),
])
def test_bad_bodies(env, body, field):
    db, srv = env
    u = register(srv)
    r = call(srv, "PUT", "/v1/notifications/preferences", token=u.access, json_body=body)
    assert_error(r, 400, "validation_failed")
    assert field in r.json()["error"]["fields"], r.json()
    r = call(srv, "PUT", "/v1/notifications/preferences", token=u.access, data=b"{",
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def created_events(db, source_event):
    return created_items(db, source_event)[0]


def test_notification_created_carries_effective_preferences(env):
    db, srv = env
    owner = register(srv)
    p = new_project(srv, owner)
    quiet, loud = register(srv), register(srv)
    add_member(srv, owner, p["id"], quiet, "member")
    add_member(srv, owner, p["id"], loud, "member")
    assert call(srv, "PUT", "/v1/notifications/preferences", token=quiet.access,
                json_body={"task.commented": {"inApp": False, "email": "off"}}).status_code == 200
    assert call(srv, "PUT", "/v1/notifications/preferences", token=loud.access,
                json_body={"task.commented": {"inApp": True, "email": "daily"}}).status_code == 200
    t = new_task(srv, quiet, p["id"], assigneeId=loud.id)  # quiet creates, loud assigned
    r = call(srv, "POST", "/v1/tasks/%s/comments" % t["id"], token=owner.access,
             json_body={"body": "look"})
    assert r.status_code == 201, describe(r)
    processed(db)
    ev = psql(db, "SELECT id FROM panthera_events WHERE type = 'task.commented' AND "
                  "aggregate_id = '%s'" % t["id"]).strip()
    (created,) = created_events(db, ev)
    assert created["type"] == "task.commented"
    assert created["sourceEventId"] == int(ev) and created["projectId"] == p["id"]
    got = {r["userId"]: r for r in created["recipients"]}
    assert set(got) == {quiet.id, loud.id}
    assert (got[quiet.id]["email"], got[quiet.id]["inApp"]) == ("off", False)
    assert (got[loud.id]["email"], got[loud.id]["inApp"]) == ("daily", True)
    # Every recipient has a row; the in-app-off one is hidden from inbox and count.
    ids = {r[0]: r[3] for r in rows(db, "source_event = %s" % ev)}
    assert ids == {quiet.id: "f", loud.id: "t"}
    assert inbox(srv, quiet, type="task.commented")["total"] == 0
    assert inbox(srv, loud, type="task.commented")["total"] == 1
    nid = psql(db, "SELECT id FROM notification WHERE source_event = %s AND user_id = '%s'"
               % (ev, quiet.id)).strip()
    assert got[quiet.id]["notificationId"] == nid
    assert_error(call(srv, "POST", "/v1/notifications/%s/read" % nid, token=quiet.access),
                 404, "not_found")
    # A task event with a project has its projectId; the default applies without a row.
    ev2 = psql(db, "SELECT id FROM panthera_events WHERE type = 'task.assigned' AND "
                   "aggregate_id = '%s'" % t["id"]).strip()
    (assigned,) = created_events(db, ev2)
    assert assigned["recipients"][0]["email"] == "instant"
    assert assigned["recipients"][0]["inApp"] is True


def test_post_events_have_no_project(env):
    db, srv = env
    author, fan = register(srv), register(srv)
    post = call(srv, "POST", "/v1/posts", token=author.access,
                json_body={"title": "T", "body": "b"}).json()
    assert call(srv, "POST", "/v1/posts/%s/like" % post["id"], token=fan.access).status_code == 204
    processed(db)
    ev = psql(db, "SELECT id FROM panthera_events WHERE type = 'post.liked' AND "
                  "aggregate_id = '%s'" % post["id"]).strip()
    (created,) = created_events(db, ev)
    assert created["projectId"] is None
    assert created["recipients"][0]["email"] == "daily"  # email_post_liked = daily
