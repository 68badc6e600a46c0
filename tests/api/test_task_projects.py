"""Projects, members and activity of the task plugin (API.md, "Projects and tasks"):
CRUD, the roles (owner writes, members read, viewers read only, non-members see
nothing), the last-owner rule, ETag / If-Match / If-None-Match, Idempotency-Key on
creates, validation, and that every change wrote its activity row {field: [old, new]}."""
import uuid

import pytest

from task_helpers import _services, people, proj, srv  # noqa: F401 (shared fixtures)
from task_helpers import (
    PROJECT_KEYS, UUID_RE, activity, assert_error, call, describe, needs_services,
    new_project, psql, register, shared_services, task_env)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with task_env("task_proj") as e:
        yield e


def get(srv, who, path, **kw):
    return call(srv, "GET", path, token=who.access, **kw)


def test_create_shape_and_owner(srv, people):
    owner = people["owner"]
    p = new_project(srv, owner, description=None, status="active")
    assert UUID_RE.match(p["id"]) and p["ownerId"] == owner.id, p
    assert p["role"] == "owner" and p["version"] == 1 and p["description"] is None, p
    acts = activity(srv, owner.access, p["id"])
    assert [a["action"] for a in acts] == ["created"], acts
    assert acts[0]["changes"] == {"name": [None, p["name"]], "status": [None, "active"]}, acts
    assert acts[0]["actorId"] == owner.id and acts[0]["entityId"] == p["id"], acts


@pytest.mark.parametrize("body,field", [
    ({}, "name"), ({"name": ""}, "name"), ({"name": "   "}, "name"), ({"name": "x" * 201}, "name"),
    ({"name": "ok", "status": "paused"}, "status"), ({"name": "ok", "ownerId": str(uuid.uuid4())},
                                                     None),
    ({"name": 5}, "name")])
def test_create_validation(srv, people, body, field):
    r = call(srv, "POST", "/v1/projects", token=people["owner"].access, json_body=body)
    assert_error(r, 400, ("validation_failed", "bad_request"), fields=(field,) if field else ())


def test_create_idempotent(srv, people):
    owner = people["owner"]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": "idem"}
    a = call(srv, "POST", "/v1/projects", token=owner.access, json_body=body, headers=key)
    b = call(srv, "POST", "/v1/projects", token=owner.access, json_body=body, headers=key)
    assert a.status_code == b.status_code == 201 and a.json() == b.json(), (describe(a), describe(b))
    c = call(srv, "POST", "/v1/projects", token=owner.access, json_body={"name": "other"},
             headers=key)
    assert_error(c, 409, "conflict")


def test_list_membership_filters_and_admin(srv, people, proj):
    stranger_view = get(srv, people["stranger"], "/v1/projects", params={"limit": 100}).json()
    assert proj["id"] not in [p["id"] for p in stranger_view["projects"]]
    for who, role in (("viewer", "viewer"), ("member", "member"), ("owner", "owner")):
        doc = get(srv, people[who], "/v1/projects", params={"limit": 100}).json()
        mine = [p for p in doc["projects"] if p["id"] == proj["id"]]
        assert len(mine) == 1 and mine[0]["role"] == role, (who, doc)
        assert set(mine[0]) == PROJECT_KEYS
    admin = get(srv, people["admin"], "/v1/projects", params={"limit": 100, "q": proj["name"]})
    assert [p["id"] for p in admin.json()["projects"]] == [proj["id"]], describe(admin)
    assert admin.json()["projects"][0]["role"] is None
    q = get(srv, people["owner"], "/v1/projects", params={"q": proj["name"].upper()}).json()
    assert [p["id"] for p in q["projects"]] == [proj["id"]] and q["total"] == 1, q
    assert get(srv, people["owner"], "/v1/projects",
               params={"status": "archived", "q": proj["name"]}).json()["total"] == 0
    bad = get(srv, people["owner"], "/v1/projects", params={"status": "nope"})
    assert_error(bad, 400, "validation_failed", fields=("status",))
    bad = get(srv, people["owner"], "/v1/projects", params={"limit": 101})
    assert_error(bad, 400, "validation_failed", fields=("limit",))


def test_pagination(srv):
    with shared_services():
        u = register(srv)
    ids = [new_project(srv, u)["id"] for _ in range(5)]
    seen = []
    for page in (1, 2, 3):
        doc = get(srv, u, "/v1/projects", params={"page": page, "limit": 2}).json()
        assert doc["total"] == 5 and doc["page"] == page and doc["limit"] == 2, doc
        seen += [p["id"] for p in doc["projects"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert get(srv, u, "/v1/projects", params={"page": 4, "limit": 2}).json()["projects"] == []


def test_get_etag_and_roles(srv, people, proj):
    path = "/v1/projects/" + proj["id"]
    for who in ("owner", "member", "viewer", "admin"):
        r = get(srv, people[who], path)
        assert r.status_code == 200 and r.headers.get("ETag") == '"1"', describe(r)
    r = get(srv, people["viewer"], path, headers={"If-None-Match": '"1"'})
    assert r.status_code == 304, describe(r)
    assert_error(get(srv, people["stranger"], path), 404, "not_found")
    assert_error(get(srv, people["owner"], "/v1/projects/" + str(uuid.uuid4())), 404)
    assert_error(get(srv, people["owner"], "/v1/projects/not-a-uuid"), 404)


def test_update_if_match_and_activity(srv, people, proj):
    path = "/v1/projects/" + proj["id"]
    owner = people["owner"]
    r = call(srv, "PUT", path, token=owner.access, json_body={"name": "renamed",
             "description": None}, headers={"If-Match": '"1"'})
    assert r.status_code == 200, describe(r)
    doc = r.json()
    assert doc["name"] == "renamed" and doc["description"] is None and doc["version"] == 2, doc
    assert r.headers.get("ETag") == '"2"'
    stale = call(srv, "PUT", path, token=owner.access, json_body={"name": "again"},
                 headers={"If-Match": '"1"'})
    assert_error(stale, 412, "precondition_failed")
    assert get(srv, owner, path).json()["name"] == "renamed"
    same = call(srv, "PUT", path, token=owner.access, json_body={"name": "renamed"})
    assert same.status_code == 200 and same.json()["version"] == 2, describe(same)
    acts = activity(srv, owner.access, proj["id"])
    assert acts[0]["action"] == "updated" and acts[0]["changes"] == {
        "name": [proj["name"], "renamed"], "description": ["first", None]}, acts[0]
    assert [a["action"] for a in acts].count("updated") == 1, acts
    for who, status in (("member", 403), ("viewer", 403), ("stranger", 404)):
        r = call(srv, "PUT", path, token=people[who].access, json_body={"name": "x"})
        assert_error(r, status)
    r = call(srv, "PUT", path, token=owner.access, json_body={"id": str(uuid.uuid4())})
    assert_error(r, 400, "validation_failed")
    r = call(srv, "PUT", path, token=people["admin"].access, json_body={"status": "archived"})
    assert r.status_code == 200 and r.json()["status"] == "archived", describe(r)


def test_members_rules(srv, people, proj):
    owner, stranger = people["owner"], people["stranger"]
    base = "/v1/projects/%s/members" % proj["id"]
    doc = get(srv, people["viewer"], base).json()
    roles = {m["userId"]: m["role"] for m in doc["members"]}
    assert roles == {owner.id: "owner", people["member"].id: "member",
                     people["viewer"].id: "viewer"} and doc["total"] == 3, doc
    again = call(srv, "POST", base, token=owner.access,
                 json_body={"userId": people["member"].id, "role": "viewer"})
    assert_error(again, 409, "conflict")
    ghost = call(srv, "POST", base, token=owner.access,
                 json_body={"userId": str(uuid.uuid4()), "role": "viewer"})
    assert_error(ghost, 400, "validation_failed", fields=("userId",))
    bad = call(srv, "POST", base, token=owner.access, json_body={"userId": stranger.id,
               "role": "admin"})
    assert_error(bad, 400, "validation_failed", fields=("role",))
    by_member = call(srv, "POST", base, token=people["member"].access,
                     json_body={"userId": stranger.id, "role": "viewer"})
    assert_error(by_member, 403, "forbidden")
    # The only owner can be neither demoted nor removed.
    r = call(srv, "PUT", base + "/" + owner.id, token=owner.access, json_body={"role": "member"})
    assert_error(r, 409, "conflict")
    r = call(srv, "DELETE", base + "/" + owner.id, token=owner.access)
    assert_error(r, 409, "conflict")
    # With a second owner the first may step down.
    r = call(srv, "PUT", base + "/" + people["member"].id, token=owner.access,
             json_body={"role": "owner"})
    assert r.status_code == 200 and r.json()["role"] == "owner", describe(r)
    r = call(srv, "PUT", base + "/" + owner.id, token=owner.access, json_body={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer", describe(r)
    r = call(srv, "PUT", "/v1/projects/" + proj["id"], token=owner.access, json_body={"name": "n"})
    assert_error(r, 403, "forbidden")
    r = call(srv, "DELETE", base + "/" + stranger.id, token=people["member"].access)
    assert_error(r, 404, "not_found")
    r = call(srv, "DELETE", base + "/" + people["viewer"].id, token=people["member"].access)
    assert r.status_code == 204, describe(r)
    assert_error(get(srv, people["viewer"], "/v1/projects/" + proj["id"]), 404)
    acts = activity(srv, people["member"].access, proj["id"])
    got = [(a["action"], a["entityId"], a["changes"]) for a in acts[:3]]
    assert got == [
        ("member_removed", people["viewer"].id, {"role": ["viewer", None]}),
        ("member_role_changed", owner.id, {"role": ["owner", "viewer"]}),
        ("member_role_changed", people["member"].id, {"role": ["member", "owner"]})], got
    assert all(a["actorId"] in (owner.id, people["member"].id) for a in acts)


def test_member_add_idempotent(srv, people):
    owner = people["owner"]
    p = new_project(srv, owner)
    key = {"Idempotency-Key": "add-" + uuid.uuid4().hex}
    path = "/v1/projects/%s/members" % p["id"]
    body = {"userId": people["stranger"].id, "role": "viewer"}
    a = call(srv, "POST", path, token=owner.access, json_body=body, headers=key)
    b = call(srv, "POST", path, token=owner.access, json_body=body, headers=key)
    assert a.status_code == b.status_code == 201 and a.json() == b.json(), (describe(a), describe(b))
    assert [x["action"] for x in activity(srv, owner.access, p["id"])].count("member_added") == 1


def test_member_add_by_username(srv, people):
    """An owner invites by the name people know: username, any case; exactly one of
    userId and username; an unknown name is a field error on username."""
    owner, stranger = people["owner"], people["stranger"]
    p = new_project(srv, owner)
    path = "/v1/projects/%s/members" % p["id"]
    r = call(srv, "POST", path, token=owner.access,
             json_body={"username": stranger.username.upper(), "role": "member"})
    assert r.status_code == 201, describe(r)
    assert r.json()["userId"] == stranger.id and r.json()["username"] == stranger.username
    assert r.headers["Location"].endswith("/members/" + stranger.id)
    both = call(srv, "POST", path, token=owner.access,
                json_body={"userId": people["viewer"].id, "username": people["viewer"].username,
                           "role": "viewer"})
    assert_error(both, 400, "validation_failed", fields=("userId",))
    neither = call(srv, "POST", path, token=owner.access, json_body={"role": "viewer"})
    assert_error(neither, 400, "validation_failed", fields=("userId",))
    ghost = call(srv, "POST", path, token=owner.access,
                 json_body={"username": "nobody_" + uuid.uuid4().hex[:8], "role": "viewer"})
    assert_error(ghost, 400, "validation_failed", fields=("username",))
    bad = call(srv, "POST", path, token=owner.access,
               json_body={"username": "a b", "role": "viewer"})
    assert_error(bad, 400, "validation_failed", fields=("username",))
    again = call(srv, "POST", path, token=owner.access,
                 json_body={"username": stranger.username, "role": "viewer"})
    assert_error(again, 409, "conflict")


def test_delete_cascades(srv, env, people, proj):
    db = env[0]
    path = "/v1/projects/" + proj["id"]
    assert_error(call(srv, "DELETE", path, token=people["member"].access), 403)
    assert_error(call(srv, "DELETE", path, token=people["stranger"].access), 404)
    assert_error(call(srv, "DELETE", path, token=people["owner"].access,
                      headers={"If-Match": '"7"'}), 412)
    r = call(srv, "DELETE", path, token=people["owner"].access)
    assert r.status_code == 204, describe(r)
    assert_error(get(srv, people["owner"], path), 404)
    left = psql(db, "SELECT (SELECT count(*) FROM task_members WHERE project_id = '%s') + "
                "(SELECT count(*) FROM task_activity WHERE project_id = '%s')"
                % (proj["id"], proj["id"]))
    assert left.strip() == "0", left


def test_activity_paginated_newest_first(srv, people):
    owner = people["owner"]
    p = new_project(srv, owner)
    for i in range(3):
        r = call(srv, "PUT", "/v1/projects/" + p["id"], token=owner.access,
                 json_body={"name": "n%d" % i})
        assert r.status_code == 200
    r = get(srv, owner, "/v1/projects/%s/activity" % p["id"], params={"limit": 2, "page": 1})
    doc = r.json()
    assert doc["total"] == 4 and len(doc["activity"]) == 2, doc
    assert doc["activity"][0]["changes"] == {"name": ["n1", "n2"]}, doc
    assert_error(get(srv, people["stranger"], "/v1/projects/%s/activity" % p["id"]), 404)
