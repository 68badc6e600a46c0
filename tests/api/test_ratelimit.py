"""Rate limits ([ratelimit], server/ratelimit.c) against the real server.

The tests that count in Redis need the services' environment (PANTHERA_REDIS_SOCKET, and
PANTHERA_RUNDIR for the ones that stop Redis) and are skipped without it; the others run a
server without [redis], where each worker counts on its own.

Each server gets its own key_prefix, so runs never see each other's counts. The tests that
stop or pause the shared Redis always leave it running again, even when they fail.
"""
import collections
import http.client
import os
import socket
import struct
import subprocess
import time
import uuid

import pytest

from panthera_server import CEILING
from services import Redis, redis_lock

REDIS_SOCKET = os.environ.get("PANTHERA_REDIS_SOCKET")

needs_redis = pytest.mark.skipif(
    not REDIS_SOCKET,
    reason="PANTHERA_REDIS_SOCKET is not set: run through scripts/dev test, or start Redis "
    "with scripts/dev services and export the variables in .run/env",
)


# The short window of the counting tests: every request a test makes inside one window
# fits in it with a wide margin on the slowest machine, and waiting the window out is a
# lower bound that load cannot break. Nothing here asserts how long a request took.
SHORT = 8


# ---- helpers ----

class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        import json
        return json.loads(self.body)

    @property
    def worker(self):
        """The worker that answered: request ids start with a per-worker random prefix."""
        return self.headers.get("x-request-id", "")[:8]

    def __repr__(self):
        return "<Reply %d %r %r>" % (self.status, self.headers, self.body[:200])


def request(server, path, headers=None, conn=None, method="GET"):
    """One request; on a fresh connection unless `conn` (http.client) is given."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
    finally:
        if own:
            conn.close()


def prefix():
    return "pxtest:rl:%s:" % uuid.uuid4().hex[:12]


def redis_cli(*args):
    r = subprocess.run(["redis-cli", "-s", REDIS_SOCKET] + list(args), capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def redis_keys(key_prefix):
    return sorted(k for k in redis_cli("--scan", "--pattern", key_prefix + "*").split() if k)


def limited_server(make_server, ratelimit, workers=1, redis=True, redis_keys=None):
    sections = {"ratelimit": dict(ratelimit)}
    if redis:
        sections["redis"] = dict({"address": "unix:" + REDIS_SOCKET}, **(redis_keys or {}))
        sections["ratelimit"].setdefault("key_prefix", prefix())
    s = make_server(workers=workers, sections=sections)
    if redis:
        s.wait_redis_connected(workers)
    return s


def assert_rate_limited(r, retry_max):
    assert r.status == 429, r
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= retry_max, r
    err = r.json()["error"]
    assert err["code"] == "rate_limited", r
    assert isinstance(err["message"], str) and err["message"], r
    assert r.headers["ratelimit-remaining"] == "0", r
    return retry


@pytest.fixture
def uses_redis():
    """Redis, when the environment has one, must stay up during the test."""
    if not REDIS_SOCKET:
        yield
        return
    with redis_lock(exclusive=False):
        yield


@pytest.fixture
def shared_redis():
    """The test stops or pauses Redis; it is running again afterwards."""
    r = Redis()
    with redis_lock(exclusive=True):
        assert r.wait(True, 10), "Redis is not answering before the test"
        try:
            yield r
        finally:
            r.restore()


# ---- configuration ----

def test_config_errors_name_file_and_line():
    from panthera_server import Server
    s = Server(workers=1, sections={"ratelimit": {
        "route": "GET /v1/hello 5/fortnight",
        "route_b": "HEAD /v1/hello 5/1s",
        "trusted_proxies": "127.0.0.1, 10.1.0.0/8",
        "burst": "5/1s",
    }})
    try:
        rc, out, err = s.check_config()
        assert rc != 0, out + err
        with open(s.conf_path) as f:
            lines = f.read().split("\n")
        def line_of(key):
            return 1 + next(i for i, l in enumerate(lines) if l.startswith(key + " ="))
        conf = s.conf_path
        assert "%s:%d: route: limit \"5/fortnight\"" % (conf, line_of("route")) in err, err
        assert "%s:%d: route_b: HEAD requests are served by the GET route" % (
            conf, line_of("route_b")) in err, err
        assert "%s:%d: trusted_proxies: \"10.1.0.0/8\"" % (conf, line_of("trusted_proxies")) in err
        assert "%s:%d: unknown key \"burst\" in [ratelimit]" % (conf, line_of("burst")) in err
    finally:
        s.cleanup()


def test_rule_for_a_missing_route_is_a_warning(make_server):
    s = make_server(workers=1, sections={"ratelimit": {"route": "GET /v1/nothing 1/1s",
                                                        "route2": "GET /v1/hello 100/1s"}})
    s.wait_error_log("no route GET /v1/nothing is loaded")
    assert request(s, "/v1/hello").status == 200


# ---- counting in each worker (no Redis configured) ----

def test_local_limit_without_redis(make_server):
    s = limited_server(make_server, {"route": "GET /v1/hello 3/%ds" % SHORT}, redis=False)
    s.wait_error_log("no [redis] address: limits are counted by each worker")
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    replies = [request(s, "/v1/hello", conn=conn) for _ in range(4)]
    assert [r.status for r in replies] == [200, 200, 200, 429], replies
    assert [r.headers["ratelimit-remaining"] for r in replies[:3]] == ["2", "1", "0"]
    assert all(r.headers["ratelimit-limit"] == "3" for r in replies)
    retry = assert_rate_limited(replies[3], SHORT)
    # Other routes have no limit.
    assert all(request(s, "/v1/hello/x", conn=conn).status == 200 for _ in range(10))
    assert "ratelimit-limit" not in request(s, "/v1/hello/x", conn=conn).headers
    time.sleep(retry + 0.1)
    assert request(s, "/v1/hello", conn=conn).status == 200
    conn.close()
    # The one worker says it once, when it starts, not per request.
    assert s.error_log().count("no [redis] address: limits are counted by each worker") == 1, \
        s.error_log()


def test_local_limits_share_the_limit_between_workers(make_server):
    """Counted in each worker, two workers must not let through twice the limit: each
    allows its half. Fresh connections until each worker has had more than its half (which
    worker accepts one is up to the scheduler: on a loaded machine one worker can win 40 in
    a row, so the test asks until both have been seen enough, not a fixed count)."""
    s = limited_server(make_server, {"route": "GET /v1/hello 6/1m"}, workers=2, redis=False)
    replies = []
    per_worker = collections.Counter()
    while len(replies) < 400 and (len(per_worker) < 2 or min(per_worker.values()) < 4):
        replies.append(request(s, "/v1/hello"))
        per_worker[replies[-1].worker] += 1
    assert len(per_worker) == 2, "every fresh connection went to one worker: %r" % per_worker
    served = collections.Counter(r.worker for r in replies if r.status == 200)
    assert served == {w: 3 for w in per_worker}, "served per worker %r of %r" % (served, per_worker)
    assert {r.status for r in replies} == {200, 429}
    assert all(r.headers["ratelimit-limit"] == "3" for r in replies)


def test_rule_names_a_route_shape_and_head_counts_as_get(make_server, uses_redis):
    # The plugin registered /v1/hello/:name; the rule's parameter name does not matter,
    # and the limit is per route, not per path.
    s = limited_server(make_server, {"route": "GET /v1/hello/:who 3/1m"}, redis=bool(REDIS_SOCKET))
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    assert request(s, "/v1/hello/a", conn=conn).status == 200
    assert request(s, "/v1/hello/b", conn=conn).status == 200
    assert request(s, "/v1/hello/c", conn=conn, method="HEAD").status == 200
    assert_rate_limited(request(s, "/v1/hello/d", conn=conn), 60)
    assert request(s, "/v1/hello", conn=conn).status == 200
    conn.close()


def test_default_limit_per_address(make_server, uses_redis):
    s = limited_server(make_server, {"default": "4/1m"}, redis=bool(REDIS_SOCKET))
    paths = ["/v1/hello", "/v1/hello/a", "/v1/hello", "/v1/hello/b"]
    assert [request(s, p).status for p in paths] == [200] * 4
    assert_rate_limited(request(s, "/v1/hello/c"), 60)
    assert_rate_limited(request(s, "/v1/hello"), 60)
    r = request(s, "/v1/hello")
    assert "from one client" in r.json()["error"]["message"], r
    # The host's own endpoints are left out of the default: health checks keep working.
    assert request(s, "/healthz").status == 200
    assert request(s, "/metrics").status == 200


def test_route_and_default_together(make_server, uses_redis):
    s = limited_server(make_server, {"default": "6/1m", "route": "GET /v1/hello 2/1m"},
                       redis=bool(REDIS_SOCKET))
    assert [request(s, "/v1/hello").status for _ in range(3)] == [200, 200, 429]
    # The refused request still counted against the default: 3 used, 3 left.
    assert [request(s, "/v1/hello/x").status for _ in range(4)] == [200, 200, 200, 429]


def test_forwarded_for_ignored_from_untrusted_peer(make_server, uses_redis):
    # 127.0.0.1 is not a trusted proxy: a client cannot dodge the limit with a random XFF.
    for proxies in (None, "10.0.0.0/8, ::1"):
        limits = {"route": "GET /v1/hello 3/1m"}
        if proxies:
            limits["trusted_proxies"] = proxies
        s = limited_server(make_server, limits, redis=bool(REDIS_SOCKET))
        statuses = [request(s, "/v1/hello",
                            {"X-Forwarded-For": "198.51.100.%d" % i}).status for i in range(5)]
        assert statuses == [200, 200, 200, 429, 429], (proxies, statuses)


def test_forwarded_for_honoured_from_trusted_proxy(make_server, uses_redis):
    s = limited_server(make_server, {"route": "GET /v1/hello 3/1m",
                                     "trusted_proxies": "127.0.0.1, ::1"},
                       redis=bool(REDIS_SOCKET))
    one = {"X-Forwarded-For": "203.0.113.1"}
    assert [request(s, "/v1/hello", one).status for _ in range(4)] == [200, 200, 200, 429]
    # Another client behind the same proxy has a bucket of its own.
    assert request(s, "/v1/hello", {"X-Forwarded-For": "203.0.113.2"}).status == 200
    # What the client itself put left of its address is not believed...
    forged = {"X-Forwarded-For": "6.6.6.6, 203.0.113.1"}
    assert request(s, "/v1/hello", forged).status == 429
    # ...and trusted hops on the right are skipped.
    chained = {"X-Forwarded-For": "203.0.113.1, 127.0.0.1"}
    assert request(s, "/v1/hello", chained).status == 429
    # Many headers of the client's own ahead of the proxy's do not push the proxy's out.
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        conn.putrequest("GET", "/v1/hello")
        for i in range(40):
            conn.putheader("X-Forwarded-For", "198.51.100.%d" % i)
        conn.putheader("X-Forwarded-For", "203.0.113.1")
        conn.endheaders()
        assert conn.getresponse().status == 429
    finally:
        conn.close()
    # Without the header, the proxy itself is the client.
    assert [request(s, "/v1/hello").status for _ in range(4)] == [200, 200, 200, 429]
    if REDIS_SOCKET:
        keys = redis_keys(s.sections["ratelimit"]["key_prefix"])
        assert [k.rsplit(":", 1)[1] for k in keys] == ["127.0.0.1", "203.0.113.1",
                                                       "203.0.113.2"], keys


# ---- counting in Redis ----

@needs_redis
def test_route_limit_in_redis(make_server, uses_redis):
    s = limited_server(make_server, {"route": "GET /v1/hello 5/%ds" % SHORT}, workers=2)
    key_prefix = s.sections["ratelimit"]["key_prefix"]
    replies = [request(s, "/v1/hello") for _ in range(6)]
    assert [r.status for r in replies] == [200] * 5 + [429], replies
    assert [r.headers["ratelimit-remaining"] for r in replies[:5]] == ["4", "3", "2", "1", "0"]
    retry = assert_rate_limited(replies[5], SHORT)
    # One key for (rule, client), with the window as its expiry.
    keys = redis_keys(key_prefix)
    assert len(keys) == 1 and keys[0].endswith(":127.0.0.1"), keys
    assert redis_cli("get", keys[0]).strip() == "6"
    assert 0 < int(redis_cli("pttl", keys[0])) <= SHORT * 1000
    # Other routes are not limited.
    assert [request(s, "/v1/hello/x").status for _ in range(8)] == [200] * 8
    assert request(s, "/healthz").status == 200
    time.sleep(retry + 0.1)
    assert request(s, "/v1/hello").status == 200
    assert request(s, "/v1/hello").headers["ratelimit-remaining"] == "3"


@needs_redis
def test_limit_is_global_across_workers(make_server, uses_redis):
    s = limited_server(make_server, {"route": "GET /v1/hello 5/1m"}, workers=2)
    replies = []
    while len(replies) < 60 and (len(replies) < 12 or len({r.worker for r in replies}) < 2):
        replies.append(request(s, "/v1/hello"))
    workers = {r.worker for r in replies}
    assert len(workers) == 2, "every fresh connection went to one worker: %r" % workers
    statuses = [r.status for r in replies]
    # Counted per worker, two workers would have let up to 10 through.
    assert statuses == [200] * 5 + [429] * (len(replies) - 5), statuses


@needs_redis
def test_falls_back_while_redis_is_down(make_server, shared_redis):
    s = limited_server(make_server, {"route": "GET /v1/hello 5/%ds" % SHORT}, workers=2)
    key_prefix = s.sections["ratelimit"]["key_prefix"]
    assert request(s, "/v1/hello").status == 200
    try:
        shared_redis.stop()
        # One connection, so one worker: its own count, its half of the limit (5 // 2),
        # so that both workers together never let through more than the limit.
        conn = http.client.HTTPConnection(s.host, s.port, timeout=CEILING)
        replies = [request(s, "/v1/hello", conn=conn) for _ in range(3)]
        assert [r.status for r in replies] == [200] * 2 + [429], replies
        assert replies[0].headers["ratelimit-limit"] == "2"
        retry = assert_rate_limited(replies[2], SHORT)
        assert request(s, "/v1/hello/x", conn=conn).status == 200
        s.wait_error_log("falling back to per-worker counting")
        time.sleep(retry + 0.1)
        assert request(s, "/v1/hello", conn=conn).status == 200
        conn.close()
        # Said once per worker, not once per request.
        assert s.error_log().count("falling back to per-worker counting") <= 2, s.error_log()
    finally:
        shared_redis.restore()
    # Counting moves back to Redis once the workers have reconnected (backoff up to 5 s);
    # the worker that fell back says so when its first count in Redis succeeds.
    deadline = time.monotonic() + CEILING
    while not redis_keys(key_prefix) or "counting in Redis again" not in s.error_log():
        assert time.monotonic() < deadline, "not counting in Redis again:\n" + s.error_log()
        assert request(s, "/v1/hello").status in (200, 429)
        time.sleep(0.1)


@needs_redis
def test_falls_back_when_redis_is_slow(make_server, shared_redis):
    s = limited_server(make_server, {"route": "GET /v1/hello 5/%ds" % SHORT}, workers=1)
    try:
        # Every count waits, longer than the test: each check times out (command_timeout,
        # 100 ms) and the worker counts itself instead of keeping the request waiting.
        # WRITE, not ALL, so that the UNPAUSE below is not paused too.
        redis_cli("client", "pause", "%d" % (CEILING * 1000), "write")
        conn = http.client.HTTPConnection(s.host, s.port, timeout=CEILING)
        replies = [request(s, "/v1/hello", conn=conn) for _ in range(6)]
        conn.close()
        assert [r.status for r in replies] == [200] * 5 + [429], replies
        s.wait_error_log("falling back to per-worker counting")
        assert "timeout" in s.error_log()
    finally:
        redis_cli("client", "unpause")


@needs_redis
def test_client_leaving_during_the_check(make_server, shared_redis):
    """A client that hangs up while its check waits for Redis: the handler never runs for
    it and the request is logged as 499 once the check ends."""
    # The check waits as long as Redis is paused: the test, not a timer, ends it.
    s = limited_server(make_server, {"route": "GET /v1/hello/:name 100/1m"}, workers=1,
                       redis_keys={"command_timeout": "%ds" % (2 * CEILING)})
    try:
        # WRITE, not ALL: the counting script waits, and INFO still answers.
        redis_cli("client", "pause", "%d" % (2 * CEILING * 1000), "write")
        with s.connect() as sock:
            sock.sendall(b"GET /v1/hello/gone HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + CEILING
            while "blocked_clients:0" in redis_cli("info", "clients"):
                assert time.monotonic() < deadline, "the check never reached Redis"
                time.sleep(0.02)
            # A reset rather than a FIN: the server drops the connection at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        redis_cli("client", "unpause")
    lines = s.wait_access_log(lambda ls: any(l["path"] == "/v1/hello/gone" for l in ls))
    assert [l["status"] for l in lines if l["path"] == "/v1/hello/gone"] == [499], lines
    assert request(s, "/v1/hello/x").status == 200
