"""GET /v1/feed (API.md, "Content"; plugins/content/README.md, "Feed"): sort=new newest
first with keyset paging by the Link cursor; sort=hot by the stored hot score, served from
a Redis sorted set the "content-hot" event consumer keeps, rebuilt when Redis lost it, and
answered from PostgreSQL alone (same order) when Redis is unreachable. An anonymous page
is rendered once per feed version and served from Redis; a write the client made shows
in its next read.
"""
import math
import time
import uuid

import pytest

from content_helpers import (
    assert_error, call, content_env, content_server, describe, needs_services, new_post, psql, redis,
    register)

pytestmark = needs_services
KEY = "content:hot:test:" + uuid.uuid4().hex[:8]
CEILING = 60  # seconds: only a hang reaches it


@pytest.fixture(scope="module")
def env():
    # What Redis keeps is checked here by planting answers in it: the workers' own copies
    # (local_pages; test_content_local.py) would answer before it.
    with content_env("cntf", content={"hot_key": KEY, "hot_size": "50",
                                      "local_pages": "0"}) as (db, s):
        alice, bob = register(s), register(s)
        posts = [new_post(s, alice, title="feed %d" % i) for i in range(8)]
        fans = [register(s) for _ in range(4)]
        # Engagement: post 2 gets 4 likes, post 5 gets 2 likes and 1 comment (score 4 too,
        # but later), post 7 a single like.
        for u in fans:
            assert call(s, "POST", "/v1/posts/%s/like" % posts[2]["id"],
                        token=u.access).status_code == 204
        for u in fans[:2]:
            call(s, "POST", "/v1/posts/%s/like" % posts[5]["id"], token=u.access)
        call(s, "POST", "/v1/posts/%s/comments" % posts[5]["id"], token=bob.access,
             json_body={"body": "nice"})
        call(s, "POST", "/v1/posts/%s/like" % posts[7]["id"], token=bob.access)
        try:
            yield s, alice, bob, posts
        finally:
            redis("DEL", KEY, KEY + ":total", KEY + ":ver")


def expected_hot(s):
    rows = psql(s.db, "SELECT id FROM content_posts WHERE status = 'published' "
                "ORDER BY hot DESC, id DESC").split()
    return rows


def feed(s, **params):
    r = call(s, "GET", "/v1/feed", params=params)
    assert r.status_code == 200, describe(r)
    return r


def wait_redis_order(s, want):
    end = time.time() + CEILING
    while time.time() < end:
        got = redis("ZREVRANGE", KEY, "0", "-1")
        if got[:len(want)] == want:
            return got
        time.sleep(0.1)
    raise AssertionError("the hot set never caught up: %s vs %s" % (got, want))


def test_new_and_keyset(env):
    s, _, _, posts = env
    ids = [p["id"] for p in posts][::-1]
    r = feed(s, sort="new", limit=3)
    doc = r.json()
    assert doc["total"] == 8 and [p["id"] for p in doc["posts"]] == ids[:3]
    seen = [p["id"] for p in doc["posts"]]
    link = r.headers["Link"]
    while link:
        url = link[link.index("<") + 1:link.index(">")]
        r = call(s, "GET", url)
        assert r.status_code == 200, describe(r)
        seen += [p["id"] for p in r.json()["posts"]]
        link = r.headers.get("Link")
    assert seen == ids
    assert [p["id"] for p in feed(s, limit=3, page=2).json()["posts"]] == ids[3:6]
    for bad in ("x", "2026-02-30T00:00:00Z," + str(uuid.uuid4()),
                "2026-01-01T00:00:00Z," + "-" * 36):
        assert_error(call(s, "GET", "/v1/feed", params={"cursor": bad}), 400,
                     "validation_failed", fields=["cursor"])
    assert_error(call(s, "GET", "/v1/feed", params={"sort": "top"}), 400)


def test_hot_score_is_reddit_like(env):
    s, _, _, posts = env
    row = psql(s.db, "SELECT hot, extract(epoch FROM published_at), like_count, comment_count "
               "FROM content_posts WHERE id = '%s'" % posts[5]["id"]).strip().split("|")
    hot, epoch, likes, comments = map(float, row)
    assert (likes, comments) == (2, 1)
    assert hot == pytest.approx(math.log10(4) + epoch / 45000)


def test_hot_from_redis(env):
    s, _, _, posts = env
    want = expected_hot(s)
    assert want[0] in (posts[2]["id"], posts[5]["id"])
    wait_redis_order(s, want)
    doc = feed(s, sort="hot", limit=4).json()
    assert doc["total"] == 8 and [p["id"] for p in doc["posts"]] == want[:4]
    assert [p["id"] for p in feed(s, sort="hot", limit=4, page=2).json()["posts"]] == want[4:]
    # A like moves a post up once its event is consumed.
    u = register(s)
    for _ in range(1):
        call(s, "POST", "/v1/posts/%s/like" % posts[0]["id"], token=u.access)
    want = expected_hot(s)
    wait_redis_order(s, want)
    assert [p["id"] for p in feed(s, sort="hot", limit=8).json()["posts"]] == want
    # The page really comes from the set: a score changed there alone shows.
    redis("ZADD", KEY, "1e12", want[-1])
    assert feed(s, sort="hot", limit=1).json()["posts"][0]["id"] == want[-1]
    redis("DEL", KEY)


def test_hot_rebuilt_when_redis_lost_it(env):
    s, _, _, _ = env
    want = expected_hot(s)
    redis("DEL", KEY)
    assert [p["id"] for p in feed(s, sort="hot", limit=8).json()["posts"]] == want
    wait_redis_order(s, want)


def test_deleted_post_leaves_the_set(env):
    s, alice, _, _ = env
    extra = new_post(s, alice, title="short-lived")
    wait_redis_order(s, expected_hot(s))
    assert extra["id"] in redis("ZRANGE", KEY, "0", "-1")
    assert call(s, "DELETE", "/v1/posts/" + extra["id"], token=alice.access).status_code == 204
    end = time.time() + CEILING
    while extra["id"] in redis("ZRANGE", KEY, "0", "-1"):
        assert time.time() < end, "post.deleted never removed the post from the hot set"
        time.sleep(0.1)


def test_hot_with_redis_unreachable(env):
    s, _, _, _ = env
    want = expected_hot(s)
    other = content_server(s.db, content={"hot_key": KEY},
                           redis_address="unix:/nonexistent/redis.sock")
    try:
        other.start(timeout=30)
        r = call(other, "GET", "/v1/feed", params={"sort": "hot", "limit": 8})
        assert r.status_code == 200, describe(r)
        assert [p["id"] for p in r.json()["posts"]] == want
    finally:
        other.cleanup()


def test_tags(env):
    s, alice, bob, _ = env
    for tags in (["Zeta", "alpha"], ["zeta"], ["zeta", "beta"], ["alpha"]):
        new_post(s, bob, tags=tags)
    new_post(s, bob, tags=["zeta", "hidden"], status="draft")
    doc = call(s, "GET", "/v1/tags").json()
    assert doc["total"] == 3
    assert doc["tags"] == [{"tag": "zeta", "count": 3}, {"tag": "alpha", "count": 2},
                           {"tag": "beta", "count": 1}]
    page2 = call(s, "GET", "/v1/tags", params={"limit": 2, "page": 2}).json()
    assert page2["tags"] == [{"tag": "beta", "count": 1}] and page2["total"] == 3
    assert_error(call(s, "GET", "/v1/tags", params={"limit": 0}), 400, "validation_failed")


def wait_score(s, post_id, want_hot):
    """Wait until the hot set scores `post_id` as PostgreSQL does (`want_hot`)."""
    end = time.time() + CEILING
    got = None
    while time.time() < end:
        got = (redis("ZSCORE", KEY, post_id) or [None])[0]
        if got and abs(float(got) - want_hot) < 1e-6:
            return
        time.sleep(0.1)
    raise AssertionError("the hot set scores %s at %s, not %s" % (post_id, got, want_hot))


def test_unlike_and_comment_delete_lower_the_hot_score(env):
    """post.unliked and comment.deleted reach the hot consumer: the score in Redis goes
    down with the post's engagement, not only up."""
    s, alice, bob, _ = env
    post = new_post(s, alice, title="up and down")
    like = "/v1/posts/%s/like" % post["id"]

    def hot():
        return float(psql(s.db, "SELECT hot FROM content_posts WHERE id = '%s'"
                          % post["id"]).strip())

    assert call(s, "POST", like, token=bob.access).status_code == 204
    r = call(s, "POST", "/v1/posts/%s/comments" % post["id"], token=bob.access,
             json_body={"body": "first"})
    assert r.status_code == 201, describe(r)
    high = hot()
    wait_score(s, post["id"], high)
    assert call(s, "DELETE", like, token=bob.access).status_code == 204
    mid = hot()
    assert mid < high
    wait_score(s, post["id"], mid)
    r = call(s, "DELETE", "/v1/posts/%s/comments/%s" % (post["id"], r.json()["id"]),
             token=bob.access)
    assert r.status_code == 204, describe(r)
    low = hot()
    assert low < mid
    wait_score(s, post["id"], low)


def cached_pages(first, last):
    """The cached renders of the pages holding ranks first..last (any version)."""
    return [k for k in redis("KEYS", KEY + ":page:*")
            if k.split(":")[-3:-1] == [str(first), str(last)]]


def test_hot_page_rendered_once_and_renewed_by_writes(env):
    """An anonymous hot page comes from its cached render (a render planted under its key
    is what the caller gets); a like, a comment's deletion, an edit or a delete the client
    made shows in its very next read; a caller with a token gets the same render with
    likedByMe of their own laid over it (overlay.c)."""
    s, alice, bob, _ = env
    post = new_post(s, alice, title="cached once")
    want = expected_hot(s)
    wait_redis_order(s, want)
    page = {"sort": "hot", "limit": 50}

    def anon():
        return feed(s, **page).json()

    def find(doc, post_id):
        return next(p for p in doc["posts"] if p["id"] == post_id)

    end = time.time() + CEILING
    while not cached_pages(0, 49):  # the first read may count the total, which is not cached
        assert time.time() < end, "no hot page was ever cached"
        assert [p["id"] for p in anon()["posts"]] == want
    keys = cached_pages(0, 49)
    assert len(keys) == 1
    planted = '{"total":0,"page":1,"limit":50,"posts":[]}'
    redis("SET", keys[0], planted, "PX", "60000")
    assert anon() == {"total": 0, "page": 1, "limit": 50, "posts": []}
    assert call(s, "GET", "/v1/feed", params=page, token=bob.access).json() == \
        {"total": 0, "page": 1, "limit": 50, "posts": []}

    # A like: the next read renders again, with the new count.
    assert call(s, "POST", "/v1/posts/%s/like" % post["id"],
                token=bob.access).status_code == 204
    assert find(anon(), post["id"])["likeCount"] == 1
    mine = call(s, "GET", "/v1/feed", params=page, token=bob.access).json()
    assert find(mine, post["id"])["likedByMe"] is True
    assert find(anon(), post["id"])["likedByMe"] is False
    # An edit.
    r = call(s, "PUT", "/v1/posts/" + post["id"], token=alice.access,
             json_body={"title": "cached twice"})
    assert r.status_code == 200, describe(r)
    assert find(anon(), post["id"])["title"] == "cached twice"
    # A comment and its deletion (the comment's count: the deletion renews at once).
    r = call(s, "POST", "/v1/posts/%s/comments" % post["id"], token=bob.access,
             json_body={"body": "hello"})
    assert r.status_code == 201, describe(r)
    end = time.time() + CEILING
    while find(anon(), post["id"])["commentCount"] != 1:  # renewed by the consumer
        assert time.time() < end, "post.commented never renewed the hot page"
        time.sleep(0.1)
    r = call(s, "DELETE", "/v1/posts/%s/comments/%s" % (post["id"], r.json()["id"]),
             token=bob.access)
    assert r.status_code == 204, describe(r)
    assert find(anon(), post["id"])["commentCount"] == 0
    # A delete.
    assert call(s, "DELETE", "/v1/posts/" + post["id"],
                token=alice.access).status_code == 204
    assert post["id"] not in [p["id"] for p in anon()["posts"]]


def test_anonymous_list_kept_and_renewed_by_writes(env):
    """GET /v1/posts (a search here) for an anonymous caller is kept under the content
    version too: a planted answer is what the next caller gets, until a creation, an edit
    or a like made through the API; a caller with a token gets it too, with their own
    likedByMe laid over it (overlay.c)."""
    s, alice, bob, _ = env
    q = {"q": "kept" + uuid.uuid4().hex[:6]}
    first = new_post(s, alice, title="%s one" % q["q"])

    def consumed(post):
        """post.published has been applied (the set and the version move together): no
        bump is on its way to make a planted answer unreachable."""
        end = time.time() + CEILING
        while not redis("ZSCORE", KEY, post["id"]):
            assert time.time() < end, "post.published never reached the hot set"
            time.sleep(0.1)

    def anon():
        r = call(s, "GET", "/v1/posts", params=q)
        assert r.status_code == 200, describe(r)
        return r.json()

    consumed(first)
    assert [p["id"] for p in anon()["posts"]] == [first["id"]]
    keys = redis("KEYS", KEY + ":list:*")
    assert keys, "the anonymous search was not kept"
    planted = '{"total":0,"page":1,"limit":10,"posts":[]}'
    for k in keys:
        redis("SET", k, planted, "PX", "60000")
    assert anon()["posts"] == []
    assert call(s, "GET", "/v1/posts", params=q, token=bob.access).json()["posts"] == []
    # A creation.
    second = new_post(s, alice, title="%s two" % q["q"])
    assert {p["id"] for p in anon()["posts"]} == {first["id"], second["id"]}
    consumed(second)
    anon()
    for k in redis("KEYS", KEY + ":list:*"):
        redis("SET", k, planted, "PX", "60000")
    # A like.
    assert call(s, "POST", "/v1/posts/%s/like" % second["id"],
                token=bob.access).status_code == 204
    doc = anon()
    assert {p["id"]: p["likeCount"] for p in doc["posts"]} == {first["id"]: 0, second["id"]: 1}
    # An edit that takes the word away.
    r = call(s, "PUT", "/v1/posts/" + first["id"], token=alice.access,
             json_body={"title": "renamed"})
    assert r.status_code == 200, describe(r)
    assert [p["id"] for p in anon()["posts"]] == [second["id"]]
