"""The reporting plugin's reports against hand-computed numbers for a scripted history
(reporting_helpers explains how the times are set: task events inserted into the host's
event log with chosen times).

The script (UTC), tasks A..F of one project with owner, member and viewer:
  03-01 09:00 A created todo (high, assignee member)   09:00 B created todo (low)
        10:00 C created todo
  03-02 09:00 A todo->in_progress   12:00 B todo->in_progress   12:30 B assigned to member
  03-03 09:00 A in_progress->done   10:00 D created todo (due 03-02)
  03-04 12:00 B in_progress->done   13:00 A done->todo (reopened)   14:00 C deleted (todo)
  03-05 08:00 A todo->in_progress   10:00 D todo->done   11:00 E created in_progress
        15:00 E in_progress->done   16:00 F created todo (due 03-03)   20:00 A in_progress->done
End of each day (todo, in_progress, done):
  02-28 (0,0,0)  03-01 (3,0,0)  03-02 (1,2,0)  03-03 (2,1,1)  03-04 (2,0,1)  03-05 (1,0,4)
Cycle times (done tasks): A from its last reopening: 03-05 08:00 -> 20:00 = 43200 s;
B 03-02 12:00 -> 03-04 12:00 = 172800 s; E created in_progress 11:00 -> 15:00 = 14400 s;
D never in progress: none. Median 43200; p85 (interpolated, position 0.85*2 = 1.7):
43200 + 0.7 * (172800 - 43200) = 133920.
Site activity: tasksCreated 03-01: 3, 03-03: 1, 03-05: 2; tasksDone 03-03: 1, 03-04: 1,
03-05: 3; plus scripted user.registered / post.published / post.commented events."""
import csv
import io

import pytest

from reporting_helpers import (
    add_member, assert_error, call, describe, get_report, insert_events, make_admin,
    needs_services, new_id, new_project, register, reporting_env, shared_services,
    wait_consumed)
from user_helpers import psql

pytestmark = needs_services

FLOW = {"2026-02-28": (0, 0, 0), "2026-03-01": (3, 0, 0), "2026-03-02": (1, 2, 0),
        "2026-03-03": (2, 1, 1), "2026-03-04": (2, 0, 1), "2026-03-05": (1, 0, 4),
        "2026-03-06": (1, 0, 4)}


@pytest.fixture(scope="module")
def env():
    with reporting_env("rep_hist") as e:
        yield e


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


@pytest.fixture(scope="module")
def world(env):
    db, srv = env
    with shared_services():
        people = {k: register(srv) for k in ("owner", "member", "viewer", "stranger")}
        people["admin"] = make_admin(srv)
        p = new_project(srv, people["owner"], name="Apollo")
        add_member(srv, people["owner"], p["id"], people["member"], "member")
        add_member(srv, people["owner"], p["id"], people["viewer"], "viewer")
        members = [{"userId": people[k].id, "role": r}
                   for k, r in (("owner", "owner"), ("member", "member"), ("viewer", "viewer"))]
        t = {k: new_id() for k in "ABCDEF"}
        pid, mem = p["id"], people["member"].id

        def ev(kind, task, at, **fields):
            payload = {"projectId": pid, "taskId": t[task], "title": "task " + task,
                       "actorId": people["owner"].id, "members": members}
            payload.update(fields)
            return (kind, t[task], payload, at)

        def created(task, at, status="todo", priority="medium", assignee=None, due=None):
            return ev("task.created", task, at, status=status, priority=priority,
                      assigneeId=assignee, dueDate=due, createdAt=at)

        def moved(task, at, a, b):
            return ev("task.status_changed", task, at, **{"from": a, "to": b})

        script = [
            created("A", "2026-03-01 09:00:00", priority="high", assignee=mem),
            created("B", "2026-03-01 09:00:00", priority="low"),
            created("C", "2026-03-01 10:00:00"),
            moved("A", "2026-03-02 09:00:00", "todo", "in_progress"),
            moved("B", "2026-03-02 12:00:00", "todo", "in_progress"),
            ev("task.assigned", "B", "2026-03-02 12:30:00", assigneeId=mem,
               previousAssigneeId=None),
            moved("A", "2026-03-03 09:00:00", "in_progress", "done"),
            created("D", "2026-03-03 10:00:00", due="2026-03-02"),
            moved("B", "2026-03-04 12:00:00", "in_progress", "done"),
            moved("A", "2026-03-04 13:00:00", "done", "todo"),
            ev("task.deleted", "C", "2026-03-04 14:00:00", status="todo"),
            moved("A", "2026-03-05 08:00:00", "todo", "in_progress"),
            moved("D", "2026-03-05 10:00:00", "todo", "done"),
            created("E", "2026-03-05 11:00:00", status="in_progress"),
            moved("E", "2026-03-05 15:00:00", "in_progress", "done"),
            created("F", "2026-03-05 16:00:00", due="2026-03-03"),
            moved("A", "2026-03-05 20:00:00", "in_progress", "done"),
            ("user.registered", new_id(), {"userId": new_id(), "username": "x1"},
             "2026-03-01 08:00:00"),
            ("user.registered", new_id(), {"userId": new_id(), "username": "x2"},
             "2026-03-01 23:59:59"),
            ("user.registered", new_id(), {"userId": new_id(), "username": "x3"},
             "2026-03-02 00:00:00"),
            ("post.published", new_id(), {"postId": new_id(), "title": "p"},
             "2026-03-03 10:00:00"),
            ("post.commented", new_id(), {"postId": new_id(), "title": "p"},
             "2026-03-03 11:00:00"),
            ("post.commented", new_id(), {"postId": new_id(), "title": "p"},
             "2026-03-05 11:00:00"),
        ]
        insert_events(db, script)
        wait_consumed(db)
    return {"people": people, "pid": pid, "tasks": t, "db": db}


def burndown(srv, world, who="member", **params):
    r = get_report(srv, "/v1/reports/projects/%s/burndown" % world["pid"],
                   world["people"][who].access, params=params)
    assert r.status_code == 200, describe(r)
    return r.json()


def test_flow_by_day(env, world):
    srv = env[1]
    r = get_report(srv, "/v1/reports/projects/%s/flow" % world["pid"],
                   world["people"]["viewer"].access,
                   params={"from": "2026-02-28", "to": "2026-03-06"})
    assert r.status_code == 200, describe(r)
    doc = r.json()
    assert doc["from"] == "2026-02-28" and doc["to"] == "2026-03-06"
    assert doc["projectId"] == world["pid"]
    got = {d["date"]: (d["todo"], d["in_progress"], d["done"]) for d in doc["days"]}
    assert got == FLOW
    assert [d["date"] for d in doc["days"]] == sorted(FLOW)


def test_burndown_by_day(env, world):
    doc = burndown(env[1], world, **{"from": "2026-02-28", "to": "2026-03-06"})
    got = {d["date"]: (d["scope"], d["done"], d["remaining"]) for d in doc["days"]}
    assert got == {k: (sum(v), v[2], v[0] + v[1]) for k, v in FLOW.items()}


def test_burndown_range_inside_history(env, world):
    """A range starting mid-history carries the counts of the days before it."""
    doc = burndown(env[1], world, **{"from": "2026-03-03", "to": "2026-03-04"})
    assert [(d["date"], d["scope"], d["done"]) for d in doc["days"]] == [
        ("2026-03-03", 4, 1), ("2026-03-04", 3, 1)]


def test_summary(env, world):
    srv, people = env[1], world["people"]
    r = get_report(srv, "/v1/reports/projects/%s/summary" % world["pid"], people["owner"].access)
    assert r.status_code == 200, describe(r)
    s = r.json()
    assert s["name"] == "Apollo" and s["projectId"] == world["pid"]
    assert s["total"] == 5
    assert s["byStatus"] == {"todo": 1, "in_progress": 0, "done": 4}
    assert s["byPriority"] == {"low": 1, "medium": 3, "high": 1}
    assert s["byAssignee"] == [{"assigneeId": None, "count": 3},
                               {"assigneeId": people["member"].id, "count": 2}]
    assert s["overdue"] == 1  # F (due 03-03, todo); D is due earlier but done
    assert s["completionPercent"] == 80.0
    assert s["cycleTime"]["tasks"] == 3
    assert s["cycleTime"]["medianSeconds"] == pytest.approx(43200)
    assert s["cycleTime"]["p85Seconds"] == pytest.approx(133920)


def test_activity(env, world):
    srv, people = env[1], world["people"]
    r = get_report(srv, "/v1/reports/activity", people["admin"].access,
                   params={"from": "2026-03-01", "to": "2026-03-05"})
    assert r.status_code == 200, describe(r)
    days = {d["date"]: d for d in r.json()["days"]}
    cols = ("signups", "posts", "comments", "tasksCreated", "tasksDone")
    assert {k: tuple(v[c] for c in cols) for k, v in days.items()} == {
        "2026-03-01": (2, 0, 0, 3, 0), "2026-03-02": (1, 0, 0, 0, 0),
        "2026-03-03": (0, 1, 1, 1, 1), "2026-03-04": (0, 0, 0, 0, 1),
        "2026-03-05": (0, 0, 1, 2, 3)}
    r = get_report(srv, "/v1/reports/activity", people["owner"].access)
    assert_error(r, 403, "forbidden")


def test_past_days_do_not_change(env, world):
    """Changes made now (through the real API) move today's numbers only."""
    db, srv = env
    people, pid = world["people"], world["pid"]
    rng = {"from": "2026-02-28", "to": "2026-03-06"}
    before = burndown(srv, world, **rng)
    flow_before = get_report(srv, "/v1/reports/projects/%s/flow" % pid, people["owner"].access,
                             params=rng).json()
    today_before = burndown(srv, world)["days"][-1]
    r = call(srv, "POST", "/v1/projects/%s/tasks" % pid, token=people["owner"].access,
             json_body={"title": "late", "status": "in_progress"})
    assert r.status_code == 201, describe(r)
    r = call(srv, "POST", "/v1/tasks/%s/move" % r.json()["id"], token=people["owner"].access,
             json_body={"status": "done"})
    assert r.status_code == 200, describe(r)
    wait_consumed(db)
    assert burndown(srv, world, **rng) == before
    assert get_report(srv, "/v1/reports/projects/%s/flow" % pid, people["owner"].access,
                      params=rng).json() == flow_before
    today = burndown(srv, world)["days"][-1]
    assert today["scope"] == today_before["scope"] + 1
    assert today["done"] == today_before["done"] + 1


def test_members_only(env, world):
    srv, people, pid = env[1], world["people"], world["pid"]
    for kind in ("summary", "burndown", "flow"):
        path = "/v1/reports/projects/%s/%s" % (pid, kind)
        for who in ("owner", "member", "viewer", "admin"):
            r = get_report(srv, path, people[who].access)
            assert r.status_code == 200, (who, describe(r))
        assert_error(get_report(srv, path, people["stranger"].access), 404, "not_found")
        assert_error(get_report(srv, "/v1/reports/projects/%s/%s" % (new_id(), kind),
                                people["admin"].access), 404, "not_found")
        assert_error(get_report(srv, "/v1/reports/projects/nope/%s" % kind,
                                people["admin"].access), 404, "not_found")
        assert get_report(srv, path, None).status_code == 401


def test_bad_ranges(env, world):
    srv, tok, pid = env[1], world["people"]["member"].access, world["pid"]
    path = "/v1/reports/projects/%s/burndown" % pid
    for params, field in (({"from": "2026-02-30"}, "from"), ({"to": "yesterday"}, "to"),
                          ({"from": "2026-03-05", "to": "2026-03-01"}, "from"),
                          ({"from": "2025-01-01", "to": "2026-01-02"}, "to")):
        r = get_report(srv, path, tok, params=params)
        assert r.status_code == 400, (params, describe(r))
        err = r.json()["error"]
        assert err["code"] == "validation_failed" and field in err["fields"], (params, err)
    # 366 days is the most a range may cover (a leap year).
    r = get_report(srv, path, tok, params={"from": "2024-01-01", "to": "2024-12-31"})
    assert r.status_code == 200, describe(r)
    assert len(r.json()["days"]) == 366
    r = get_report(srv, "/v1/reports/activity", world["people"]["admin"].access,
                   params={"from": "2024-01-01", "to": "2025-01-01"})
    assert r.status_code == 400


def test_negotiation(env, world):
    srv, tok, pid = env[1], world["people"]["member"].access, world["pid"]
    path = "/v1/reports/projects/%s/burndown" % pid
    for accept, ctype in (("text/csv;q=0.5, image/svg+xml;q=0.9", "image/svg+xml"),
                          ("application/json;q=0, text/*", "text/csv"),
                          ("*/*", "application/json"), (None, "application/json"),
                          ("image/*;q=0.2, application/json;q=0.1", "image/svg+xml")):
        r = get_report(srv, path, tok, accept=accept)
        assert r.status_code == 200, (accept, describe(r))
        assert r.headers["Content-Type"].startswith(ctype), (accept, r.headers)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert_error(get_report(srv, path, tok, accept="text/html"), 406, "not_acceptable")
    assert_error(get_report(srv, path, tok, accept="application/json;q=0"), 406,
                 "not_acceptable")
    summary = "/v1/reports/projects/%s/summary" % pid
    assert_error(get_report(srv, summary, tok, accept="image/svg+xml"), 406, "not_acceptable")
    r = get_report(srv, summary, tok, accept="image/svg+xml, text/csv;q=0.1")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")


def test_burndown_csv(env, world):
    srv, tok, pid = env[1], world["people"]["member"].access, world["pid"]
    r = get_report(srv, "/v1/reports/projects/%s/burndown" % pid, tok, accept="text/csv",
                   params={"from": "2026-02-28", "to": "2026-03-06"})
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].startswith("text/csv")
    disp = r.headers["Content-Disposition"]
    assert disp.startswith("attachment;") and \
        'filename="burndown-%s-2026-02-28-2026-03-06.csv"' % pid in disp, disp
    raw = r.content
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert rows[0] == ["date", "scope", "done", "remaining"]
    assert {row[0]: tuple(int(x) for x in row[1:]) for row in rows[1:]} == {
        k: (sum(v), v[2], v[0] + v[1]) for k, v in FLOW.items()}


def test_caching_follows_changes(env, world):
    """A second identical request is served from the cache, and a change (a new event)
    is visible at once on the next one: the cache key holds the project's generation."""
    db, srv = env
    people, pid = world["people"], world["pid"]
    first = get_report(srv, "/v1/reports/projects/%s/summary" % pid, people["owner"].access)
    again = get_report(srv, "/v1/reports/projects/%s/summary" % pid, people["owner"].access)
    assert first.json() == again.json()
    r = call(srv, "POST", "/v1/projects/%s/tasks" % pid, token=people["owner"].access,
             json_body={"title": "cached?"})
    assert r.status_code == 201, describe(r)
    wait_consumed(db)
    after = get_report(srv, "/v1/reports/projects/%s/summary" % pid, people["owner"].access)
    assert after.json()["total"] == first.json()["total"] + 1


def test_real_signups_count_today(env, world):
    """user.registered from the user plugin (not scripted) lands on today's row."""
    db, srv = env
    admin = world["people"]["admin"].access

    def today_signups():
        r = get_report(srv, "/v1/reports/activity", admin)
        assert r.status_code == 200, describe(r)
        return r.json()["days"][-1]["signups"]

    before = today_signups()
    register(srv)
    wait_consumed(db)
    assert today_signups() == before + 1


def test_site_activity_of_two_databases_sharing_redis_never_mixes(env, world):
    """The site report's cache key names the database (site_id): two deployments on one
    Redis whose generations happen to be equal still get their own numbers."""
    db, srv = env
    mine = get_report(srv, "/v1/reports/activity", world["people"]["admin"].access)
    assert mine.status_code == 200, describe(mine)  # and now cached
    with reporting_env("rep_other") as (db2, srv2):
        admin2 = make_admin(srv2)  # made by the admin command: no user.registered
        register(srv2)
        register(srv2)
        wait_consumed(db2)
        gen = psql(db, "SELECT generation FROM reporting_meta").strip()
        psql(db2, "UPDATE reporting_meta SET generation = %s" % gen)
        theirs = get_report(srv2, "/v1/reports/activity", admin2.access)
        assert theirs.status_code == 200, describe(theirs)
        assert sum(d["signups"] for d in theirs.json()["days"]) == 2
        assert theirs.json()["days"] != mine.json()["days"]
