"""Board order of the task plugin: POST /v1/tasks/{id}/move and ?sort=rank. Ranks are
fractional keys: a move changes only the moved task's rank, except when a key would pass
rank_max_length (8 here, so the test sees it happen) and the column is rebalanced in the
same transaction. 200 random moves keep a total order that matches a model of the board."""
import random
import uuid

import pytest

from task_helpers import _services, srv  # noqa: F401 (shared fixtures)
from task_helpers import (
    activity, add_member, assert_error, call, describe, needs_services, new_project, new_task,
    register, shared_services, task_env)

pytestmark = needs_services
STATUSES = ("todo", "in_progress", "done")


@pytest.fixture(scope="module")
def env():
    with task_env("task_board", config={"rank_max_length": "8"}) as e:
        yield e


@pytest.fixture(scope="module")
def owner(srv):
    with shared_services():
        return register(srv)


def board(srv, who, pid):
    r = call(srv, "GET", "/v1/projects/%s/tasks" % pid, token=who.access,
             params={"sort": "rank", "limit": 100})
    assert r.status_code == 200, describe(r)
    cols = {s: [] for s in STATUSES}
    for t in r.json()["tasks"]:
        cols[t["status"]].append(t)
    return cols


def move(srv, who, tid, **body):
    return call(srv, "POST", "/v1/tasks/%s/move" % tid, token=who.access, json_body=body)


def test_move_places_and_answers_rank(srv, owner):
    p = new_project(srv, owner)
    ids = [new_task(srv, owner, p["id"], title="t%d" % i)["id"] for i in range(4)]
    assert [t["id"] for t in board(srv, owner, p["id"])["todo"]] == ids
    before = {t["id"]: t["rank"] for t in board(srv, owner, p["id"])["todo"]}
    r = move(srv, owner, ids[3], before=ids[0])
    assert r.status_code == 200, describe(r)
    assert r.json()["rank"] < before[ids[0]] and r.json()["version"] == 2, r.json()
    cols = board(srv, owner, p["id"])
    assert [t["id"] for t in cols["todo"]] == [ids[3], ids[0], ids[1], ids[2]]
    assert all(t["rank"] == before[t["id"]] for t in cols["todo"][1:]), "others renumbered"
    r = move(srv, owner, ids[3], status="in_progress")
    assert r.status_code == 200 and r.json()["status"] == "in_progress", describe(r)
    r = move(srv, owner, ids[0], after=ids[1], before=ids[2])
    assert r.status_code == 200, describe(r)
    assert [t["id"] for t in board(srv, owner, p["id"])["todo"]] == [ids[1], ids[0], ids[2]]
    acts = activity(srv, owner.access, p["id"])
    assert acts[0]["action"] == "moved" and set(acts[0]["changes"]) == {"rank"}, acts[0]
    assert acts[1]["changes"]["status"] == ["todo", "in_progress"], acts[1]
    # Bad neighbours.
    assert_error(move(srv, owner, ids[0], before=ids[3]), 400, "validation_failed",
                 fields=("before",))
    assert_error(move(srv, owner, ids[0], before=ids[0]), 400, "validation_failed",
                 fields=("before",))
    assert_error(move(srv, owner, ids[0], after=str(uuid.uuid4())), 400, "validation_failed",
                 fields=("after",))
    assert_error(move(srv, owner, ids[0], after=ids[2], before=ids[1]), 400, "validation_failed")
    assert_error(move(srv, owner, ids[0], rank="0"), 400, "validation_failed")
    assert_error(call(srv, "POST", "/v1/tasks/%s/move" % ids[0], token=owner.access,
                      json_body={}, headers={"If-Match": '"1"'}), 412, "precondition_failed")


def test_viewer_cannot_move(srv, owner):
    with shared_services():
        viewer = register(srv)
    p = new_project(srv, owner)
    add_member(srv, owner, p["id"], viewer, "viewer")
    t = new_task(srv, owner, p["id"], title="x")
    assert_error(move(srv, viewer, t["id"], status="done"), 403, "forbidden")


def test_200_random_moves_keep_a_total_order(srv, owner):
    rng = random.Random(20261206)
    p = new_project(srv, owner)
    model = {s: [] for s in STATUSES}
    for i in range(12):
        t = new_task(srv, owner, p["id"], title="t%d" % i)
        model["todo"].append(t["id"])
    rebalances = 0
    ranks = {t["id"]: t["rank"] for t in board(srv, owner, p["id"])["todo"]}
    for step in range(200):
        # Every other move hammers one gap (just below the top of todo, with a task that is
        # not one of its two sides) so keys grow until a rebalance must happen.
        hammer = step % 2 == 0 and len(model["todo"]) >= 2
        pool = [x for s in STATUSES for x in model[s]
                if not (hammer and x in model["todo"][:2])]
        tid = rng.choice(pool)
        src = next(s for s in STATUSES if tid in model[s])
        dst = "todo" if hammer else rng.choice(STATUSES)
        model[src].remove(tid)
        col = model[dst]
        pos = 1 if hammer else rng.randint(0, len(col))
        body = {"status": dst}
        if pos < len(col) and rng.random() < 0.5:
            body["before"] = col[pos]
        elif pos > 0:
            body["after"] = col[pos - 1]
        else:
            pos = len(col)
        r = move(srv, owner, tid, **body)
        assert r.status_code == 200, (step, describe(r))
        assert len(r.json()["rank"]) <= 8, r.json()
        col.insert(pos, tid)
        cols = board(srv, owner, p["id"])
        for s in STATUSES:
            got = [t["id"] for t in cols[s]]
            assert got == model[s], (step, s, got, model[s])
            rs = [t["rank"] for t in cols[s]]
            assert all(a < b for a, b in zip(rs, rs[1:])), (step, rs)
        changed = {t["id"] for s in STATUSES for t in cols[s]
                   if t["id"] != tid and ranks.get(t["id"]) != t["rank"]}
        if changed:
            # Only a rebalance renumbers, and then the whole destination column.
            assert changed <= set(model[dst]), (step, changed)
            rebalances += 1
        ranks = {t["id"]: t["rank"] for s in STATUSES for t in cols[s]}
    assert rebalances >= 1, "the key bound was never reached: the test proves nothing"
