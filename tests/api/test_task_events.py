"""Events of the task plugin (PLUGINS.md, "Task plugin events"): every change emits its
event through px_event_emit in the change's transaction, with the payload fields of the
contract, "actorId" and "members" (after the change; before it for project.deleted). Read
from the host's event log (panthera_events) of the module's database; a refused change
emits nothing."""
import json
import uuid

import pytest

from task_helpers import _services  # noqa: F401 (a shared fixture)
from task_helpers import (
    add_member, assert_error, call, describe, needs_services, new_project, new_task, psql,
    register, shared_services, task_env)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with task_env("task_events") as e:
        yield e


def events_since(db, last_id):
    out = psql(db, "SELECT coalesce(json_agg(json_build_object('id', id, 'type', type, "
                   "'aggregate', aggregate_id, 'producer', producer, 'payload', payload) "
                   "ORDER BY id), '[]') FROM panthera_events WHERE id > %d" % last_id)
    return json.loads(out)


def last_id(db):
    return int(psql(db, "SELECT coalesce(max(id), 0) FROM panthera_events").strip())


def test_every_change_emits_its_event(env):
    db, srv = env
    with shared_services():
        owner, bob, eve = register(srv), register(srv), register(srv)
    mark = last_id(db)
    p = new_project(srv, owner)
    pid = p["id"]
    add_member(srv, owner, pid, bob, "member")
    r = call(srv, "PUT", "/v1/projects/%s/members/%s" % (pid, bob.id), token=owner.access,
             json_body={"role": "viewer"})
    assert r.status_code == 200, describe(r)
    r = call(srv, "PUT", "/v1/projects/%s/members/%s" % (pid, bob.id), token=owner.access,
             json_body={"role": "member"})
    add_member(srv, owner, pid, eve, "viewer")
    r = call(srv, "DELETE", "/v1/projects/%s/members/%s" % (pid, eve.id), token=owner.access)
    assert r.status_code == 204
    r = call(srv, "PUT", "/v1/projects/" + pid, token=owner.access, json_body={"name": "P2"})
    assert r.status_code == 200
    t = new_task(srv, bob, pid, title="T", assigneeId=bob.id, dueDate="2031-02-03")
    r = call(srv, "PUT", "/v1/tasks/" + t["id"], token=bob.access,
             json_body={"status": "in_progress", "assigneeId": owner.id, "title": "T2"})
    assert r.status_code == 200, describe(r)
    r = call(srv, "POST", "/v1/tasks/%s/move" % t["id"], token=bob.access,
             json_body={"status": "done"})
    assert r.status_code == 200, describe(r)
    # Refused changes emit nothing.
    assert_error(call(srv, "PUT", "/v1/tasks/" + t["id"], token=bob.access,
                      json_body={"dependsOn": [t["id"]]}), 409)
    r = call(srv, "DELETE", "/v1/tasks/" + t["id"], token=owner.access)
    assert r.status_code == 204
    r = call(srv, "DELETE", "/v1/projects/" + pid, token=owner.access)
    assert r.status_code == 204

    evs = [e for e in events_since(db, mark)
           if e["payload"].get("projectId") == pid]
    assert all(e["producer"] == "task" for e in evs), evs
    types = [e["type"] for e in evs]
    assert types == [
        "project.created", "project.member_added", "project.member_role_changed",
        "project.member_role_changed", "project.member_added", "project.member_removed",
        "project.updated", "task.created", "task.assigned", "task.updated", "task.assigned",
        "task.status_changed", "task.updated", "task.status_changed", "task.deleted",
        "project.deleted"], types
    owner_m = {"userId": owner.id, "role": "owner"}
    bob_m = {"userId": bob.id, "role": "member"}
    by = list(zip(types, evs))

    def pl(i):
        return by[i][1]["payload"]
    for typ, e in by:
        want = pid if typ.startswith("project.") else t["id"]
        assert e["aggregate"] == want, e
        assert "actorId" in e["payload"] and isinstance(e["payload"]["members"], list), e
    assert pl(0) == {"projectId": pid, "name": p["name"], "ownerId": owner.id,
                     "actorId": owner.id, "members": [owner_m]}
    assert pl(1) == {"projectId": pid, "projectName": p["name"], "userId": bob.id,
                     "role": "member", "actorId": owner.id, "members": [owner_m, bob_m]}
    assert pl(2) == {"projectId": pid, "userId": bob.id, "from": "member", "to": "viewer",
                     "actorId": owner.id,
                     "members": [owner_m, {"userId": bob.id, "role": "viewer"}]}
    assert pl(5) == {"projectId": pid, "projectName": p["name"], "userId": eve.id,
                     "actorId": owner.id, "members": [owner_m, bob_m]}
    assert pl(6) == {"projectId": pid, "changes": {"name": [p["name"], "P2"]},
                     "actorId": owner.id, "members": [owner_m, bob_m]}
    assert pl(7) == {"projectId": pid, "taskId": t["id"], "title": "T", "status": "todo",
                     "priority": "medium", "assigneeId": bob.id, "dueDate": "2031-02-03",
                     "createdAt": t["createdAt"], "actorId": bob.id,
                     "members": [owner_m, bob_m]}
    assert pl(8)["assigneeId"] == bob.id and pl(8)["previousAssigneeId"] is None
    assert pl(9)["changes"] == {"title": ["T", "T2"], "status": ["todo", "in_progress"],
                                "assigneeId": [bob.id, owner.id]}, pl(9)
    assert pl(9)["title"] == "T2"
    assert (pl(10)["assigneeId"], pl(10)["previousAssigneeId"]) == (owner.id, bob.id)
    assert (pl(11)["from"], pl(11)["to"]) == ("todo", "in_progress")
    assert (pl(13)["from"], pl(13)["to"]) == ("in_progress", "done")
    assert pl(14) == {"projectId": pid, "taskId": t["id"], "title": "T2", "status": "done",
                      "actorId": owner.id, "members": [owner_m, bob_m]}
    assert pl(15) == {"projectId": pid, "name": "P2", "actorId": owner.id,
                      "members": [owner_m, bob_m]}


def test_idempotent_replay_emits_once(env):
    db, srv = env
    with shared_services():
        owner = register(srv)
    mark = last_id(db)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    for _ in range(2):
        r = call(srv, "POST", "/v1/projects", token=owner.access, json_body={"name": "once"},
                 headers=key)
        assert r.status_code == 201
    evs = [e for e in events_since(db, mark) if e["payload"].get("projectId") == r.json()["id"]]
    assert [e["type"] for e in evs] == ["project.created"], evs
