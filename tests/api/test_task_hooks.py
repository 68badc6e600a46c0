"""Lua hook points of the task plugin, with the shipped scripts/lua/50-task-policy.lua:
before_task_update vetoes closing a high-priority task unless the caller is an owner,
before_task_create may change fields (an "URGENT" title becomes high priority), and what
a script gives back is validated by the route's schema."""
import os
import shutil

import pytest

from task_helpers import _services  # noqa: F401 (a shared fixture)
from task_helpers import (
    REPO, add_member, assert_error, call, describe, needs_services, new_project, register,
    shared_services, task_env)

pytestmark = needs_services
POLICY = os.path.join(REPO, "scripts", "lua", "50-task-policy.lua")
BAD = """
function before_task_create(task)
    return {set = {priority = "urgent"}}
end
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    lua = tmp_path_factory.mktemp("lua")
    shutil.copy(POLICY, str(lua / "50-task-policy.lua"))
    with task_env("task_hooks", lua_dir=str(lua)) as e:
        yield e + (lua,)


def test_only_owner_closes_high_priority(env):
    srv = env[1]
    with shared_services():
        owner, member = register(srv), register(srv)
    p = new_project(srv, owner)
    add_member(srv, owner, p["id"], member, "member")
    path = "/v1/projects/%s/tasks" % p["id"]
    t = call(srv, "POST", path, token=member.access,
             json_body={"title": "big", "priority": "high"}).json()
    r = call(srv, "PUT", "/v1/tasks/" + t["id"], token=member.access,
             json_body={"status": "done"})
    err = assert_error(r, 403)
    assert "high-priority" in err["message"], err
    assert call(srv, "GET", "/v1/tasks/" + t["id"], token=owner.access).json()["status"] == "todo"
    r = call(srv, "PUT", "/v1/tasks/" + t["id"], token=owner.access, json_body={"status": "done"})
    assert r.status_code == 200, describe(r)
    low = call(srv, "POST", path, token=member.access, json_body={"title": "small"}).json()
    r = call(srv, "PUT", "/v1/tasks/" + low["id"], token=member.access,
             json_body={"status": "done"})
    assert r.status_code == 200, describe(r)
    r = call(srv, "POST", path, token=member.access,
             json_body={"title": "x", "priority": "high", "status": "done"})
    assert_error(r, 403)
    r = call(srv, "POST", path, token=member.access, json_body={"title": "URGENT fix"})
    assert r.status_code == 201 and r.json()["priority"] == "high", describe(r)


def test_script_output_is_validated(tmp_path):
    lua = tmp_path / "lua"
    lua.mkdir()
    (lua / "60-bad.lua").write_text(BAD)
    with task_env("task_hooks_bad", lua_dir=str(lua)) as (db, srv):
        with shared_services():
            owner = register(srv)
        p = new_project(srv, owner)
        r = call(srv, "POST", "/v1/projects/%s/tasks" % p["id"], token=owner.access,
                 json_body={"title": "t"})
        assert_error(r, 400, "validation_failed", fields=("priority",))
        r = call(srv, "GET", "/v1/projects/%s/tasks" % p["id"], token=owner.access)
        assert r.json()["total"] == 0, describe(r)
