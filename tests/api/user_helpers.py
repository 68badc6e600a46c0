"""Shared helpers for the black-box tests of the `user` plugin (API.md, "Users and auth"):
test_user_auth.py, test_user_users.py and test_user_matrix.py.

Needs the services' environment (PANTHERA_PGHOST, PANTHERA_PGPORT, PANTHERA_PGDATABASE,
PANTHERA_PGUSER, PANTHERA_REDIS_SOCKET; PANTHERA_RUNDIR for the test that stops Redis):
the modules are skipped without it. Each module works in a database of its own (CREATE
DATABASE ... / DROP DATABASE ... WITH (FORCE)), so modules never see each other's users.

Locks: every test holds the shared PostgreSQL lock of test_pg_pool.py and the shared Redis
lock of test_pools.py / test_ratelimit.py (same files, same protocol), so a concurrent
test run never restarts PostgreSQL or stops Redis under these tests; the one test that
stops Redis takes the Redis lock exclusively.

Every request made through `call()` is checked for what must hold for every answer of
the plugin: an `X-Request-Id`, a JSON error shape on 4xx/5xx, and no password or password
hash anywhere in the body (every password the helpers ever sent is remembered).
"""
import base64
import contextlib
import json
import os
import re
import subprocess
import time
import uuid

import pytest

from services import Redis, pg_lock, redis_lock  # noqa: F401 (used by test modules)
import requests

from panthera_server import PANTHERAD, REPO, Server

PG_VARS = ("PANTHERA_PGHOST", "PANTHERA_PGPORT", "PANTHERA_PGDATABASE", "PANTHERA_PGUSER")
HAVE_SERVICES = all(os.environ.get(v) for v in PG_VARS) and bool(
    os.environ.get("PANTHERA_REDIS_SOCKET"))
needs_services = pytest.mark.skipif(
    not HAVE_SERVICES,
    reason="PANTHERA_PGHOST/PGPORT/PGDATABASE/PGUSER and PANTHERA_REDIS_SOCKET must be set: "
    "run through scripts/dev test, or start the services with scripts/dev services and "
    "export the variables in .run/env")

PG_BIN = os.environ.get("PANTHERA_PG_BIN", "/usr/lib/postgresql/15/bin")
SECRET = "Vb7Nq2Lx9Rt4Kw8Zm3Pd6Hj1Sf5Yg0Ca2Xe7Tu4Oi9Mr3Wn6"  # 48 characters
assert len(SECRET) == 48
TIMEOUT = 10
FAST_SCRYPT = {"scrypt_n": "16384"}
USER_KEYS = {"id", "username", "email", "firstName", "lastName", "role", "createdAt",
             "updatedAt"}
TOKEN_KEYS = {"userId", "username", "accessToken", "refreshToken", "expiresIn"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]00:?00)$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
SHIPPED_LUA = os.path.join(REPO, "scripts", "lua")
PLUGIN_README = os.path.join(REPO, "plugins", "user", "README.md")

# Every password a helper sent: none may ever appear in a response body.
PASSWORDS = set()


@contextlib.contextmanager
def shared_services(redis=True):
    with pg_lock(False):
        if redis:
            with redis_lock(False):
                yield
        else:
            yield


# ---- PostgreSQL: a database per module ----

def _pg_args():
    e = os.environ
    return ["-h", e["PANTHERA_PGHOST"], "-p", e.get("PANTHERA_PGPORT", "5432"),
            "-U", e.get("PANTHERA_PGUSER", "panthera")]


def psql(db, sql):
    p = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                        *_pg_args(), "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def wait_pg(seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        p = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q", *_pg_args()[:4]],
                           timeout=10)
        if p.returncode == 0:
            return True
        time.sleep(0.1)
    return False


def create_database(prefix="usr"):
    assert wait_pg(), "PostgreSQL is not ready"
    name = "%s_%s" % (prefix, uuid.uuid4().hex[:12])
    psql(os.environ.get("PANTHERA_PGDATABASE", "panthera"), "CREATE DATABASE " + name)
    return name


def drop_database(name):
    try:
        psql(os.environ.get("PANTHERA_PGDATABASE", "panthera"),
             "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    except Exception:
        pass


def dump_database(db):
    """Every byte of data in `db` (pg_dump --data-only), as text."""
    p = subprocess.run([os.path.join(PG_BIN, "pg_dump"), "--data-only", *_pg_args(), db],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def conninfo(db):
    e = os.environ
    return "host=%s port=%s dbname=%s user=%s" % (
        e["PANTHERA_PGHOST"], e.get("PANTHERA_PGPORT", "5432"), db,
        e.get("PANTHERA_PGUSER", "panthera"))


# ---- the server ----

def user_server(db, *, config=None, lua_dir=None, workers=2, auth=None):
    """A Server with the user plugin on database `db` and the shared Redis (not started).
    `config` is the [plugin:user] section (default: scrypt_n=16384 only)."""
    sections = {
        "postgres": {"conninfo": conninfo(db), "wait_timeout": "2s"},
        "redis": {"address": "unix:" + os.environ["PANTHERA_REDIS_SOCKET"]},
        "auth": dict(auth or {"token_secret": SECRET}),
    }
    if lua_dir:
        sections["lua"] = {"dir": lua_dir}
    return Server(workers=workers, plugins=("user",),
                  plugin_config={"user": dict(FAST_SCRYPT if config is None else config)},
                  sections=sections)


@contextlib.contextmanager
def module_env(prefix, **server_kwargs):
    """A fresh database and a started user server on it; both gone afterwards."""
    with shared_services():
        db = create_database(prefix)
    s = user_server(db, **server_kwargs)
    try:
        with shared_services():
            s.start(timeout=30)
        yield db, s
    finally:
        s.cleanup()
        drop_database(db)


def run_cli(server, *args, stdin=b"", timeout=60):
    """pantherad -c CONF ARGS... with `stdin` -> (returncode, stdout, stderr)."""
    p = subprocess.run([PANTHERAD, "-c", server.conf_path, *args], input=stdin,
                       capture_output=True, timeout=timeout, cwd=server.tmp,
                       start_new_session=True)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def create_admin_cli(server, username, email, password, timeout=60):
    """pantherad -c CONF user:create-admin USERNAME EMAIL, the password on stdin."""
    remember(password)
    return run_cli(server, "user:create-admin", username, email,
                   stdin=(password + "\n").encode(), timeout=timeout)


# ---- requests ----

def uniq(prefix="u"):
    """A valid, unique username (letters, digits, '_'; at most 30 characters)."""
    return ("%s_%s" % (prefix, uuid.uuid4().hex[:14]))[:30]


def remember(password):
    """Track a password so no response may ever contain it (only distinctive ones: a short
    word could legitimately appear in a message)."""
    if isinstance(password, str) and len(password) >= 8:
        PASSWORDS.add(password)


def strong_password():
    pw = "Pw-%s-9x!" % uuid.uuid4().hex[:12]
    remember(pw)
    return pw


def bearer(token):
    return {"Authorization": "Bearer " + token} if token else {}


def _check_secret_free(resp):
    text = resp.text
    for pw in PASSWORDS:
        assert pw not in text, "a password appears in a response: %s %s -> %s" % (
            resp.request.method, resp.request.url, text[:300])
    if resp.headers.get("Content-Type", "").startswith("application/json") and text:
        try:
            doc = resp.json()
        except ValueError:
            return
        bad = []

        def walk(v, path):
            if isinstance(v, dict):
                for k, x in v.items():
                    if path == "error.fields":
                        continue  # validation messages are keyed by field name
                    kl = k.lower()
                    if "password" in kl or "hash" in kl or "salt" in kl:
                        bad.append(path + "." + k)
                    walk(x, (path + "." + k).lstrip("."))
            elif isinstance(v, list):
                for x in v:
                    walk(x, path + "[]")
            elif isinstance(v, str) and v.startswith(("$scrypt$", "$7$", "scrypt$", "$argon2")):
                bad.append(path)
        walk(doc, "")
        assert not bad, "password material in a response (%s): %s" % (bad, text[:300])


def call(server, method, path, *, token=None, json_body=None, data=None, headers=None,
         params=None, timeout=TIMEOUT, session=None):
    h = bearer(token)
    h.update(headers or {})
    kw = {"headers": h, "params": params, "timeout": timeout}
    if data is not None:
        kw["data"] = data
    elif json_body is not None:
        kw["json"] = json_body
    r = (session or requests).request(method, server.url(path), **kw)
    assert r.headers.get("X-Request-Id"), (method, path, r.status_code, r.headers)
    if r.status_code >= 400:
        ctype = r.headers.get("Content-Type", "")
        assert ctype.startswith("application/json"), (method, path, r.status_code, ctype,
                                                      r.text[:300])
        doc = r.json()
        assert isinstance(doc, dict) and set(doc) == {"error"}, (method, path, r.text[:300])
        assert isinstance(doc["error"].get("code"), str), doc
        assert isinstance(doc["error"].get("message"), str) and doc["error"]["message"], doc
    _check_secret_free(r)
    return r


def describe(r):
    return "%s %s -> %s %s" % (r.request.method, r.request.url, r.status_code, r.text[:400])


def assert_error(r, status, code=None, fields=()):
    """The API.md error shape; `code` may be a string or a tuple of accepted codes;
    every name in `fields` must be a key of error.fields."""
    statuses = status if isinstance(status, (tuple, set, list)) else (status,)
    assert r.status_code in statuses, describe(r)
    assert r.headers.get("Content-Type", "").startswith("application/json"), describe(r)
    doc = r.json()
    assert set(doc) == {"error"}, describe(r)
    err = doc["error"]
    if code is not None:
        codes = code if isinstance(code, (tuple, set, list)) else (code,)
        assert err.get("code") in codes, describe(r)
    assert isinstance(err.get("message"), str) and err["message"], describe(r)
    assert set(err) <= {"code", "message", "fields"}, describe(r)
    for f in fields:
        assert isinstance(err.get("fields"), dict) and f in err["fields"], \
            "error.fields should name %r: %s" % (f, describe(r))
    return err


def assert_401(r):
    err = assert_error(r, 401, "unauthorized")
    return err


def assert_401_bearer(r):
    """401 for a missing/invalid token: with WWW-Authenticate: Bearer."""
    err = assert_error(r, 401, "unauthorized")
    assert r.headers.get("WWW-Authenticate", "").split(" ")[0].lower() == "bearer", describe(r)
    return err


def assert_user(doc, **expect):
    assert isinstance(doc, dict), doc
    assert set(doc) == USER_KEYS, "User keys %s != %s" % (sorted(doc), sorted(USER_KEYS))
    assert UUID_RE.match(doc["id"]), doc
    assert doc["role"] in ("user", "admin"), doc
    for k in ("createdAt", "updatedAt"):
        assert isinstance(doc[k], str) and RFC3339_UTC.match(doc[k]), (k, doc)
    for k, v in expect.items():
        assert doc[k] == v, (k, doc)
    return doc


def assert_tokens(r, status, username=None):
    assert r.status_code == status, describe(r)
    doc = r.json()
    assert set(doc) == TOKEN_KEYS, "token answer keys %s != %s" % (sorted(doc), sorted(TOKEN_KEYS))
    assert UUID_RE.match(doc["userId"]), doc
    assert isinstance(doc["accessToken"], str) and doc["accessToken"].count(".") == 2, doc
    assert isinstance(doc["refreshToken"], str) and len(doc["refreshToken"]) >= 16, doc
    assert doc["accessToken"] != doc["refreshToken"], doc
    assert isinstance(doc["expiresIn"], int) and not isinstance(doc["expiresIn"], bool) \
        and doc["expiresIn"] > 0, doc
    if username is not None:
        assert doc["username"] == username, doc
    claims = jwt_claims(doc["accessToken"])
    assert claims.get("sub") == doc["userId"], claims
    assert claims.get("role") in ("user", "admin"), claims
    assert isinstance(claims.get("exp"), int), claims
    assert not [k for k in claims if "pass" in k.lower() or "hash" in k.lower()], claims
    if isinstance(claims.get("iat"), int):
        assert abs(claims["exp"] - claims["iat"] - doc["expiresIn"]) <= 2, (claims, doc)
    return doc


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Account:
    """A registered (or CLI-created) user: id, username, email, password and its tokens."""

    def __init__(self, username, email, password, tokens=None):
        self.username, self.email, self.password = username, email, password
        self.id = tokens["userId"] if tokens else None
        self.access = tokens["accessToken"] if tokens else None
        self.refresh = tokens["refreshToken"] if tokens else None

    def __repr__(self):
        return "<Account %s %s>" % (self.username, self.id)


_UNSET = object()


def register_body(username=_UNSET, email=_UNSET, password=_UNSET, **extra):
    """A register body; every field given is sent as is (even "" or None)."""
    if username is _UNSET:
        username = uniq()
    if email is _UNSET:
        local = username.lower().replace("_", "-") if isinstance(username, str) and username \
            else uuid.uuid4().hex
        email = "%s@example.com" % local
    if password is _UNSET:
        password = strong_password()
    body = {"username": username, "email": email, "password": password}
    remember(password)
    body.update(extra)
    return body


def register(server, username=_UNSET, email=_UNSET, password=_UNSET, **extra):
    """Register a user (201 expected) and return an Account with its tokens."""
    body = register_body(username, email, password, **extra)
    r = call(server, "POST", "/v1/auth/register", json_body=body)
    doc = assert_tokens(r, 201, body["username"])
    loc = r.headers.get("Location", "")
    assert loc.endswith("/v1/users/" + doc["userId"]), describe(r) + " Location=%r" % loc
    return Account(body["username"], body["email"], body["password"], doc)


def login(server, password, *, username=None, email=None, expect=200):
    body = {"password": password}
    if username is not None:
        body["username"] = username
    if email is not None:
        body["email"] = email
    r = call(server, "POST", "/v1/auth/login", json_body=body)
    if expect == 200:
        assert_tokens(r, 200)
    return r


def login_account(server, acct):
    r = login(server, acct.password, username=acct.username)
    doc = r.json()
    acct.access, acct.refresh = doc["accessToken"], doc["refreshToken"]
    return acct


def make_admin(server, name_prefix="admin"):
    """The first admin, made on the command line, then logged in."""
    username = uniq(name_prefix)
    email = "%s@admin.example.com" % username.lower().replace("_", "-")
    password = strong_password()
    rc, out, err = create_admin_cli(server, username, email, password)
    assert rc == 0, "user:create-admin exited %s\nstdout: %s\nstderr: %s\n%s" % (
        rc, out, err, server.error_log()[-2000:])
    acct = Account(username, email, password)
    r = login(server, password, username=username)
    doc = r.json()
    acct.id, acct.access, acct.refresh = doc["userId"], doc["accessToken"], doc["refreshToken"]
    assert jwt_claims(acct.access).get("role") == "admin", jwt_claims(acct.access)
    return acct


def readme_text():
    try:
        with open(PLUGIN_README, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


# ---- the shared Redis, stopped and started the way scripts/lib/services.sh does ----

