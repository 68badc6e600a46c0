"""PostgreSQL and Redis through the SDK (pgkit), /readyz, an ABI 1.0 plugin, and the
server's behaviour while PostgreSQL or Redis is down, against the services
`scripts/dev services` starts (PANTHERA_PGHOST, PANTHERA_PGPORT, PANTHERA_PGDATABASE,
PANTHERA_PGUSER, PANTHERA_REDIS_SOCKET, PANTHERA_RUNDIR).

The outage tests stop the shared PostgreSQL (pg_ctl, as services.sh does) or Redis
(SHUTDOWN NOSAVE, restarted from its redis.conf) for a few seconds and always start them
again in `finally`. PostgreSQL restarts take test_pg_pool's exclusive lock (the other
PostgreSQL tests here take it shared), Redis restarts take a lock of the same kind keyed
on the Redis socket.

No assertion here reads a clock: "answered 503 instead of waiting for PostgreSQL" is
proved by order (the answer came while the service was still stopped), "recovered" by a
run of good answers awaited with a ceiling only a hang reaches. How long the outage was
felt is printed, a figure for tests/bench, not a pass mark.

Not covered here (not implemented yet): two clients + `pg_ctl restart -m fast` + a unique
Idempotency-Key.
"""
import os
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

from services import Redis, redis_lock
import requests

from panthera_server import CEILING, Server

PG_VARS = ("PANTHERA_PGHOST", "PANTHERA_PGPORT", "PANTHERA_PGDATABASE", "PANTHERA_PGUSER")
pytestmark = pytest.mark.skipif(
    not all(os.environ.get(v) for v in PG_VARS) or not os.environ.get("PANTHERA_REDIS_SOCKET"),
    reason="PANTHERA_PGHOST/PGPORT/PGDATABASE/PGUSER and PANTHERA_REDIS_SOCKET must be set: run "
    "through scripts/dev test, or start the services with scripts/dev services and export "
    "the variables in .run/env",
)

if os.environ.get("PANTHERA_PGHOST"):
    # The lock and the pg_ctl helpers of the PostgreSQL pool tests, so restarts by either
    # module never overlap.
    from test_pg_pool import PG_BIN, pg_ctl, pg_env, pg_ready, server_lock, wait_ready
else:  # the module is skipped; keep the names defined
    PG_BIN = "/usr/lib/postgresql/15/bin"
    pg_ctl = pg_env = pg_ready = server_lock = wait_ready = None

WAIT_TIMEOUT = 1.0  # [postgres] wait_timeout below
TIMEOUT = CEILING  # a client gives up on a request only when it hangs
STREAK = 12  # answers in a row on fresh connections that count as "recovered"
TABLE_SQL = ("CREATE TABLE IF NOT EXISTS pgkit_items "
             "(id bigserial PRIMARY KEY, name text UNIQUE NOT NULL)")


def conninfo():
    e = os.environ
    return "host=%s port=%s dbname=%s user=%s" % (e["PANTHERA_PGHOST"], e["PANTHERA_PGPORT"],
                                                  e["PANTHERA_PGDATABASE"], e["PANTHERA_PGUSER"])


def psql(sql):
    e = os.environ
    cmd = [os.path.join(PG_BIN, "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
           "-h", e["PANTHERA_PGHOST"], "-p", e["PANTHERA_PGPORT"], "-U", e["PANTHERA_PGUSER"],
           "-d", e["PANTHERA_PGDATABASE"], "-c", sql]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def sleeping_statements():
    """How many pg_sleep statements of pgkit's /v1/pgkit/sleep PostgreSQL runs now."""
    return int(psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep($1::float8)%'").strip())


def uniq(prefix="item"):
    return "%s-%s" % (prefix, uuid.uuid4().hex)


def assert_error(resp, status, code):
    assert resp.status_code == status, (resp.status_code, resp.headers, resp.text[:300])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    doc = resp.json()
    assert set(doc) == {"error"}, doc
    err = doc["error"]
    assert err.get("code") == code, doc
    assert isinstance(err.get("message"), str) and err["message"], doc
    return err


# ---- the server ----

@pytest.fixture(scope="module")
def pools():
    with server_lock(exclusive=False):
        assert wait_ready(os.environ["PANTHERA_PGHOST"], os.environ["PANTHERA_PGPORT"], 30), \
            "PostgreSQL is not ready"
        psql(TABLE_SQL)
    s = Server(workers=2, plugins=("hello", "testkit", "pgkit", "abi_1_0"),
               sections={"postgres": {"conninfo": conninfo(), "wait_timeout": "1s"},
                         "redis": {"address": "unix:" + os.environ["PANTHERA_REDIS_SOCKET"]}})
    try:
        s.start()
        s.wait_workers(2)
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def pg_shared():
    """Keeps another run's PostgreSQL restart out of the ordinary tests."""
    with server_lock(exclusive=False):
        yield


def get(s, path, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return requests.get(s.url(path), **kw)


def wait_until(pred, timeout=CEILING, interval=0.05):
    end = time.monotonic() + max(timeout, CEILING)
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(interval)


def create_item(s, name):
    return requests.post(s.url("/v1/pgkit/items"), json={"name": name}, timeout=TIMEOUT)


# ---- ready, ABI ----

def test_readyz_both_ok(pools, pg_shared):
    # A worker connects to Redis after it reports itself started, so its very first
    # /readyz may truthfully say "redis down": observe it becoming ready.
    def ready():
        r = get(pools, "/readyz")
        return r if r.status_code == 200 else None

    r = wait_until(ready) or get(pools, "/readyz")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "ready", doc
    assert doc["checks"] == {"postgres": "ok", "redis": "ok"}, doc


def test_readyz_without_services_configured(make_server):
    s = make_server(workers=1)
    r = get(s, "/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"postgres": "not configured", "redis": "not configured"}


def test_abi_1_0_plugin_loads_and_works(pools):
    r = get(pools, "/v1/abi10")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["abi"] == "1.0" and doc["has_route"] is True, doc
    assert doc["host_abi_minor"] >= 1, doc


# ---- PostgreSQL through pgkit ----

def test_create_get_conflict_not_found(pools, pg_shared):
    name = uniq()
    r = create_item(pools, name)
    assert r.status_code == 201, r.text
    assert r.headers.get("Location"), r.headers
    item = r.json()
    assert item["name"] == name and item["id"].isdigit(), item

    r = create_item(pools, name)
    assert_error(r, 409, "conflict")

    r = get(pools, "/v1/pgkit/items/%s" % item["id"])
    assert r.status_code == 200, r.text
    assert r.json() == item

    r = get(pools, "/v1/pgkit/items/999999999999999")
    assert_error(r, 404, "not_found")
    r = get(pools, "/v1/pgkit/items/abc")
    assert_error(r, 400, "validation_failed")


def test_create_validation(pools, pg_shared):
    assert_error(requests.post(pools.url("/v1/pgkit/items"), json={}, timeout=TIMEOUT), 400,
                 "validation_failed")
    r = requests.post(pools.url("/v1/pgkit/items"), data=b"{not json",
                      headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert_error(r, 400, "bad_request")


ECHO_VALUES = [
    "'; DROP TABLE pgkit_items; --",
    "'; DROP TABLE x; --",
    "Robert'); DROP TABLE students;--",
    "O'Reilly",
    "''",
    'say "hi"',
    "back\\slash \\' \\\\ \\x41 \\n",
    "$1 $$ dollar $$",
    "emoji 🐆😀👍🏽",
    "日本語のテキスト",
    "Ünïcödé ñ ß Ω",
    "עברית العربية",
    "tab\tnewline\ncr\r",
    "percent %25 %s %d",
    "a+b c&d=e?f#g",
    "; SELECT pg_sleep(10); --",
    "x" * 2000,
]


@pytest.mark.parametrize("value", ECHO_VALUES, ids=range(len(ECHO_VALUES)))
def test_echo_round_trips_verbatim(pools, pg_shared, value):
    # Percent-encode every byte (no '+' for spaces) ...
    url = pools.url("/v1/pgkit/echo?v=" + urllib.parse.quote(value, safe=""))
    r = requests.get(url, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json() == {"value": value}
    # ... and as requests encodes a query (spaces as '+').
    r = get(pools, "/v1/pgkit/echo", params={"v": value})
    assert r.status_code == 200, r.text
    assert r.json() == {"value": value}


def test_echo_empty_and_absent(pools, pg_shared):
    assert get(pools, "/v1/pgkit/echo?v=").json() == {"value": ""}
    assert get(pools, "/v1/pgkit/echo").json() == {"value": None}


@pytest.mark.parametrize("encoded", ["%FF", "%C3%28", "caf%E9", "%E2%82"])
def test_invalid_utf8_parameter_is_a_client_error(pools, pg_shared, encoded):
    """A value that is not UTF-8 cannot reach a UTF-8 database as text; that is the
    client's mistake (400 bad_request), never a 500 'internal'."""
    r = requests.get(pools.url("/v1/pgkit/echo?v=" + encoded), timeout=TIMEOUT)
    assert r.status_code != 500, "client input answered as a server error: %s %s" % (
        r.status_code, r.text)
    assert_error(r, 400, "bad_request")


def test_table_survived_the_injection_attempts(pools, pg_shared):
    name = uniq("after-injection")
    r = create_item(pools, name)
    assert r.status_code == 201, r.text
    assert psql("SELECT count(*) FROM pgkit_items WHERE name = '%s'" % name).strip() == "1"


def test_item_names_round_trip_utf8(pools, pg_shared):
    name = "🐆 O'Reilly \"q\" \\ 日本 " + uuid.uuid4().hex
    r = create_item(pools, name)
    assert r.status_code == 201, r.text
    r = get(pools, "/v1/pgkit/items/%s" % r.json()["id"])
    assert r.status_code == 200 and r.json()["name"] == name, r.text


# ---- Redis through pgkit ----

def test_redis_put_get_utf8(pools):
    sock = os.environ["PANTHERA_REDIS_SOCKET"]
    key = uniq("pxkey")
    value = "valeur 🐆 日本語 \"quoted\" 'single' \\ back\r\nline2"
    with redis_lock(exclusive=False):
        try:
            r = requests.put(pools.url("/v1/pgkit/redis/" + key), data=value.encode("utf-8"),
                             timeout=TIMEOUT)
            assert r.status_code == 200, r.text
            assert r.json() == {"value": "OK"}
            r = get(pools, "/v1/pgkit/redis/" + key)
            assert r.status_code == 200, r.text
            assert r.json() == {"value": value}
            # And Redis holds exactly those bytes.
            raw = subprocess.run(["redis-cli", "-s", sock, "--raw", "get", key],
                                 capture_output=True, timeout=5).stdout
            assert raw.rstrip(b"\n") == value.encode("utf-8")
        finally:
            subprocess.run(["redis-cli", "-s", sock, "del", key], capture_output=True,
                           timeout=5)


# ---- PostgreSQL stopped and started under load ----

class Loop(threading.Thread):
    """GET `path` every `interval` s (one keep-alive session, or fresh connections), recording
    (start, end, status or None, json body or text, Retry-After)."""

    def __init__(self, s, path, interval=0.02, fresh=False):
        super().__init__(daemon=True)
        self.fresh = fresh  # a new connection per request, so every worker gets asked
        self.url = s.url(path)
        self.interval = interval
        self.results = []
        self.halt = threading.Event()

    def run(self):
        with requests.Session() as sess:
            while not self.halt.is_set():
                t0 = time.time()
                try:
                    r = (requests if self.fresh else sess).get(self.url, timeout=TIMEOUT)
                    try:
                        body = r.json()
                    except ValueError:
                        body = r.text
                    rec = (t0, time.time(), r.status_code, body, r.headers.get("Retry-After"))
                except requests.RequestException as e:
                    rec = (t0, time.time(), None, repr(e), None)
                self.results.append(rec)
                left = self.interval - (time.time() - t0)
                if left > 0:
                    self.halt.wait(left)

    def stop(self):
        self.halt.set()
        self.join(TIMEOUT + 2)


def describe(results, since):
    return "\n".join("%+.3f..%+.3f %s %s" % (a - since, b - since, st, str(body)[:120])
                     for a, b, st, body, _ in results)


def test_postgres_stopped_then_started(pools):
    host, port, datadir = pg_env()
    s = pools
    with server_lock(exclusive=True):
        assert wait_ready(host, port, 30), "PostgreSQL is not ready before the test"
        r = create_item(s, uniq("outage"))
        assert r.status_code == 201, r.text
        item = r.json()
        pids = s.wait_workers(2)
        pg_loop = Loop(s, "/v1/pgkit/items/%s" % item["id"], fresh=True)
        hello_loop = Loop(s, "/v1/hello")
        ready_while_down, routes_while_down = [], []
        t_start = time.time()
        down_at = stopped_at = back_at = None
        pg_loop.start()
        hello_loop.start()
        try:
            # A query in flight when PostgreSQL goes away (the backend is terminated).
            inflight = []

            def sleeper():
                t0 = time.time()
                try:
                    inflight.append((t0, get(s, "/v1/pgkit/sleep?s=4", timeout=10)))
                except requests.RequestException as e:
                    inflight.append((t0, e))
                inflight.append(time.time())

            sleeper_thread = threading.Thread(target=sleeper, daemon=True)
            assert wait_until(lambda: sum(1 for r in pg_loop.results if r[2] == 200) >= 5)
            sleeper_thread.start()
            assert wait_until(lambda: sleeping_statements() == 1), "the sleep never started"
            down_at = time.time()
            r = pg_ctl(datadir, host, "-m", "fast", "stop")
            assert r.returncode == 0, r.stdout + r.stderr
            stopped_at = time.time()
            # While it is down: /readyz, another PG route, a transaction; the loop goes on
            # until it has met the outage.
            while len(ready_while_down) < 3 or not any(
                    r[2] == 503 and r[0] >= stopped_at for r in list(pg_loop.results)):
                assert time.time() < stopped_at + CEILING, "the outage went unnoticed"
                t0 = time.time()
                rr = get(s, "/readyz")
                ready_while_down.append((t0, time.time(), rr))
                time.sleep(0.2)
            sleeper_thread.join(CEILING)
            for path in ("/v1/pgkit/echo?v=x",):
                t0 = time.time()
                routes_while_down.append((t0, time.time(), get(s, path)))
            t0 = time.time()
            routes_while_down.append((t0, time.time(), create_item(s, uniq("down"))))
            restart_at = time.time()
            r = pg_ctl(datadir, host, "start")
            assert r.returncode == 0, r.stdout + r.stderr
            assert wait_ready(host, port, 30), "PostgreSQL did not come back"
            back_at = time.time()

            def served_again():  # STREAK 200s in a row, all asked after it was back
                tail = pg_loop.results[-STREAK:]
                return len(tail) == STREAK and all(st == 200 and a >= back_at
                                                   for a, _, st, _, _ in tail)

            wait_until(served_again)
        finally:
            pg_loop.stop()
            hello_loop.stop()
            if not pg_ready(host, port):
                pg_ctl(datadir, host, "start")
                wait_ready(host, port, 30)

    text = "down at %+.3f, stopped %+.3f, back at %+.3f\n%s" % (
        down_at - t_start, stopped_at - t_start, back_at - t_start,
        describe(pg_loop.results, t_start))

    # /readyz names PostgreSQL while it is down.
    assert ready_while_down
    for t0, t1, rr in ready_while_down:
        assert rr.status_code == 503, (rr.status_code, rr.text)
        assert rr.headers.get("Retry-After"), rr.headers
        doc = rr.json()
        assert doc["checks"]["postgres"] == "down", doc
        assert "postgres" in doc["error"]["message"], doc
        assert doc["error"]["code"] == "unavailable", doc
        assert t1 <= restart_at, "/readyz waited for PostgreSQL to come back"
    # The query in flight: 503 too (not 500), while PostgreSQL was still stopped.
    assert len(inflight) == 2, inflight
    (t0, rr), t1 = inflight
    assert isinstance(rr, requests.Response), rr
    assert_error(rr, 503, "unavailable")
    assert t1 <= restart_at, "the query in flight waited for PostgreSQL to come back"
    # Other PG routes answer 503 unavailable, without waiting for PostgreSQL (they were
    # asked and answered one after the other before it was started again).
    for t0, t1, rr in routes_while_down:
        assert_error(rr, 503, "unavailable")
        assert rr.headers.get("Retry-After"), rr.headers

    # The PG loop: only 200 and 503 unavailable, never a hang; nothing asked while
    # PostgreSQL was stopped waited for it to come back.
    results = pg_loop.results
    assert results, "the client loop made no requests"
    for a, b, st, body, retry in results:
        assert st in (200, 503), "an answer other than 200/503:\n" + text
        assert not (st == 200 and stopped_at <= a < restart_at), \
            "a request asked while PostgreSQL was stopped waited for it:\n" + text
        if st == 503:
            assert isinstance(body, dict) and body["error"]["code"] == "unavailable", text
            assert retry, "503 without Retry-After:\n" + text
        else:
            assert body == item, text
    assert any(st == 200 and b <= down_at for a, b, st, _, _ in results), text
    unavailable = [(a, b) for a, b, st, _, _ in results if st == 503]
    assert unavailable, "the outage went unnoticed:\n" + text
    # No 503 before the outage began.
    assert min(b for _, b in unavailable) >= down_at, text
    # Served again by every worker: nothing but 200 after the last 503 (a run of STREAK
    # 200s on fresh connections at least).
    last_503 = max(a for a, _ in unavailable)
    print("postgres: down for %.3f s, %d answers 503, last 503 asked %.3f s after it was back"
          % (back_at - down_at, len(unavailable), last_503 - back_at))
    after_last = [st for a, b, st, _, _ in results if a > last_503]
    assert len(after_last) >= STREAK and set(after_last) == {200}, \
        "not served steadily again:\n" + text

    # /v1/hello never noticed.
    hello = hello_loop.results
    assert hello and all(st == 200 for _, _, st, _, _ in hello), describe(
        [h for h in hello if h[2] != 200], t_start)
    print("hello: slowest answer during the outage %.3f s"
          % max(b - a for a, b, _, _, _ in hello))

    # No worker died, and the pool works fully again (prepared statements, transactions).
    assert s.worker_pids() == pids, s.error_log()[-3000:]
    # (Only the postgres check: Redis is not this test's business.)
    assert wait_until(lambda: get(s, "/readyz").json()["checks"]["postgres"] == "ok")
    # /readyz answered from one worker. The other's pool reconnects on the next request
    # (pg_conn_probe) unless a request tried less than 100 ms before, while the server was
    # still away: then one more 503 to retry (never a 500). Six reads in a row, within the
    # ceiling, show every pool serving again.
    streak = []

    def six_in_a_row():
        r = get(s, "/v1/pgkit/items/%s" % item["id"])
        if r.status_code == 200:
            assert r.json() == item, r.text
            streak.append(r)
        else:
            assert_error(r, 503, "unavailable")
            streak.clear()
        return len(streak) >= 6

    assert wait_until(six_in_a_row), "the pools never served six reads in a row again"
    r = create_item(s, uniq("after-outage"))
    assert r.status_code == 201, r.text
    assert "segfault" not in s.error_log().lower()


# ---- Redis stopped and started ----

def test_redis_stopped_then_started(pools):
    redis = Redis()
    s = pools
    key = uniq("pxkey")
    with redis_lock(exclusive=True):
        assert redis.wait(True, 10), "Redis is not answering before the test"
        with server_lock(exclusive=False):
            r = create_item(s, uniq("redis-outage"))
            assert r.status_code == 201, r.text
            item = r.json()
            r = requests.put(s.url("/v1/pgkit/redis/" + key), data="før 🐆".encode(),
                             timeout=TIMEOUT)
            assert r.status_code == 200, r.text
            pids = s.wait_workers(2)
            try:
                redis.stop()
                back_at = None

                # The client notices (the socket closes).
                def readyz_down():
                    rr = get(s, "/readyz")
                    return [rr] if rr.status_code == 503 else None

                found = wait_until(readyz_down)
                assert found, "readyz still ready long after Redis stopped"
                rr = found[0]
                doc = rr.json()
                assert rr.headers.get("Retry-After"), rr.headers
                assert doc["checks"]["redis"] == "down", doc
                assert "redis" in doc["error"]["message"], doc

                # Redis stays stopped until these are answered: a 503 here did not wait.
                for _ in range(3):
                    rr = get(s, "/v1/pgkit/redis/" + key)
                    assert_error(rr, 503, "unavailable")
                    assert rr.headers.get("Retry-After"), rr.headers
                    rr = requests.put(s.url("/v1/pgkit/redis/" + key), data=b"x",
                                      timeout=TIMEOUT)
                    assert_error(rr, 503, "unavailable")
                    # Other routes are unaffected.
                    assert get(s, "/v1/hello").status_code == 200
                    rr = get(s, "/v1/pgkit/items/%s" % item["id"])
                    assert rr.status_code == 200 and rr.json() == item, rr.text
                    assert get(s, "/v1/pgkit/echo?v=ok").json() == {"value": "ok"}
                    time.sleep(0.3)

                redis.start()
                back_at = time.time()
                # Fresh connections, so every worker is asked: recovered once a run of
                # STREAK answers in a row is 200, for the Redis route and for /readyz.
                samples = []
                end = back_at + CEILING
                while time.time() < end:
                    t0 = time.time()
                    a = requests.get(s.url("/v1/pgkit/redis/" + key), timeout=TIMEOUT)
                    b = requests.get(s.url("/readyz"), timeout=TIMEOUT)
                    samples.append((t0, a.status_code, b.status_code))
                    if len(samples) >= STREAK and all(
                            x[1] == 200 and x[2] == 200 for x in samples[-STREAK:]):
                        break
                    time.sleep(0.02)
                trace = "\n".join("%+.3f %s %s" % (t0 - back_at, a, b) for t0, a, b in samples)
                tail = samples[-STREAK:]
                assert len(tail) == STREAK and all(x[1] == 200 and x[2] == 200 for x in tail), \
                    "not recovered after Redis was back:\n%s" % trace
                recovered_at = tail[0][0]
                print("redis: recovered %.3f s after it was back" % (recovered_at - back_at))
                for _ in range(4):
                    rr = requests.put(s.url("/v1/pgkit/redis/" + key), data="après 🐆".encode(),
                                      timeout=TIMEOUT)
                    assert rr.status_code == 200, rr.text
                    rr = requests.get(s.url("/v1/pgkit/redis/" + key), timeout=TIMEOUT)
                    assert rr.status_code == 200 and rr.json() == {"value": "après 🐆"}, rr.text
            finally:
                redis.restore()
                subprocess.run(["redis-cli", "-s", redis.sock, "del", key], capture_output=True,
                               timeout=5)
            assert s.worker_pids() == pids, s.error_log()[-3000:]
