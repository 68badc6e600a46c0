"""A deleted user's content goes (plugins/content/README.md, "Deleted users"): DELETE
/v1/users/{id} emits user.deleted once, in the deletion's transaction (plugins/user); the
content plugin's group content-users then removes the user's posts (drafts and published,
with their comments and likes; their media detached for the sweep), their likes and
comments on other posts (the counters move down), and emits post.deleted, post.unliked and
comment.deleted as the matching requests do. Every wait polls the host's delivery records
(panthera_event_deliveries) up to a ceiling only a hang reaches; nothing is timed.
"""
import json
import subprocess
import time
import uuid

import pytest

from content_helpers import (
    assert_error, call, content_env, describe, make_admin, needs_services, new_post, psql,
    redis, register, upload)
from panthera_server import PANTHERAD

pytestmark = needs_services
CEILING = 120  # seconds: only a hang reaches it
KEY = "content:hot:test:" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def env():
    with content_env("cntud", content={"hot_key": KEY, "hot_size": "50",
                                       "media_unattached_ttl": "2s",
                                       "media_sweep_interval": "1s"},
                     storage={"sweep_interval": "1s", "sweep_grace": "2s"}) as (db, s):
        yield s, make_admin(s)


def deliveries(s, group, type_, aggregate):
    """States of `group`'s deliveries of the events of `type_` about `aggregate`."""
    return psql(s.db, "SELECT d.state FROM panthera_event_deliveries d JOIN panthera_events e "
                "ON e.id = d.event_id WHERE d.group_name = '%s' AND e.type = '%s' AND "
                "e.aggregate_id = '%s' ORDER BY e.id" % (group, type_, aggregate)).split()


def wait_delivered(s, group, type_, aggregate, n=1):
    """Until `group` is done with the `n` events of `type_` about `aggregate`."""
    end = time.time() + CEILING
    got = None
    while time.time() < end:
        got = deliveries(s, group, type_, aggregate)
        if got == ["done"] * n:
            return
        time.sleep(0.1)
    raise AssertionError("%s: %s %s delivered as %s" % (group, type_, aggregate, got))


def emitted(s, type_, aggregate):
    """[payload] of the events of `type_` about `aggregate`, oldest first."""
    out = psql(s.db, "SELECT payload::text FROM panthera_events WHERE type = '%s' AND "
               "aggregate_id = '%s' ORDER BY id" % (type_, aggregate))
    return [json.loads(line) for line in out.splitlines() if line]


def get_post(s, post_id, token=None):
    return call(s, "GET", "/v1/posts/" + post_id, token=token)


def count(s, sql):
    return int(psql(s.db, sql).strip())


def world(s):
    """A with a published post (holding an upload), a draft, a comment and a like on B's
    post, and a loose upload; B with that post (also commented by B), another post, and a
    like and a comment on A's post."""
    a, b = register(s), register(s)
    word = "zq" + uuid.uuid4().hex[:10]
    held, loose = upload(s, a), upload(s, a)
    w = {"a": a, "b": b, "word": word, "held": held, "loose": loose}
    w["pa"] = new_post(s, a, title="by a " + word, body="see %s" % held["url"])
    w["da"] = new_post(s, a, title="draft " + word, status="draft")
    w["pb"] = new_post(s, b, title="by b " + word)
    w["pb2"] = new_post(s, b, title="other of b")
    for who, post in ((a, w["pb"]), (b, w["pa"])):
        assert call(s, "POST", "/v1/posts/%s/like" % post["id"],
                    token=who.access).status_code == 204
        r = call(s, "POST", "/v1/posts/%s/comments" % post["id"], token=who.access,
                 json_body={"body": "a comment"})
        assert r.status_code == 201, describe(r)
    r = call(s, "POST", "/v1/posts/%s/comments" % w["pb"]["id"], token=b.access,
             json_body={"body": "b's own"})
    assert r.status_code == 201, describe(r)
    w["b_comment"] = r.json()
    assert call(s, "POST", "/v1/posts/%s/like" % w["pb2"]["id"],
                token=b.access).status_code == 204
    assert psql(s.db, "SELECT post_id FROM content_media WHERE id = '%s'"
                % held["id"]).strip() == w["pa"]["id"]
    return w


def wait_gone(s, w):
    """user.deleted consumed by content-users, and what it emitted by the hot feed's
    groups."""
    a = w["a"]
    wait_delivered(s, "content-users", "user.deleted", a.id)
    for post in (w["pa"], w["da"]):
        wait_delivered(s, "content-hot", "post.deleted", post["id"])
    wait_delivered(s, "content-hot", "post.unliked", w["pb"]["id"])
    wait_delivered(s, "content-hot-uncomment", "comment.deleted", w["pb"]["id"])


def ids(doc):
    return {p["id"] for p in doc["posts"]}


@pytest.mark.parametrize("by", ["self", "admin"])
def test_a_deleted_users_content_goes_and_others_stay(env, by):
    s, admin = env
    w = world(s)
    a, b = w["a"], w["b"]
    pb_before = get_post(s, w["pb2"]["id"]).json()
    token = a.access if by == "self" else admin.access
    r = call(s, "DELETE", "/v1/users/" + a.id, token=token)
    assert r.status_code == 204, describe(r)
    wait_gone(s, w)

    # A's posts, published and draft, are gone for everyone.
    for post in (w["pa"], w["da"]):
        for tok in (b.access, admin.access, None):
            assert_error(get_post(s, post["id"], tok), 404)
        assert_error(call(s, "GET", "/v1/posts/%s/comments" % post["id"]), 404)
    # B's post no longer counts A's like and comment; B's own comment stays.
    doc = get_post(s, w["pb"]["id"], b.access).json()
    assert doc["likeCount"] == 0 and doc["commentCount"] == 1, doc
    assert doc["version"] == w["pb"]["version"] and doc["title"] == w["pb"]["title"]
    r = call(s, "GET", "/v1/posts/%s/comments" % w["pb"]["id"])
    assert [c["id"] for c in r.json()["comments"]] == [w["b_comment"]["id"]], r.text
    # B's other post and B's like on it are untouched.
    assert get_post(s, w["pb2"]["id"]).json() == pb_before
    assert get_post(s, w["pb2"]["id"], b.access).json()["likedByMe"] is True
    # Absent from lists, search and both feeds (read after the deliveries).
    r = call(s, "GET", "/v1/posts", params={"authorId": a.id})
    assert r.json()["total"] == 0, r.text
    r = call(s, "GET", "/v1/posts", params={"q": w["word"]})
    assert ids(r.json()) == {w["pb"]["id"]}, r.text
    r = call(s, "GET", "/v1/posts", params={"status": "draft"}, token=b.access)
    assert w["da"]["id"] not in ids(r.json())
    for sort in ("new", "hot"):
        for tok in (None, b.access):
            r = call(s, "GET", "/v1/feed", params={"sort": sort, "limit": 100}, token=tok)
            assert r.status_code == 200, describe(r)
            got = ids(r.json())
            assert w["pa"]["id"] not in got and w["pb"]["id"] in got, (sort, got)
    assert redis("ZSCORE", KEY, w["pa"]["id"]) == []
    # Nothing in the tables names A any more; A's media lost their post.
    for table, col in (("content_posts", "author_id"), ("content_comments", "author_id"),
                       ("content_likes", "user_id")):
        assert count(s, "SELECT count(*) FROM %s WHERE %s = '%s'" % (table, col, a.id)) == 0
    # Exactly the events a post's DELETE, an unlike and a comment's deletion emit.
    assert len(emitted(s, "user.deleted", a.id)) == 1
    assert emitted(s, "user.deleted", a.id) == [{"userId": a.id}]
    for post in (w["pa"], w["da"]):
        assert emitted(s, "post.deleted", post["id"]) == [
            {"postId": post["id"], "authorId": a.id, "actorId": a.id}]
    assert emitted(s, "post.unliked", w["pb"]["id"]) == [
        {"postId": w["pb"]["id"], "authorId": b.id, "title": w["pb"]["title"],
         "actorId": a.id}]
    [gone] = emitted(s, "comment.deleted", w["pb"]["id"])
    assert gone["commentAuthorId"] == a.id and gone["authorId"] == b.id, gone
    # A's uploads (the one its post held and the loose one) are swept with their blobs.
    end = time.time() + CEILING
    left = None
    while time.time() < end:
        left = count(s, "SELECT count(*) FROM content_media WHERE owner_id = '%s'" % a.id)
        if left == 0:
            break
        time.sleep(0.2)
    assert left == 0, "the media sweep left %s of A's uploads" % left
    for m in (w["held"], w["loose"]):
        assert call(s, "GET", m["url"], token=b.access).status_code == 404


def test_deleting_a_user_without_content(env):
    s, admin = env
    a, b = register(s), register(s)
    post = new_post(s, b, title="stays")
    assert call(s, "DELETE", "/v1/users/" + a.id, token=admin.access).status_code == 204
    wait_delivered(s, "content-users", "user.deleted", a.id)
    assert emitted(s, "user.deleted", a.id) == [{"userId": a.id}]
    assert get_post(s, post["id"]).json()["title"] == "stays"
    assert count(s, "SELECT count(*) FROM panthera_events WHERE producer = 'content' AND "
                 "payload->>'actorId' = '%s'" % a.id) == 0


def test_a_deleted_users_token_writes_nothing_after_the_sweep(env):
    """The consumer removes what the user had; their access token, still unexpired, must
    not add anything after it (px_token_revoke in the deletion's transaction)."""
    s, admin = env
    a = register(s)
    mine = new_post(s, a, title="before")
    assert call(s, "DELETE", "/v1/users/" + a.id, token=admin.access).status_code == 204
    wait_delivered(s, "content-users", "user.deleted", a.id)

    def revoked(r):
        return r.status_code == 401 and \
            r.json()["error"]["message"] == "invalid bearer token: revoked"
    # Until both workers have heard (the host's channel; its poll at worst), with a read
    # that changes nothing; then no write gets through.
    end = time.time() + CEILING
    while not all(revoked(call(s, "GET", "/v1/users/me", token=a.access)) for _ in range(20)):
        assert time.time() < end, "a worker kept accepting a deleted user's token"
        time.sleep(0.1)
    for _ in range(10):
        assert revoked(call(s, "POST", "/v1/posts", token=a.access,
                            json_body={"title": "after", "body": "from a ghost"}))
    assert revoked(call(s, "POST", "/v1/posts/%s/like" % mine["id"], token=a.access))
    assert count(s, "SELECT count(*) FROM content_posts WHERE author_id = '%s'" % a.id) == 0


def test_a_404_delete_emits_nothing(env):
    s, admin = env
    nobody = str(uuid.uuid4())
    assert_error(call(s, "DELETE", "/v1/users/" + nobody, token=admin.access), 404)
    assert emitted(s, "user.deleted", nobody) == []
    a = register(s)
    assert call(s, "DELETE", "/v1/users/" + a.id, token=admin.access).status_code == 204
    assert_error(call(s, "DELETE", "/v1/users/" + a.id, token=admin.access), 404)
    assert len(emitted(s, "user.deleted", a.id)) == 1


def test_a_redelivered_user_deleted_has_no_second_effect(env):
    """The delivery is dead-lettered by hand and replayed with `pantherad events:replay`:
    the handler runs again on a user whose content is gone and changes nothing."""
    s, admin = env
    w = world(s)
    a = w["a"]
    assert call(s, "DELETE", "/v1/users/" + a.id, token=a.access).status_code == 204
    wait_gone(s, w)

    def state():
        return (get_post(s, w["pb"]["id"]).json(), get_post(s, w["pb2"]["id"]).json(),
                psql(s.db, "SELECT count(*) FROM panthera_events WHERE producer = 'content'"))

    before = state()
    event_id = psql(s.db, "SELECT id FROM panthera_events WHERE type = 'user.deleted' AND "
                    "aggregate_id = '%s'" % a.id).strip()
    psql(s.db, "UPDATE panthera_event_deliveries SET state = 'dead' WHERE group_name = "
         "'content-users' AND event_id = %s" % event_id)
    replay = subprocess.run([PANTHERAD, "-c", s.conf_path, "events:replay", "content-users",
                             event_id], capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0 and replay.stdout.startswith("1 dead letters"), replay
    wait_delivered(s, "content-users", "user.deleted", a.id)
    assert int(psql(s.db, "SELECT attempts FROM panthera_event_deliveries WHERE group_name = "
                    "'content-users' AND event_id = %s" % event_id)) >= 1
    assert state() == before
    assert len(emitted(s, "post.deleted", w["pa"]["id"])) == 1


def test_a_user_with_more_rows_than_a_batch(env):
    """1,200 posts, and likes and comments on 1,100 posts of another user, written straight
    into the tables: the handler works through several batches of each kind (500,
    USER_GONE_BATCH) in one delivery and misses none."""
    s, admin = env
    a, b = register(s), register(s)
    psql(s.db, "INSERT INTO content_posts (id, author_id, kind, title, body, status, "
         "published_at) SELECT gen_random_uuid(), '%s', 'post', 'bulk ' || i, 'text', "
         "CASE WHEN i %% 2 = 0 THEN 'published' ELSE 'draft' END, "
         "CASE WHEN i %% 2 = 0 THEN now() END FROM generate_series(1, 1200) i" % a.id)
    psql(s.db, "INSERT INTO content_posts (id, author_id, kind, title, body, status, "
         "published_at, like_count, comment_count) SELECT gen_random_uuid(), '%s', 'post', "
         "'liked ' || i, 'text', 'published', now(), 1, 1 FROM generate_series(1, 1100) i"
         % b.id)
    psql(s.db, "INSERT INTO content_likes (post_id, user_id) SELECT id, '%s' FROM "
         "content_posts WHERE author_id = '%s'; INSERT INTO content_comments (id, post_id, "
         "author_id, body) SELECT gen_random_uuid(), id, '%s', 'hi' FROM content_posts "
         "WHERE author_id = '%s'" % (a.id, b.id, a.id, b.id))
    assert call(s, "DELETE", "/v1/users/" + a.id, token=admin.access).status_code == 204
    wait_delivered(s, "content-users", "user.deleted", a.id)
    assert count(s, "SELECT count(*) FROM content_posts WHERE author_id = '%s'" % a.id) == 0
    assert psql(s.db, "SELECT count(*), sum(like_count), sum(comment_count) FROM "
                "content_posts WHERE author_id = '%s'" % b.id).strip() == "1100|0|0"
    for table, col in (("content_comments", "author_id"), ("content_likes", "user_id")):
        assert count(s, "SELECT count(*) FROM %s WHERE %s = '%s'" % (table, col, a.id)) == 0
    # One event per row removed, each emitted once.
    assert psql(s.db, "SELECT type, count(*), count(DISTINCT aggregate_id) FROM "
                "panthera_events WHERE producer = 'content' AND payload->>'actorId' = '%s' "
                "GROUP BY type ORDER BY type" % a.id).split() == [
        "comment.deleted|1100|1100", "post.deleted|1200|1200", "post.unliked|1100|1100"]
