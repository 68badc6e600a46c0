"""The notification plugin's inbox (API.md "Notifications"): rows made by the consumer
from the task and content events, the list with its filters, pagination and
Last-Modified / If-Modified-Since, read, read-all, unread-count."""
import pytest

from notif_helpers import (TYPES, add_member, assert_error, call, describe, inbox,
                           needs_services,
                           new_project, new_task, notif_env, processed, register, rows,
                           wait_inbox)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with notif_env("ntfinbox") as (db, srv):
        yield db, srv


def test_assignment_notifies_the_assignee_once(env):
    db, srv = env
    owner, bob = register(srv), register(srv)
    p = new_project(srv, owner)
    add_member(srv, owner, p["id"], bob, "member")
    t = new_task(srv, owner, p["id"], assigneeId=bob.id)
    processed(db)
    doc = inbox(srv, bob)
    types = [n["type"] for n in doc["notifications"]]
    assert types == ["task.assigned", "project.member_added"], doc
    n = doc["notifications"][0]
    assert n["payload"]["taskId"] == t["id"] and n["payload"]["actorId"] == owner.id
    assert n["read"] is False
    assert "members" not in n["payload"]
    # The actor hears nothing of their own acts.
    assert inbox(srv, owner)["total"] == 0
