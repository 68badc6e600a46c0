"""Each worker's own copies of the anonymous renders (plugins/content/local.c) and the
signed-in overlay (overlay.c): a write shows in the next read on either worker, a message
on the plugin's "version" channel (another host's bump) drops the copies, the copies stay
within local_pages / local_bytes, and a signed-in caller gets the shared render with their
own likedByMe and nothing else changed.

Which worker serves a connection is read from /proc (the worker holding the server side
of the socket), so "the other worker" is a fact of the test, not a probability. Changes
made behind the server's back (psql, then INCR of the Redis version without the message)
show what is served from a worker's copy, with local_ttl_ms long enough that only a hang
reaches it.
"""
import time
import uuid

import pytest

from content_helpers import (
    call, content_env, content_server, describe, needs_services, new_post, psql, redis,
    register, shared_services)
from worker_pin import pinned_pair

pytestmark = needs_services
CEILING = 60  # seconds: only a hang reaches it


def hot_key():
    return "content:hot:local:" + uuid.uuid4().hex[:8]


def local_count(s, what):
    text = call(s, "GET", "/metrics").text
    for line in text.splitlines():
        if line.startswith("content_local_%s_total{" % what):
            return int(float(line.split()[-1]))
    return 0


def local_hits(s):
    return local_count(s, "hits")


# ---- read-your-write on both workers ----

@pytest.fixture(scope="module")
def env():
    key = hot_key()
    with content_env("cntl", content={"hot_key": key, "hot_size": "50"}) as (db, s):
        s.hot_key = key
        alice = register(s)
        posts = [new_post(s, alice, title="local %d" % i) for i in range(5)]
        try:
            yield s, alice, posts
        finally:
            redis("DEL", key, key + ":total", key + ":ver")


def by_id(doc):
    return {p["id"]: p for p in doc["posts"]}


def test_a_write_shows_at_once_on_either_worker(env):
    s, alice, posts = env
    a, b = pinned_pair(s)
    fans = [register(s) for _ in range(4)]
    hits = local_hits(s)
    try:
        for round_, (writer, reader) in enumerate([(a, b), (b, a), (a, a), (b, b)]):
            # Both workers hold the page and the list as they are now.
            for c in (a, b):
                for _ in range(3):
                    c.get("/v1/feed", sort="hot", limit=10)
                    c.get("/v1/posts", limit=10)
            target = posts[round_]
            # A like: the counter shows in the next read on the other connection's worker.
            before = by_id(reader.get("/v1/feed", sort="hot", limit=10))[target["id"]]
            writer.request("POST", "/v1/posts/%s/like" % target["id"], fans[round_].access)
            hot = by_id(reader.get("/v1/feed", sort="hot", limit=10))[target["id"]]
            assert hot["likeCount"] == before["likeCount"] + 1, (round_, hot, before)
            listed = by_id(reader.get("/v1/posts", limit=10))[target["id"]]
            assert listed["likeCount"] == before["likeCount"] + 1
            mine = by_id(reader.get("/v1/feed", fans[round_].access, sort="hot", limit=10))
            assert mine[target["id"]]["likedByMe"] is True
            # An edit.
            title = "edited %d %s" % (round_, uuid.uuid4().hex[:6])
            writer.request("PUT", "/v1/posts/%s" % target["id"], alice.access,
                           {"title": title})
            assert by_id(reader.get("/v1/feed", sort="hot", limit=10))[target["id"]][
                "title"] == title
            assert by_id(reader.get("/v1/posts", limit=10))[target["id"]]["title"] == title
        # A delete.
        gone = posts[4]["id"]
        a.request("DELETE", "/v1/posts/%s" % gone, alice.access)
        assert gone not in by_id(b.get("/v1/feed", sort="hot", limit=10))
        assert gone not in by_id(b.get("/v1/posts", limit=10))
    finally:
        a.close()
        b.close()
    # The reads above were served from the workers' copies, not all from Redis.
    assert local_hits(s) > hits


# ---- another host's bump, over the channel ----

def version_channel():
    end = time.time() + CEILING
    while time.time() < end:
        names = redis("PUBSUB", "CHANNELS", "px:*:content:version")
        if names:
            return names[0]
        time.sleep(0.1)
    raise AssertionError("nobody subscribed to the version channel")


def settle(s, key, n):
    """Wait until the hot consumer has applied every post.published (its bumps are done)."""
    end = time.time() + CEILING
    while time.time() < end:
        if int(redis("ZCARD", key)[0]) == n and not psql(
                s.db, "SELECT 1 FROM panthera_events e WHERE e.type LIKE 'post.%' AND "
                "NOT EXISTS (SELECT 1 FROM panthera_event_deliveries d WHERE d.event_id = "
                "e.id AND d.group_name = 'content-hot' AND d.state = 'done') LIMIT 1").strip():
            return
        time.sleep(0.1)
    raise AssertionError("the hot consumer never caught up")


def behind_the_back(s, key, post_id, title):
    """Change a post in PostgreSQL and move the version in Redis, but tell no worker."""
    psql(s.db, "UPDATE content_posts SET title = '%s' WHERE id = '%s'" % (title, post_id))
    redis("INCR", key + ":ver")


@pytest.fixture()
def one_worker(request):
    """A server with one worker and copies that never expire in a test's time; the
    module's database is reused, the content config comes from the test's param."""
    key = hot_key()
    content = {"hot_key": key, "hot_size": "50", "local_ttl_ms": "600000"}
    content.update(getattr(request, "param", {}))
    with content_env("cntl1", content=content, workers=1) as (db, s):
        alice = register(s)
        posts = [new_post(s, alice, title="one %d" % i) for i in range(3)]
        call(s, "GET", "/v1/feed", params={"sort": "hot"})  # the set is rebuilt
        settle(s, key, 3)
        try:
            yield s, key, posts
        finally:
            redis("DEL", key, key + ":total", key + ":ver")


def hot_titles(s, **params):
    r = call(s, "GET", "/v1/feed", params=dict(sort="hot", **params))
    assert r.status_code == 200, describe(r)
    return [p["title"] for p in r.json()["posts"]]


def copies_served(s):
    """Wait until the worker serves its copies (its channel subscription is up)."""
    end = time.time() + CEILING
    while local_hits(s) == 0:
        assert time.time() < end, "the worker never served a copy"
        hot_titles(s, limit=10)
        time.sleep(0.05)


def test_a_channel_message_drops_the_copies(one_worker):
    s, key, posts = one_worker
    channel = version_channel()
    copies_served(s)
    kept = hot_titles(s, limit=10)
    hits = local_hits(s)
    assert hot_titles(s, limit=10) == kept
    assert local_hits(s) == hits + 1
    behind_the_back(s, key, posts[0]["id"], "changed elsewhere")
    # The worker heard nothing: its copy still answers.
    assert hot_titles(s, limit=10) == kept
    # Another host's bump arrives: the copy goes, the next read is Redis's new version.
    assert int(redis("PUBLISH", channel, "another-host/1")[0]) >= 1
    end = time.time() + CEILING
    while "changed elsewhere" not in hot_titles(s, limit=10):
        assert time.time() < end, "the channel message never dropped the copy"
        time.sleep(0.05)


@pytest.mark.parametrize("one_worker", [{"local_pages": "2"}], indirect=True)
def test_at_most_local_pages_copies(one_worker):
    s, key, posts = one_worker
    copies_served(s)
    pages = [hot_titles(s, limit=1, page=n) for n in (1, 2, 3)]
    assert all(len(p) == 1 for p in pages), pages
    for n, p in enumerate(posts):
        behind_the_back(s, key, p["id"], "new %d" % n)
    # Pages 2 and 3 are the two kept; page 1, the oldest, was evicted for page 3.
    assert hot_titles(s, limit=1, page=3) == pages[2]
    assert hot_titles(s, limit=1, page=2) == pages[1]
    assert hot_titles(s, limit=1, page=1)[0].startswith("new ")


@pytest.mark.parametrize("one_worker", [{"local_bytes": "200"}], indirect=True)
def test_a_render_over_local_bytes_is_not_kept(one_worker):
    s, key, posts = one_worker
    # Misses are counted only while copies are in use (the channel is up).
    end = time.time() + CEILING
    while local_count(s, "misses") == 0:
        assert time.time() < end, "the worker never looked for a copy"
        hot_titles(s, limit=10)
        time.sleep(0.05)
    before = hot_titles(s, limit=10)
    hot_titles(s, limit=10)
    assert local_hits(s) == 0
    behind_the_back(s, key, posts[1]["id"], "too big to keep")
    assert "too big to keep" in hot_titles(s, limit=10) and "too big to keep" not in before


@pytest.mark.parametrize("one_worker", [{"local_pages": "0"}], indirect=True)
def test_local_pages_zero_reads_redis_every_time(one_worker):
    s, key, posts = one_worker
    hot_titles(s, limit=10)
    hot_titles(s, limit=10)
    behind_the_back(s, key, posts[2]["id"], "no copies")
    assert "no copies" in hot_titles(s, limit=10)
    assert local_hits(s) == 0 and local_count(s, "misses") == 0


def test_bad_local_settings_refuse_to_start():
    with shared_services():
        from content_helpers import create_database, drop_database
        db = create_database("cntlb")
    try:
        for bad in ({"local_pages": "-1"}, {"local_pages": "5000"}, {"local_ttl_ms": "0"},
                    {"local_bytes": "x"}):
            s = content_server(db, content=dict(bad, hot_key=hot_key()), workers=1)
            try:
                with pytest.raises(Exception):
                    s.start(timeout=30)
            finally:
                s.cleanup()
    finally:
        drop_database(db)


# ---- the signed-in overlay ----

def test_signed_in_gets_the_shared_render_with_own_likes(env):
    s, alice, posts = env
    carol, dave = register(s), register(s)
    # Text that looks like the render's own structure must stay text (overlay.c patches
    # the render without parsing it into objects).
    tricky = new_post(s, alice, title='local "likedByMe": false, "id": "%s"}]{' % uuid.uuid4(),
                      body='\\"posts": [{"id": "x", "likedByMe": false}] \\ \u00e9 {[')
    live = [p["id"] for p in call(s, "GET", "/v1/posts", params={"limit": 10}).json()["posts"]]
    assert tricky["id"] in live
    for pid in [tricky["id"]] + [p for p in live if p != tricky["id"]][:1]:
        assert call(s, "POST", "/v1/posts/%s/like" % pid, token=carol.access).status_code == 204
    assert call(s, "POST", "/v1/posts/%s/like" % live[-1],
                token=dave.access).status_code == 204
    draft = new_post(s, carol, title="carol's draft words", status="draft")
    # The likes' events have moved the set: compare pages of one order.
    settle(s, s.hot_key, len(live))
    for path, params in (("/v1/feed", {"sort": "hot", "limit": 10}),
                         ("/v1/posts", {"limit": 10}),
                         ("/v1/posts", {"limit": 10, "q": "local"}),
                         ("/v1/posts", {"limit": 10, "authorId": alice.id})):
        anon = call(s, "GET", path, params=params).json()
        for who in (carol, dave, alice):
            doc = call(s, "GET", path, params=params, token=who.access).json()
            liked = set(psql(s.db, "SELECT post_id FROM content_likes WHERE user_id = '%s'"
                             % who.id).split())
            assert [p["id"] for p in doc["posts"]] == [p["id"] for p in anon["posts"]]
            for mine, shared in zip(doc["posts"], anon["posts"]):
                assert mine["likedByMe"] == (mine["id"] in liked), (path, who.id, mine)
                assert shared["likedByMe"] is False
                assert dict(mine, likedByMe=False) == shared
            assert {k: v for k, v in doc.items() if k != "posts"} == \
                {k: v for k, v in anon.items() if k != "posts"}
    # Drafts are the caller's own: not in the shared lists, only in carol's ?status=draft.
    assert draft["id"] not in {p["id"] for p in call(
        s, "GET", "/v1/posts", params={"limit": 100}, token=carol.access).json()["posts"]}
    own = call(s, "GET", "/v1/posts", params={"status": "draft"}, token=carol.access).json()
    assert [p["id"] for p in own["posts"]] == [draft["id"]]
    assert call(s, "GET", "/v1/posts", params={"status": "draft"},
                token=dave.access).json()["posts"] == []
    assert call(s, "GET", "/v1/posts", params={"status": "draft"}).json()["posts"] == []


@pytest.mark.parametrize("one_worker", [{"local_ttl_ms": "300"}], indirect=True)
def test_a_copy_is_renewed_within_local_ttl(one_worker):
    """Whatever the worker missed (here a change it was never told of), its copy is
    fetched again once local_ttl_ms has run: the renewal (local.c) takes the render
    under Redis's current version."""
    s, key, posts = one_worker
    copies_served(s)
    behind_the_back(s, key, posts[0]["id"], "renewed in time")
    end = time.time() + CEILING
    while "renewed in time" not in hot_titles(s, limit=10):
        assert time.time() < end, "the copy was never renewed"
        time.sleep(0.05)
    hits = local_hits(s)
    end = time.time() + CEILING
    while local_hits(s) == hits:  # the renewed copy is served in turn
        assert time.time() < end, "the renewed copy was never served"
        assert "renewed in time" in hot_titles(s, limit=10)
