"""Authorization matrix of the task plugin, GENERATED over its routes: every operation
/openapi.json lists under the plugin's paths is called by an anonymous client, a user who
is not a member, a viewer, a member, an owner and an admin (not a member), each on a
fresh project, and the status is the one the rules give (API.md: members read, owners
write, viewers read only with 403 on writes, non-members 404, admins everything).

The rule of each operation is looked up in NEEDS, keyed by (method, path) as the served
document spells them; an operation the document has and NEEDS lacks (or the reverse)
fails the test, so a new route cannot slip past the matrix."""
import uuid

import pytest
import requests

from task_helpers import _services, srv  # noqa: F401 (shared fixtures)
from task_helpers import (
    add_member, assert_error, call, describe, make_admin, needs_services, new_project, new_task,
    register, shared_services, task_env)

pytestmark = needs_services

PLUGIN_PATHS = ("/v1/projects", "/v1/tasks", "/v1/attachments")
CALLERS = ("anon", "stranger", "viewer", "member", "owner", "admin")
RANK = {"viewer": 1, "member": 2, "owner": 3}

# (method, path) -> the least project role it needs; "any" for the project-less routes
# every signed-in user may call.
NEEDS = {
    ("GET", "/v1/projects"): "any",
    ("POST", "/v1/projects"): "any",
    ("GET", "/v1/projects/{id}"): "viewer",
    ("PUT", "/v1/projects/{id}"): "owner",
    ("DELETE", "/v1/projects/{id}"): "owner",
    ("GET", "/v1/projects/{id}/members"): "viewer",
    ("POST", "/v1/projects/{id}/members"): "owner",
    ("PUT", "/v1/projects/{id}/members/{userId}"): "owner",
    ("DELETE", "/v1/projects/{id}/members/{userId}"): "owner",
    ("GET", "/v1/projects/{id}/activity"): "viewer",
    ("GET", "/v1/projects/{id}/tasks"): "viewer",
    ("POST", "/v1/projects/{id}/tasks"): "member",
    ("GET", "/v1/tasks/{id}"): "viewer",
    ("PUT", "/v1/tasks/{id}"): "member",
    ("DELETE", "/v1/tasks/{id}"): "member",
    ("POST", "/v1/tasks/{id}/move"): "member",
    ("GET", "/v1/tasks/{id}/comments"): "viewer",
    ("POST", "/v1/tasks/{id}/comments"): "member",
    # The comment under test is the member's: only its author edits it; the author, an
    # owner or an admin deletes it.
    ("PUT", "/v1/tasks/{id}/comments/{commentId}"): "author",
    ("DELETE", "/v1/tasks/{id}/comments/{commentId}"): "author|owner|admin",
    ("GET", "/v1/tasks/{id}/attachments"): "viewer",
    ("POST", "/v1/tasks/{id}/attachments"): "member",
    ("GET", "/v1/attachments/{id}"): "viewer",
    # The attachment under test is the member's upload: the uploader, an owner or an
    # admin deletes it.
    ("DELETE", "/v1/attachments/{id}"): "author|owner|admin",
}
# Routes that answer 200 to a POST (an action, not a create).
ACTIONS = {("POST", "/v1/tasks/{id}/move")}
SUCCESS = {"GET": 200, "POST": 201, "PUT": 200, "DELETE": 204}


def expected(method, path, caller):
    if caller == "anon":
        return 401
    need = NEEDS[(method, path)]
    ok = 200 if (method, path) in ACTIONS else SUCCESS[method]
    if caller == "stranger" and need != "any":
        return 404
    if need.startswith("author"):
        allowed = {"member"} | ({"owner", "admin"} if "owner" in need else set())
        return ok if caller in allowed else 403
    if need == "any" or caller in ("owner", "admin"):
        return ok
    return ok if RANK[caller] >= RANK[need] else 403


@pytest.fixture(scope="module")
def env():
    with task_env("task_matrix") as e:
        yield e


@pytest.fixture(scope="module")
def people(srv):
    with shared_services():
        return {k: register(srv) for k in ("owner", "member", "viewer", "stranger", "extra",
                                           "newcomer")} | {"admin": make_admin(srv)}


def operations(srv):
    r = requests.get(srv.url("/openapi.json"), timeout=10)
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    ops = []
    for path, item in doc["paths"].items():
        if not path.startswith(PLUGIN_PATHS):
            continue
        for method in item:
            if method.upper() in SUCCESS:
                ops.append((method.upper(), path))
    return sorted(ops)


def test_every_route_has_a_rule(srv):
    ops = operations(srv)
    assert set(ops) == set(NEEDS), "routes without a rule: %s; rules without a route: %s" % (
        sorted(set(ops) - set(NEEDS)), sorted(set(NEEDS) - set(ops)))


def body_for(method, path, people):
    if path == "/v1/projects" and method == "POST":
        return {"name": "matrix"}
    if path == "/v1/projects/{id}" and method == "PUT":
        return {"name": "renamed"}
    if path == "/v1/projects/{id}/members" and method == "POST":
        return {"userId": people["newcomer"].id, "role": "viewer"}
    if path.endswith("{userId}") and method == "PUT":
        return {"role": "member"}
    if path == "/v1/projects/{id}/tasks" and method == "POST":
        return {"title": "matrix task"}
    if path == "/v1/tasks/{id}" and method == "PUT":
        return {"title": "renamed", "status": "in_progress"}
    if path == "/v1/tasks/{id}/move":
        return {"status": "done"}
    if path.startswith("/v1/tasks/{id}/comments") and method in ("POST", "PUT"):
        return {"body": "hello"}
    return None


@pytest.mark.parametrize("caller", CALLERS)
def test_matrix(srv, people, caller):
    owner = people["owner"]
    failures = []
    for method, path in operations(srv):
        p = new_project(srv, owner)
        for who, role in (("member", "member"), ("viewer", "viewer"), ("extra", "viewer")):
            add_member(srv, owner, p["id"], people[who], role)
        target = new_task(srv, owner, p["id"], title="target")
        c = call(srv, "POST", "/v1/tasks/%s/comments" % target["id"],
                 token=people["member"].access, json_body={"body": "the member's"})
        assert c.status_code == 201, describe(c)
        comment = c.json()
        a = call(srv, "POST", "/v1/tasks/%s/attachments" % target["id"],
                 token=people["member"].access, data=b"the member's file\n",
                 headers={"Content-Type": "text/plain"}, params={"filename": "m.txt"})
        assert a.status_code == 201, describe(a)
        attachment = a.json()
        own_id = (target["id"] if path.startswith("/v1/tasks/") else
                  attachment["id"] if path.startswith("/v1/attachments/") else p["id"])
        url = path.replace("{id}", own_id).replace("{userId}", people["extra"].id).replace(
            "{commentId}", comment["id"])
        token = None if caller == "anon" else people[caller].access
        headers = {"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {}
        raw = None
        if (method, path) == ("POST", "/v1/tasks/{id}/attachments"):
            raw = b"a file\n"
            headers["Content-Type"] = "text/plain"
            url += "?filename=f.txt"
        r = call(srv, method, url, token=token, json_body=body_for(method, path, people),
                 data=raw, headers=headers)
        want = expected(method, path, caller)
        if r.status_code != want:
            failures.append("%s %s as %s: want %s, got %s" % (method, path, caller, want,
                                                              describe(r)))
        elif want >= 400:
            assert_error(r, want)
        # A refused write changed nothing: the project still reads as created.
        if want >= 400 and method != "GET":
            after = call(srv, "GET", "/v1/projects/" + p["id"], token=owner.access)
            assert after.status_code == 200 and after.json()["version"] == 1, describe(after)
            members = call(srv, "GET", "/v1/projects/%s/members" % p["id"], token=owner.access)
            assert members.json()["total"] == 4, describe(members)
            task = call(srv, "GET", "/v1/tasks/" + target["id"], token=owner.access)
            assert task.json() == target, describe(task)
            tasks = call(srv, "GET", "/v1/projects/%s/tasks" % p["id"], token=owner.access)
            assert tasks.json()["total"] == 1, describe(tasks)
            comments = call(srv, "GET", "/v1/tasks/%s/comments" % target["id"],
                            token=owner.access)
            assert comments.json()["comments"] == [comment], describe(comments)
            files = call(srv, "GET", "/v1/tasks/%s/attachments" % target["id"],
                         token=owner.access)
            assert files.json()["attachments"] == [attachment], describe(files)
    assert not failures, "\n".join(failures)
