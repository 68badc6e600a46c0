"""The notification plugin's inbox (API.md "Notifications"): rows made by the consumer
from the task and content events, the list with its filters, pagination and
Last-Modified / If-Modified-Since, read, read-all, unread-count."""
import pytest

from notif_helpers import (TYPES, add_member, assert_error, call, created_items, describe,
                           inbox, psql,
                           needs_services,
                           new_project, new_task, notif_env, processed, register, rows,
                           wait_inbox)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with notif_env("ntfinbox") as (db, srv):
        yield db, srv


def test_assignment_notifies_the_assignee_once(env):
    db, srv = env
    owner, bob = register(srv), register(srv)
    p = new_project(srv, owner)
    add_member(srv, owner, p["id"], bob, "member")
    t = new_task(srv, owner, p["id"], assigneeId=bob.id)
    processed(db)
    doc = inbox(srv, bob)
    # Two aggregates (the project, the task), consumed by two groups: the contract orders
    # events per aggregate only, so the inbox may list these two either way round.
    types = sorted(n["type"] for n in doc["notifications"])
    assert types == ["project.member_added", "task.assigned"], doc
    n = next(n for n in doc["notifications"] if n["type"] == "task.assigned")
    assert n["payload"]["taskId"] == t["id"] and n["payload"]["actorId"] == owner.id
    assert n["read"] is False
    assert "members" not in n["payload"]
    # The actor hears nothing of their own acts.
    assert inbox(srv, owner)["total"] == 0


def team(srv, n_members=2, role="member"):
    owner = register(srv)
    p = new_project(srv, owner)
    members = [register(srv) for _ in range(n_members)]
    for m in members:
        add_member(srv, owner, p["id"], m, role)
    return owner, p, members


def types_of(srv, acct, **params):
    return [n["type"] for n in inbox(srv, acct, **params)["notifications"]]


def test_status_change_reaches_assignee_and_creator_not_the_actor(env):
    db, srv = env
    owner, p, (alice, bob) = team(srv)
    t = new_task(srv, alice, p["id"], assigneeId=bob.id)  # alice creates, bob assigned
    processed(db)
    r = call(srv, "PUT", "/v1/tasks/" + t["id"], token=bob.access,
             json_body={"status": "in_progress"})
    assert r.status_code == 200, describe(r)
    processed(db)
    assert types_of(srv, alice, type="task.status_changed") == ["task.status_changed"]
    n = inbox(srv, alice, type="task.status_changed")["notifications"][0]
    assert n["payload"]["from"] == "todo" and n["payload"]["to"] == "in_progress"
    assert types_of(srv, bob, type="task.status_changed") == []  # bob did it
    assert types_of(srv, owner, type="task.status_changed") == []  # neither creator nor assignee


def test_removed_member_is_not_notified(env):
    db, srv = env
    owner, p, (alice, bob) = team(srv)
    t = new_task(srv, alice, p["id"], assigneeId=bob.id)
    r = call(srv, "DELETE", "/v1/projects/%s/members/%s" % (p["id"], alice.id),
             token=owner.access)
    assert r.status_code == 204, describe(r)
    r = call(srv, "PUT", "/v1/tasks/" + t["id"], token=bob.access, json_body={"status": "done"})
    assert r.status_code == 200, describe(r)
    processed(db)
    assert types_of(srv, alice, type="task.status_changed") == []


def test_comments_reach_assignee_creator_and_earlier_commenters(env):
    db, srv = env
    owner, p, (alice, bob, carol) = team(srv, 3)
    t = new_task(srv, alice, p["id"], assigneeId=bob.id)
    path = "/v1/tasks/%s/comments" % t["id"]
    assert call(srv, "POST", path, token=carol.access,
                json_body={"body": "first"}).status_code == 201
    processed(db)
    assert types_of(srv, alice, type="task.commented") == ["task.commented"]
    assert types_of(srv, bob, type="task.commented") == ["task.commented"]
    assert types_of(srv, carol, type="task.commented") == []
    assert call(srv, "POST", path, token=bob.access,
                json_body={"body": "second"}).status_code == 201
    processed(db)
    assert types_of(srv, carol, type="task.commented") == ["task.commented"]  # commented before
    assert len(types_of(srv, alice, type="task.commented")) == 2
    assert len(types_of(srv, bob, type="task.commented")) == 1  # not of his own
    assert types_of(srv, owner, type="task.commented") == []
    n = inbox(srv, carol, type="task.commented")["notifications"][0]
    assert n["payload"]["excerpt"] == "second" and n["payload"]["taskId"] == t["id"]


def test_mentions_notify_members_only(env):
    db, srv = env
    owner, p, (alice,) = team(srv, 1)
    outsider = register(srv)
    t = new_task(srv, owner, p["id"])
    body = "hi @%s and @%s and @%s" % (alice.username, outsider.username, owner.username)
    r = call(srv, "POST", "/v1/tasks/%s/comments" % t["id"], token=owner.access,
             json_body={"body": body})
    assert r.status_code == 201, describe(r)
    processed(db)
    assert types_of(srv, alice, type="mention") == ["mention"]
    assert types_of(srv, outsider) == []
    assert types_of(srv, owner, type="mention") == []  # mentioned themselves


def test_post_likes_comments_and_mentions(env):
    db, srv = env
    author, fan = register(srv), register(srv)
    r = call(srv, "POST", "/v1/posts", token=author.access,
             json_body={"title": "Hello", "body": "text"})
    assert r.status_code == 201, describe(r)
    post = r.json()
    assert call(srv, "POST", "/v1/posts/%s/like" % post["id"], token=fan.access).status_code == 204
    assert call(srv, "POST", "/v1/posts/%s/like" % post["id"], token=fan.access).status_code == 204
    assert call(srv, "POST", "/v1/posts/%s/like" % post["id"],
                token=author.access).status_code == 204
    r = call(srv, "POST", "/v1/posts/%s/comments" % post["id"], token=fan.access,
             json_body={"body": "nice, @%s" % author.username})
    assert r.status_code == 201, describe(r)
    r = call(srv, "POST", "/v1/posts/%s/comments" % post["id"], token=author.access,
             json_body={"body": "thanks @%s" % fan.username})
    assert r.status_code == 201, describe(r)
    processed(db)
    assert sorted(types_of(srv, author)) == ["mention", "post.commented", "post.liked"]
    assert types_of(srv, fan) == ["mention"]
    liked = inbox(srv, author, type="post.liked")["notifications"][0]
    assert liked["payload"] == {"postId": post["id"], "title": "Hello", "actorId": fan.id}


def test_list_filters_pagination_and_validation(env):
    db, srv = env
    owner, p, (bob,) = team(srv, 1)
    processed(db)  # member_added is another aggregate's event: consumed first, for the order
    for _ in range(3):
        new_task(srv, owner, p["id"], assigneeId=bob.id)
    processed(db)
    doc = inbox(srv, bob)
    assert doc["total"] == 4 and doc["page"] == 1
    assert [n["type"] for n in doc["notifications"]] == ["task.assigned"] * 3 + [
        "project.member_added"]
    page2 = inbox(srv, bob, limit=3, page=2)
    assert page2["total"] == 4 and [n["id"] for n in page2["notifications"]] == [
        doc["notifications"][3]["id"]]
    assert inbox(srv, bob, limit=3, page=9)["notifications"] == []
    assert inbox(srv, bob, type="project.member_added")["total"] == 1
    for params, field in (({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                          ({"page": "x"}, "page"), ({"unread": "maybe"}, "unread"),
                          ({"type": "nope"}, "type")):
        r = call(srv, "GET", "/v1/notifications", token=bob.access, params=params)
        assert_error(r, 400, "validation_failed")
        assert field in r.json()["error"]["fields"], r.json()


def test_read_read_all_unread_count(env):
    db, srv = env
    owner, p, (bob,) = team(srv, 1)
    for _ in range(3):
        new_task(srv, owner, p["id"], assigneeId=bob.id)
    processed(db)

    def unread():
        r = call(srv, "GET", "/v1/notifications/unread-count", token=bob.access)
        assert r.status_code == 200, describe(r)
        return r.json()["count"]

    assert unread() == 4
    ids = [n["id"] for n in inbox(srv, bob)["notifications"]]  # newest first
    r = call(srv, "POST", "/v1/notifications/%s/read" % ids[1], token=bob.access)
    assert r.status_code == 204 and r.content == b"", describe(r)
    assert call(srv, "POST", "/v1/notifications/%s/read" % ids[1],
                token=bob.access).status_code == 204  # again: no change, no error
    assert unread() == 3
    assert [n["id"] for n in inbox(srv, bob, unread="true")["notifications"]] == [
        ids[0], ids[2], ids[3]]
    assert inbox(srv, bob)["notifications"][1]["read"] is True
    # Someone else's, unknown, malformed: 404 alike.
    for who, nid in ((owner, ids[0]), (bob, "00000000-0000-4000-8000-000000000000"),
                     (bob, "nope")):
        assert_error(call(srv, "POST", "/v1/notifications/%s/read" % nid, token=who.access),
                     404, "not_found")
    assert_error(call(srv, "POST", "/v1/notifications/read-all", token=owner.access,
                      json_body={"before": ids[0]}), 404, "not_found")
    assert_error(call(srv, "POST", "/v1/notifications/read-all", token=bob.access,
                      json_body={"before": ids[0], "x": 1}), 400, "validation_failed")
    assert_error(call(srv, "POST", "/v1/notifications/read-all", token=bob.access,
                      json_body={"before": "zz"}), 400, "validation_failed")
    # read-all up to ids[2]: it and the older one.
    r = call(srv, "POST", "/v1/notifications/read-all", token=bob.access,
             json_body={"before": ids[2]})
    assert r.status_code == 204, describe(r)
    assert unread() == 1
    assert [n["id"] for n in inbox(srv, bob, unread="true")["notifications"]] == [ids[0]]
    r = call(srv, "POST", "/v1/notifications/read-all", token=bob.access)  # no body
    assert r.status_code == 204, describe(r)
    assert unread() == 0
    assert call(srv, "GET", "/v1/notifications/unread-count",
                token=owner.access).json() == {"count": 0}


def test_last_modified_and_if_modified_since(env):
    db, srv = env
    owner, p, (bob,) = team(srv, 1)
    processed(db)
    r = call(srv, "GET", "/v1/notifications", token=bob.access)
    lm = r.headers["Last-Modified"]
    assert lm.endswith(" GMT"), r.headers
    r2 = call(srv, "GET", "/v1/notifications", token=bob.access, params={"unread": "true"},
              headers={"If-Modified-Since": lm})
    assert r2.status_code == 304 and r2.content == b"", describe(r2)
    assert r2.headers["Last-Modified"] == lm
    # A new row, even within the same second: 200 with a later date.
    new_task(srv, owner, p["id"], assigneeId=bob.id)
    processed(db)
    r3 = call(srv, "GET", "/v1/notifications", token=bob.access,
              headers={"If-Modified-Since": lm})
    assert r3.status_code == 200 and r3.headers["Last-Modified"] != lm, describe(r3)
    lm3 = r3.headers["Last-Modified"]
    # Reading one changes it too.
    nid = r3.json()["notifications"][0]["id"]
    assert call(srv, "POST", "/v1/notifications/%s/read" % nid, token=bob.access).status_code == 204
    r4 = call(srv, "GET", "/v1/notifications", token=bob.access,
              headers={"If-Modified-Since": lm3})
    assert r4.status_code == 200 and r4.json()["notifications"][0]["read"] is True
    # unread-count shares the inbox's date.
    r6 = call(srv, "GET", "/v1/notifications/unread-count", token=bob.access)
    assert r6.status_code == 200 and r6.headers["Last-Modified"] == r4.headers["Last-Modified"]
    r7 = call(srv, "GET", "/v1/notifications/unread-count", token=bob.access,
              headers={"If-Modified-Since": r6.headers["Last-Modified"]})
    assert r7.status_code == 304 and r7.content == b""
    # A malformed date is ignored.
    r5 = call(srv, "GET", "/v1/notifications", token=bob.access,
              headers={"If-Modified-Since": "yesterday"})
    assert r5.status_code == 200


def test_redelivered_event_makes_no_second_row(env):
    db, srv = env
    owner, p, (bob,) = team(srv, 1)
    t = new_task(srv, owner, p["id"], assigneeId=bob.id)
    processed(db)
    ev = psql(db, "SELECT id FROM panthera_events WHERE type = 'task.assigned' AND "
                  "aggregate_id = '%s'" % t["id"]).strip()
    before = rows(db, "source_event = %s" % ev)
    items, events = created_items(db, ev)
    assert len(before) == 1 and len(items) == 1 and events == 1
    # At-least-once delivery: hand the same event to the consumer again.
    psql(db, "UPDATE panthera_event_deliveries SET state = 'pending', next_at = now() "
             "WHERE event_id = %s AND group_name = 'notification-task'" % ev)
    processed(db)
    assert rows(db, "source_event = %s" % ev) == before
    assert created_items(db, ev) == (items, 1)


def test_mention_on_a_draft_notifies_nobody(env):
    db, srv = env
    author, friend = register(srv), register(srv)
    r = call(srv, "POST", "/v1/posts", token=author.access,
             json_body={"title": "Secret", "body": "b", "status": "draft"})
    assert r.status_code == 201, describe(r)
    r = call(srv, "POST", "/v1/posts/%s/comments" % r.json()["id"], token=author.access,
             json_body={"body": "see @%s" % friend.username})
    assert r.status_code == 201, describe(r)
    processed(db)
    assert types_of(srv, friend) == []
