"""Tasks of the task plugin (API.md, "Projects and tasks"): CRUD with the roles, filters,
sorts and pagination, ETag flows, Idempotency-Key, the assignee rule, dependencies (one
project, no self-dependency, no cycles — also when two clients add the two halves of a
cycle at the same moment, 50 times — and no `done` while one is open, the 409 naming
them), and the activity row of every change."""
import threading
import uuid

import pytest
import requests

from task_helpers import _services, people, proj, srv  # noqa: F401 (shared fixtures)
from task_helpers import (
    activity, assert_error, call, describe, needs_services, new_project, new_task, task_env)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with task_env("task_tasks") as e:
        yield e


def put(srv, who, tid, body, **kw):
    return call(srv, "PUT", "/v1/tasks/" + tid, token=who.access, json_body=body, **kw)


def test_create_defaults_and_roles(srv, people, proj):
    t = new_task(srv, people["member"], proj["id"])
    assert (t["status"], t["priority"], t["assigneeId"], t["dueDate"], t["dependsOn"],
            t["version"], t["projectId"]) == ("todo", "medium", None, None, [], 1, proj["id"]), t
    path = "/v1/projects/%s/tasks" % proj["id"]
    assert_error(call(srv, "POST", path, token=people["viewer"].access,
                      json_body={"title": "x"}), 403, "forbidden")
    assert_error(call(srv, "POST", path, token=people["stranger"].access,
                      json_body={"title": "x"}), 404, "not_found")
    new_task(srv, people["admin"], proj["id"])
    for who in ("viewer", "member", "owner", "admin"):
        r = call(srv, "GET", "/v1/tasks/" + t["id"], token=people[who].access)
        assert r.status_code == 200 and r.json() == t, describe(r)
    assert_error(call(srv, "GET", "/v1/tasks/" + t["id"], token=people["stranger"].access), 404)
    assert_error(call(srv, "GET", "/v1/tasks/" + str(uuid.uuid4()),
                      token=people["owner"].access), 404)


@pytest.mark.parametrize("body,field", [
    ({}, "title"), ({"title": " "}, "title"), ({"title": "x", "status": "doing"}, "status"),
    ({"title": "x", "priority": "urgent"}, "priority"), ({"title": "x", "dueDate": "2024-13-01"},
                                                         "dueDate"),
    ({"title": "x", "assigneeId": "nope"}, "assigneeId"), ({"title": "x", "rank": "V"}, None),
    ({"title": "x", "dependsOn": ["zz"]}, None)])
def test_create_validation(srv, people, proj, body, field):
    r = call(srv, "POST", "/v1/projects/%s/tasks" % proj["id"], token=people["owner"].access,
             json_body=body)
    assert_error(r, 400, "validation_failed", fields=(field,) if field else ())


def test_assignee_must_be_member(srv, people, proj):
    path = "/v1/projects/%s/tasks" % proj["id"]
    r = call(srv, "POST", path, token=people["owner"].access,
             json_body={"title": "x", "assigneeId": people["stranger"].id})
    assert_error(r, 400, "validation_failed", fields=("assigneeId",))
    t = new_task(srv, people["owner"], proj["id"], assigneeId=people["viewer"].id)
    assert t["assigneeId"] == people["viewer"].id
    r = put(srv, people["member"], t["id"], {"assigneeId": people["stranger"].id})
    assert_error(r, 400, "validation_failed", fields=("assigneeId",))
    r = put(srv, people["member"], t["id"], {"assigneeId": None})
    assert r.status_code == 200 and r.json()["assigneeId"] is None, describe(r)


def test_update_etag_activity(srv, people, proj):
    t = new_task(srv, people["member"], proj["id"], description="d")
    tid = t["id"]
    r = call(srv, "GET", "/v1/tasks/" + tid, token=people["viewer"].access,
             headers={"If-None-Match": '"1"'})
    assert r.status_code == 304, describe(r)
    r = put(srv, people["member"], tid, {"title": "new", "priority": "high",
                                         "dueDate": "2030-01-02", "description": None},
            headers={"If-Match": '"1"'})
    assert r.status_code == 200, describe(r)
    doc = r.json()
    assert (doc["title"], doc["priority"], doc["dueDate"], doc["description"], doc["version"]) == \
        ("new", "high", "2030-01-02", None, 2), doc
    assert r.headers.get("ETag") == '"2"'
    assert_error(put(srv, people["member"], tid, {"title": "x"}, headers={"If-Match": '"1"'}),
                 412, "precondition_failed")
    assert_error(put(srv, people["viewer"], tid, {"title": "x"}), 403, "forbidden")
    assert_error(put(srv, people["stranger"], tid, {"title": "x"}), 404)
    assert_error(put(srv, people["member"], tid, {"version": 9}), 400, "validation_failed")
    same = put(srv, people["member"], tid, {"title": "new"})
    assert same.json()["version"] == 2, describe(same)
    acts = [a for a in activity(srv, people["owner"].access, proj["id"]) if a["entityId"] == tid]
    assert [a["action"] for a in acts] == ["updated", "created"], acts
    assert acts[0]["changes"] == {"title": [t["title"], "new"], "priority": ["medium", "high"],
                                  "dueDate": [None, "2030-01-02"], "description": ["d", None]}
    assert acts[0]["actorId"] == people["member"].id


def test_delete(srv, people, proj):
    t = new_task(srv, people["member"], proj["id"])
    assert_error(call(srv, "DELETE", "/v1/tasks/" + t["id"], token=people["viewer"].access), 403)
    r = call(srv, "DELETE", "/v1/tasks/" + t["id"], token=people["member"].access)
    assert r.status_code == 204, describe(r)
    assert_error(call(srv, "GET", "/v1/tasks/" + t["id"], token=people["owner"].access), 404)
    acts = activity(srv, people["owner"].access, proj["id"])
    assert acts[0]["action"] == "deleted" and acts[0]["entityId"] == t["id"], acts[0]


def test_filters_sorts_pagination(srv, people, proj):
    pid, o = proj["id"], people["owner"]
    a = new_task(srv, o, pid, title="Alpha report", priority="low", dueDate="2030-01-10")
    b = new_task(srv, o, pid, title="beta", priority="high", dueDate="2030-01-05",
           assigneeId=people["member"].id)
    c = new_task(srv, o, pid, title="gamma", status="in_progress", description="the ALPHA part")
    path = "/v1/projects/%s/tasks" % pid

    def ids(**params):
        r = call(srv, "GET", path, token=people["viewer"].access, params=params)
        assert r.status_code == 200, describe(r)
        return [t["id"] for t in r.json()["tasks"]]
    assert ids() == [c["id"], b["id"], a["id"]]
    assert ids(status="in_progress") == [c["id"]]
    assert ids(assigneeId=people["member"].id) == [b["id"]]
    assert ids(priority="high") == [b["id"]]
    assert ids(dueBefore="2030-01-10") == [b["id"]]
    assert ids(dueAfter="2030-01-05") == [a["id"]]
    assert sorted(ids(q="alpha")) == sorted([a["id"], c["id"]])
    assert ids(sort="dueDate") == [b["id"], a["id"], c["id"]]
    assert ids(sort="priority") == [b["id"], c["id"], a["id"]]
    assert ids(sort="rank") == [a["id"], b["id"], c["id"]]
    r = call(srv, "GET", path, token=o.access, params={"limit": 2, "page": 2})
    assert r.json()["total"] == 3 and len(r.json()["tasks"]) == 1, describe(r)
    for bad in ({"sort": "title"}, {"status": "x"}, {"dueBefore": "soon"}, {"limit": 0}):
        assert_error(call(srv, "GET", path, token=o.access, params=bad), 400, "validation_failed")


def test_list_total_counts_every_create_and_delete(srv, people, proj):
    """The unfiltered total is the project's kept counter, the filtered one a count: both
    follow creates and deletes, a page past the end is empty with its total, another
    project's total is its own, and the list is the gate's: 404 for a non-member, the whole
    list for an admin who is not a member."""
    pid, o = proj["id"], people["owner"]
    path = "/v1/projects/%s/tasks" % pid

    def page(who=o, **params):
        r = call(srv, "GET", path, token=who.access, params=params)
        assert r.status_code == 200, describe(r)
        return r.json()
    assert page() == {"total": 0, "page": 1, "limit": 10, "tasks": []}
    made = [new_task(srv, people["member"], pid, status=s) for s in ("todo", "done", "todo")]
    other = new_project(srv, o)
    new_task(srv, o, other["id"])
    assert page()["total"] == 3 and page(status="todo")["total"] == 2
    call(srv, "DELETE", "/v1/tasks/" + made[0]["id"], token=o.access)
    body = page(limit=1, page=5)
    assert body["total"] == 2 and body["tasks"] == [] and body["page"] == 5, body
    assert page(status="todo")["total"] == 1
    assert page(people["admin"])["total"] == 2
    assert [t["id"] for t in page(people["viewer"], sort="rank")["tasks"]] == \
        [made[2]["id"], made[1]["id"]]
    for params in ({}, {"status": "todo"}):
        assert_error(call(srv, "GET", path, token=people["stranger"].access, params=params), 404)
    r = call(srv, "GET", "/v1/projects/%s/tasks" % other["id"], token=o.access)
    assert r.json()["total"] == 1, describe(r)
    r = call(srv, "DELETE", "/v1/projects/" + other["id"], token=o.access)
    assert r.status_code == 204, describe(r)
    assert_error(call(srv, "GET", "/v1/projects/%s/tasks" % other["id"], token=o.access), 404)
    assert page()["total"] == 2


def test_create_idempotent(srv, people, proj):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    path = "/v1/projects/%s/tasks" % proj["id"]
    a = call(srv, "POST", path, token=people["member"].access, json_body={"title": "i"},
             headers=key)
    b = call(srv, "POST", path, token=people["member"].access, json_body={"title": "i"},
             headers=key)
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    r = call(srv, "GET", path, token=people["member"].access)
    assert r.json()["total"] == 1, describe(r)


def test_dependencies_rules(srv, people, proj):
    o, pid = people["owner"], proj["id"]
    a = new_task(srv, o, pid)
    b = new_task(srv, o, pid, dependsOn=[a["id"]])
    assert b["dependsOn"] == [a["id"]]
    c = new_task(srv, o, pid)
    assert_error(put(srv, o, a["id"], {"dependsOn": [a["id"]]}), 409, "conflict")
    assert_error(put(srv, o, a["id"], {"dependsOn": [b["id"]]}), 409, "conflict")
    r = put(srv, o, c["id"], {"dependsOn": [b["id"]]})
    assert r.status_code == 200, describe(r)
    assert_error(put(srv, o, a["id"], {"dependsOn": [c["id"]]}), 409, "conflict")  # a<-b<-c
    other = new_project(srv, o)
    x = new_task(srv, o, other["id"])
    assert_error(put(srv, o, a["id"], {"dependsOn": [x["id"]]}), 400, "validation_failed",
                 fields=("dependsOn",))
    # done while a dependency is open: 409 naming it.
    r = put(srv, o, b["id"], {"status": "done"})
    err = assert_error(r, 409, "conflict")
    assert a["id"] in err["message"], err
    r = call(srv, "POST", "/v1/tasks/%s/move" % b["id"], token=o.access, json_body={"status": "done"})
    assert_error(r, 409, "conflict")
    assert put(srv, o, a["id"], {"status": "done"}).status_code == 200
    r = put(srv, o, b["id"], {"status": "done"})
    assert r.status_code == 200 and r.json()["status"] == "done", describe(r)
    # Deleting a dependency drops the edge.
    assert call(srv, "DELETE", "/v1/tasks/" + a["id"], token=o.access).status_code == 204
    assert call(srv, "GET", "/v1/tasks/" + b["id"], token=o.access).json()["dependsOn"] == []
    r = put(srv, o, c["id"], {"dependsOn": []})
    assert r.status_code == 200 and r.json()["dependsOn"] == [], describe(r)
    acts = [x for x in activity(srv, o.access, pid) if x["entityId"] == c["id"]]
    assert acts[0]["changes"] == {"dependsOn": [[b["id"]], []]}, acts[0]


def test_cycle_race_50_times(srv, people, proj):
    """Two clients add A->B and B->A at the same moment: exactly one wins, every time."""
    o, pid = people["owner"], proj["id"]
    for i in range(50):
        a, b = new_task(srv, o, pid), new_task(srv, o, pid)
        barrier = threading.Barrier(2)
        results = {}

        def add(src, dst):
            with requests.Session() as s:
                barrier.wait(timeout=30)
                results[src] = call(srv, "PUT", "/v1/tasks/" + src, token=o.access,
                                    json_body={"dependsOn": [dst]}, session=s).status_code
        ts = [threading.Thread(target=add, args=(a["id"], b["id"])),
              threading.Thread(target=add, args=(b["id"], a["id"]))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert sorted(results.values()) == [200, 409], (i, results)
        deps = [call(srv, "GET", "/v1/tasks/" + x, token=o.access).json()["dependsOn"]
                for x in (a["id"], b["id"])]
        assert sorted(len(d) for d in deps) == [0, 1], (i, deps)
