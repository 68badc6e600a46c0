"""Lua hooks (server/hooks.c, the on_request/on_response phases in server/http.c and
px_hook_run): the three shipped example scripts, named hooks, the sandbox, the limits,
reloads and refusals.

Each server gets its own script directory ([lua] dir) under the test's temp dir; the
shipped scripts are copied from scripts/lua/. testkit's POST /v1/test/hook runs the named
hook "before_test" on its JSON body and answers the (possibly changed) body.

Every request has a timeout and every wait a deadline.
"""
import ctypes
import os
import re
import shutil
import signal
import socket
import time

import pytest
import requests

from panthera_server import CEILING, REPO, Server, ServerError

SHIPPED = os.path.join(REPO, "scripts", "lua")
SECURITY = "10-security-headers.lua"
ADMIN_PREFIX = "20-admin-prefix.lua"
BODY_LIMIT = "30-body-limit.lua"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
AUTH = {"token_secret": "Hq3Zt8Vn1Rx6Lc4Pw9Ks2Dm7Bf5Jy0Ge3Ua8Oi1Tn6Xr4Wq9", "issuer": "panthera-test",
        "leeway": "5s"}
TIMEOUT = 5


# ---- helpers ----

def write_scripts(directory, copy=(), scripts=None):
    os.makedirs(directory, exist_ok=True)
    for name in copy:
        shutil.copy(os.path.join(SHIPPED, name), os.path.join(directory, name))
    for name, text in (scripts or {}).items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
    return directory


def lua_server(directory, workers=2, **kwargs):
    return Server(workers=workers, plugins=("hello", "testkit"),
                  sections={"lua": {"dir": directory}, "auth": dict(AUTH)}, **kwargs)


@pytest.fixture
def lua(tmp_path):
    """lua(copy=[shipped names], scripts={name: text}) -> a started server."""
    made = []

    def make(copy=(), scripts=None, workers=2):
        d = write_scripts(str(tmp_path / ("lua%d" % len(made))), copy, scripts)
        s = lua_server(d, workers=workers)
        made.append(s)
        s.start()
        return s

    yield make
    for s in made:
        s.cleanup()


def token(s, sub, role):
    r = requests.post(s.url("/v1/test/token"), json={"sub": sub, "role": role}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()["accessToken"]


def bearer(t):
    return {"Authorization": "Bearer " + t}


def assert_error(resp, status, code):
    assert resp.status_code == status, (resp.status_code, resp.headers, resp.text[:300])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    doc = resp.json()
    assert set(doc) == {"error"}, doc
    err = doc["error"]
    assert err.get("code") == code, doc
    assert isinstance(err.get("message"), str) and err["message"], doc
    assert set(err) <= {"code", "message", "fields"}, doc
    return err


def assert_security_headers(resp):
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, (resp.status_code, name, resp.headers)


def hook(s, body, timeout=TIMEOUT):
    return requests.post(s.url("/v1/test/hook"), json=body, timeout=timeout)


def line_of(text, needle):
    """1-based line number of the first line of `text` containing `needle`."""
    for n, line in enumerate(text.split("\n"), 1):
        if needle in line:
            return n
    raise AssertionError("%r not in script" % needle)


def log_since(s, mark):
    return s.error_log()[mark:]


def wait_for(pred, timeout=CEILING, interval=0.05):
    deadline = time.monotonic() + max(timeout, CEILING)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


def lua_binary_chunk(source):
    """A real precompiled Lua 5.4 chunk (lua_dump through the same liblua the server
    links), or None when the library cannot be loaded here."""
    try:
        lib = ctypes.CDLL("liblua5.4.so.0")
    except OSError:
        return None
    lib.luaL_newstate.restype = ctypes.c_void_p
    lib.luaL_loadstring.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    writer_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                ctypes.c_void_p)
    lib.lua_dump.argtypes = [ctypes.c_void_p, writer_t, ctypes.c_void_p, ctypes.c_int]
    lib.lua_close.argtypes = [ctypes.c_void_p]
    L = lib.luaL_newstate()
    if not L:
        return None
    out = []

    def write(_L, p, size, _ud):
        out.append(ctypes.string_at(p, size))
        return 0

    cb = writer_t(write)
    try:
        if lib.luaL_loadstring(L, source.encode()) != 0 or lib.lua_dump(L, cb, None, 1) != 0:
            return None
    finally:
        lib.lua_close(L)
    return b"".join(out)


def lua_string_literal(data):
    return '"' + "".join("\\%d" % b for b in data) + '"'


# ---- the shipped examples ----

def test_security_headers_on_200_404_401(lua):
    s = lua(copy=[SECURITY])
    r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert_security_headers(r)
    assert r.headers.get("X-Request-Id")

    r = requests.get(s.url("/v1/no/such/route"), timeout=TIMEOUT)
    assert_error(r, 404, "not_found")
    assert_security_headers(r)

    r = requests.get(s.url("/v1/test/private"), timeout=TIMEOUT)
    assert_error(r, 401, "unauthorized")
    assert_security_headers(r)
    # The hook adds headers; it must not drop the ones the server set.
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers

    r = requests.delete(s.url("/v1/hello"), timeout=TIMEOUT)
    assert r.status_code == 405
    assert_security_headers(r)
    assert r.headers.get("Allow"), r.headers


def test_security_headers_are_sent_once(lua):
    s = lua(copy=[SECURITY])
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        sock.settimeout(TIMEOUT)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for name in SECURITY_HEADERS:
        assert head.count("\r\n" + name.lower() + ":") == 1, head


def test_admin_prefix(lua):
    s = lua(copy=[ADMIN_PREFIX])
    r = requests.get(s.url("/v1/admin/ping"), timeout=TIMEOUT)
    err = assert_error(r, 403, "forbidden")
    assert "/v1/admin/" in err["message"], err

    r = requests.get(s.url("/v1/admin/ping"), headers=bearer(token(s, "u-1", "user")),
                     timeout=TIMEOUT)
    err = assert_error(r, 403, "forbidden")
    assert "/v1/admin/" in err["message"], err

    r = requests.get(s.url("/v1/admin/ping"), headers=bearer(token(s, "root-1", "admin")),
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "root-1", "role": "admin"}

    # Spellings of the same path that reach the route must meet the hook too.
    for target in (b"/v1/admin/ping?x=1", b"http://x/v1/admin/ping", b"/v1/%61dmin/ping",
                   b"//v1/admin/ping", b"/v1/admin/ping/", b"/v1/./admin/ping",
                   b"/v1/x/../admin/ping"):
        for method in (b"GET", b"HEAD"):
            data, _ = s.exchange(method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n", timeout=2)
            assert data.startswith(b"HTTP/1.1 "), data[:200]
            status = int(data[9:12])
            assert status != 200 and status < 500, (method, target, data[:300])

    # The gateway runs first: a bad token is a 401, not the hook's 403.
    r = requests.get(s.url("/v1/admin/ping"), headers=bearer("a.b.c"), timeout=TIMEOUT)
    assert_error(r, 401, "unauthorized")
    # Paths outside the prefix are not affected.
    r = requests.get(s.url("/v1/test/whoami"), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json() == {"id": None, "role": None}, r.text


def test_hooks_see_the_caller_on_routes_without_auth(lua):
    """A route registered with no auth still lends a valid token's caller to the hooks, so
    an "admins only" rule admits the admin there too; a bad token is no 401 there."""
    s = lua(scripts={"admins.lua": """
function on_request(req)
    if req.path == "/v1/test/headers" and not (req.caller and req.caller.role == "admin") then
        return false, 403, "admins only: " .. tostring(req.caller and req.caller.id)
    end
end
"""})
    r = requests.get(s.url("/v1/test/headers"), headers=bearer(token(s, "root-7", "admin")),
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    r = requests.get(s.url("/v1/test/headers"), headers=bearer(token(s, "u-7", "user")),
                     timeout=TIMEOUT)
    assert assert_error(r, 403, "forbidden")["message"] == "admins only: u-7"
    r = requests.get(s.url("/v1/test/headers"), timeout=TIMEOUT)
    assert assert_error(r, 403, "forbidden")["message"] == "admins only: nil"
    r = requests.get(s.url("/v1/test/headers"), headers=bearer("a.b.c"), timeout=TIMEOUT)
    assert assert_error(r, 403, "forbidden")["message"] == "admins only: nil"


def body_limit_with(route, limit):
    """The shipped body-limit script with one more entry in LIMITS, as an admin adds it."""
    with open(os.path.join(SHIPPED, BODY_LIMIT)) as f:
        text = f.read()
    assert "LIMITS = {\n" in text
    return text.replace("LIMITS = {\n", 'LIMITS = {\n    ["%s"] = %d,\n' % (route, limit), 1)


def test_body_limit_with_an_extra_route(lua, tmp_path):
    s = lua(scripts={BODY_LIMIT: body_limit_with("POST /v1/test/echo", 64)})
    hdrs = {"Content-Type": "text/plain"}

    r = requests.post(s.url("/v1/test/echo"), data=b"x" * 65, headers=hdrs, timeout=TIMEOUT)
    err = assert_error(r, 413, "payload_too_large")
    assert "64" in err["message"], err

    r = requests.post(s.url("/v1/test/echo"), data=b"x" * 64, headers=hdrs, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["length"] == 64

    # Only that method and path.
    r = requests.put(s.url("/v1/test/echo"), data=b"x" * 65, headers=hdrs, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    r = requests.post(s.url("/v1/test/json"), json={"pad": "y" * 100}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text


def test_shipped_scripts_together(lua):
    body_limit = body_limit_with("POST /v1/test/echo", 64)
    s = lua(copy=[SECURITY, ADMIN_PREFIX], scripts={BODY_LIMIT: body_limit})
    r = requests.get(s.url("/v1/admin/ping"), timeout=TIMEOUT)
    assert_error(r, 403, "forbidden")
    assert_security_headers(r)
    r = requests.get(s.url("/v1/admin/ping"), headers=bearer(token(s, "a", "admin")),
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert_security_headers(r)
    r = requests.post(s.url("/v1/test/echo"), data=b"z" * 65, timeout=TIMEOUT)
    assert_error(r, 413, "payload_too_large")
    assert_security_headers(r)


# ---- declarations: REQUEST_PATHS and RESPONSE_HEADERS ----

COUNTING = """\
REQUEST_PATHS = {"/v1/test/json", "/v1/hello"}
calls = 0
function on_request(req)
    calls = calls + 1
    if req.path == "/v1/test/json" then return false, 403, "json is closed" end
    return {set_headers = {["X-Calls"] = calls}}
end
function on_response(req, res)
    return {set_headers = {["X-Response-Calls"] = calls}}
end
"""


def test_request_paths_limit_where_a_script_runs(lua):
    s = lua(scripts={"50-count.lua": COUNTING}, workers=1)
    # Out of scope: neither hook runs (no X-Response-Calls), the echo is not refused.
    r = requests.post(s.url("/v1/test/echo"), data=b"x", headers={"Content-Type": "text/plain"},
                      timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert "X-Response-Calls" not in r.headers, r.headers
    # In scope: both run.
    assert_error(requests.post(s.url("/v1/test/json"), json={}, timeout=TIMEOUT), 403,
                 "forbidden")
    r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
    assert r.status_code == 200
    # on_request ran for /v1/test/json and /v1/hello only: twice.
    assert r.headers.get("X-Response-Calls") == "2", r.headers
    # A prefix match: on_response runs (on_request never does for an unrouted path).
    r = requests.get(s.url("/v1/hellothere"), timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.headers.get("X-Response-Calls") == "2", r.headers


def test_response_headers_declared_and_overridden(lua):
    script = """\
RESPONSE_HEADERS = {["X-Static"] = "one", ["X-Number"] = 7, ["Cache-Control"] = "no-store"}
"""
    later = """\
RESPONSE_HEADERS = {["X-Static"] = "two"}
REQUEST_PATHS = {"/v1/hello"}
function on_response(req, res)
    return {set_headers = {["Cache-Control"] = "max-age=5"}}
end
"""
    s = lua(scripts={"50-static.lua": script, "60-later.lua": later})
    r = requests.get(s.url("/v1/no/such/route"), timeout=TIMEOUT)
    assert_error(r, 404, "not_found")
    assert r.headers.get("X-Static") == "one" and r.headers.get("X-Number") == "7", r.headers
    assert r.headers.get("Cache-Control") == "no-store"
    # Within the later script's paths its own declaration and hook apply last.
    r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers.get("X-Static") == "two", r.headers
    assert r.headers.get("Cache-Control") == "max-age=5", r.headers


BAD_DECLARATIONS = {
    "paths_not_a_list": 'REQUEST_PATHS = "/v1/"\n',
    "path_not_absolute": 'REQUEST_PATHS = {"v1/admin"}\n',
    "paths_empty": 'REQUEST_PATHS = {}\n',
    "header_crlf": 'RESPONSE_HEADERS = {["X-A"] = "a\\r\\nSet-Cookie: x=1"}\n',
    "header_bad_name": 'RESPONSE_HEADERS = {["X A"] = "b"}\n',
    "header_table_value": 'RESPONSE_HEADERS = {["X-A"] = {}}\n',
}


@pytest.mark.parametrize("case", list(BAD_DECLARATIONS))
def test_malformed_declaration_is_a_load_error(tmp_path, case):
    d = write_scripts(str(tmp_path / "lua"), scripts={"25-bad.lua": BAD_DECLARATIONS[case]})
    s = lua_server(d)
    try:
        rc, out, err = s.check_config()
        assert rc != 0, (out, err)
        assert "25-bad.lua" in err, err
        assert "REQUEST_PATHS" in err or "RESPONSE_HEADERS" in err, err
    finally:
        s.cleanup()


# ---- a named hook (px_hook_run) ----

NAMED_HOOK = """\
function before_test(v)
    if v.mode == "allow" then return end
    if v.mode == "true" then return true end
    if v.mode == "set" then
        return {set = {name = string.upper(v.name), mode = "was-set", added = hooks.array{1, 2}}}
    end
    if v.mode == "deny" then
        return {deny = true, status = 409, message = "name " .. v.name .. " is taken"}
    end
    if v.mode == "deny_false" then return false, 429, "slow down" end
    if v.mode == "deny_default" then return false end
    if v.mode == "typo" then return {denied = true} end
    if v.mode == "inplace" then v.name = "mutated"; return end
    return {deny = true, status = 400, message = "unknown mode"}
end
"""

CHAIN_HOOK = """\
function before_test(v)
    if v.mode == "was-set" then return {set = {chained = v.name}} end
end
"""


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    d = write_scripts(str(tmp_path_factory.mktemp("named")),
                      scripts={"40-hook.lua": NAMED_HOOK, "41-chain.lua": CHAIN_HOOK})
    s = lua_server(d)
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


def test_named_hook_allow_leaves_value_unchanged(named):
    body = {"mode": "allow", "name": "alice", "n": 3, "list": [1, "two", None], "obj": {}}
    r = hook(named, body)
    assert r.status_code == 200, r.text
    assert r.json() == body
    r = hook(named, dict(body, mode="true"))
    assert r.status_code == 200, r.text
    assert r.json() == dict(body, mode="true")


def test_named_hook_changes_fields(named):
    r = hook(named, {"mode": "set", "name": "alice", "keep": True})
    assert r.status_code == 200, r.text
    # 41-chain.lua runs after 40-hook.lua and sees its changes.
    assert r.json() == {"mode": "was-set", "name": "ALICE", "keep": True, "added": [1, 2],
                        "chained": "ALICE"}


def test_named_hook_in_place_mutation_changes_nothing(named):
    r = hook(named, {"mode": "inplace", "name": "alice"})
    assert r.status_code == 200, r.text
    assert r.json() == {"mode": "inplace", "name": "alice"}


def test_named_hook_deny_with_status_and_message(named):
    r = hook(named, {"mode": "deny", "name": "alice"})
    err = assert_error(r, 409, "conflict")
    assert err["message"] == "name alice is taken"


def test_named_hook_deny_false_status_message(named):
    r = hook(named, {"mode": "deny_false"})
    err = assert_error(r, 429, "rate_limited")
    assert err["message"] == "slow down"
    assert r.headers.get("Retry-After"), r.headers


def test_named_hook_deny_defaults_to_403(named):
    assert_error(hook(named, {"mode": "deny_default"}), 403, "forbidden")


def test_named_hook_unknown_result_key_is_500(named):
    mark = len(named.error_log())
    assert_error(hook(named, {"mode": "typo"}), 500, "internal")
    assert wait_for(lambda: "40-hook.lua" in log_since(named, mark), 3), log_since(named, mark)


def test_scripts_are_isolated_from_each_other(lua):
    """Each script has its own globals and its own copy of the libraries."""
    s = lua(scripts={
        "70-a.lua": 'SECRET_A = "a"\n'
                    'string.upper = function() return "patched" end\n'
                    'rawset(string, "lower", nil)\n'
                    'function before_test(v) return {set = {a_sees = tostring(SECRET_A)}} end\n',
        "71-b.lua": 'function before_test(v)\n'
                    '    return {set = {b_sees = tostring(SECRET_A), upper = string.upper("x"),\n'
                    '                   lower = string.lower("Y")}}\n'
                    'end\n',
    })
    r = hook(s, {"n": 1})
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 1, "a_sees": "a", "b_sees": "nil", "upper": "X", "lower": "y"}


# ---- the sandbox ----

ESCAPE_SCRIPT_HEAD = """\
-- Each entry tries to get out of the sandbox; none may succeed.
local BIN = %s
local ESCAPES = {
"""
ESCAPES = {
    "os_execute": 'os.execute("touch " .. v.marker)',
    "io_open": 'local f = io.open(v.marker, "w"); f:write("x"); f:close()',
    "io_popen": 'io.popen("touch " .. v.marker)',
    "require": 'require("os").execute("touch " .. v.marker)',
    "package_loadlib": 'package.loadlib("libc.so.6", "system")("touch " .. v.marker)',
    "load_binary_mode_b": 'return assert(load(BIN, "=bin", "b"))()',
    "load_binary_default_mode": 'return assert(load(BIN))()',
    "string_dump": 'return string.dump(function() return 1 end)',
    "debug_getinfo": 'return debug.getinfo(1).source',
    "debug_sethook": 'debug.sethook(); return "unhooked"',
    "dofile": 'return dofile("/etc/hostname")',
    "loadfile": 'return assert(loadfile("/etc/hostname"))()',
    "coroutine": 'return coroutine.wrap(function() return 1 end)()',
    "collectgarbage_stop": 'collectgarbage("stop"); return "stopped"',
    "string_metatable": 'getmetatable("").__index.escaped = true; return "patched"',
}
ESCAPE_SCRIPT_TAIL = """\
}

function before_test(v)
    if v.try then
        local result = ESCAPES[v.try](v)
        return {set = {escaped = v.try, result = tostring(result)}}
    end
end
"""

TROUBLE_SCRIPT = """\
function on_request(req)
    local h = req.headers
    if h["x-spin"] then
        while true do end
    end
    if h["x-bomb"] then
        local t = {}
        for i = 1, 1e9 do t[i] = string.rep("x", 1024) .. i end
    end
    if h["x-fail"] then
        local t = nil
        return t.field
    end
    if h["x-pcall-spin"] then
        for i = 1, 100 do pcall(function() while true do end end) end
    end
    if h["x-rewrite"] then
        return {set_headers = {["X-Test"] = "from-hook"}, remove_headers = {"Accept"}}
    end
    if h["x-inject-request"] then
        return {set_headers = {["X-Test"] = "a\\r\\nX-Evil: 1"}}
    end
end

function on_response(req, res)
    if req.headers["x-fail-response"] then
        error("on_response failed on purpose")
    end
    if req.headers["x-inject"] then
        return {set_headers = {["X-Evil"] = "a\\r\\nSet-Cookie: session=stolen"}}
    end
    return {set_headers = {["X-Trouble"] = "checked"}}
end
"""


def escape_script():
    chunk = lua_binary_chunk("return 'escaped-binary'")
    if chunk is None:  # not as strong, but load must still refuse it
        chunk = b"\x1bLuaT\x00\x19\x93\r\n\x1a\n"
    lines = ["    %s = function(v) %s end," % (k, v) for k, v in ESCAPES.items()]
    return (ESCAPE_SCRIPT_HEAD % lua_string_literal(chunk)) + "\n".join(lines) + "\n" + \
        ESCAPE_SCRIPT_TAIL


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    d = write_scripts(str(tmp_path_factory.mktemp("sandbox")),
                      scripts={"50-escape.lua": escape_script(), "60-trouble.lua": TROUBLE_SCRIPT})
    s = lua_server(d)
    try:
        s.start()
        s.pids = s.wait_workers(2)
        yield s
    finally:
        s.cleanup()


def assert_alive(s):
    r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Trouble") == "checked", r.headers
    r = hook(s, {"plain": 1})
    assert r.status_code == 200 and r.json() == {"plain": 1}, r.text
    assert s.worker_pids() == s.pids, "a worker was replaced: %r -> %r\n%s" % (
        s.pids, s.worker_pids(), s.error_log()[-3000:])


@pytest.mark.parametrize("name", list(ESCAPES))
def test_sandbox_escape_is_refused(sandbox, tmp_path, name):
    marker = str(tmp_path / "escaped")
    mark = len(sandbox.error_log())
    r = hook(sandbox, {"try": name, "marker": marker})
    assert_error(r, 500, "internal")
    assert not os.path.exists(marker), "the script escaped the sandbox (%s)" % name
    script = escape_script()
    line = line_of(script, "    %s = function" % name)
    want = "50-escape.lua:%d:" % line
    assert wait_for(lambda: want in log_since(sandbox, mark), 3), \
        "error log does not name %s:\n%s" % (want, log_since(sandbox, mark))
    # The state and the workers are fine afterwards.
    assert_alive(sandbox)
    if name == "string_metatable":
        r = hook(sandbox, {"try": "string_dump"})
        assert_error(r, 500, "internal")


def test_infinite_loop_in_on_request_is_500_and_worker_survives(sandbox):
    mark = len(sandbox.error_log())
    # A loop the budget did not stop would hang the request until the client's ceiling.
    for _ in range(4):  # new connections: both workers get some
        r = requests.get(sandbox.url("/v1/hello"), headers={"X-Spin": "1"}, timeout=CEILING)
        assert_error(r, 500, "internal")
    line = line_of(TROUBLE_SCRIPT, "while true do end")
    assert wait_for(lambda: "60-trouble.lua:%d:" % line in log_since(sandbox, mark), 3), \
        log_since(sandbox, mark)
    assert "budget" in log_since(sandbox, mark)
    assert_alive(sandbox)


def test_pcall_cannot_swallow_the_budget(sandbox):
    r = requests.get(sandbox.url("/v1/hello"), headers={"X-Pcall-Spin": "1"}, timeout=CEILING)
    assert_error(r, 500, "internal")
    assert_alive(sandbox)


def test_memory_bomb_in_on_request_is_500_and_worker_survives(sandbox):
    r = requests.get(sandbox.url("/v1/hello"), headers={"X-Bomb": "1"}, timeout=CEILING)
    assert_error(r, 500, "internal")
    assert_alive(sandbox)


def test_runtime_error_names_script_and_line(sandbox):
    mark = len(sandbox.error_log())
    r = requests.get(sandbox.url("/v1/hello"), headers={"X-Fail": "1"}, timeout=TIMEOUT)
    assert_error(r, 500, "internal")
    line = line_of(TROUBLE_SCRIPT, "return t.field")
    want = "60-trouble.lua:%d:" % line
    assert wait_for(lambda: want in log_since(sandbox, mark), 3), log_since(sandbox, mark)
    assert_alive(sandbox)


def test_error_in_on_response_is_500(sandbox):
    mark = len(sandbox.error_log())
    r = requests.get(sandbox.url("/v1/hello"), headers={"X-Fail-Response": "1"},
                     timeout=TIMEOUT)
    assert_error(r, 500, "internal")
    line = line_of(TROUBLE_SCRIPT, "on_response failed on purpose")
    want = "60-trouble.lua:%d:" % line
    assert wait_for(lambda: want in log_since(sandbox, mark), 3), log_since(sandbox, mark)
    assert_alive(sandbox)


def test_on_request_can_rewrite_request_headers(sandbox):
    r = requests.get(sandbox.url("/v1/test/headers"),
                     headers={"X-Rewrite": "1", "X-Test": "from-client", "Accept": "text/x"},
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc.get("x-test") == "from-hook", doc
    assert "accept" not in doc, doc


def test_header_injection_from_on_response_is_refused(sandbox):
    with socket.create_connection((sandbox.host, sandbox.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Inject: 1\r\n"
                     b"Connection: close\r\n\r\n")
        sock.settimeout(TIMEOUT)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert b"set-cookie" not in head, data[:600]
    assert data.startswith(b"HTTP/1.1 500 "), data[:600]
    assert_alive(sandbox)


def test_header_injection_from_on_request_is_refused(sandbox):
    r = requests.get(sandbox.url("/v1/test/headers"), headers={"X-Inject-Request": "1"},
                     timeout=TIMEOUT)
    assert_error(r, 500, "internal")
    assert_alive(sandbox)


# ---- reload (SIGHUP) ----

GENERATION_TWO = """\
function on_response(req, res)
    return {set_headers = {["X-Generation"] = "two"}}
end
"""
BROKEN = """\
-- a syntax error on line 3
function on_response(req, res)
    return {set_headers = {["X-Generation"] = = "broken"}}
end
"""
BROKEN_LINE = 3


def test_reload_keeps_old_scripts_on_error_then_applies_fix(lua, tmp_path):
    s = lua(copy=[SECURITY])
    d = s.sections["lua"]["dir"]
    pids = s.wait_workers(2)
    r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
    assert_security_headers(r)

    # A broken script: the reload fails, the old workers and scripts stay.
    mark = len(s.error_log())
    with open(os.path.join(d, "40-generation.lua"), "w") as f:
        f.write(BROKEN)
    s.signal(signal.SIGHUP)
    s.wait_error_log("reload failed", timeout=10)
    log = log_since(s, mark)
    assert "reload failed" in log, log
    assert "40-generation.lua:%d:" % BROKEN_LINE in log, log
    assert s.running()
    assert s.wait_workers(2) == pids
    for _ in range(4):
        r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        assert_security_headers(r)
        assert "X-Generation" not in r.headers, r.headers

    # Fixed: the next reload takes it.
    mark = len(s.error_log())
    with open(os.path.join(d, "40-generation.lua"), "w") as f:
        f.write(GENERATION_TWO)
    s.signal(signal.SIGHUP)
    s.wait_error_log("reload complete", timeout=15)

    def new_behaviour():
        r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
        return r.status_code == 200 and r.headers.get("X-Generation") == "two" and r

    r = wait_for(new_behaviour, 10)
    assert r, log_since(s, mark)
    assert_security_headers(r)  # both scripts define on_response; both run
    new = s.wait_workers(2, timeout=15, exclude=pids)
    assert not set(new) & set(pids)
    s.wait_gone(pids)  # until then an old worker may still take a connection
    for _ in range(4):
        r = requests.get(s.url("/v1/hello"), timeout=TIMEOUT)
        assert r.headers.get("X-Generation") == "two", r.headers


# ---- refusing broken scripts at start and in -t ----

BROKEN_AT_LOAD = {
    "syntax": ("local x = = 1\n", 1),
    "runtime": ("local a = 1\nlocal b = nil\nlocal c = b.field\n", 3),
    "os_execute": ('-- tries to run a command at load\nos.execute("true")\n', 2),
    "io_open": ('local f = io.open("/etc/hostname")\n', 1),
    "require": ('local os2 = require("os")\n', 1),
}


@pytest.mark.parametrize("case", list(BROKEN_AT_LOAD))
def test_startup_with_broken_script_is_refused(tmp_path, case):
    text, line = BROKEN_AT_LOAD[case]
    d = write_scripts(str(tmp_path / "lua"), copy=[SECURITY], scripts={"25-bad.lua": text})
    s = lua_server(d)
    try:
        with pytest.raises(ServerError):
            s.start(timeout=8)
        assert s.proc.returncode not in (None, 0), s.proc.returncode
        log = s.error_log()
        assert "25-bad.lua:%d:" % line in log, log
    finally:
        s.cleanup()


@pytest.mark.parametrize("case", list(BROKEN_AT_LOAD))
def test_check_config_with_broken_script_fails(tmp_path, case):
    text, line = BROKEN_AT_LOAD[case]
    d = write_scripts(str(tmp_path / "lua"), copy=[SECURITY], scripts={"25-bad.lua": text})
    s = lua_server(d)
    try:
        rc, out, err = s.check_config()
        assert rc != 0, (out, err)
        assert "25-bad.lua:%d:" % line in err, err
        assert "configuration OK" not in out
    finally:
        s.cleanup()


def test_check_config_with_shipped_scripts_passes(tmp_path):
    d = write_scripts(str(tmp_path / "lua"), copy=[SECURITY, ADMIN_PREFIX, BODY_LIMIT])
    s = lua_server(d)
    try:
        rc, out, err = s.check_config()
        assert rc == 0, (out, err)
        assert "configuration OK" in out
    finally:
        s.cleanup()


def test_missing_lua_dir_is_refused(tmp_path):
    s = lua_server(str(tmp_path / "does-not-exist"))
    try:
        rc, out, err = s.check_config()
        assert rc != 0, (out, err)
        assert "does-not-exist" in err, err
        with pytest.raises(ServerError):
            s.start(timeout=8)
        assert s.proc.returncode not in (None, 0)
    finally:
        s.cleanup()
