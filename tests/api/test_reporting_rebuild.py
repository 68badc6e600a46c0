"""`pantherad reporting:rebuild` imports the task history recorded before the plugin was
enabled (the task plugin's activity rows), and the reports are right without Redis.

Before the plugin: simulated by erasing what the consumer wrote for a project and moving
the plugin's enabled_at past the project's activity, which is exactly the state of a
database where the task plugin ran alone."""
import pytest

from reporting_helpers import (
    call, describe, get_report, insert_events, make_admin, needs_services, new_project, psql,
    register,
    reporting_env, reporting_server, run_cli, shared_services, wait_consumed)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with reporting_env("rep_rebuild") as e:
        yield e


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


def reports(srv, token, pid):
    out = {}
    for kind in ("summary", "burndown", "flow"):
        r = get_report(srv, "/v1/reports/projects/%s/%s" % (pid, kind), token)
        assert r.status_code == 200, describe(r)
        out[kind] = r.json()
    return out


def test_rebuild_restores_the_history(env):
    db, srv = env
    owner = register(srv)
    p = new_project(srv, owner, name="Legacy")
    ids = []
    for i, status in enumerate(("todo", "in_progress", "done", "todo")):
        r = call(srv, "POST", "/v1/projects/%s/tasks" % p["id"], token=owner.access,
                 json_body={"title": "t%d" % i, "status": status})
        assert r.status_code == 201, describe(r)
        ids.append(r.json()["id"])
    for tid, status in ((ids[0], "in_progress"), (ids[1], "done"), (ids[0], "done")):
        r = call(srv, "POST", "/v1/tasks/%s/move" % tid, token=owner.access,
                 json_body={"status": status})
        assert r.status_code == 200, describe(r)
    assert call(srv, "DELETE", "/v1/tasks/%s" % ids[3], token=owner.access).status_code == 204
    wait_consumed(db)
    before = reports(srv, owner.access, p["id"])
    assert before["summary"]["byStatus"] == {"todo": 0, "in_progress": 0, "done": 3}
    assert before["summary"]["cycleTime"]["tasks"] == 2

    psql(db, "DELETE FROM reporting_projects WHERE id = '%s'; "
             "UPDATE reporting_meta SET enabled_at = now()" % p["id"])
    r = get_report(srv, "/v1/reports/projects/%s/summary" % p["id"], owner.access)
    assert r.status_code == 404  # the plugin knows nothing of it

    for _ in range(2):  # a second run adds nothing
        rc, out, err = run_cli(srv, "reporting:rebuild")
        assert rc == 0, (out, err)
        assert reports(srv, owner.access, p["id"]) == before
    count = psql(db, "SELECT count(*) FROM reporting_transitions WHERE project_id = '%s'"
                 % p["id"]).strip()
    assert count == "8"  # 4 created, 3 moves, 1 deletion


def test_rebuild_usage(env):
    rc, out, err = run_cli(env[1], "reporting:rebuild", "extra")
    assert rc == 2 and "usage" in err


def test_without_redis(env):
    """A second server on the same database with no [redis]: same answers."""
    db, srv = env
    owner = register(srv)
    p = new_project(srv, owner)
    r = call(srv, "POST", "/v1/projects/%s/tasks" % p["id"], token=owner.access,
             json_body={"title": "x", "status": "done"})
    assert r.status_code == 201
    wait_consumed(db)
    with_redis = reports(srv, owner.access, p["id"])
    bare = reporting_server(db, redis=False)
    try:
        bare.start(timeout=30)
        assert reports(bare, owner.access, p["id"]) == with_redis
        r = call(bare, "POST", "/v1/projects/%s/tasks" % p["id"], token=owner.access,
                 json_body={"title": "y"})
        assert r.status_code == 201
        wait_consumed(db)
        assert reports(bare, owner.access, p["id"])["summary"]["total"] == 2
        assert reports(srv, owner.access, p["id"])["summary"]["total"] == 2
    finally:
        bare.cleanup()


def test_deleted_project_stays_gone(env):
    """After project.deleted the reports are 404, even when an event of one of its tasks
    (another aggregate, so not ordered with it) is delivered later."""
    db, srv = env
    owner = register(srv)
    p = new_project(srv, owner)
    r = call(srv, "POST", "/v1/projects/%s/tasks" % p["id"], token=owner.access,
             json_body={"title": "x"})
    assert r.status_code == 201
    tid = r.json()["id"]
    wait_consumed(db)
    assert get_report(srv, "/v1/reports/projects/%s/summary" % p["id"],
                      owner.access).status_code == 200
    assert call(srv, "DELETE", "/v1/projects/%s" % p["id"], token=owner.access).status_code == 204
    wait_consumed(db)
    assert get_report(srv, "/v1/reports/projects/%s/summary" % p["id"],
                      owner.access).status_code == 404
    insert_events(db, [("task.status_changed", tid, {
        "projectId": p["id"], "taskId": tid, "title": "x", "from": "todo", "to": "done",
        "actorId": owner.id, "members": [{"userId": owner.id, "role": "owner"}]},
        "2026-01-01 00:00:00")])
    wait_consumed(db)
    assert get_report(srv, "/v1/reports/projects/%s/burndown" % p["id"],
                      owner.access).status_code == 404
