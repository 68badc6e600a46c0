"""SDK 1.2 helpers every plugin needs (server/api_helpers.c) through helperkit: the host's
code-to-answer mapping, page/limit and the list shape, uuid path parameters and new uuids,
typed config values, content negotiation, ETag / If-Match / If-None-Match."""
import hashlib
import os
import re
import subprocess
import uuid

import pytest
import requests

from panthera_server import Server
from test_sdk_pg_helpers import conninfo

PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
TIMEOUT = 10


REDIS = os.environ.get("PANTHERA_REDIS_SOCKET")


def make(config=None):
    sections = {"postgres": {"conninfo": conninfo()}}
    if REDIS:
        sections["redis"] = {"address": "unix:" + REDIS}
    return Server(workers=1, plugins=("helperkit",), plugin_config={"helperkit": config or {}},
                  sections=sections)


@pytest.fixture(scope="module")
def server():
    s = make()
    s.start()
    yield s
    s.stop()
    s.cleanup()


def get(s, path, **kw):
    return requests.get(s.url(path), timeout=TIMEOUT, **kw)


def error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == code, err
    return err


@pytest.mark.parametrize("code,status,name", [
    (1, 400, "bad_request"), (3, 401, "unauthorized"), (4, 403, "forbidden"),
    (5, 404, "not_found"), (6, 409, "conflict"), (7, 413, "payload_too_large"),
    (8, 503, "unavailable"), (9, 500, "internal"), (13, 416, "range_not_satisfiable"),
    (16, 400, "bad_request"),
    (14, 412, "precondition_failed"), (15, 406, "not_acceptable"), (99, 500, "internal")])
def test_code_maps_like_a_handler_return(server, code, status, name):
    err = error(get(server, "/v1/helperkit/code/%d" % code), status, name)
    assert err["message"] == "from helperkit"


def test_list_defaults_and_shape(server):
    r = get(server, "/v1/helperkit/list")
    assert r.status_code == 200
    assert r.json() == {"total": 95, "page": 1, "limit": 10, "things": list(range(10))}
    r = get(server, "/v1/helperkit/list", params={"page": 10, "limit": 10})
    assert r.json()["things"] == list(range(90, 95))
    r = get(server, "/v1/helperkit/list", params={"page": 2, "limit": 100})
    assert r.json() == {"total": 95, "page": 2, "limit": 100, "things": []}


@pytest.mark.parametrize("params,field", [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "ten"}, "limit"),
    ({"limit": "1.5"}, "limit"), ({"page": 0}, "page"), ({"page": -1}, "page"),
    ({"page": "x"}, "page"), ({"page": ""}, "page")])
def test_list_parameters_are_validated(server, params, field):
    err = error(get(server, "/v1/helperkit/list", params=params), 400, "validation_failed")
    assert list(err["fields"]) == [field], err


def test_uuid_parameters(server):
    u = str(uuid.uuid4())
    assert get(server, "/v1/helperkit/things/" + u).json() == {"id": u}
    assert get(server, "/v1/helperkit/things/" + u.upper()).json() == {"id": u}
    for bad in ("1", u[:-1], u + "0", u.replace("-", ""), u[:-1] + "g", "%41"):
        error(get(server, "/v1/helperkit/things/" + bad), 404, "not_found")


def test_new_uuids_are_v4_and_distinct(server):
    ids = {get(server, "/v1/helperkit/uuid").json()["id"] for _ in range(20)}
    assert len(ids) == 20
    for i in ids:
        assert uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i


def test_typed_config_defaults(server):
    assert get(server, "/v1/helperkit/config").json() == {
        "count": 5, "enabled": True, "ttl_ms": 90000, "max": 8192, "unset_rc": -5}


def test_typed_config_values():
    s = make({"count": "-12", "enabled": "off", "ttl": "2d", "max": "3m"})
    try:
        s.start()
        assert get(s, "/v1/helperkit/config").json() == {
            "count": -12, "enabled": False, "ttl_ms": 2 * 86400000, "max": 3 << 20,
            "unset_rc": -5}
    finally:
        s.stop()
        s.cleanup()


@pytest.mark.parametrize("key,value,expected", [
    ("count", "5x", "a whole number"), ("enabled", "maybe", "yes or no"),
    ("ttl", "1.5s", "a duration"), ("max", "1t", "a size")])
def test_malformed_config_refuses_start(key, value, expected):
    s = make({key: value})
    try:
        rc, out, err = s.check_config()
        assert rc != 0, (out, err)
        assert re.search(r'\[plugin:helperkit\] %s = "%s": expected %s' % (
            key, re.escape(value), expected), out + err), out + err
    finally:
        s.cleanup()


@pytest.mark.parametrize("accept,status,ctype", [
    (None, 200, "application/json"), ("*/*", 200, "application/json"),
    ("text/csv", 200, "text/csv"), ("text/*", 200, "text/csv"),
    ("application/json;q=0.5, text/csv;q=0.9", 200, "text/csv"),
    ("text/csv;q=0.1, */*;q=0.2", 200, "application/json"),
    ("image/svg+xml", 406, None), ("text/csv;q=0, application/json;q=0", 406, None)])
def test_content_negotiation(server, accept, status, ctype):
    r = get(server, "/v1/helperkit/report", headers={"Accept": accept} if accept else {})
    if status == 406:
        error(r, 406, "not_acceptable")
        assert r.headers.get("Content-Type", "").startswith("application/json")
        return
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype), r.headers
    if ctype == "text/csv":
        assert r.content == b"a,b\r\n1,2\r\n"


def test_etag_and_if_none_match(server):
    r = get(server, "/v1/helperkit/versioned")
    assert r.status_code == 200 and r.headers["ETag"] == '"7"' and r.json() == {"version": 7}
    for inm in ('"7"', 'W/"7"', '"1", "7"', "*"):
        r = get(server, "/v1/helperkit/versioned", headers={"If-None-Match": inm})
        assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == '"7"', inm
    r = get(server, "/v1/helperkit/versioned", headers={"If-None-Match": '"6"'})
    assert r.status_code == 200


def test_if_match(server):
    url = server.url("/v1/helperkit/versioned")
    assert requests.put(url, timeout=TIMEOUT).status_code == 200  # no If-Match: last write wins
    for ok in ('"7"', '"3", "7"', "*"):
        assert requests.put(url, headers={"If-Match": ok}, timeout=TIMEOUT).status_code == 200
    for stale in ('"6"', 'W/"7"', "7"):
        r = requests.put(url, headers={"If-Match": stale}, timeout=TIMEOUT)
        error(r, 412, "precondition_failed")
        assert r.reason == "Precondition Failed"


@pytest.mark.skipif(not REDIS, reason="PANTHERA_REDIS_SOCKET is unset: no Redis")
def test_redis_script_by_sha_survives_script_flush(server):
    from services import redis_lock
    key = "helperkit-" + uuid.uuid4().hex
    url = server.url("/v1/helperkit/incr/" + key)
    sha = hashlib.sha1(b"return redis.call('INCRBY', KEYS[1], ARGV[1])").hexdigest()
    with redis_lock(exclusive=False):
        try:
            r = requests.post(url, params={"by": 5}, timeout=TIMEOUT)
            assert r.status_code == 200 and r.json() == {"value": 5, "sha": sha}, r.text
            exists = subprocess.run(["redis-cli", "-s", REDIS, "script", "exists", sha],
                                    capture_output=True, text=True, timeout=10).stdout
            assert exists.strip() == "1", exists
            # Redis forgets it (as after a restart): the next call falls back to EVAL.
            subprocess.run(["redis-cli", "-s", REDIS, "script", "flush"], check=True,
                           capture_output=True, timeout=10)
            r = requests.post(url, params={"by": 2}, timeout=TIMEOUT)
            assert r.status_code == 200 and r.json()["value"] == 7, r.text
            r = requests.post(server.url("/v1/helperkit/fail"), timeout=TIMEOUT)
            assert r.status_code == 200 and "helperkit says no" in r.json()["error"], r.text
        finally:
            subprocess.run(["redis-cli", "-s", REDIS, "del", key], capture_output=True,
                           timeout=10)


def metrics_text(s):
    return requests.get(s.url("/metrics"), timeout=TIMEOUT).text


def sample(text, line_prefix):
    m = re.search(r"^%s (\S+)$" % re.escape(line_prefix), text, re.M)
    return float(m.group(1)) if m else None


def test_plugin_metrics_in_metrics_with_plugin_label():
    s = make()
    s.workers = 2
    s.write_conf()
    try:
        s.start()
        for v in (0.5, 5, 50, 500, 7):
            assert requests.post(s.url("/v1/helperkit/observe"), params={"v": v},
                                 timeout=TIMEOUT).status_code == 200
        # Any worker answers /metrics with every worker's counts.
        for _ in range(4):
            text = metrics_text(s)
            assert "# TYPE helperkit_calls_total counter" in text, text
            assert sample(text, 'helperkit_calls_total{plugin="helperkit"}') == 5, text
            assert "# TYPE helperkit_sizes histogram" in text
            assert sample(text, 'helperkit_sizes_bucket{plugin="helperkit",le="1"}') == 1
            assert sample(text, 'helperkit_sizes_bucket{plugin="helperkit",le="10"}') == 3
            assert sample(text, 'helperkit_sizes_bucket{plugin="helperkit",le="100"}') == 4
            assert sample(text, 'helperkit_sizes_bucket{plugin="helperkit",le="+Inf"}') == 5
            assert sample(text, 'helperkit_sizes_count{plugin="helperkit"}') == 5
            assert sample(text, 'helperkit_sizes_sum{plugin="helperkit"}') == 562.5
        # A worker that dies leaves its counts in the sums.
        import os
        import signal
        pids = s.wait_workers(2)
        os.kill(pids[0], signal.SIGKILL)
        s.wait_workers(2, exclude=(pids[0],))
        assert sample(metrics_text(s), 'helperkit_calls_total{plugin="helperkit"}') == 5
    finally:
        s.stop()
        s.cleanup()


def test_refused_declarations(server):
    doc = get(server, "/v1/helperkit/declared").json()
    assert doc == {"dup_counter": -11, "host_name": -1, "bad_name": -1, "unordered": -1,
                   "multiline_help": -1, "dup_hook": -11, "host_hook": -1, "bad_hook": -1,
                   "late_counter": -10, "late_hook": -10}, doc


def test_check_config_lists_declared_hooks():
    s = make()
    try:
        rc, out, err = s.check_config()
        assert rc == 0, err
        hooks = out.split("hooks:\n", 1)[1]
        assert re.search(r"^  on_request +host ", hooks, re.M), out
        assert re.search(r"^  before_helperkit_thing +helperkit +changes a helperkit thing$",
                         hooks, re.M), out
    finally:
        s.cleanup()


def test_check_config_notes_hook_shaped_functions_nobody_declared(tmp_path):
    lua = tmp_path / "lua"
    lua.mkdir()
    (lua / "50-mine.lua").write_text(
        "function before_helperkit_thing(v) end\n"     # declared by helperkit
        "function before_helperkit_thnig(v) end\n"     # a typo
        "function on_request(req) end\n"              # the host's
        "function is_admin(req) return false end\n")  # a helper, not hook-shaped
    s = make()
    s.sections["lua"] = {"dir": str(lua)}
    s.write_conf()
    try:
        rc, out, err = s.check_config()
        assert rc == 0, (out, err)
        notes = [l for l in out.splitlines() if l.startswith("note: lua:")]
        assert notes == ["note: lua: 50-mine.lua defines before_helperkit_thnig, which is no "
                         "hook point of the host or of an enabled plugin"], out
    finally:
        s.cleanup()
