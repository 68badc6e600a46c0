"""Posts: GET/POST /v1/posts and GET/PUT/DELETE /v1/posts/{id} (API.md, "Content").

Drafts are visible only to their author (404 for everyone else, admins included), the
author or an admin writes (403 for others who can see the post), versions with ETag,
If-Match (412) and If-None-Match (304), Idempotency-Key on create, schema validation.
"""
import uuid

import pytest

from content_helpers import (
    assert_error, assert_post, call, content_env, describe, events, make_admin,
    needs_services, new_post, register)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with content_env("cntp") as (db, s):
        alice, bob = register(s), register(s)
        admin = make_admin(s)
        yield s, alice, bob, admin


def test_create_and_get(env):
    s, alice, bob, _ = env
    r = call(s, "POST", "/v1/posts", token=alice.access,
             json_body={"title": "Hello", "body": "<p>hi</p>", "tags": ["Cats", "cats", "dogs"],
                        "kind": "article"})
    assert r.status_code == 201, describe(r)
    post = assert_post(r.json(), authorId=alice.id, kind="article", title="Hello",
                       body="<p>hi</p>", tags=["cats", "dogs"], status="published",
                       version=1, likeCount=0, commentCount=0, likedByMe=False)
    assert r.headers["Location"] == "/v1/posts/" + post["id"]
    assert r.headers["ETag"] == '"1-0-0-0"'
    for who in (None, bob.access, alice.access):
        g = call(s, "GET", "/v1/posts/" + post["id"], token=who)
        assert g.status_code == 200, describe(g)
        assert g.json() == post
        assert g.headers["ETag"] == '"1-0-0-0"'
    g = call(s, "GET", "/v1/posts/" + post["id"], headers={"If-None-Match": '"1-0-0-0"'})
    assert g.status_code == 304, describe(g)
    g = call(s, "GET", "/v1/posts/" + post["id"], headers={"If-None-Match": '"2-0-0-0"'})
    assert g.status_code == 200, describe(g)


def test_defaults(env):
    s, alice, _, _ = env
    post = new_post(s, alice)
    assert_post(post, kind="post", status="published", tags=[])


@pytest.mark.parametrize("body,field", [
    ({"body": "x"}, "title"),
    ({"title": "", "body": "x"}, "title"),
    ({"title": "   ", "body": "x"}, "title"),
    ({"title": "t" * 201, "body": "x"}, "title"),
    ({"title": "t"}, "body"),
    ({"title": "t", "body": "x", "kind": "video"}, "kind"),
    ({"title": "t", "body": "x", "status": "archived"}, "status"),
    ({"title": "t", "body": "x", "tags": ["a b"]}, "tags[0]"),
    ({"title": "t", "body": "x", "tags": ["x"] * 11}, "tags"),
    ({"title": "t", "body": "x", "tags": "cats"}, "tags"),
    ({"title": "t", "body": "x", "id": str(uuid.uuid4())}, "id"),
    ({"title": "t", "body": "x", "likeCount": 5}, "likeCount"),
    ({"title": "t", "body": "x", "authorId": str(uuid.uuid4())}, "authorId"),
])
def test_create_validation(env, body, field):
    s, alice, _, _ = env
    r = call(s, "POST", "/v1/posts", token=alice.access, json_body=body)
    assert_error(r, 400, "validation_failed", fields=[field])


def test_create_not_json(env):
    s, alice, _, _ = env
    r = call(s, "POST", "/v1/posts", token=alice.access, data="{",
             headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    r = call(s, "POST", "/v1/posts", token=alice.access, data="title=x",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 415)


def test_drafts_only_for_author(env):
    s, alice, bob, admin = env
    draft = new_post(s, alice, status="draft", title="secret plans")
    assert_post(draft, status="draft", publishedAt=None)
    assert call(s, "GET", "/v1/posts/" + draft["id"], token=alice.access).status_code == 200
    for who in (None, bob.access, admin.access):
        r = call(s, "GET", "/v1/posts/" + draft["id"], token=who)
        assert_error(r, 404, "not_found")
        if who:
            for m, body in (("PUT", {"title": "x"}), ("DELETE", None)):
                r = call(s, m, "/v1/posts/" + draft["id"], token=who, json_body=body)
                assert_error(r, 404, "not_found")
    # Listed only as the author's own drafts, never among published posts.
    mine = call(s, "GET", "/v1/posts", token=alice.access, params={"status": "draft"}).json()
    assert draft["id"] in [p["id"] for p in mine["posts"]]
    for who in (None, bob.access):
        got = call(s, "GET", "/v1/posts", token=who, params={"status": "draft", "limit": 100})
        assert draft["id"] not in [p["id"] for p in got.json()["posts"]]
    pub = call(s, "GET", "/v1/posts", token=alice.access,
               params={"authorId": alice.id, "limit": 100}).json()
    assert draft["id"] not in [p["id"] for p in pub["posts"]]
    # Publishing stamps publishedAt and makes it everyone's.
    r = call(s, "PUT", "/v1/posts/" + draft["id"], token=alice.access,
             json_body={"status": "published"})
    assert r.status_code == 200, describe(r)
    assert_post(r.json(), status="published", version=2)
    assert call(s, "GET", "/v1/posts/" + draft["id"], token=bob.access).status_code == 200


def test_author_or_admin_writes(env):
    s, alice, bob, admin = env
    post = new_post(s, alice)
    r = call(s, "PUT", "/v1/posts/" + post["id"], token=bob.access, json_body={"title": "mine"})
    assert_error(r, 403, "forbidden")
    r = call(s, "DELETE", "/v1/posts/" + post["id"], token=bob.access)
    assert_error(r, 403, "forbidden")
    r = call(s, "PUT", "/v1/posts/" + post["id"], token=admin.access,
             json_body={"title": "moderated", "tags": ["Mod"]})
    assert r.status_code == 200, describe(r)
    assert_post(r.json(), title="moderated", tags=["mod"], version=2, authorId=alice.id,
                body=post["body"])
    assert r.headers["ETag"] == '"2-0-0-0"'
    r = call(s, "DELETE", "/v1/posts/" + post["id"], token=admin.access)
    assert r.status_code == 204, describe(r)
    assert_error(call(s, "GET", "/v1/posts/" + post["id"]), 404, "not_found")


def test_if_match(env):
    s, alice, _, _ = env
    post = new_post(s, alice)
    path = "/v1/posts/" + post["id"]
    r = call(s, "PUT", path, token=alice.access, json_body={"body": "v2"},
             headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2, describe(r)
    r = call(s, "PUT", path, token=alice.access, json_body={"body": "stale"},
             headers={"If-Match": '"1"'})
    assert_error(r, 412, "precondition_failed")
    assert call(s, "GET", path).json()["body"] == "v2"
    r = call(s, "DELETE", path, token=alice.access, headers={"If-Match": '"1"'})
    assert_error(r, 412, "precondition_failed")
    # Without If-Match the write goes through (last write wins).
    r = call(s, "PUT", path, token=alice.access, json_body={"body": "v3"})
    assert r.status_code == 200 and r.json()["version"] == 3, describe(r)
    r = call(s, "DELETE", path, token=alice.access, headers={"If-Match": '"3"'})
    assert r.status_code == 204, describe(r)


def test_etag_follows_counters(env):
    """likeCount, commentCount and likedByMe are in the body but not in `version`: the
    ETag carries them, so a stale If-None-Match is never answered 304, while If-Match
    still compares the version alone (a like in between does not fail a PUT)."""
    s, alice, bob, _ = env
    post = new_post(s, alice)
    path = "/v1/posts/" + post["id"]
    tag = call(s, "GET", path, token=alice.access).headers["ETag"]
    assert tag == '"1-0-0-0"'
    assert call(s, "GET", path, token=alice.access,
                headers={"If-None-Match": tag}).status_code == 304
    assert call(s, "POST", path + "/like", token=bob.access).status_code == 204
    g = call(s, "GET", path, token=alice.access, headers={"If-None-Match": tag})
    assert g.status_code == 200 and g.json()["likeCount"] == 1, describe(g)
    assert g.headers["ETag"] == '"1-1-0-0"'
    # Bob's own view says likedByMe: his tag is not Alice's.
    g = call(s, "GET", path, token=bob.access, headers={"If-None-Match": '"1-1-0-0"'})
    assert g.status_code == 200 and g.json()["likedByMe"] is True, describe(g)
    assert g.headers["ETag"] == '"1-1-0-1"'
    r = call(s, "POST", path + "/comments", token=bob.access, json_body={"body": "hi"})
    assert r.status_code == 201, describe(r)
    g = call(s, "GET", path, token=alice.access, headers={"If-None-Match": '"1-1-0-0"'})
    assert g.status_code == 200 and g.headers["ETag"] == '"1-1-1-0"', describe(g)
    assert call(s, "DELETE", path + "/like", token=bob.access).status_code == 204
    g = call(s, "GET", path, token=alice.access, headers={"If-None-Match": '"1-1-1-0"'})
    assert g.status_code == 200 and g.headers["ETag"] == '"1-0-1-0"', describe(g)
    # If-Match: the stale representation tag of the current version still matches ...
    r = call(s, "PUT", path, token=alice.access, json_body={"body": "v2"},
             headers={"If-Match": tag})
    assert r.status_code == 200 and r.headers["ETag"] == '"2-0-1-0"', describe(r)
    # ... a tag of an older version does not, nor does a look-alike prefix.
    for stale in (tag, '"2x-0"', '"20-0-1-0"'):
        r = call(s, "PUT", path, token=alice.access, json_body={"body": "v3"},
                 headers={"If-Match": stale})
        assert_error(r, 412, "precondition_failed")
    r = call(s, "DELETE", path, token=alice.access, headers={"If-Match": '"9", "2-5-5-1"'})
    assert r.status_code == 204, describe(r)


def test_update_validation_and_missing(env):
    s, alice, _, _ = env
    post = new_post(s, alice)
    r = call(s, "PUT", "/v1/posts/" + post["id"], token=alice.access,
             json_body={"version": 7})
    assert_error(r, 400, "validation_failed", fields=["version"])
    for path in ("/v1/posts/" + str(uuid.uuid4()), "/v1/posts/not-a-uuid"):
        assert_error(call(s, "GET", path), 404, "not_found")
        assert_error(call(s, "PUT", path, token=alice.access, json_body={"title": "x"}), 404)
        assert_error(call(s, "DELETE", path, token=alice.access), 404)


def test_idempotent_create(env):
    s, alice, bob, _ = env
    key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    body = {"title": "once", "body": "only once"}
    a = call(s, "POST", "/v1/posts", token=alice.access, json_body=body, headers=key)
    b = call(s, "POST", "/v1/posts", token=alice.access, json_body=body, headers=key)
    assert a.status_code == b.status_code == 201, describe(b)
    assert a.json() == b.json()
    assert a.headers["Location"] == b.headers["Location"]
    c = call(s, "POST", "/v1/posts", token=alice.access, json_body={**body, "title": "other"},
             headers=key)
    assert_error(c, 409, "conflict")
    # The key is the caller's: another user with the same key creates their own post.
    d = call(s, "POST", "/v1/posts", token=bob.access, json_body=body, headers=key)
    assert d.status_code == 201 and d.json()["id"] != a.json()["id"], describe(d)
    mine = call(s, "GET", "/v1/posts", params={"authorId": alice.id, "limit": 100}).json()
    assert [p["id"] for p in mine["posts"]].count(a.json()["id"]) == 1


def test_list_filters_and_paging(env):
    s, _, _, _ = env
    carol = register(s)
    ids = [new_post(s, carol, title="p%d" % i, tags=["zeta%d" % (i % 2)],
                    kind="article" if i % 3 == 0 else "post")["id"] for i in range(5)]
    got = call(s, "GET", "/v1/posts", params={"authorId": carol.id, "limit": 2}).json()
    assert got["total"] == 5 and got["limit"] == 2 and got["page"] == 1
    # Newest first.
    assert [p["id"] for p in got["posts"]] == ids[::-1][:2]
    page3 = call(s, "GET", "/v1/posts", params={"authorId": carol.id, "limit": 2,
                                                 "page": 3}).json()
    assert [p["id"] for p in page3["posts"]] == ids[:1]
    empty = call(s, "GET", "/v1/posts", params={"authorId": carol.id, "page": 9}).json()
    assert empty["total"] == 5 and empty["posts"] == []
    tagged = call(s, "GET", "/v1/posts", params={"authorId": carol.id, "tag": "ZETA0"}).json()
    assert sorted(p["id"] for p in tagged["posts"]) == sorted(ids[0::2])
    arts = call(s, "GET", "/v1/posts", params={"authorId": carol.id, "kind": "article"}).json()
    assert sorted(p["id"] for p in arts["posts"]) == sorted([ids[0], ids[3]])
    for bad in ({"limit": 0}, {"limit": 101}, {"page": 0}, {"kind": "x"}, {"status": "x"},
                {"authorId": "nope"}):
        assert_error(call(s, "GET", "/v1/posts", params=bad), 400, "validation_failed")


def test_anonymous_writes_401(env):
    s, alice, _, _ = env
    post = new_post(s, alice)
    for m, path in (("POST", "/v1/posts"), ("PUT", "/v1/posts/" + post["id"]),
                    ("DELETE", "/v1/posts/" + post["id"])):
        r = call(s, m, path, json_body={"title": "x", "body": "y"})
        assert_error(r, 401, "unauthorized")
        assert r.headers.get("WWW-Authenticate", "").lower().startswith("bearer")


def test_events_published_and_deleted(env):
    s, alice, bob, admin = env
    post = new_post(s, alice, title="evented", tags=["News"], kind="article")
    assert events(s, post["id"]) == [("post.published", {
        "postId": post["id"], "authorId": alice.id, "title": "evented", "kind": "article",
        "tags": ["news"], "publishedAt": post["publishedAt"], "actorId": alice.id})]
    # A draft publishes nothing until it is published; a later edit publishes nothing.
    draft = new_post(s, alice, status="draft", title="later")
    assert events(s, draft["id"]) == []
    r = call(s, "PUT", "/v1/posts/" + draft["id"], token=alice.access,
             json_body={"status": "published"})
    assert r.status_code == 200, describe(r)
    got = events(s, draft["id"])
    assert [t for t, _ in got] == ["post.published"]
    assert got[0][1]["actorId"] == alice.id and got[0][1]["authorId"] == alice.id
    assert got[0][1]["publishedAt"] == r.json()["publishedAt"]
    r = call(s, "PUT", "/v1/posts/" + draft["id"], token=alice.access, json_body={"body": "z"})
    assert r.status_code == 200 and len(events(s, draft["id"])) == 1
    # A refused write emits nothing; a delete emits post.deleted.
    assert call(s, "DELETE", "/v1/posts/" + post["id"], token=bob.access).status_code == 403
    r = call(s, "DELETE", "/v1/posts/" + post["id"], token=admin.access)
    assert r.status_code == 204, describe(r)
    assert events(s, post["id"])[1:] == [("post.deleted", {
        "postId": post["id"], "authorId": alice.id, "actorId": admin.id})]
