"""The user plugin's auth endpoints (API.md, "Users and auth"): register, login, refresh,
logout, GET /v1/users/me, validation, uniqueness, the first admin from the command line,
the Lua password policy and the login rate limit. Black-box: HTTP and the pantherad
command line only (plus pg_dump to check no plaintext password is stored).

Runs against its own database; the default scrypt parameters are used once (one server),
everything else uses scrypt_n=16384 so the module stays fast. Every request has a
timeout; user_helpers.call() checks every answer for X-Request-Id, the error shape and the
absence of passwords and hashes.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import time
import uuid

import pytest
import requests

from panthera_server import CEILING, ServerError
from user_helpers import (
    FAST_SCRYPT, PASSWORDS, SECRET, SHIPPED_LUA, TIMEOUT, assert_401, assert_401_bearer,
    assert_error, assert_tokens, assert_user, call, create_admin_cli, describe, dump_database,
    jwt_claims, login, make_admin, module_env, needs_services, psql, readme_text, register,
    register_body, remember, run_cli, shared_services, strong_password, uniq, user_server)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with module_env("usr_auth") as (db, s):
        yield db, s


@pytest.fixture(scope="module")
def srv(env):
    return env[1]


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


def post(s, path, body, token=None):
    return call(s, "POST", path, json_body=body, token=token)


# ---- register ----

def test_register_201_shape_location_and_token(srv):
    body = register_body(firstName="Ada", lastName="Lovelace")
    r = post(srv, "/v1/auth/register", body)
    doc = assert_tokens(r, 201, body["username"])
    assert r.headers.get("Location", "").endswith("/v1/users/" + doc["userId"]), r.headers
    claims = jwt_claims(doc["accessToken"])
    assert claims["sub"] == doc["userId"] and claims["role"] == "user", claims
    r = call(srv, "GET", "/v1/users/me", token=doc["accessToken"])
    assert r.status_code == 200, describe(r)
    assert_user(r.json(), id=doc["userId"], username=body["username"], email=body["email"],
                firstName="Ada", lastName="Lovelace", role="user")


def test_register_without_names(srv):
    a = register(srv)
    r = call(srv, "GET", "/v1/users/me", token=a.access)
    assert r.status_code == 200, describe(r)
    u = assert_user(r.json(), username=a.username, email=a.email, role="user")
    assert u["firstName"] in (None, "") and u["lastName"] in (None, ""), u


@pytest.mark.parametrize("field", ["role", "id", "createdAt", "updatedAt"])
def test_register_mass_assignment_is_400_and_creates_nothing(srv, field):
    value = {"role": "admin", "id": str(uuid.uuid4()), "createdAt": "2000-01-01T00:00:00Z",
             "updatedAt": "2000-01-01T00:00:00Z"}[field]
    body = register_body(**{field: value})
    r = post(srv, "/v1/auth/register", body)
    assert_error(r, 400, ("validation_failed", "bad_request"), fields=[field])
    # Nothing was created: the same username and email register fine afterwards, as a user.
    body.pop(field)
    r = post(srv, "/v1/auth/register", body)
    doc = assert_tokens(r, 201, body["username"])
    assert jwt_claims(doc["accessToken"])["role"] == "user"
    if field == "id":
        assert doc["userId"] != value


def registered_events(db, **where):
    """user.registered events in the host's log matching `where` (payload fields)."""
    cond = " ".join("AND payload->>'%s' = '%s'" % (k, v) for k, v in where.items())
    out = psql(db, "SELECT aggregate_id || chr(9) || producer || chr(9) || payload::text "
                   "FROM panthera_events WHERE type = 'user.registered' %s ORDER BY id" % cond)
    return [line.split("\t") for line in out.splitlines() if line]


def test_register_emits_user_registered(env):
    db, srv = env
    body = register_body()
    h = {"Idempotency-Key": uuid.uuid4().hex}
    r = call(srv, "POST", "/v1/auth/register", json_body=body, headers=h)
    doc = assert_tokens(r, 201, body["username"])
    rows = registered_events(db, username=body["username"])
    assert len(rows) == 1, rows
    aggregate, producer, payload = rows[0]
    payload = json.loads(payload)
    assert aggregate == doc["userId"] and producer == "user", rows
    me = call(srv, "GET", "/v1/users/me", token=doc["accessToken"]).json()
    assert payload == {"userId": doc["userId"], "username": body["username"],
                       "createdAt": me["createdAt"]}, (payload, me)
    # The replayed answer of a retry is not a second registration.
    r = call(srv, "POST", "/v1/auth/register", json_body=body, headers=h)
    assert_tokens(r, 201, body["username"])
    assert len(registered_events(db, username=body["username"])) == 1


def test_failed_registration_emits_nothing(env):
    db, srv = env
    taken = register(srv)
    before = len(registered_events(db))
    # Taken name (409), taken email (409), invalid body (400): no event for any of them.
    for body, status in ((register_body(username=taken.username, email=uniq() + "@example.com"),
                          409),
                         (register_body(username=uniq(), email=taken.email), 409),
                         (register_body(username=uniq(), password="short"), 400)):
        r = post(srv, "/v1/auth/register", body)
        assert r.status_code == status, describe(r)
    assert len(registered_events(db, username=taken.username)) == 1
    assert len(registered_events(db)) == before, registered_events(db)[before:]


def test_register_is_idempotent_with_a_key(srv):
    body = register_body()
    h = {"Idempotency-Key": uuid.uuid4().hex}
    r1 = call(srv, "POST", "/v1/auth/register", json_body=body, headers=h)
    d1 = assert_tokens(r1, 201, body["username"])
    r2 = call(srv, "POST", "/v1/auth/register", json_body=body, headers=h)
    d2 = assert_tokens(r2, 201, body["username"])
    assert d2["userId"] == d1["userId"], (d1, d2)
    r3 = call(srv, "POST", "/v1/auth/register", json_body=dict(body, username=uniq()), headers=h)
    assert_error(r3, 409, "conflict")


def test_register_answer_is_stored_sealed(env):
    # The stored answer holds a working refresh token and the request a password: the
    # database alone must show neither (server/seal.h).
    db, srv = env
    body = register_body()
    key = uuid.uuid4().hex
    r = call(srv, "POST", "/v1/auth/register", json_body=body, headers={"Idempotency-Key": key})
    doc = assert_tokens(r, 201, body["username"])
    row = psql(db, "SELECT fingerprint || chr(9) || headers || chr(9) || body "
                   "FROM panthera_idempotency WHERE key = '%s'" % key).strip()
    fingerprint, headers, stored = row.split("\t")
    assert stored.startswith("sealed:v1:") and headers == ""
    for secret in (doc["refreshToken"], doc["accessToken"], body["password"], body["email"]):
        assert secret not in row
    plain = hashlib.sha256(("POST /v1/auth/register\n" + r.request.body.decode()).encode())
    assert fingerprint != plain.hexdigest()


def test_register_unknown_field_is_400(srv):
    r = post(srv, "/v1/auth/register", register_body(nickname="bob"))
    assert_error(r, 400, ("validation_failed", "bad_request"))


@pytest.mark.parametrize("username,ok", [
    ("abc", True), ("a" * 30, True), ("A.b_9", True), ("...", True), ("_9_", True),
    ("ab", False), ("a" * 31, False), ("bad name", False), ("bad-name", False),
    ("b\u00e4d", False), ("emoji\U0001F406", False), ("", False), ("semi;colon", False),
])
def test_register_username_rules(srv, username, ok):
    # The module has a database of its own: these fixed names are free.
    body = register_body(username=username, email="%s@example.com" % uuid.uuid4().hex)
    r = post(srv, "/v1/auth/register", body)
    if ok:
        assert_tokens(r, 201, username)
    else:
        assert_error(r, 400, "validation_failed", fields=["username"])


@pytest.mark.parametrize("pw,ok", [("\u00e9" * 7, False), ("\u00e9" * 8, True),
                                   ("\U0001F406" * 64, True), ("\U0001F406" * 65, False),
                                   ("\u00e9" * 4, False)])
def test_password_length_counts_characters_not_bytes(srv, pw, ok):
    remember(pw)
    body = register_body(password=pw)
    r = post(srv, "/v1/auth/register", body)
    if ok:
        assert_tokens(r, 201)
        assert_tokens(login(srv, pw, username=body["username"]), 200)
    else:
        assert_error(r, 400, "validation_failed", fields=["password"])


@pytest.mark.parametrize("length,ok", [(7, False), (8, True), (64, True), (65, False),
                                       (0, False)])
def test_register_password_length(srv, length, ok):
    pw = ("P9x-" + uuid.uuid4().hex * 3)[:length]
    remember(pw)
    r = post(srv, "/v1/auth/register", register_body(password=pw))
    if ok:
        assert_tokens(r, 201)
    else:
        assert_error(r, 400, "validation_failed", fields=["password"])


@pytest.mark.parametrize("email", ["first.last+tag@sub.example.co.uk", "x" * 64 + "@example.com",
                                   "UPPER.Case@Example.COM", "o'brien@example.org"])
def test_register_valid_emails(srv, email):
    body = register_body(email=email)
    assert_tokens(post(srv, "/v1/auth/register", body), 201, body["username"])
    assert_tokens(login(srv, body["password"], email=email), 200, body["username"])


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com",
                                   "a@@example.com", "", "x" * 300 + "@example.com",
                                   "a@b", "a@localhost", "a..b@example.com", ".a@example.com",
                                   "x" * 65 + "@example.com", "a@example.c0m", "a@-example.com",
                                   "a@example.com.", "a@exa mple.com", "a@example.com\n"])
def test_register_invalid_email(srv, email):
    r = post(srv, "/v1/auth/register", register_body(email=email))
    assert_error(r, 400, "validation_failed", fields=["email"])


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_register_missing_field(srv, missing):
    body = register_body()
    del body[missing]
    r = post(srv, "/v1/auth/register", body)
    assert_error(r, 400, "validation_failed", fields=[missing])


@pytest.mark.parametrize("field,value", [
    ("username", 12345), ("email", True), ("password", ["x" * 10]), ("firstName", 5),
    ("lastName", {"a": 1}), ("username", None), ("password", 123456789),
])
def test_register_wrong_types_name_the_field(srv, field, value):
    r = post(srv, "/v1/auth/register", register_body(**{field: value}))
    assert_error(r, 400, ("validation_failed", "bad_request"), fields=[field])


@pytest.mark.parametrize("field", ["firstName", "lastName"])
@pytest.mark.parametrize("value", ["N" * 10000, "N" * 101, "\u00e9" * 101, "bad\x01char",
                                   "new\nline"])
def test_register_oversized_or_bad_names_name_the_field(srv, field, value):
    """README: names at most 100 characters, any Unicode but control characters."""
    r = post(srv, "/v1/auth/register", register_body(**{field: value}))
    assert_error(r, 400, "validation_failed", fields=[field])


@pytest.mark.parametrize("raw", [
    b'{"username":"\xff\xfeabc","email":"a@example.com","password":"Whatever-123"}',
    b'{"username":"nul_name","email":"n@example.com","password":"Whatever-123",'
    b'"firstName":"a\\u0000b"}',
    b'{"username":"dup","username":"dup2","email":"d@example.com","password":"Whatever-123"}',
    b'"just a string"', b'null', b'',
])
def test_register_hostile_bodies_are_400(srv, raw):
    r = call(srv, "POST", "/v1/auth/register", data=raw,
             headers={"Content-Type": "application/json"})
    assert_error(r, 400, ("bad_request", "validation_failed"))


def test_register_names_of_100_characters(srv):
    first, last = "F" * 100, "\u00e9\U0001F406" * 50
    a = register(srv, firstName=first, lastName=last)
    r = call(srv, "GET", "/v1/users/me", token=a.access)
    assert_user(r.json(), firstName=first, lastName=last)


def test_register_several_bad_fields_are_all_named(srv):
    r = post(srv, "/v1/auth/register", {"username": "x", "email": "nope", "password": "short"})
    assert_error(r, 400, "validation_failed", fields=["username", "email", "password"])


def test_register_not_json(srv):
    r = call(srv, "POST", "/v1/auth/register", data=b"{not json",
             headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")
    r = call(srv, "POST", "/v1/auth/register", data=b"[1, 2]",
             headers={"Content-Type": "application/json"})
    assert_error(r, 400, ("bad_request", "validation_failed"))
    r = call(srv, "POST", "/v1/auth/register", data=b"username=a&password=b",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 415)


def test_unicode_names_round_trip(srv):
    first = "Zo\u00eb \U0001F406 \u65e5\u672c\u8a9e"
    last = "\u00d1\u00fa\u00f1ez-O'Brien \u05e2\u05d1\u05e8\u05d9\u05ea \"q\" \\"
    a = register(srv, firstName=first, lastName=last)
    r = call(srv, "GET", "/v1/users/me", token=a.access)
    assert r.status_code == 200, describe(r)
    assert_user(r.json(), firstName=first, lastName=last)
    r = call(srv, "GET", "/v1/users/" + a.id, token=a.access)
    assert r.status_code == 200, describe(r)
    assert_user(r.json(), firstName=first, lastName=last)


# ---- uniqueness ----

def test_duplicate_username_differing_in_case_is_409(srv):
    base = uniq("Dup")
    register(srv, username=base)
    for variant in (base, base.upper(), base.lower()):
        r = post(srv, "/v1/auth/register",
                 register_body(username=variant, email="%s@example.org" % uuid.uuid4().hex))
        assert_error(r, 409, "conflict")


def test_duplicate_email_differing_in_case_is_409(srv):
    email = "Mixed.%s@Example.COM" % uuid.uuid4().hex[:10]
    register(srv, email=email)
    for variant in (email, email.lower(), email.upper()):
        r = post(srv, "/v1/auth/register", register_body(email=variant))
        assert_error(r, 409, "conflict")


def test_50_concurrent_registrations_of_one_username(srv):
    username = uniq("race")
    pw = strong_password()
    results, errors = [], []
    barrier = threading.Barrier(50)

    def hit(i):
        try:
            barrier.wait(10)
            results.append(requests.post(
                srv.url("/v1/auth/register"),
                json={"username": username, "email": "race%d-%s@example.com" % (i, username),
                      "password": pw}, timeout=60))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=hit, args=(i,), daemon=True) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors[:3]
    codes = sorted(r.status_code for r in results)
    assert len(results) == 50
    assert codes.count(201) == 1 and codes.count(409) == 49, codes
    for r in results:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "conflict", r.text
    login(srv, pw, username=username)


# ---- login ----

def test_login_by_username_and_by_email(srv):
    a = register(srv)
    r = login(srv, a.password, username=a.username)
    doc = assert_tokens(r, 200, a.username)
    assert doc["userId"] == a.id
    r = login(srv, a.password, email=a.email)
    doc = assert_tokens(r, 200, a.username)
    assert doc["userId"] == a.id
    # The new tokens work.
    r = call(srv, "GET", "/v1/users/me", token=doc["accessToken"])
    assert r.status_code == 200 and r.json()["id"] == a.id, describe(r)


def test_wrong_password_and_unknown_user_same_401(srv):
    a = register(srv)
    wrong = login(srv, a.password + "x", username=a.username, expect=None)
    e1 = assert_401(wrong)
    unknown = login(srv, a.password, username=uniq("nobody"), expect=None)
    e2 = assert_401(unknown)
    assert e1["message"] == e2["message"], (e1, e2)
    wrong_email = login(srv, a.password + "x", email=a.email, expect=None)
    unknown_email = login(srv, a.password, email="nobody-%s@example.com" % uuid.uuid4().hex,
                          expect=None)
    assert assert_401(wrong_email)["message"] == assert_401(unknown_email)["message"] \
        == e1["message"]


@pytest.mark.parametrize("body", [
    {"username": "someone_abc", "email": "someone@example.com", "password": "whatever-123"},
    {"username": "someone_abc"},
    {"password": "whatever-123"},
    {},
    {"username": 5, "password": "whatever-123"},
    {"username": "someone_abc", "password": 12345678},
])
def test_login_bad_bodies_are_400(srv, body):
    r = post(srv, "/v1/auth/login", body)
    assert_error(r, 400, ("validation_failed", "bad_request"))


def test_login_not_json_is_400(srv):
    r = call(srv, "POST", "/v1/auth/login", data=b"{nope",
             headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")


# ---- refresh and logout ----

def refresh(srv, token):
    return post(srv, "/v1/auth/refresh", {"refreshToken": token})


def test_refresh_rotates_and_old_token_stops_working(srv):
    a = register(srv)
    r = refresh(srv, a.refresh)
    doc = assert_tokens(r, 200, a.username)
    assert doc["userId"] == a.id
    assert doc["refreshToken"] != a.refresh
    r = call(srv, "GET", "/v1/users/me", token=doc["accessToken"])
    assert r.status_code == 200, describe(r)
    assert_401(refresh(srv, a.refresh))  # rotated: the old one is dead


def test_refresh_reuse_revokes_the_whole_family(srv):
    a = register(srv)
    t0 = a.refresh
    t1 = assert_tokens(refresh(srv, t0), 200)["refreshToken"]
    t2 = assert_tokens(refresh(srv, t1), 200)["refreshToken"]
    assert_401(refresh(srv, t0))  # reuse of a revoked token ...
    assert_401(refresh(srv, t2))  # ... kills the newest of its family too
    assert_401(refresh(srv, t1))
    # Logging in again starts a new family that works.
    doc = assert_tokens(login(srv, a.password, username=a.username), 200)
    assert_tokens(refresh(srv, doc["refreshToken"]), 200)


@pytest.mark.parametrize("token", ["garbage", "", "x" * 5000, "a.b.c"])
def test_refresh_invalid_token_is_401(srv, token):
    assert_401(refresh(srv, token))


def test_refresh_with_an_access_token_is_401(srv):
    a = register(srv)
    assert_401(refresh(srv, a.access))


def test_refresh_bad_body(srv):
    r = post(srv, "/v1/auth/refresh", {})
    assert_error(r, (400, 401))
    r = post(srv, "/v1/auth/refresh", {"refreshToken": 42})
    assert_error(r, (400, 401))


def test_logout_204_then_refresh_401(srv):
    a = register(srv)
    r = post(srv, "/v1/auth/logout", {"refreshToken": a.refresh}, token=a.access)
    assert r.status_code == 204, describe(r)
    assert r.content == b""
    assert_401(refresh(srv, a.refresh))


def test_logout_needs_a_token(srv):
    a = register(srv)
    r = post(srv, "/v1/auth/logout", {"refreshToken": a.refresh})
    assert_401_bearer(r)
    r = post(srv, "/v1/auth/logout", {"refreshToken": a.refresh}, token="not.a.jwt")
    assert_401_bearer(r)
    # Neither attempt revoked anything.
    assert_tokens(refresh(srv, a.refresh), 200)


def test_logout_of_someone_elses_refresh_token_does_not_revoke_it(srv):
    """README: someone else's token is 401 and stays valid."""
    a, b = register(srv), register(srv)
    r = post(srv, "/v1/auth/logout", {"refreshToken": a.refresh}, token=b.access)
    assert_401(r)
    assert_tokens(refresh(srv, a.refresh), 200)


def test_logout_revokes_the_family_not_other_sessions(srv):
    a = register(srv)
    s1 = a.refresh
    s1b = assert_tokens(refresh(srv, s1), 200)["refreshToken"]
    s2 = assert_tokens(login(srv, a.password, username=a.username), 200)["refreshToken"]
    r = post(srv, "/v1/auth/logout", {"refreshToken": s1b}, token=a.access)
    assert r.status_code == 204, describe(r)
    assert_401(refresh(srv, s1b))
    assert_tokens(refresh(srv, s2), 200)  # another login's session lives on


# ---- /v1/users/me ----

def test_me(srv):
    a = register(srv, firstName="Grace", lastName="Hopper")
    r = call(srv, "GET", "/v1/users/me", token=a.access)
    assert r.status_code == 200, describe(r)
    assert r.headers.get("Content-Type", "").startswith("application/json")
    assert_user(r.json(), id=a.id, username=a.username, email=a.email, firstName="Grace",
                lastName="Hopper", role="user")


@pytest.mark.parametrize("token", [None, "garbage", "a.b.c"])
def test_me_without_valid_token_is_401(srv, token):
    assert_401_bearer(call(srv, "GET", "/v1/users/me", token=token))


def test_me_with_token_signed_by_another_secret_is_401(srv):
    a = register(srv)
    head, payload, _ = a.access.split(".")
    sig = hmac.new(b"another-secret-" * 4, ("%s.%s" % (head, payload)).encode(),
                   hashlib.sha256).digest()
    forged = "%s.%s.%s" % (head, payload, base64.urlsafe_b64encode(sig).rstrip(b"=").decode())
    assert_401_bearer(call(srv, "GET", "/v1/users/me", token=forged))


# ---- deleted users ----

def test_deleted_users_tokens(srv):
    """plugins/user/README.md ("Deleted users and access tokens"): the deletion revokes the
    user's access tokens (px_token_revoke), so the gateway answers 401 on every route; and
    every authenticated route of this plugin reads the caller's row first and answers 401
    once the account is gone. The refresh tokens are deleted with the user."""
    assert "401 when the account no longer exists" in " ".join(readme_text().split()), \
        "the README no longer documents 401 for a deleted user's access token: re-read it"
    a, b = register(srv), register(srv)
    r = call(srv, "GET", "/v1/users/me", token=a.access)  # cache the caller's row
    assert r.status_code == 200, describe(r)
    r = call(srv, "DELETE", "/v1/users/" + a.id, token=a.access)
    assert r.status_code == 204, describe(r)
    assert_401(refresh(srv, a.refresh))
    assert_401(login(srv, a.password, username=a.username, expect=None))
    for _ in range(4):  # both workers
        assert_401(call(srv, "GET", "/v1/users/me", token=a.access))
    assert_401(call(srv, "GET", "/v1/users/" + a.id, token=a.access))
    assert_401(call(srv, "PUT", "/v1/users/" + a.id, token=a.access,
                    json_body={"firstName": "Ghost"}))
    assert_401(call(srv, "GET", "/v1/users/" + b.id, token=a.access))
    assert_401(call(srv, "POST", "/v1/auth/logout", token=a.access,
                    json_body={"refreshToken": a.refresh}))
    # The deleting worker refused it at once: the first request after, on the connection
    # the DELETE came on, is the gateway's.
    with requests.Session() as conn:
        c = register(srv)
        h = {"Authorization": "Bearer " + c.access}
        assert conn.delete(srv.url("/v1/users/" + c.id), headers=h, timeout=10).status_code == 204
        r = conn.get(srv.url("/v1/users/me"), headers=h, timeout=10)
        assert_401(r)
        assert r.json()["error"]["message"] == "invalid bearer token: revoked"


# ---- passwords at rest ----

def test_no_plaintext_password_in_the_database(env):
    db, srv = env
    a = register(srv)
    dump = dump_database(db)
    assert a.username in dump  # the dump does hold the users
    for pw in PASSWORDS:
        assert pw not in dump, "a plaintext password is stored in the database"


def stored_hash(db, username):
    """README, "Data": users.password_hash, a PHC "$argon2id$..." string (older hashes
    "scrypt$N$r$p$SALT$KEY")."""
    return psql(db, "SELECT password_hash FROM users WHERE username = '%s'" % username).strip()


def wait_for_hash(db, username, prefix):
    """The rehash is written after the login's answer: poll until it lands."""
    end = time.time() + 30
    while not stored_hash(db, username).startswith(prefix):
        assert time.time() < end, stored_hash(db, username)[:40]
        time.sleep(0.1)


def test_raised_argon2_parameters_rehash_at_next_login(env):
    db, srv = env
    a = register(srv)
    assert stored_hash(db, a.username).startswith("$argon2id$v=19$m=19456,t=2,p=1$"), \
        stored_hash(db, a.username)[:40]
    s = user_server(db, config={"argon2_t": "3"})
    try:
        s.start(timeout=30)
        assert_tokens(login(s, a.password, username=a.username), 200)
        wait_for_hash(db, a.username, "$argon2id$v=19$m=19456,t=3,p=1$")
    finally:
        s.cleanup()
    # The old server (lower parameters) still verifies the new hash.
    assert_tokens(login(srv, a.password, username=a.username), 200)
    assert_401(login(srv, a.password + "x", username=a.username, expect=None))


def test_scrypt_hashes_verify_and_move_to_argon2id_at_next_login(env):
    """Hashes made before Argon2id (scrypt) keep working and are replaced at the next
    successful login; a wrong password against one is still 401 and changes nothing."""
    db, srv = env
    s = user_server(db, config={"password_scheme": "scrypt", "scrypt_n": "16384"})
    try:
        s.start(timeout=30)
        a = register(s)
        assert stored_hash(db, a.username).startswith("scrypt$16384$8$1$"), \
            stored_hash(db, a.username)[:40]
        assert_tokens(login(s, a.password, username=a.username), 200)
        assert stored_hash(db, a.username).startswith("scrypt$16384$8$1$")
    finally:
        s.cleanup()
    assert_401(login(srv, a.password + "x", username=a.username, expect=None))
    assert stored_hash(db, a.username).startswith("scrypt$")
    assert_tokens(login(srv, a.password, username=a.username), 200)
    wait_for_hash(db, a.username, "$argon2id$v=19$m=19456,t=2,p=1$")
    assert_tokens(login(srv, a.password, username=a.username), 200)


def test_damaged_argon2_parameters_never_verify(env):
    """A stored hash whose m asks for 64 GiB is refused before anything is allocated."""
    db, srv = env
    a = register(srv)
    good = stored_hash(db, a.username)
    bad = good.replace("m=19456,", "m=67108864,", 1)
    assert bad != good
    psql(db, "UPDATE users SET password_hash = '%s' WHERE username = '%s'" % (bad, a.username))
    assert_401(login(srv, a.password, username=a.username, expect=None))
    psql(db, "UPDATE users SET password_hash = '%s' WHERE username = '%s'" % (good, a.username))
    assert_tokens(login(srv, a.password, username=a.username), 200)


# ---- token lifetimes come from [auth] ----

def test_default_password_parameters_and_configured_lifetimes(env):
    """The one server with the plugin's default password settings (no password keys)."""
    db, _ = env
    s = user_server(db, config={},
                    auth={"token_secret": SECRET, "access_ttl": "2m", "refresh_ttl": "72h"})
    try:
        s.start(timeout=30)
        a = register(s)
        assert stored_hash(db, a.username).startswith("$argon2id$v=19$m=19456,t=2,p=1$"), \
            stored_hash(db, a.username)[:40]
        r = call(s, "POST", "/v1/auth/register", json_body=register_body())
        doc = assert_tokens(r, 201)
        assert doc["expiresIn"] == 120, doc
        c = jwt_claims(doc["accessToken"])
        assert 115 <= c["exp"] - int(time.time()) <= 125, c
        doc = assert_tokens(login(s, a.password, username=a.username), 200)
        assert doc["expiresIn"] == 120, doc
        assert_tokens(call(s, "POST", "/v1/auth/refresh",
                           json_body={"refreshToken": doc["refreshToken"]}), 200)
    finally:
        s.cleanup()


# ---- the first admin comes from the command line ----

def test_first_registrant_is_not_admin_and_cli_makes_the_first_admin():
    with module_env("usr_first") as (db, s):
        first = register(s)
        assert jwt_claims(first.access)["role"] == "user"
        r = call(s, "GET", "/v1/users/me", token=first.access)
        assert r.status_code == 200 and r.json()["role"] == "user", describe(r)
        assert_error(call(s, "GET", "/v1/users", token=first.access), 403, "forbidden")
        # Fresh login: still a user.
        doc = assert_tokens(login(s, first.password, username=first.username), 200)
        assert jwt_claims(doc["accessToken"])["role"] == "user"

        admin = make_admin(s)  # asserts exit 0, login and role admin in the token
        r = call(s, "GET", "/v1/users/me", token=admin.access)
        assert r.status_code == 200, describe(r)
        assert_user(r.json(), username=admin.username, email=admin.email, role="admin")
        r = call(s, "GET", "/v1/users", token=admin.access)
        assert r.status_code == 200, describe(r)
        doc = r.json()
        assert doc["total"] == 2, doc
        assert {u["username"] for u in doc["users"]} == {first.username, admin.username}


def test_cli_create_admin_errors(env):
    """README: exit 1 when the name or email is taken or invalid, 2 on a usage error."""
    _, s = env
    taken = register(s)
    cases = [
        (uniq("ok"), "not-an-email", strong_password()),        # bad email
        ("x", "x-%s@example.com" % uuid.uuid4().hex, strong_password()),  # bad username
        (uniq("ok"), "s-%s@example.com" % uuid.uuid4().hex, "short"),     # short password
        (uniq("ok"), "l-%s@example.com" % uuid.uuid4().hex, "L" * 65),    # long password
        (taken.username.upper(), "t-%s@example.com" % uuid.uuid4().hex, strong_password()),
        (uniq("ok"), taken.email.upper(), strong_password()),  # email taken (case)
    ]
    for username, email, pw in cases:
        rc, out, err = create_admin_cli(s, username, email, pw)
        assert rc == 1, "user:create-admin %s %s: exit %s: %s %s" % (username, email, rc, out,
                                                                    err)
        if len(pw) >= 8:
            assert pw not in out + err
        if username.lower() != taken.username.lower():
            assert_401(login(s, pw, username=username, expect=None))
    # Usage errors.
    for args in ((), ("only-a-name",), ("a", "b", "c")):
        rc, out, err = run_cli(s, "user:create-admin", *args, stdin=b"Whatever-123\n")
        assert rc == 2, (args, rc, out, err)
    # No password at all on stdin.
    rc, out, err = run_cli(s, "user:create-admin", uniq("nopw"),
                           "n-%s@example.com" % uuid.uuid4().hex, stdin=b"")
    assert rc in (1, 2), (rc, out, err)


def test_cli_create_admin_output_and_role(env):
    _, s = env
    username, pw = uniq("cli"), strong_password()
    email = "cli-%s@example.com" % uuid.uuid4().hex
    rc, out, err = create_admin_cli(s, username, email, pw)
    assert rc == 0, (rc, out, err)
    assert "created admin %s" % username in out, out
    doc = assert_tokens(login(s, pw, email=email), 200, username)
    assert jwt_claims(doc["accessToken"])["role"] == "admin"
    assert "(%s)" % doc["userId"] in out, out
    assert pw not in out + err


# ---- Lua password policy ----

POLICY = "40-password-policy.lua"


def test_lua_password_policy_rejects_a_common_password(env, tmp_path):
    db, _ = env
    src = os.path.join(SHIPPED_LUA, POLICY)
    assert os.path.isfile(src), "scripts/lua/%s is missing" % POLICY
    with open(src, encoding="utf-8") as f:
        script = f.read()
    status = POLICY_STATUS(script)
    lua_dir = tmp_path / "lua"
    lua_dir.mkdir()
    shutil.copy(src, str(lua_dir / POLICY))
    s = user_server(db, lua_dir=str(lua_dir))
    try:
        s.start(timeout=30)
        for common in ("password123", "PassWord123", "letmein1"):
            assert common.lower() in script, "%s does not list %r" % (POLICY, common)
            body = register_body(password=common)
            r = call(s, "POST", "/v1/auth/register", json_body=body)
            assert_error(r, status)
            # Nothing was created.
            assert_401(login(s, common, username=body["username"], expect=None))
        # The script also refuses a password equal to the username.
        name = uniq("same")
        r = call(s, "POST", "/v1/auth/register", json_body=register_body(username=name,
                                                                         password=name.upper()))
        assert_error(r, status)
        # A strong password still registers; changing it to a common one is refused too.
        a = register(s)
        r = call(s, "PUT", "/v1/users/" + a.id, token=a.access,
                 json_body={"password": "Password1"})
        assert_error(r, status)
        assert_tokens(login(s, a.password, username=a.username), 200)
        r = call(s, "PUT", "/v1/users/" + a.id, token=a.access,
                 json_body={"firstName": "Policy"})
        assert r.status_code == 200, describe(r)
    finally:
        s.cleanup()


def POLICY_STATUS(script):
    """The status the shipped script denies with (it is read, not guessed)."""
    m = re.search(r"status\s*=\s*(\d{3})", script) or re.search(r"return\s+false\s*,\s*(\d{3})",
                                                               script)
    return int(m.group(1)) if m else 400


# ---- short lifetimes: the login window, refresh tokens ----

@pytest.fixture(scope="module")
def short(env):
    """login_limit 3 per 10 s window, refresh tokens that live 5 s: long enough for the
    few requests a test makes inside them on a loaded machine, short enough to wait out."""
    db, _ = env
    s = user_server(db, config=dict(FAST_SCRYPT, login_limit="3", login_window="10s"),
                    auth={"token_secret": SECRET, "refresh_ttl": "5s"})
    try:
        with shared_services():
            s.start(timeout=30)
        yield s
    finally:
        s.cleanup()


def test_login_rate_limit_429_with_retry_after(short):
    s = short
    a, b = register(s), register(s)
    # One account, however it is named: username in any case, or email.
    for i, ident in enumerate(({"username": a.username}, {"username": a.username.upper()},
                               {"email": a.email.upper()})):
        assert_401(login(s, "wrong-password-%d" % i, expect=None, **ident))
    r = login(s, "wrong-password-x", username=a.username, expect=None)
    assert_error(r, 429, "rate_limited")
    ra = r.headers.get("Retry-After", "")
    assert ra.isdigit() and 1 <= int(ra) <= 10, r.headers
    # The account is limited: even the right password waits (no oracle for guesses) ...
    r = login(s, a.password, username=a.username, expect=None)
    assert_error(r, 429, "rate_limited")
    assert r.headers.get("Retry-After", "").isdigit(), r.headers
    # ... by email too ...
    assert_error(login(s, a.password, email=a.email, expect=None), 429, "rate_limited")
    # ... while another account is not affected.
    assert_tokens(login(s, b.password, username=b.username), 200)
    # Once the window has passed, the right password works again.
    end = time.monotonic() + 10 + CEILING
    while True:
        time.sleep(0.5)
        r = login(s, a.password, username=a.username, expect=None)
        if r.status_code == 200:
            break
        assert_error(r, 429, "rate_limited")
        assert time.monotonic() < end, "still 429 long after a 10 s window"
    assert_tokens(r, 200, a.username)


@pytest.fixture(scope="module")
def long_window(env):
    """login_limit 3 per 10 min window: no test outlasts it, however slow the machine."""
    db, _ = env
    s = user_server(db, config=dict(FAST_SCRYPT, login_limit="3", login_window="10m"))
    try:
        with shared_services():
            s.start(timeout=30)
        yield s
    finally:
        s.cleanup()


def test_login_rate_limit_holds_for_concurrent_guesses(long_window):
    """20 wrong passwords for one account sent at once, login_limit 3: at most 3 of them may
    be checked (401); the others are over the limit (429). Otherwise an attacker guesses as
    many passwords per window as it can send in parallel. The window outlasts the test, so
    the answer does not depend on how fast the guesses are checked."""
    short = long_window
    a = register(short)
    results, errors = [], []
    barrier = threading.Barrier(20)

    def hit(i):
        try:
            barrier.wait(CEILING)
            results.append(requests.post(
                short.url("/v1/auth/login"),
                json={"username": a.username, "password": "guess-%02d-wrong" % i},
                timeout=CEILING))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=hit, args=(i,), daemon=True) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * CEILING)
    assert not errors, errors[:3]
    codes = sorted(r.status_code for r in results)
    assert len(codes) == 20 and set(codes) <= {401, 429}, codes
    assert codes.count(401) <= 3, "%d of 20 concurrent wrong passwords were checked with " \
        "login_limit 3: %s" % (codes.count(401), codes)


def test_refresh_token_expires(short):
    a = register(short)
    t1 = assert_tokens(refresh(short, a.refresh), 200)["refreshToken"]
    time.sleep(6)  # past its 5 s life: a lower bound, which load only lengthens
    assert_401(refresh(short, t1))
    # A fresh login still works.
    doc = assert_tokens(login(short, a.password, username=a.username), 200)
    assert_tokens(refresh(short, doc["refreshToken"]), 200)


# ---- races and limits ----

def test_concurrent_refreshes_of_one_token(srv):
    a = register(srv)
    results, errors = [], []
    barrier = threading.Barrier(10)

    def hit():
        try:
            barrier.wait(10)
            results.append(requests.post(srv.url("/v1/auth/refresh"),
                                         json={"refreshToken": a.refresh}, timeout=30))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=hit, daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not errors, errors[:3]
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [401] * 9, codes


def test_concurrent_registrations_of_one_email(srv):
    email = "same-%s@example.com" % uuid.uuid4().hex
    bodies = [register_body(email=email) for _ in range(10)]
    results = []
    barrier = threading.Barrier(10)

    def hit(body):
        barrier.wait(10)
        results.append(requests.post(srv.url("/v1/auth/register"), json=body, timeout=30))

    threads = [threading.Thread(target=hit, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 9, codes


def test_body_too_large_is_413(srv):
    r = call(srv, "POST", "/v1/auth/register", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
             headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_openapi_lists_the_user_paths(srv):
    r = requests.get(srv.url("/openapi.json"), timeout=TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    paths = r.json()["paths"]
    want = {"/v1/auth/register": {"post"}, "/v1/auth/login": {"post"},
            "/v1/auth/refresh": {"post"}, "/v1/auth/logout": {"post"},
            "/v1/users/me": {"get"}, "/v1/users": {"get", "post"},
            "/v1/users/{userId}": {"get", "put", "delete"}}
    for path, methods in want.items():
        assert path in paths, (path, sorted(paths))
        assert methods <= set(paths[path]), (path, paths[path])


@pytest.mark.parametrize("key,value", [("scrypt_n", "1000"), ("scrypt_n", "abc"),
                                       ("password_scheme", "md5"), ("argon2_m", "4"),
                                       ("argon2_t", "0"), ("argon2_p", "65"),
                                       ("login_limit", "0"), ("login_window", "soon"),
                                       ("cache_ttl", "-5s"), ("no_such_key", "1")])
def test_bad_plugin_settings_stop_start_up(env, key, value):
    db, _ = env
    s = user_server(db, config=dict(FAST_SCRYPT, **{key: value}))
    try:
        with pytest.raises(ServerError) as e:
            s.start(timeout=15)
        assert key in str(e.value), str(e.value)[-2000:]
    finally:
        s.cleanup()
