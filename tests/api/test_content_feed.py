"""GET /v1/feed (API.md, "Content"; plugins/content/README.md, "Feed"): sort=new newest
first with keyset paging by the Link cursor; sort=hot by the stored hot score, served from
a Redis sorted set the "content-hot" event consumer keeps, rebuilt when Redis lost it, and
answered from PostgreSQL alone (same order) when Redis is unreachable.
"""
import math
import subprocess
import time
import uuid

import pytest

from content_helpers import (
    assert_error, call, content_env, content_server, describe, needs_services, new_post, psql, register)

pytestmark = needs_services
REDIS = __import__("os").environ.get("PANTHERA_REDIS_SOCKET", "")
KEY = "content:hot:test:" + uuid.uuid4().hex[:8]
CEILING = 60  # seconds: only a hang reaches it


def redis(*args):
    p = subprocess.run(["redis-cli", "-s", REDIS, *args], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


@pytest.fixture(scope="module")
def env():
    with content_env("cntf", content={"hot_key": KEY, "hot_size": "50"}) as (db, s):
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
            redis("DEL", KEY, KEY + ":total")


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
