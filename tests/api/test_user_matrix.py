"""Authorization matrix of the user plugin (API.md, "Users and auth", column "who"): every
endpoint called by an anonymous client, by the user themself, by another user, by an admin
and with a bad token (garbage, expired, signed with another secret), each with the
status the contract gives; mutations are then checked to have happened exactly when
allowed. Plus 405 + Allow for methods a path does not have.

Runs against its own database with scrypt_n=16384; the admin comes from the command line.
"""
import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest

from user_helpers import (
    SECRET, assert_error, call, describe, login_account, make_admin, module_env,
    needs_services, register, register_body, shared_services)

pytestmark = needs_services

CALLERS = ("anon", "self", "other", "admin")
ANY_USER = ("self", "other")

# endpoint -> (method, path, body kind), expected status per caller (a tuple: any of them).
# "self" is the target user; for endpoints without a target it is just a plain user.
MATRIX = {
    "register": ("POST", "/v1/auth/register", "new_user",
                 {"anon": 201, "self": 201, "other": 201, "admin": 201}),
    "login": ("POST", "/v1/auth/login", "target_login",
              {"anon": 200, "self": 200, "other": 200, "admin": 200}),
    "refresh": ("POST", "/v1/auth/refresh", "target_refresh",
                {"anon": 200, "self": 200, "other": 200, "admin": 200}),
    "logout": ("POST", "/v1/auth/logout", "own_refresh",
               {"anon": 401, "self": 204, "other": 204, "admin": 204}),
    "me": ("GET", "/v1/users/me", None,
           {"anon": 401, "self": 200, "other": 200, "admin": 200}),
    "list": ("GET", "/v1/users", None,
             {"anon": 401, "self": 403, "other": 403, "admin": 200}),
    "create": ("POST", "/v1/users", "new_user",
               {"anon": 401, "self": 403, "other": 403, "admin": 201}),
    "get": ("GET", "/v1/users/{target}", None,
            {"anon": 401, "self": 200, "other": 403, "admin": 200}),
    "update": ("PUT", "/v1/users/{target}", "names",
               {"anon": 401, "self": 200, "other": 403, "admin": 200}),
    "delete": ("DELETE", "/v1/users/{target}", None,
               {"anon": 401, "self": 204, "other": 403, "admin": 204}),
    # A well-formed id nobody has: only an admin learns it is missing.
    "get_missing": ("GET", "/v1/users/{missing}", None,
                    {"anon": 401, "self": (403, 404), "other": (403, 404), "admin": 404}),
    "update_missing": ("PUT", "/v1/users/{missing}", "names",
                       {"anon": 401, "self": (403, 404), "other": (403, 404), "admin": 404}),
    "delete_missing": ("DELETE", "/v1/users/{missing}", None,
                       {"anon": 401, "self": (403, 404), "other": (403, 404), "admin": 404}),
}
PROTECTED = [name for name, (_, _, _, exp) in MATRIX.items() if exp["anon"] == 401]
CODES = {200: None, 201: None, 204: None, 401: "unauthorized", 403: "forbidden",
         404: "not_found"}


@pytest.fixture(scope="module")
def env():
    with module_env("usr_matrix") as (db, s):
        yield db, s


@pytest.fixture(scope="module")
def srv(env):
    return env[1]


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


@pytest.fixture(scope="module")
def people(srv):
    with shared_services():
        return {"admin": make_admin(srv), "other": register(srv, firstName="Other")}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims, secret=SECRET, header=None):
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


def claims_of(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def forged_from(token, **changes):
    """The claims of a real token, changed, re-signed with the right secret."""
    claims = claims_of(token)
    claims.update(changes)
    return sign(claims)


def body_for(kind, caller, target):
    if kind is None:
        return None
    if kind == "new_user":
        return register_body()
    if kind == "target_login":
        return {"username": target.username, "password": target.password}
    if kind == "target_refresh":
        return {"refreshToken": target.refresh}
    if kind == "own_refresh":
        return {"refreshToken": caller.refresh if caller else target.refresh}
    if kind == "names":
        return {"firstName": "Matrix-" + uuid.uuid4().hex[:6]}
    raise AssertionError(kind)


def run_case(srv, people, endpoint, who, target, token_override=None):
    method, path, kind, _ = MATRIX[endpoint]
    caller = {"anon": None, "self": target, "other": people["other"],
              "admin": people["admin"]}[who]
    if kind == "own_refresh" and caller is not None and caller is not target:
        login_account(srv, caller)  # a fresh refresh token of its own to spend
    body = body_for(kind, caller, target)
    p = path.format(target=target.id, missing=str(uuid.uuid4()))
    token = token_override if token_override is not None else (caller.access if caller else None)
    return call(srv, method, p, token=token, json_body=body), body


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_matrix(srv, people, endpoint, who):
    target = register(srv, firstName="Target")
    before = call(srv, "GET", "/v1/users/" + target.id, token=people["admin"].access).json()
    r, body = run_case(srv, people, endpoint, who, target)
    want = MATRIX[endpoint][3][who]
    want = want if isinstance(want, tuple) else (want,)
    assert r.status_code in want, "%s as %s: want %s, got %s" % (endpoint, who, want,
                                                               describe(r))
    if r.status_code >= 400:
        assert_error(r, r.status_code, CODES[r.status_code])
        if r.status_code == 401:
            assert r.headers.get("WWW-Authenticate", "").lower().startswith("bearer"), \
                describe(r)
    if r.status_code == 204:
        assert r.content == b""

    # What happened to the target is what the answer says.
    after = call(srv, "GET", "/v1/users/" + target.id, token=people["admin"].access)
    if endpoint == "delete":
        if r.status_code == 204:
            assert_error(after, 404, "not_found")
        else:
            assert after.status_code == 200 and after.json() == before, describe(after)
    elif endpoint == "update":
        assert after.status_code == 200, describe(after)
        if r.status_code == 200:
            assert after.json()["firstName"] == body["firstName"]
            assert r.json()["firstName"] == body["firstName"]
        else:
            assert after.json()["firstName"] == "Target", after.json()
    else:
        assert after.status_code == 200, describe(after)
    if endpoint == "create":
        # Created exactly when 201, and then by an admin only.
        r2 = call(srv, "POST", "/v1/auth/login",
                  json_body={"username": body["username"], "password": body["password"]})
        assert r2.status_code == (200 if r.status_code == 201 else 401), describe(r2)
    if endpoint == "logout":
        refresh = body["refreshToken"]
        r2 = call(srv, "POST", "/v1/auth/refresh", json_body={"refreshToken": refresh})
        assert r2.status_code == (401 if r.status_code == 204 else 200), describe(r2)


BAD_TOKENS = ("garbage", "expired", "other_secret", "alg_none", "no_exp")
# A well-signed token whose subject does not exist (any more) only matters where the
# caller's own record is read.
BAD_CASES = [(e, b) for e in PROTECTED for b in BAD_TOKENS] + [
    ("me", "unknown_user"), ("logout", "unknown_user")]


@pytest.mark.parametrize("endpoint,bad", BAD_CASES)
def test_bad_tokens_are_401(srv, people, endpoint, bad):
    target = register(srv, firstName="Target")
    real = target.access
    claims = claims_of(real)
    now = int(time.time())
    token = {
        "garbage": "garbage",
        "expired": forged_from(real, exp=now - 3600, iat=now - 7200),
        "other_secret": sign(claims, secret="x" * 48),
        "alg_none": "%s.%s." % (b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()),
                                real.split(".")[1]),
        "no_exp": sign({k: v for k, v in claims.items() if k != "exp"}),
        # Well signed, but its subject does not exist (any more).
        "unknown_user": forged_from(real, sub=str(uuid.uuid4())),
    }[bad]
    r, _ = run_case(srv, people, endpoint, "self", target, token_override=token)
    # A well-signed token for a subject that does not exist is no caller at all: 401 like
    # the others (the caller check says "this account does not exist"), never a 404 that
    # would tell ids apart.
    assert_error(r, 401, "unauthorized")
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("bearer"), describe(r)
    # The target is untouched.
    after = call(srv, "GET", "/v1/users/" + target.id, token=people["admin"].access)
    assert after.status_code == 200 and after.json()["firstName"] == "Target", describe(after)


def test_forged_admin_role_in_a_user_token_is_not_trusted_without_the_secret(srv, people):
    target = register(srv)
    p = target.access.split(".")
    claims = claims_of(target.access)
    claims["role"] = "admin"
    tampered = "%s.%s.%s" % (p[0], b64url(json.dumps(claims).encode()), p[2])
    r = call(srv, "GET", "/v1/users", token=tampered)
    assert_error(r, 401, "unauthorized")


def test_a_promoted_user_gets_admin_rights_on_the_next_login(srv, people):
    a = register(srv)
    assert call(srv, "GET", "/v1/users", token=a.access).status_code == 403
    r = call(srv, "PUT", "/v1/users/" + a.id, token=people["admin"].access,
             json_body={"role": "admin"})
    assert r.status_code == 200, describe(r)
    login_account(srv, a)
    r = call(srv, "GET", "/v1/users", token=a.access)
    assert r.status_code == 200, describe(r)
    # And may now read and change someone else.
    o = people["other"]
    assert call(srv, "GET", "/v1/users/" + o.id, token=a.access).status_code == 200


@pytest.mark.parametrize("method,path,allowed", [
    ("PATCH", "/v1/users/{id}", {"GET", "PUT", "DELETE"}),
    ("POST", "/v1/users/{id}", {"GET", "PUT", "DELETE"}),
    ("DELETE", "/v1/users", {"GET", "POST"}),
    ("PUT", "/v1/users", {"GET", "POST"}),
    ("GET", "/v1/auth/login", {"POST"}),
    ("GET", "/v1/auth/register", {"POST"}),
    ("DELETE", "/v1/auth/refresh", {"POST"}),
    ("GET", "/v1/auth/logout", {"POST"}),
])
def test_405_with_allow(srv, people, method, path, allowed):
    r = call(srv, method, path.format(id=people["other"].id), token=people["admin"].access,
             json_body={} if method in ("POST", "PUT", "PATCH") else None)
    assert_error(r, 405)
    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert allowed <= allow, (allow, describe(r))

