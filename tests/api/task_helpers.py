"""Shared helpers for the black-box tests of the `task` plugin (API.md, "Projects and
tasks"): a fresh database per module with the user and task plugins loaded, accounts, and
projects with members of each role. Builds on user_helpers (same locks, same checks on
every answer: X-Request-Id and the JSON error shape).

The fixtures every test_task_*.py shares live here too; a module defines only its `env`
(task_env with its own prefix and config) and imports the ones it uses:

    from task_helpers import _services, people, proj, srv  # noqa: F401 (fixtures)

`srv` is the module's server, `_services` (autouse) holds the shared-services lock
around each test, `people` are accounts (owner, member, member2, viewer, stranger and an
admin), `proj` a fresh project where they have those roles (member2 is not in it), and
`task` a task in `proj`."""
import contextlib
import glob
import json
import os
import re
import uuid

import pytest
import requests

from user_helpers import (  # noqa: F401 (re-exported for the test modules)
    FAST_SCRYPT, SECRET, assert_error, call, conninfo, create_database, describe,
    drop_database, make_admin, needs_services, psql, register, shared_services)
from panthera_server import REPO, Server

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PROJECT_KEYS = {"id", "name", "description", "status", "ownerId", "role", "createdAt",
                "updatedAt", "version"}
TASK_KEYS = {"id", "projectId", "title", "description", "status", "priority", "assigneeId",
             "dueDate", "dependsOn", "rank", "createdAt", "updatedAt", "version"}
PLUGIN_README = os.path.join(REPO, "plugins", "task", "README.md")


def task_server(db, workers=2, config=None, lua_dir=None, storage=None, redis=None):
    sections = {
        "postgres": {"conninfo": conninfo(db), "wait_timeout": "2s"},
        "redis": {"address": redis or "unix:" + os.environ["PANTHERA_REDIS_SOCKET"]},
        "auth": {"token_secret": SECRET},
        # Attachments: blobs in the server's own directory; no sweep unless asked for.
        "storage": dict({"backend": "dir", "dir": "blobs", "sweep_interval": "0"},
                        **(storage or {})),
    }
    if lua_dir:
        sections["lua"] = {"dir": lua_dir}
    return Server(workers=workers, plugins=("user", "task"),
                  plugin_config={"user": dict(FAST_SCRYPT), "task": dict(config or {})},
                  sections=sections)


@contextlib.contextmanager
def task_env(prefix, config=None, lua_dir=None, storage=None, workers=2, redis=None):
    """A fresh database and a started user+task server on it; both gone afterwards
    (`redis`: another [redis] address than the shared services')."""
    with shared_services():
        db = create_database(prefix)
    s = task_server(db, workers=workers, config=config, lua_dir=lua_dir, storage=storage,
                    redis=redis)
    s.db = db
    try:
        with shared_services():
            s.start(timeout=30)
        yield db, s
    finally:
        s.cleanup()
        drop_database(db)


def new_project(srv, owner, **fields):
    body = {"name": "proj %s" % uuid.uuid4().hex[:8]}
    body.update(fields)
    r = call(srv, "POST", "/v1/projects", token=owner.access, json_body=body)
    assert r.status_code == 201, describe(r)
    doc = r.json()
    assert set(doc) == PROJECT_KEYS, doc
    assert r.headers.get("Location") == "/v1/projects/" + doc["id"], r.headers
    return doc


def add_member(srv, owner, pid, user, role):
    r = call(srv, "POST", "/v1/projects/%s/members" % pid, token=owner.access,
             json_body={"userId": user.id, "role": role})
    assert r.status_code == 201, describe(r)
    return r.json()


def activity(srv, token, pid, limit=100):
    r = call(srv, "GET", "/v1/projects/%s/activity" % pid, token=token,
             params={"limit": limit})
    assert r.status_code == 200, describe(r)
    return r.json()["activity"]


def new_task(srv, who, pid, **fields):
    """A task created by `who` in project `pid` (a random title unless given); checks the
    answer's shape and Location."""
    body = {"title": "t %s" % uuid.uuid4().hex[:6]}
    body.update(fields)
    r = call(srv, "POST", "/v1/projects/%s/tasks" % pid, token=who.access, json_body=body)
    assert r.status_code == 201, describe(r)
    doc = r.json()
    assert set(doc) == TASK_KEYS, doc
    assert r.headers.get("Location") == "/v1/tasks/" + doc["id"]
    return doc


def task_metric(srv, name):
    """A counter of the task plugin in /metrics (summed over the workers)."""
    text = requests.get(srv.url("/metrics"), timeout=30).text
    m = re.search(r'^%s\{plugin="task"\} (\d+)$' % re.escape(name), text, re.M)
    assert m, (name, text[-2000:])
    return int(m.group(1))


def events(db, aggregate):
    """The task plugin's events about `aggregate`, oldest first: [(type, payload)]."""
    out = psql(db, "SELECT type || ' ' || payload::text FROM panthera_events "
               "WHERE aggregate_id = '%s' AND producer = 'task' ORDER BY id" % aggregate)
    return [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1]))
            for line in out.splitlines() if line]


def blob_files(srv):
    """The blobs in the server's store directory ([storage] dir = blobs): <2 hex>/<sha256>."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(srv.tmp, "blobs", "??", "*"))
                  if re.fullmatch(r"[0-9a-f]{64}", os.path.basename(p)))


def blob_refs(srv):
    """Every reference file of the store: refs/<2 hex>/<sha256>/<key>."""
    return sorted(glob.glob(os.path.join(srv.tmp, "blobs", "refs", "??", "*", "*")))


# ---- the fixtures the test modules share (each module defines its own `env`) ----

@pytest.fixture(scope="module")
def srv(env):
    return env[1]


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


@pytest.fixture(scope="module")
def people(srv):
    with shared_services():
        return {k: register(srv) for k in ("owner", "member", "member2", "viewer",
                                           "stranger")} | {"admin": make_admin(srv)}


@pytest.fixture
def proj(srv, people):
    p = new_project(srv, people["owner"], description="first")
    add_member(srv, people["owner"], p["id"], people["member"], "member")
    add_member(srv, people["owner"], p["id"], people["viewer"], "viewer")
    return p


@pytest.fixture
def task(srv, people, proj):
    return new_task(srv, people["owner"], proj["id"], title="Discuss")
