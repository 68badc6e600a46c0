"""The task list's kept pages (plugins/task/listcache.c): a worker keeps the answer of each
list query under the project's list version, which every task write bumps in its own
transaction (migrations/006), and serves it again while the version stands. What must
hold: every kind of write is seen by the next list; the caller's membership is checked on
every request, kept page or not; no two queries share a page; ETag/If-None-Match follow
the version; and the memory stays within list_cache_size.

The server here has one worker, so which answers were kept pages is exact in /metrics
(task_list_cache_hits_total, task_list_renders_total); the second module's server has two
and a small list_cache_size."""
import re
import time
import uuid

import pytest

from task_helpers import _services, people, srv  # noqa: F401 (shared fixtures)
from task_helpers import (
    add_member, assert_error, call, describe, needs_services, new_project, new_task, task_env,
    task_metric)

pytestmark = needs_services
CEILING = 60  # seconds: only a hang reaches it


@pytest.fixture(scope="module")
def env():
    with task_env("task_listcache", workers=1) as e:
        yield e


def counts(srv):
    return (task_metric(srv, "task_list_cache_hits_total"),
            task_metric(srv, "task_list_renders_total"))


def listing(srv, who, pid, expect=200, headers=None, **params):
    r = call(srv, "GET", "/v1/projects/%s/tasks" % pid, token=who.access, params=params,
             headers=headers)
    assert r.status_code == expect, describe(r)
    return r


def ids(r):
    return [t["id"] for t in r.json()["tasks"]]


@pytest.fixture
def board(srv, people):
    """A project with member and viewer, and three tasks."""
    owner = people["owner"]
    p = new_project(srv, owner)
    add_member(srv, owner, p["id"], people["member"], "member")
    add_member(srv, owner, p["id"], people["viewer"], "viewer")
    tasks = [new_task(srv, owner, p["id"], title="task %d" % i) for i in range(3)]
    return p["id"], tasks


def test_a_repeated_list_is_a_kept_page_and_the_same_bytes(srv, people, board):
    pid, _ = board
    first = listing(srv, people["owner"], pid, limit=50)
    h0, r0 = counts(srv)
    again = [listing(srv, who, pid, limit=50)
             for who in (people["owner"], people["member"], people["viewer"], people["admin"])]
    h1, r1 = counts(srv)
    assert (h1 - h0, r1 - r0) == (4, 0)
    for r in again:
        assert r.content == first.content
        assert r.headers["ETag"] == first.headers["ETag"]
        assert r.headers["Content-Type"] == "application/json; charset=utf-8"


def test_every_kind_of_write_is_seen_by_the_next_list(srv, people, board):
    pid, tasks = board
    owner, member = people["owner"], people["member"]

    def current():
        r = listing(srv, member, pid, limit=50, sort="rank")
        # Kept now (asked twice): the check below is then against a kept page.
        assert listing(srv, member, pid, limit=50, sort="rank").content == r.content
        return r.json()

    def task_in(doc, tid):
        return next((t for t in doc["tasks"] if t["id"] == tid), None)

    before = current()
    assert before["total"] == 3
    created = new_task(srv, member, pid, title="created")
    doc = current()
    assert doc["total"] == 4 and task_in(doc, created["id"])["title"] == "created"

    r = call(srv, "PUT", "/v1/tasks/%s" % tasks[0]["id"], token=member.access,
             json_body={"title": "renamed", "dependsOn": [tasks[1]["id"]]})
    assert r.status_code == 200, describe(r)
    doc = current()
    t0 = task_in(doc, tasks[0]["id"])
    assert t0["title"] == "renamed" and t0["dependsOn"] == [tasks[1]["id"]]

    r = call(srv, "POST", "/v1/tasks/%s/move" % tasks[2]["id"], token=member.access,
             json_body={"before": tasks[0]["id"]})
    assert r.status_code == 200, describe(r)
    doc = current()
    order = [t["id"] for t in doc["tasks"]]
    assert order.index(tasks[2]["id"]) < order.index(tasks[0]["id"])
    assert task_in(doc, tasks[2]["id"])["rank"] == r.json()["rank"]

    # Deleting a task another one depends on changes that one's dependsOn as well.
    r = call(srv, "DELETE", "/v1/tasks/%s" % tasks[1]["id"], token=owner.access)
    assert r.status_code == 204, describe(r)
    doc = current()
    assert doc["total"] == 4 - 1 and task_in(doc, tasks[1]["id"]) is None
    assert task_in(doc, tasks[0]["id"])["dependsOn"] == []

    # A PUT that changes nothing leaves the version, so the page stays kept.
    etag = listing(srv, member, pid, limit=50, sort="rank").headers["ETag"]
    r = call(srv, "PUT", "/v1/tasks/%s" % tasks[0]["id"], token=member.access,
             json_body={"title": "renamed"})
    assert r.status_code == 200, describe(r)
    h0, r0 = counts(srv)
    assert listing(srv, member, pid, limit=50, sort="rank").headers["ETag"] == etag
    assert counts(srv) == (h0 + 1, r0)


def test_a_user_deleted_is_unassigned_on_the_kept_page_within_the_ttl(srv, people, board):
    pid, tasks = board
    owner = people["owner"]
    gone = people["member2"]
    add_member(srv, owner, pid, gone, "member")
    r = call(srv, "PUT", "/v1/tasks/%s" % tasks[0]["id"], token=owner.access,
             json_body={"assigneeId": gone.id})
    assert r.status_code == 200, describe(r)
    page = listing(srv, owner, pid, limit=50).json()
    assert [t["assigneeId"] for t in page["tasks"] if t["id"] == tasks[0]["id"]] == [gone.id]
    r = call(srv, "DELETE", "/v1/users/%s" % gone.id, token=gone.access)
    assert r.status_code == 204, describe(r)
    # The user plugin's write bumps no task generation (generation.c): the page kept in
    # memory may answer until list_cache_ttl (2 s here) ends, then PostgreSQL's list
    # version, which the foreign key's UPDATE moved, shows the task unassigned.
    end = time.monotonic() + CEILING
    while True:
        page = listing(srv, owner, pid, limit=50).json()
        assignee = [t["assigneeId"] for t in page["tasks"] if t["id"] == tasks[0]["id"]]
        if assignee == [None]:
            break
        assert assignee == [gone.id], assignee
        assert time.monotonic() < end, "the deleted assignee is still listed"
        time.sleep(0.1)


def test_membership_is_checked_on_every_request_of_a_kept_page(srv, people, board):
    pid, _ = board
    owner, member, stranger = people["owner"], people["member"], people["stranger"]
    kept = listing(srv, member, pid, limit=50)
    assert listing(srv, member, pid, limit=50).content == kept.content
    etag = kept.headers["ETag"]
    # Never a kept page (nor a 304) for a non-member, even one who names its ETag.
    for headers in (None, {"If-None-Match": etag}):
        r = listing(srv, stranger, pid, expect=404, headers=headers, limit=50)
        assert_error(r, 404, "not_found")
    r = call(srv, "DELETE", "/v1/projects/%s/members/%s" % (pid, member.id), token=owner.access)
    assert r.status_code == 204, describe(r)
    h0, r0 = counts(srv)
    for headers in (None, {"If-None-Match": etag}):
        r = listing(srv, member, pid, expect=404, headers=headers, limit=50)
        assert_error(r, 404, "not_found")
    assert counts(srv) == (h0, r0)  # no page was served
    # The page is still kept for those who may see it; an admin (not a member) included.
    assert listing(srv, owner, pid, limit=50).content == kept.content
    assert listing(srv, people["admin"], pid, limit=50).content == kept.content
    assert counts(srv) == (h0 + 2, r0)
    # And a member added back sees it at once.
    add_member(srv, owner, pid, member, "viewer")
    assert listing(srv, member, pid, limit=50).content == kept.content


def test_no_two_queries_share_a_kept_page(srv, people, board):
    pid, _ = board
    owner = people["owner"]
    for i in range(9):
        new_task(srv, owner, pid, title="more %d/-" % i, priority=("low", "high")[i % 2],
                 status=("todo", "in_progress")[i % 2], dueDate="2031-01-%02d" % (i + 1),
                 assigneeId=owner.id if i % 3 == 0 else None)
    everything = listing(srv, owner, pid, limit=100).json()["tasks"]
    assert len(everything) == 12

    def expected(params):
        rows = everything
        if "status" in params:
            rows = [t for t in rows if t["status"] == params["status"]]
        if "priority" in params:
            rows = [t for t in rows if t["priority"] == params["priority"]]
        if "assigneeId" in params:
            rows = [t for t in rows if t["assigneeId"] == params["assigneeId"]]
        if "q" in params:
            rows = [t for t in rows if params["q"].lower() in t["title"].lower()]
        if "dueBefore" in params:
            rows = [t for t in rows if t["dueDate"] and t["dueDate"] < params["dueBefore"]]
        return rows

    queries = [
        {}, {"limit": 5}, {"limit": 5, "page": 2}, {"limit": 5, "page": 3}, {"limit": 6},
        {"status": "todo"}, {"status": "in_progress"}, {"status": "todo", "limit": 2},
        {"priority": "low"}, {"priority": "high"}, {"assigneeId": owner.id},
        {"q": "more"}, {"q": "1/-"}, {"q": "/"}, {"q": "more 1"}, {"dueBefore": "2031-01-04"},
        {"dueBefore": "2031-01-04", "status": "todo"}, {"sort": "rank"}, {"sort": "dueDate"},
        {"sort": "priority"}, {"sort": "rank", "limit": 5, "page": 2},
    ]
    for params in queries:
        first = listing(srv, owner, pid, **params)
        hits, renders = counts(srv)
        second = listing(srv, owner, pid, **params)
        assert second.content == first.content, params
        assert counts(srv) == (hits + 1, renders), params  # filtered pages are kept too
        doc = first.json()
        limit, page = params.get("limit", 10), params.get("page", 1)
        assert (doc["limit"], doc["page"]) == (limit, page), params
        want = expected(params)
        assert doc["total"] == len(want), params
        got = ids(first)
        assert len(got) == len(want[(page - 1) * limit:page * limit]), params
        assert set(got) <= {t["id"] for t in want}, params
        if "sort" not in params and not set(params) - {"limit", "page"}:
            assert got == [t["id"] for t in want][(page - 1) * limit:page * limit], params


def test_etag_and_if_none_match_follow_the_list_version(srv, people, board):
    pid, tasks = board
    member = people["member"]
    r = listing(srv, member, pid, limit=50)
    etag = r.headers["ETag"]
    assert re.fullmatch(r'"\d+"', etag), etag
    r = call(srv, "GET", "/v1/projects/%s/tasks" % pid, token=member.access,
             params={"limit": 50}, headers={"If-None-Match": etag})
    assert r.status_code == 304 and not r.content, describe(r)
    r = call(srv, "PUT", "/v1/tasks/%s" % tasks[0]["id"], token=member.access,
             json_body={"priority": "high"})
    assert r.status_code == 200, describe(r)
    r = listing(srv, member, pid, headers={"If-None-Match": etag}, limit=50)
    assert r.headers["ETag"] != etag
    assert [t["priority"] for t in r.json()["tasks"] if t["id"] == tasks[0]["id"]] == ["high"]
    assert call(srv, "GET", "/v1/projects/%s/tasks" % pid, token=member.access,
                params={"limit": 50},
                headers={"If-None-Match": r.headers["ETag"]}).status_code == 304


def test_a_project_that_is_gone_is_404_though_its_page_was_kept(srv, people, board):
    pid, _ = board
    owner = people["owner"]
    listing(srv, owner, pid, limit=50)
    listing(srv, owner, pid, limit=50)
    r = call(srv, "DELETE", "/v1/projects/%s" % pid, token=owner.access)
    assert r.status_code == 204, describe(r)
    assert_error(listing(srv, owner, pid, expect=404, limit=50), 404, "not_found")
    assert_error(listing(srv, owner, str(uuid.uuid4()), expect=404, limit=50), 404, "not_found")
