"""Likes and comments (API.md, "Content"): idempotent likes with a counter that survives
concurrency (100 users liking at once -> likeCount 100), comments with @username mentions,
the edit/delete rules, commentCount, If-Match on comments, and the events post.liked,
post.commented and comment.mentioned (plugins/content/README.md).
"""
import concurrent.futures
import uuid

import pytest
import requests

from content_helpers import (
    assert_error, call, content_env, describe, events, make_admin, needs_services, new_post,
    psql, register)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with content_env("cntl") as (db, s):
        alice, bob, carol = register(s), register(s), register(s)
        admin = make_admin(s)
        yield s, alice, bob, carol, admin


def get(s, post, token=None):
    r = call(s, "GET", "/v1/posts/" + post["id"], token=token)
    assert r.status_code == 200, describe(r)
    return r.json()


def test_like_idempotent_and_events(env):
    s, alice, bob, _, _ = env
    post = new_post(s, alice, title="likeable")
    path = "/v1/posts/%s/like" % post["id"]
    for _ in range(2):
        r = call(s, "POST", path, token=bob.access)
        assert r.status_code == 204 and r.content == b"", describe(r)
    doc = get(s, post, bob.access)
    assert doc["likeCount"] == 1 and doc["likedByMe"] is True
    assert get(s, post, alice.access)["likedByMe"] is False
    assert get(s, post)["likedByMe"] is False
    liked = [p for t, p in events(s, post["id"]) if t == "post.liked"]
    assert liked == [{"postId": post["id"], "authorId": alice.id, "title": "likeable",
                      "actorId": bob.id}]
    for _ in range(2):
        assert call(s, "DELETE", path, token=bob.access).status_code == 204
    doc = get(s, post, bob.access)
    assert doc["likeCount"] == 0 and doc["likedByMe"] is False
    # Liking again is a new like: a second event.
    assert call(s, "POST", path, token=bob.access).status_code == 204
    assert len([t for t, _ in events(s, post["id"]) if t == "post.liked"]) == 2


def test_like_hidden_or_missing_post(env):
    s, alice, bob, _, _ = env
    draft = new_post(s, alice, status="draft")
    for pid in (draft["id"], str(uuid.uuid4()), "nope"):
        for m in ("POST", "DELETE"):
            assert_error(call(s, m, "/v1/posts/%s/like" % pid, token=bob.access), 404)
    assert_error(call(s, "POST", "/v1/posts/%s/like" % draft["id"]), 401)
    # The author may like their own draft (they can see it).
    assert call(s, "POST", "/v1/posts/%s/like" % draft["id"],
                token=alice.access).status_code == 204


def test_100_concurrent_likes(env):
    s, alice, _, _, _ = env
    post = new_post(s, alice)
    users = [register(s) for _ in range(100)]
    url = s.url("/v1/posts/%s/like" % post["id"])

    def like(u):
        return requests.post(url, headers={"Authorization": "Bearer " + u.access},
                             timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(like, users + users[:20]))
    assert codes == [204] * 120, codes
    assert get(s, post)["likeCount"] == 100
    assert psql(s.db, "SELECT count(*) FROM content_likes WHERE post_id = '%s'"
                % post["id"]).strip() == "100"
    assert len([t for t, _ in events(s, post["id"]) if t == "post.liked"]) == 100


def test_comments_crud_and_counts(env):
    s, alice, bob, carol, admin = env
    post = new_post(s, alice, title="discuss")
    base = "/v1/posts/%s/comments" % post["id"]
    r = call(s, "POST", base, token=bob.access,
             json_body={"body": "hi @%s and @%s. and @nobody_here and @%s" % (
                 carol.username.upper(), alice.username, bob.username)})
    assert r.status_code == 201, describe(r)
    c = r.json()
    assert r.headers["Location"] == "%s/%s" % (base, c["id"])
    assert c["postId"] == post["id"] and c["authorId"] == bob.id and c["version"] == 1
    assert sorted(c["mentionedUserIds"]) == sorted([carol.id, alice.id])
    got = events(s, post["id"])
    assert ("post.commented", {"postId": post["id"], "authorId": alice.id, "title": "discuss",
                               "commentId": c["id"], "excerpt": c["body"],
                               "actorId": bob.id}) in got
    mention = [p for t, p in got if t == "comment.mentioned"]
    assert len(mention) == 1
    assert sorted(mention[0].pop("mentionedUserIds")) == sorted([carol.id, alice.id])
    assert mention[0] == {"source": "post", "postId": post["id"], "title": "discuss",
                          "commentId": c["id"], "excerpt": c["body"], "actorId": bob.id,
                          "postStatus": "published"}
    c2 = call(s, "POST", base, token=carol.access, json_body={"body": "x" * 300}).json()
    exc = [p for t, p in events(s, post["id"]) if t == "post.commented"][-1]["excerpt"]
    assert exc == "x" * 200
    assert not [p for t, p in events(s, post["id"])
                if t == "comment.mentioned" and p["commentId"] == c2["id"]]
    assert get(s, post)["commentCount"] == 2
    lst = call(s, "GET", base).json()
    assert lst["total"] == 2 and [x["id"] for x in lst["comments"]] == [c["id"], c2["id"]]
    assert call(s, "GET", base, params={"limit": 1, "page": 2}).json()["comments"][0]["id"] \
        == c2["id"]
    # Edit: only the comment's author; If-Match on its version.
    one = "%s/%s" % (base, c["id"])
    for who in (alice, carol, admin):
        assert_error(call(s, "PUT", one, token=who.access, json_body={"body": "no"}), 403)
    r = call(s, "PUT", one, token=bob.access, json_body={"body": "edited @%s" % carol.username},
             headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.headers["ETag"] == '"2"', describe(r)
    assert r.json()["mentionedUserIds"] == [carol.id] and r.json()["body"].startswith("edited")
    assert_error(call(s, "PUT", one, token=bob.access, json_body={"body": "late"},
                      headers={"If-Match": '"1"'}), 412, "precondition_failed")
    assert_error(call(s, "DELETE", one, token=bob.access, headers={"If-Match": '"1"'}), 412)
    # Delete: the comment's author, the post's author or an admin; not anyone else.
    assert_error(call(s, "DELETE", one, token=carol.access), 403, "forbidden")
    assert call(s, "DELETE", one, token=alice.access).status_code == 204
    assert_error(call(s, "DELETE", one, token=alice.access), 404)
    assert call(s, "DELETE", "%s/%s" % (base, c2["id"]), token=admin.access).status_code == 204
    assert get(s, post)["commentCount"] == 0
    c3 = call(s, "POST", base, token=carol.access, json_body={"body": "mine"}).json()
    assert call(s, "DELETE", "%s/%s" % (base, c3["id"]), token=carol.access).status_code == 204
    assert call(s, "GET", base).json() == {"total": 0, "page": 1, "limit": 10, "comments": []}


def test_comments_validation_and_visibility(env):
    s, alice, bob, _, _ = env
    post = new_post(s, alice)
    base = "/v1/posts/%s/comments" % post["id"]
    for body, field in (({}, "body"), ({"body": ""}, "body"), ({"body": "   "}, "body"),
                        ({"body": "x" * 5001}, "body"), ({"body": "ok", "postId": "x"},
                                                         "postId")):
        assert_error(call(s, "POST", base, token=bob.access, json_body=body), 400,
                     "validation_failed", fields=[field])
    draft = new_post(s, alice, status="draft")
    dbase = "/v1/posts/%s/comments" % draft["id"]
    assert_error(call(s, "GET", dbase), 404)
    assert_error(call(s, "GET", dbase, token=bob.access), 404)
    assert_error(call(s, "POST", dbase, token=bob.access, json_body={"body": "x"}), 404)
    mine = call(s, "POST", dbase, token=alice.access, json_body={"body": "note"})
    assert mine.status_code == 201, describe(mine)
    cid = mine.json()["id"]
    assert_error(call(s, "PUT", "%s/%s" % (dbase, cid), token=bob.access,
                      json_body={"body": "x"}), 404)
    # A comment id under another post names nothing.
    assert_error(call(s, "DELETE", "%s/%s" % (base, cid), token=alice.access), 404)
    assert_error(call(s, "GET", "/v1/posts/%s/comments" % uuid.uuid4()), 404)


def test_comment_idempotency(env):
    s, alice, bob, _, _ = env
    post = new_post(s, alice)
    base = "/v1/posts/%s/comments" % post["id"]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    a = call(s, "POST", base, token=bob.access, json_body={"body": "once"}, headers=key)
    b = call(s, "POST", base, token=bob.access, json_body={"body": "once"}, headers=key)
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    assert_error(call(s, "POST", base, token=bob.access, json_body={"body": "twice"},
                      headers=key), 409)
    assert get(s, post)["commentCount"] == 1
