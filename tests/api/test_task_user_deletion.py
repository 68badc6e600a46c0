"""A user deleted while tasks are being written by them and about them.

Deleting a user (the user plugin) and writing a task (the task plugin) lock the same rows
in opposite orders: the deletion locks the user's row and then, through the foreign keys
(ON DELETE SET NULL / CASCADE), every task, comment and membership that names them; a task
write locks its task row and then, checking its foreign key, the user's row FOR KEY SHARE.
PostgreSQL resolves such a cycle by aborting one side (40P01). Neither side may then answer
500 or lose a write it acknowledged: the deletion still succeeds, each write is either done
or refused with the API's error shape, and afterwards nothing names the deleted user."""
import threading

import pytest

from task_helpers import _services, people, srv  # noqa: F401 (shared fixtures)
from task_helpers import (add_member, call, describe, needs_services, new_project, new_task,
                          task_env)
from user_helpers import register

pytestmark = needs_services

ROUNDS = 12
WRITERS = 4
# What a write racing the deletion of the user it names may be told: done, or refused
# because the user (its token, its membership, the assignee) is gone. Not 503: with the
# users locked first (store.c, sql_lock_users) there is no cycle for PostgreSQL to break.
REFUSED = {401, 403, 404, 409}


def acceptable(method, path, status, text):
    if 200 <= status < 300 or status in REFUSED:
        return True
    # The owner naming a user whose membership the deletion just removed.
    return status == 400 and '"assigneeId"' in text and "validation_failed" in text


@pytest.fixture(scope="module")
def env():
    with task_env("task_user_deletion") as e:
        yield e


def _writer(srv, owner, victim, tids, stop, answers):
    i = 0
    while not stop.is_set():
        tid = tids[i % len(tids)]
        i += 1
        for who, method, path, body in (
                (owner, "PUT", "/v1/tasks/" + tid, {"assigneeId": victim.id}),
                (victim, "PUT", "/v1/tasks/" + tid, {"title": "by victim %d" % i}),
                (victim, "POST", "/v1/tasks/%s/comments" % tid, {"body": "note %d" % i}),
                (owner, "POST", "/v1/tasks/%s/comments" % tid,
                 {"body": "@%s look %d" % (victim.username, i)})):
            r = call(srv, method, path, token=who.access, json_body=body)
            answers.append((method, path, r.status_code, r.text[:300]))


def test_deleting_a_user_during_writes_naming_them(srv, people):
    owner = people["owner"]
    for round_ in range(ROUNDS):
        victim = register(srv)
        p = new_project(srv, owner)
        add_member(srv, owner, p["id"], victim, "member")
        tids = [new_task(srv, owner, p["id"], assigneeId=victim.id)["id"] for _ in range(3)]
        stop, answers = threading.Event(), []
        writers = [threading.Thread(target=_writer, args=(srv, owner, victim, tids, stop, answers))
                   for _ in range(WRITERS)]
        for t in writers:
            t.start()
        # Let the writers get going before the deletion races them.
        while len(answers) < 8:
            threading.Event().wait(0.01)
        r = call(srv, "DELETE", "/v1/users/" + victim.id, token=victim.access)
        deleted_after = len(answers)
        while len(answers) < deleted_after + 8:
            threading.Event().wait(0.01)
        stop.set()
        for t in writers:
            t.join()
        assert r.status_code == 204, (round_, describe(r))
        bad = [a for a in answers if not acceptable(*a)]
        assert not bad, (round_, bad[:5])
        assert "lost a lock conflict" not in srv.error_log(), srv.error_log()[-3000:]
        for tid in tids:
            r = call(srv, "GET", "/v1/tasks/" + tid, token=owner.access)
            assert r.status_code == 200, describe(r)
            assert r.json()["assigneeId"] is None, (round_, r.json())
        r = call(srv, "GET", "/v1/projects/%s/members" % p["id"], token=owner.access)
        assert r.status_code == 200, describe(r)
        assert victim.id not in r.text, (round_, r.json())
