"""The user plugin's /v1/users endpoints (API.md, "Users and auth"): the admin list with
page/limit/search, admin create, and get/update/delete with their ownership rules, the
profile cache staying coherent, and profile reads while Redis is down.

Runs against its own database with scrypt_n=16384. The admin comes from the command line
(pantherad user:create-admin). Every request has a timeout; user_helpers.call() checks
every answer for X-Request-Id, the error shape and the absence of passwords and hashes.
"""
import threading
import time
import uuid

import pytest
import requests

from user_helpers import (
    Account, Redis, assert_401, assert_error, assert_tokens, assert_user, call, describe,
    jwt_claims, login, login_account, make_admin, module_env, needs_services, pg_lock,
    redis_lock, register, register_body, shared_services, strong_password, uniq)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with module_env("usr_users") as (db, s):
        yield db, s


@pytest.fixture(scope="module")
def srv(env):
    return env[1]


@pytest.fixture(autouse=True)
def _services(request):
    # The Redis-down test takes the Redis lock exclusively itself.
    with shared_services(redis="redis_down" not in request.fixturenames):
        yield


@pytest.fixture(scope="module")
def admin(srv):
    with shared_services():
        return make_admin(srv)


def get_user(srv, uid, token):
    return call(srv, "GET", "/v1/users/" + uid, token=token)


def put_user(srv, uid, token, body):
    return call(srv, "PUT", "/v1/users/" + uid, token=token, json_body=body)


def list_users(srv, token, **params):
    return call(srv, "GET", "/v1/users", token=token, params=params)


# ---- the admin list ----

@pytest.fixture(scope="module")
def tagged(srv):
    """Five users whose username, email, first name, last name (and one: none) carry a tag."""
    tag = "qz" + uuid.uuid4().hex[:8]
    with shared_services():
        us = [
            register(srv, username="a_%s_x" % tag, email="one-%s@example.com" % uuid.uuid4().hex),
            register(srv, email="Two.%s@Example.com" % tag),
            register(srv, firstName="First%sName" % tag.upper()),
            register(srv, lastName="last-%s" % tag),
            register(srv, firstName="Unrelated", lastName="Person"),
        ]
    return tag, us


def test_list_shape_and_defaults(srv, admin, tagged):
    r = list_users(srv, admin.access)
    assert r.status_code == 200, describe(r)
    doc = r.json()
    assert set(doc) == {"total", "page", "limit", "users"}, doc
    assert doc["page"] == 1 and doc["limit"] == 10, doc
    assert isinstance(doc["total"], int) and doc["total"] >= 6, doc
    assert 1 <= len(doc["users"]) <= 10
    for u in doc["users"]:
        assert_user(u)


def test_search_is_case_insensitive_across_fields(srv, admin, tagged):
    tag, us = tagged
    want = {u.id for u in us[:4]}
    for q in (tag, tag.upper(), tag[:3].upper() + tag[3:]):
        r = list_users(srv, admin.access, search=q)
        assert r.status_code == 200, describe(r)
        doc = r.json()
        assert doc["total"] == 4, (q, doc)
        assert {u["id"] for u in doc["users"]} == want, (q, doc)


def test_search_by_each_field(srv, admin, tagged):
    tag, us = tagged
    for q, who in (("A_%s_X" % tag.upper(), us[0]), ("TWO.%s" % tag, us[1]),
                   ("first%sname" % tag, us[2]), ("LAST-" + tag, us[3]),
                   ("unrelated", us[4])):
        r = list_users(srv, admin.access, search=q)
        assert r.status_code == 200, describe(r)
        ids = {u["id"] for u in r.json()["users"]}
        assert who.id in ids, (q, r.json())
        assert r.json()["total"] == len(ids)


def test_search_wildcards_are_literal(srv, admin, tagged):
    for q in ("%", "_%_", "\\", "'; DROP TABLE users; --", "nobody-" + uuid.uuid4().hex):
        r = list_users(srv, admin.access, search=q)
        assert r.status_code == 200, describe(r)
        assert r.json()["total"] == 0 and r.json()["users"] == [], (q, r.json())


def test_pagination(srv, admin, tagged):
    tag, us = tagged
    seen = []
    for page in (1, 2, 3):
        r = list_users(srv, admin.access, search=tag, page=page, limit=2)
        assert r.status_code == 200, describe(r)
        doc = r.json()
        assert doc["total"] == 4 and doc["page"] == page and doc["limit"] == 2, doc
        assert len(doc["users"]) == (2 if page < 3 else 0), doc
        seen += [u["id"] for u in doc["users"]]
    assert len(seen) == 4 and set(seen) == {u.id for u in us[:4]}, seen
    r = list_users(srv, admin.access, limit=100)
    assert r.status_code == 200 and r.json()["limit"] == 100, describe(r)
    r = list_users(srv, admin.access, limit=1)
    assert r.status_code == 200 and len(r.json()["users"]) == 1, describe(r)


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "101"}, {"limit": "abc"},
                                    {"limit": "-1"}, {"page": "0"}, {"page": "abc"},
                                    {"page": "-3"}, {"limit": "1.5"}])
def test_bad_paging_is_400(srv, admin, params):
    r = list_users(srv, admin.access, **params)
    assert_error(r, 400, ("validation_failed", "bad_request"))


def test_page_past_the_end_is_empty(srv, admin, tagged):
    tag, _ = tagged
    for page in (3, 1000, 1000000):
        r = list_users(srv, admin.access, search=tag, page=page, limit=100)
        assert r.status_code == 200, describe(r)
        assert r.json()["users"] == [] and r.json()["total"] == 4, r.json()
    # Past the largest page there is (1e9) is a bad request, never a server error.
    r = list_users(srv, admin.access, page="9223372036854775807", limit=100)
    assert_error(r, 400, ("validation_failed", "bad_request"))


@pytest.mark.parametrize("raw", ["%FF", "%C3%28", "caf%E9"])
def test_search_not_utf8_is_400(srv, admin, raw):
    r = call(srv, "GET", "/v1/users?search=" + raw, token=admin.access)
    assert_error(r, 400, ("bad_request", "validation_failed"))


def test_search_longer_than_200_is_400(srv, admin):
    """README: search is at most 200 characters."""
    assert list_users(srv, admin.access, search="s" * 200).status_code == 200
    assert_error(list_users(srv, admin.access, search="s" * 201), 400,
                 ("validation_failed", "bad_request"))


def test_a_demoted_admin_loses_admin_rights_at_once(srv, admin):
    body = register_body(role="admin")
    r = call(srv, "POST", "/v1/users", token=admin.access, json_body=body)
    assert r.status_code == 201, describe(r)
    b = Account(body["username"], body["email"], body["password"])
    login_account(srv, b)
    b.id = r.json()["id"]
    other = register(srv)
    assert list_users(srv, b.access).status_code == 200
    r = put_user(srv, b.id, admin.access, {"role": "user"})
    assert r.status_code == 200 and r.json()["role"] == "user", describe(r)
    # b's access token says "admin": revoked with the change, on every plugin's routes.
    assert_revoked(list_users(srv, b.access))
    assert_revoked(call(srv, "GET", "/v1/users/me", token=b.access))
    # b's session goes on: a refresh gives a token that says "user", at once.
    r = call(srv, "POST", "/v1/auth/refresh", json_body={"refreshToken": b.refresh})
    assert_tokens(r, 200)
    b.access = r.json()["accessToken"]
    assert jwt_claims(b.access)["role"] == "user"
    assert call(srv, "GET", "/v1/users/me", token=b.access).json()["role"] == "user"
    assert_error(list_users(srv, b.access), 403, "forbidden")
    assert_error(get_user(srv, other.id, b.access), 403, "forbidden")
    assert_error(put_user(srv, other.id, b.access, {"firstName": "x"}), 403, "forbidden")
    assert_error(call(srv, "DELETE", "/v1/users/" + other.id, token=b.access), 403, "forbidden")
    assert_error(call(srv, "POST", "/v1/users", token=b.access, json_body=register_body()), 403,
                 "forbidden")
    assert_error(put_user(srv, b.id, b.access, {"role": "admin"}), (400, 403))
    assert get_user(srv, b.id, admin.access).json()["role"] == "user"


def assert_revoked(r):
    assert_401(r)
    assert r.json()["error"]["message"] == "invalid bearer token: revoked", describe(r)


def test_a_promoted_user_refreshes_into_an_admin_token(srv, admin):
    a = register(srv)
    assert_error(list_users(srv, a.access), 403, "forbidden")
    assert put_user(srv, a.id, admin.access, {"role": "admin"}).json()["role"] == "admin"
    assert_revoked(call(srv, "GET", "/v1/users/me", token=a.access))
    r = call(srv, "POST", "/v1/auth/refresh", json_body={"refreshToken": a.refresh})
    assert_tokens(r, 200)
    assert jwt_claims(r.json()["accessToken"])["role"] == "admin"
    assert list_users(srv, r.json()["accessToken"]).status_code == 200


def test_an_update_that_changes_no_role_or_password_keeps_the_tokens(srv, admin):
    a = register(srv)
    assert put_user(srv, a.id, admin.access, {"role": "user"}).status_code == 200  # as it was
    assert put_user(srv, a.id, a.access, {"firstName": "Ada"}).status_code == 200
    assert put_user(srv, a.id, admin.access, {"lastName": "L", "email": uniq("e") + "@x.org"}
                    ).status_code == 200
    r = call(srv, "GET", "/v1/users/me", token=a.access)
    assert r.status_code == 200 and r.json()["firstName"] == "Ada", describe(r)


def test_a_new_password_ends_every_session_and_the_old_tokens(srv):
    a = register(srv)
    other = register(srv)
    new = strong_password()
    assert put_user(srv, a.id, a.access, {"password": new}).status_code == 200
    assert_revoked(call(srv, "GET", "/v1/users/me", token=a.access))
    assert_401(call(srv, "POST", "/v1/auth/refresh", json_body={"refreshToken": a.refresh}))
    assert_401(login(srv, a.password, username=a.username, expect=None))
    r = login(srv, new, username=a.username)
    assert call(srv, "GET", "/v1/users/me", token=r.json()["accessToken"]).status_code == 200
    # Nobody else's tokens moved.
    assert call(srv, "GET", "/v1/users/me", token=other.access).status_code == 200


def test_list_is_for_admins(srv, admin):
    a = register(srv)
    assert_error(list_users(srv, a.access), 403, "forbidden")
    assert_401(list_users(srv, None))


# ---- admin create ----

def test_admin_create_user(srv, admin):
    body = register_body(firstName="Created", lastName="ByAdmin")
    r = call(srv, "POST", "/v1/users", token=admin.access, json_body=body)
    assert r.status_code == 201, describe(r)
    u = assert_user(r.json(), username=body["username"], email=body["email"], role="user",
                    firstName="Created", lastName="ByAdmin")
    assert r.headers.get("Location", "").endswith("/v1/users/" + u["id"]), r.headers
    doc = assert_tokens(login(srv, body["password"], username=body["username"]), 200)
    assert doc["userId"] == u["id"] and jwt_claims(doc["accessToken"])["role"] == "user"


def test_admin_create_admin(srv, admin):
    body = register_body(role="admin")
    r = call(srv, "POST", "/v1/users", token=admin.access, json_body=body)
    assert r.status_code == 201, describe(r)
    assert_user(r.json(), role="admin")
    doc = assert_tokens(login(srv, body["password"], username=body["username"]), 200)
    assert jwt_claims(doc["accessToken"])["role"] == "admin"
    r = list_users(srv, doc["accessToken"])
    assert r.status_code == 200, describe(r)


def test_admin_create_explicit_user_role(srv, admin):
    r = call(srv, "POST", "/v1/users", token=admin.access, json_body=register_body(role="user"))
    assert r.status_code == 201, describe(r)
    assert_user(r.json(), role="user")


@pytest.mark.parametrize("extra", [{"role": "superuser"}, {"role": 1}, {"id": str(uuid.uuid4())},
                                   {"createdAt": "2000-01-01T00:00:00Z"}, {"nick": "x"}])
def test_admin_create_rejects_bad_fields(srv, admin, extra):
    r = call(srv, "POST", "/v1/users", token=admin.access, json_body=register_body(**extra))
    assert_error(r, 400, ("validation_failed", "bad_request"))


def test_admin_create_validation_and_conflict(srv, admin):
    r = call(srv, "POST", "/v1/users", token=admin.access,
             json_body={"username": "x", "email": "bad", "password": "short"})
    assert_error(r, 400, "validation_failed", fields=["username", "email", "password"])
    a = register(srv)
    r = call(srv, "POST", "/v1/users", token=admin.access,
             json_body=register_body(username=a.username.upper()))
    assert_error(r, 409, "conflict")
    r = call(srv, "POST", "/v1/users", token=admin.access,
             json_body=register_body(email=a.email.upper()))
    assert_error(r, 409, "conflict")


def test_user_cannot_create_users(srv):
    a = register(srv)
    body = register_body(role="admin")
    assert_error(call(srv, "POST", "/v1/users", token=a.access, json_body=body), 403,
                 "forbidden")
    assert_401(call(srv, "POST", "/v1/users", json_body=body))
    # Nothing was created.
    assert_401(login(srv, body["password"], username=body["username"], expect=None))


def test_admin_create_is_idempotent_with_a_key(srv, admin):
    key = uuid.uuid4().hex
    body = register_body()
    h = {"Idempotency-Key": key}
    r1 = call(srv, "POST", "/v1/users", token=admin.access, json_body=body, headers=h)
    assert r1.status_code == 201, describe(r1)
    r2 = call(srv, "POST", "/v1/users", token=admin.access, json_body=body, headers=h)
    assert r2.status_code == 201, describe(r2)
    assert r2.json()["id"] == r1.json()["id"]
    other = dict(body, username=uniq())
    assert_error(call(srv, "POST", "/v1/users", token=admin.access, json_body=other, headers=h),
                 409, "conflict")


# ---- get ----

def test_get_self_and_by_admin(srv, admin):
    a = register(srv, firstName="Self")
    for token in (a.access, admin.access):
        r = get_user(srv, a.id, token)
        assert r.status_code == 200, describe(r)
        assert_user(r.json(), id=a.id, username=a.username, email=a.email, firstName="Self",
                    role="user")


def test_get_other_is_403_and_missing_is_404(srv, admin):
    a, b = register(srv), register(srv)
    assert_error(get_user(srv, a.id, b.access), 403, "forbidden")
    assert_error(get_user(srv, str(uuid.uuid4()), admin.access), 404, "not_found")
    assert_401(get_user(srv, a.id, None))


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "%27%20OR%201=1", "0" * 40,
                                 "00000000-0000-0000-0000-00000000000g"])
def test_malformed_id_is_404(srv, admin, bad):
    """README: an id that is not a uuid is 404 for everyone."""
    a = register(srv)
    for token in (admin.access, a.access):
        assert_error(get_user(srv, bad, token), 404, "not_found")
        assert_error(put_user(srv, bad, token, {"firstName": "x"}), 404, "not_found")
        assert_error(call(srv, "DELETE", "/v1/users/" + bad, token=token), 404, "not_found")


# ---- update ----

def test_self_update_names_and_updated_at(srv):
    a = register(srv, firstName="Old", lastName="Name")
    before = get_user(srv, a.id, a.access).json()
    time.sleep(1.1)
    r = put_user(srv, a.id, a.access, {"firstName": "New", "lastName": "N\u00e4me \U0001F406"})
    assert r.status_code == 200, describe(r)
    u = assert_user(r.json(), id=a.id, firstName="New", lastName="N\u00e4me \U0001F406",
                    username=a.username, email=a.email, role="user")
    assert u["createdAt"] == before["createdAt"]
    assert u["updatedAt"] > before["updatedAt"], (before, u)
    # Partial update: only what is sent changes.
    r = put_user(srv, a.id, a.access, {"lastName": "Only"})
    assert r.status_code == 200, describe(r)
    assert_user(r.json(), firstName="New", lastName="Only")
    # Reads (through the cache, on any worker) see the change.
    for _ in range(6):
        for token in (a.access,):
            assert_user(get_user(srv, a.id, token).json(), firstName="New", lastName="Only")
        assert_user(call(srv, "GET", "/v1/users/me", token=a.access).json(), lastName="Only")


def test_update_is_visible_to_admin_reads_after_cached_read(srv, admin):
    a = register(srv, firstName="Cached")
    for _ in range(4):  # warm any cache on both workers
        assert get_user(srv, a.id, admin.access).json()["firstName"] == "Cached"
    r = put_user(srv, a.id, a.access, {"firstName": "Fresh"})
    assert r.status_code == 200, describe(r)
    for _ in range(6):
        assert get_user(srv, a.id, admin.access).json()["firstName"] == "Fresh"


def test_uppercase_uuid_names_the_same_user_and_cache(srv, admin):
    a = register(srv, firstName="Orig")
    up = a.id.upper()
    for token in (a.access, admin.access):
        r = get_user(srv, up, token)
        assert r.status_code == 200 and r.json()["id"] == a.id, describe(r)
    assert put_user(srv, a.id, a.access, {"firstName": "Lower"}).status_code == 200
    for _ in range(4):
        assert get_user(srv, up, admin.access).json()["firstName"] == "Lower"
    assert put_user(srv, up, a.access, {"firstName": "Upper"}).status_code == 200
    for _ in range(4):
        assert get_user(srv, a.id, admin.access).json()["firstName"] == "Upper"
    r = call(srv, "DELETE", "/v1/users/" + up, token=admin.access)
    assert r.status_code == 204, describe(r)
    assert_error(get_user(srv, a.id, admin.access), 404, "not_found")


def test_concurrent_email_changes_to_one_address(srv):
    users = [register(srv) for _ in range(4)]
    email = "wanted-%s@example.com" % uuid.uuid4().hex
    results = []
    barrier = threading.Barrier(len(users))

    def hit(u):
        barrier.wait(10)
        results.append(requests.put(srv.url("/v1/users/" + u.id), json={"email": email},
                                    headers={"Authorization": "Bearer " + u.access},
                                    timeout=30).status_code)

    threads = [threading.Thread(target=hit, args=(u,), daemon=True) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert sorted(results) == [200, 409, 409, 409], results


def test_self_update_email(srv):
    a = register(srv)
    new = "new-%s@example.net" % uuid.uuid4().hex
    r = put_user(srv, a.id, a.access, {"email": new})
    assert r.status_code == 200, describe(r)
    assert_user(r.json(), email=new)
    assert_tokens(login(srv, a.password, email=new), 200)
    # Changing only the case of one's own email is no conflict with oneself.
    r = put_user(srv, a.id, a.access, {"email": new.upper()})
    assert r.status_code == 200, describe(r)


def test_self_update_email_taken_is_409(srv):
    a, b = register(srv), register(srv)
    for email in (b.email, b.email.upper()):
        assert_error(put_user(srv, a.id, a.access, {"email": email}), 409, "conflict")
    assert get_user(srv, a.id, a.access).json()["email"] == a.email


def test_self_update_password(srv):
    a = register(srv)
    new = strong_password()
    r = put_user(srv, a.id, a.access, {"password": new})
    assert r.status_code == 200, describe(r)
    assert_user(r.json())
    assert_401(login(srv, a.password, username=a.username, expect=None))
    assert_tokens(login(srv, new, username=a.username), 200)
    # README: a password change revokes every refresh token of the user.
    assert_401(call(srv, "POST", "/v1/auth/refresh", json_body={"refreshToken": a.refresh}))


@pytest.mark.parametrize("body,field", [
    ({"role": "admin"}, "role"), ({"id": "00000000-0000-0000-0000-000000000001"}, "id"),
    ({"createdAt": "2000-01-01T00:00:00Z"}, "createdAt"), ({"username": "renamed_x"}, "username"),
    ({"updatedAt": "2000-01-01T00:00:00Z"}, "updatedAt"), ({"isAdmin": True}, "isAdmin"),
])
def test_self_update_mass_assignment_is_400(srv, body, field):
    a = register(srv)
    r = put_user(srv, a.id, a.access, dict(body, firstName="Sneaky"))
    assert_error(r, 400, ("validation_failed", "bad_request"), fields=[field])
    u = get_user(srv, a.id, a.access).json()
    assert u["role"] == "user" and u["id"] == a.id and u["username"] == a.username, u
    assert u["firstName"] != "Sneaky", "a rejected update was partly applied: %s" % u


@pytest.mark.parametrize("body,field", [
    ({"email": "nope"}, "email"), ({"password": "short"}, "password"),
    ({"password": "p" * 65}, "password"), ({"firstName": 7}, "firstName"),
    ({"lastName": ["x"]}, "lastName"), ({"email": False}, "email"),
    ({"firstName": "F" * 10000}, "firstName"), ({"lastName": "L" * 10000}, "lastName"),
])
def test_update_validation_names_the_field(srv, body, field):
    a = register(srv)
    r = put_user(srv, a.id, a.access, body)
    assert_error(r, 400, ("validation_failed", "bad_request"), fields=[field])


def test_update_not_json(srv):
    a = register(srv)
    r = call(srv, "PUT", "/v1/users/" + a.id, token=a.access, data=b"{nope",
             headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")


def test_admin_sets_role(srv, admin):
    a = register(srv)
    r = put_user(srv, a.id, admin.access, {"role": "admin", "firstName": "Promoted"})
    assert r.status_code == 200, describe(r)
    assert_user(r.json(), role="admin", firstName="Promoted")
    doc = assert_tokens(login(srv, a.password, username=a.username), 200)
    assert jwt_claims(doc["accessToken"])["role"] == "admin"
    assert list_users(srv, doc["accessToken"]).status_code == 200
    r = put_user(srv, a.id, admin.access, {"role": "user"})
    assert r.status_code == 200 and r.json()["role"] == "user", describe(r)
    assert_error(put_user(srv, a.id, admin.access, {"role": "root"}), 400,
                 ("validation_failed", "bad_request"))


def test_update_other_is_403_and_changes_nothing(srv, admin):
    a, b = register(srv, firstName="Mine"), register(srv)
    assert_error(put_user(srv, a.id, b.access, {"firstName": "Hacked"}), 403, "forbidden")
    assert_error(put_user(srv, a.id, b.access, {"password": strong_password()}), 403,
                 "forbidden")
    assert get_user(srv, a.id, a.access).json()["firstName"] == "Mine"
    assert_tokens(login(srv, a.password, username=a.username), 200)
    assert_error(put_user(srv, str(uuid.uuid4()), admin.access, {"firstName": "x"}), 404,
                 "not_found")
    assert_401(put_user(srv, a.id, None, {"firstName": "x"}))


def test_admin_updates_someone(srv, admin):
    a = register(srv)
    new_pw = strong_password()
    r = put_user(srv, a.id, admin.access, {"firstName": "ByAdmin", "password": new_pw})
    assert r.status_code == 200, describe(r)
    assert_user(r.json(), firstName="ByAdmin", role="user")
    assert_tokens(login(srv, new_pw, username=a.username), 200)


# ---- delete ----

def test_delete_self(srv, admin):
    a = register(srv)
    r = call(srv, "DELETE", "/v1/users/" + a.id, token=a.access)
    assert r.status_code == 204 and r.content == b"", describe(r)
    assert_error(get_user(srv, a.id, admin.access), 404, "not_found")
    assert_401(login(srv, a.password, username=a.username, expect=None))
    assert_401(call(srv, "POST", "/v1/auth/refresh", json_body={"refreshToken": a.refresh}))


def test_delete_by_admin_and_twice(srv, admin):
    a = register(srv)
    get_user(srv, a.id, admin.access)  # warm any cache
    r = call(srv, "DELETE", "/v1/users/" + a.id, token=admin.access)
    assert r.status_code == 204, describe(r)
    for _ in range(4):
        assert_error(get_user(srv, a.id, admin.access), 404, "not_found")
    assert_error(call(srv, "DELETE", "/v1/users/" + a.id, token=admin.access), 404, "not_found")
    r = list_users(srv, admin.access, search=a.username)
    assert r.json()["total"] == 0, r.json()


def test_delete_other_is_403(srv):
    a, b = register(srv), register(srv)
    assert_error(call(srv, "DELETE", "/v1/users/" + a.id, token=b.access), 403, "forbidden")
    assert_401(call(srv, "DELETE", "/v1/users/" + a.id))
    assert get_user(srv, a.id, a.access).status_code == 200


# ---- Redis down ----

@pytest.fixture
def redis_down():
    r = Redis()
    with pg_lock(False), redis_lock(exclusive=True):
        assert r.wait(True, 10), "Redis is not answering before the test"
        try:
            yield r
        finally:
            r.restore()


def test_profile_reads_work_while_redis_is_down(srv, admin, redis_down):
    a = register(srv, firstName="Durable")
    b = register(srv, firstName="Cold")
    get_user(srv, a.id, a.access)  # maybe cached in Redis now
    redis_down.stop()
    try:
        for u in (a, b):
            for token in (u.access, admin.access):
                r = get_user(srv, u.id, token)
                assert r.status_code == 200, describe(r)
                assert_user(r.json(), id=u.id, username=u.username)
            r = call(srv, "GET", "/v1/users/me", token=u.access)
            assert r.status_code == 200, describe(r)
        # README: everything keeps working, uncached and unthrottled.
        c = register(srv)
        assert_tokens(login(srv, c.password, email=c.email), 200)
        assert_401(login(srv, c.password + "x", username=c.username, expect=None))
        r = call(srv, "POST", "/v1/auth/refresh", json_body={"refreshToken": c.refresh})
        assert_tokens(r, 200)
        # Writes keep working too (README: only the cache is skipped), and the update must
        # not leave a stale cached profile behind.
        r = put_user(srv, a.id, a.access, {"firstName": "Changed"})
        assert r.status_code == 200, describe(r)
    finally:
        redis_down.start()
    want = "Changed"
    end = time.time() + 60
    while True:
        r = get_user(srv, a.id, admin.access)
        if r.status_code == 200 and r.json()["firstName"] == want:
            break
        assert time.time() < end, "after Redis came back: %s (want firstName %r)" % (
            describe(r), want)
        time.sleep(0.1)
    for _ in range(6):
        assert get_user(srv, a.id, admin.access).json()["firstName"] == want
