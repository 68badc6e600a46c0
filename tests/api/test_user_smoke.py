"""Smoke test of the user plugin (plugins/user) end to end, against the real PostgreSQL and
Redis: the plugin author's own check that every route of API.md "Users and auth" answers
and that the mechanisms behind them (rotation, reuse detection, cache invalidation, rehash,
the first-admin command, Redis outage) hold together. The exhaustive contract tests are
test_user_auth.py, test_user_users.py and test_user_matrix.py.

Each server here runs on a database of its own (created and dropped by the module), so the
tests never see other modules' users. The module holds the shared PostgreSQL and Redis
locks of test_pg_pool.py and test_pools.py, so no other test stops those under it.
"""
import concurrent.futures
import os
import re
import subprocess
import uuid

import pytest
import requests

import openapi_check

from panthera_server import PANTHERAD, REPO, Server
from test_pg_pool import server_lock
from test_pools import redis_lock

ENV = os.environ
pytestmark = pytest.mark.skipif(
    not (ENV.get("PANTHERA_PGHOST") and ENV.get("PANTHERA_REDIS_SOCKET")),
    reason="needs PostgreSQL and Redis: run through scripts/dev test, or export .run/env")

PSQL = os.path.join(ENV.get("PANTHERA_PG_BIN", "/usr/lib/postgresql/15/bin"), "psql")
SECRET = "smoke-test-secret-0123456789abcdefghijklmnop"


def psql(db, sql):
    p = subprocess.run([PSQL, "-X", "-qtA", "-v", "ON_ERROR_STOP=1", "-h", ENV["PANTHERA_PGHOST"],
                        "-p", ENV.get("PANTHERA_PGPORT", "5432"), "-U",
                        ENV.get("PANTHERA_PGUSER", "panthera"), "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def user_server(db, redis=None, **config):
    conninfo = "host=%s port=%s dbname=%s user=%s" % (
        ENV["PANTHERA_PGHOST"], ENV.get("PANTHERA_PGPORT", "5432"), db,
        ENV.get("PANTHERA_PGUSER", "panthera"))
    return Server(workers=2, plugins=("user",),
                  plugin_config={"user": dict({"scrypt_n": "16384"}, **config)},
                  sections={"postgres": {"conninfo": conninfo, "wait_timeout": "2s"},
                            "redis": {"address": redis or "unix:" + ENV["PANTHERA_REDIS_SOCKET"]},
                            "auth": {"token_secret": SECRET},
                            "lua": {"dir": os.path.join(REPO, "scripts", "lua")}})


@pytest.fixture(scope="module", autouse=True)
def shared_services():
    with server_lock(False), redis_lock(False):
        yield


@pytest.fixture(scope="module")
def db():
    name = "usrsmoke_" + uuid.uuid4().hex[:12]
    main = ENV.get("PANTHERA_PGDATABASE", "panthera")
    psql(main, "CREATE DATABASE " + name)
    yield name
    psql(main, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


@pytest.fixture(scope="module")
def srv(db):
    s = user_server(db)
    s.start(timeout=30)
    yield s
    s.cleanup()


def post(s, path, body, token=None, headers=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    h.update(headers or {})
    return requests.post(s.url(path), json=body, headers=h, timeout=30)


def req(s, method, path, token, body=None):
    return requests.request(method, s.url(path), json=body, timeout=30,
                            headers={"Authorization": "Bearer " + token})


def register(s, **extra):
    name = "u_" + uuid.uuid4().hex[:12]
    body = dict({"username": name, "email": name + "@example.com",
                 "password": "pw-" + uuid.uuid4().hex[:10]}, **extra)
    r = post(s, "/v1/auth/register", body)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert set(doc) == {"userId", "username", "accessToken", "refreshToken", "expiresIn"}
    assert r.headers["Location"] == "/v1/users/" + doc["userId"]
    doc.update(body)
    return doc


def create_admin(s):
    name = "admin_" + uuid.uuid4().hex[:10]
    p = subprocess.run([PANTHERAD, "-c", s.conf_path, "user:create-admin", name,
                        name + "@example.com"], input=b"admin secret 42\n", capture_output=True,
                       timeout=60, cwd=s.tmp)
    assert p.returncode == 0, p.stderr.decode()
    assert b"created admin " + name.encode() in p.stdout
    r = post(s, "/v1/auth/login", {"username": name, "password": "admin secret 42"})
    assert r.status_code == 200, r.text
    return r.json()


def test_session_lifecycle(srv):
    a = register(srv, firstName="Ada", lastName="Lovelace")
    me = req(srv, "GET", "/v1/users/me", a["accessToken"])
    assert me.status_code == 200, me.text
    user = me.json()
    assert set(user) == {"id", "username", "email", "firstName", "lastName", "role",
                         "createdAt", "updatedAt"}
    assert (user["firstName"], user["role"]) == ("Ada", "user")

    # Login by email (in either field), case-insensitively; unknown and wrong look alike.
    r = post(srv, "/v1/auth/login", {"username": a["email"].upper(), "password": a["password"]})
    assert r.status_code == 200, r.text
    wrong = post(srv, "/v1/auth/login", {"email": a["email"], "password": "not it at all"})
    unknown = post(srv, "/v1/auth/login", {"email": "x" + a["email"], "password": "not it"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()

    # Rotation: t0 -> t1 -> t2; replaying t0 kills t2 as well.
    t0 = a["refreshToken"]
    t1 = post(srv, "/v1/auth/refresh", {"refreshToken": t0}).json()["refreshToken"]
    t2 = post(srv, "/v1/auth/refresh", {"refreshToken": t1}).json()["refreshToken"]
    assert post(srv, "/v1/auth/refresh", {"refreshToken": t1}).status_code == 401
    assert post(srv, "/v1/auth/refresh", {"refreshToken": t2}).status_code == 401

    # Logout revokes, and needs the caller's token.
    session = r.json()
    assert post(srv, "/v1/auth/logout", {"refreshToken": session["refreshToken"]}).status_code \
        == 401
    r = post(srv, "/v1/auth/logout", {"refreshToken": session["refreshToken"]},
             token=session["accessToken"])
    assert r.status_code == 204 and r.content == b""
    assert post(srv, "/v1/auth/refresh",
                {"refreshToken": session["refreshToken"]}).status_code == 401


def test_validation_and_mass_assignment(srv):
    r = post(srv, "/v1/auth/register", {"username": "x", "email": "nope", "password": "short",
                                        "role": "admin"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "validation_failed"
    assert set(err["fields"]) == {"username", "email", "password", "role"}
    r = post(srv, "/v1/auth/register", {"username": "common_pw_user", "email": "c@example.com",
                                        "password": "password123"})
    assert r.status_code == 400 and "common" in r.json()["error"]["message"]


def test_admin_routes_cache_and_ownership(srv):
    admin = create_admin(srv)
    a, b = register(srv), register(srv)
    # A user lists nothing, reads only themself.
    assert req(srv, "GET", "/v1/users", a["accessToken"]).status_code == 403
    assert req(srv, "GET", "/v1/users/" + b["userId"], a["accessToken"]).status_code == 403
    # The admin lists and searches.
    r = req(srv, "GET", "/v1/users?limit=1&page=1&search=" + a["username"].upper(),
            admin["accessToken"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["total"], doc["page"], doc["limit"]) == (1, 1, 1)
    assert doc["users"][0]["id"] == a["userId"]
    assert req(srv, "GET", "/v1/users?limit=101", admin["accessToken"]).status_code == 400
    # A cached read, then an update: the next read shows it.
    assert req(srv, "GET", "/v1/users/" + a["userId"], admin["accessToken"]).status_code == 200
    r = req(srv, "PUT", "/v1/users/" + a["userId"], a["accessToken"], {"lastName": "Byron"})
    assert r.status_code == 200 and r.json()["lastName"] == "Byron", r.text
    r = req(srv, "GET", "/v1/users/" + a["userId"], admin["accessToken"])
    assert r.json()["lastName"] == "Byron", r.text
    # Only an admin sets a role.
    assert req(srv, "PUT", "/v1/users/" + a["userId"], a["accessToken"],
               {"role": "admin"}).status_code == 400
    r = req(srv, "PUT", "/v1/users/" + b["userId"], admin["accessToken"], {"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    # Admin create, idempotent with a key.
    body = {"username": "made_" + uuid.uuid4().hex[:8], "email": "m%s@example.com"
            % uuid.uuid4().hex[:8], "password": "made by admin", "role": "user"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = post(srv, "/v1/users", body, token=admin["accessToken"], headers=key)
    again = post(srv, "/v1/users", body, token=admin["accessToken"], headers=key)
    assert first.status_code == again.status_code == 201, first.text
    assert first.json() == again.json() and first.headers["Location"] == again.headers["Location"]
    # A password change ends the user's sessions and access tokens; a delete ends the user.
    r = req(srv, "PUT", "/v1/users/" + a["userId"], a["accessToken"], {"password": "brand new pw"})
    assert r.status_code == 200
    assert post(srv, "/v1/auth/refresh", {"refreshToken": a["refreshToken"]}).status_code == 401
    assert req(srv, "GET", "/v1/users/me", a["accessToken"]).status_code == 401
    r = post(srv, "/v1/auth/login", {"username": a["username"], "password": "brand new pw"})
    assert r.status_code == 200, r.text
    a["accessToken"] = r.json()["accessToken"]
    assert req(srv, "DELETE", "/v1/users/" + a["userId"], a["accessToken"]).status_code == 204
    assert req(srv, "GET", "/v1/users/me", a["accessToken"]).status_code == 401
    assert req(srv, "DELETE", "/v1/users/" + a["userId"],
               admin["accessToken"]).status_code == 404


def test_one_of_50_concurrent_registrations_wins(srv):
    name = "race_" + uuid.uuid4().hex[:10]

    def attempt(i):
        return post(srv, "/v1/auth/register", {"username": name, "email": "%s_%d@example.com"
                                               % (name, i), "password": "race password"})
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        codes = sorted(r.status_code for r in pool.map(attempt, range(50)))
    assert codes == [201] + [409] * 49, codes


def test_failed_logins_are_throttled_per_account(db):
    s = user_server(db, login_limit="2")
    try:
        s.start(timeout=30)
        a = register(s)
        for _ in range(2):
            assert post(s, "/v1/auth/login", {"username": a["username"],
                                              "password": "wrong wrong"}).status_code == 401
        r = post(s, "/v1/auth/login", {"email": a["email"], "password": a["password"]})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.text
        # Guesses sent in parallel cannot get past the limit either.
        b = register(s)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            codes = sorted(pool.map(lambda i: post(s, "/v1/auth/login", {
                "username": b["username"], "password": "guess %d" % i}).status_code, range(12)))
        assert codes == [401, 401] + [429] * 10, codes
    finally:
        s.cleanup()


def test_stale_hash_is_rehashed_at_login(db, srv):
    a = register(srv)
    assert psql(db, "SELECT password_hash FROM users WHERE id = '%s'"
                % a["userId"]).startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    s = user_server(db, argon2_t="3")
    try:
        s.start(timeout=30)
        r = post(s, "/v1/auth/login", {"username": a["username"], "password": a["password"]})
        assert r.status_code == 200, r.text
        assert psql(db, "SELECT password_hash FROM users WHERE id = '%s'"
                    % a["userId"]).startswith("$argon2id$v=19$m=19456,t=3,p=1$")
    finally:
        s.cleanup()
    # The old server's parameters still verify the new hash.
    assert post(srv, "/v1/auth/login", {"username": a["username"],
                                        "password": a["password"]}).status_code == 200


def test_works_without_redis(db):
    s = user_server(db, redis="unix:/nonexistent/redis.sock")
    try:
        s.start(timeout=30)
        a = register(s)
        r = req(s, "GET", "/v1/users/" + a["userId"], a["accessToken"])
        assert r.status_code == 200, r.text
        r = req(s, "PUT", "/v1/users/" + a["userId"], a["accessToken"], {"firstName": "Q"})
        assert r.status_code == 200 and r.json()["firstName"] == "Q"
        assert post(s, "/v1/auth/login", {"username": a["username"],
                                          "password": a["password"]}).status_code == 200
    finally:
        s.cleanup()


def test_openapi_describes_every_route(srv):
    doc = requests.get(srv.url("/openapi.json"), timeout=10).json()
    for path, methods in {"/v1/auth/register": ["post"], "/v1/auth/login": ["post"],
                          "/v1/auth/refresh": ["post"], "/v1/auth/logout": ["post"],
                          "/v1/users/me": ["get"], "/v1/users": ["get", "post"],
                          "/v1/users/{userId}": ["get", "put", "delete"]}.items():
        for m in methods:
            assert "responses" in doc["paths"][path][m], (path, m)
    # Component schemas are per plugin (issue 10): the user plugin's are served as user.*.
    assert "user.User" in doc["components"]["schemas"]
    openapi_check.validate(doc)
    openapi_check.assert_lists_every_route(srv, doc)


def test_refuses_to_start_without_a_token_secret(db):
    s = user_server(db)
    s.sections.pop("auth")
    s.write_conf()
    try:
        rc, _, err = s.check_config()
        assert rc != 0 and "token secret" in err, err
    finally:
        s.cleanup()


def test_check_config_lists_the_user_hooks_the_shipped_scripts_use(db):
    """The shipped password policy defines exactly the hook points the plugin declares."""
    s = user_server(db)
    try:
        rc, out, err = s.check_config()
        assert rc == 0, err
        # Other plugins' shipped scripts (e.g. the task policy) are noted when their plugin
        # is not enabled; the user plugin's own policy must not be.
        assert not [line for line in out.splitlines()
                    if line.startswith("note: lua:") and "40-password-policy.lua" in line], out
        hooks = out.split("hooks:\n", 1)[1]
        for name in ("before_user_register", "before_user_update"):
            assert re.search(r"^  %s +user +checks or changes " % name, hooks, re.M), out
    finally:
        s.cleanup()
