"""Shared helpers for the black-box tests of the `task` plugin (API.md, "Projects and
tasks"): a fresh database per module with the user and task plugins loaded, accounts, and
projects with members of each role. Builds on user_helpers (same locks, same checks on
every answer: X-Request-Id and the JSON error shape)."""
import contextlib
import os
import re
import uuid

from user_helpers import (  # noqa: F401 (re-exported for the test modules)
    FAST_SCRYPT, SECRET, assert_error, call, conninfo, create_database, describe,
    drop_database, make_admin, needs_services, psql, register, shared_services)
from panthera_server import REPO, Server

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PROJECT_KEYS = {"id", "name", "description", "status", "ownerId", "role", "createdAt",
                "updatedAt", "version"}
PLUGIN_README = os.path.join(REPO, "plugins", "task", "README.md")


def task_server(db, workers=2, config=None, lua_dir=None):
    sections = {
        "postgres": {"conninfo": conninfo(db), "wait_timeout": "2s"},
        "redis": {"address": "unix:" + os.environ["PANTHERA_REDIS_SOCKET"]},
        "auth": {"token_secret": SECRET},
    }
    if lua_dir:
        sections["lua"] = {"dir": lua_dir}
    return Server(workers=workers, plugins=("user", "task"),
                  plugin_config={"user": dict(FAST_SCRYPT), "task": dict(config or {})},
                  sections=sections)


@contextlib.contextmanager
def task_env(prefix, config=None, lua_dir=None):
    """A fresh database and a started user+task server on it; both gone afterwards."""
    with shared_services():
        db = create_database(prefix)
    s = task_server(db, config=config, lua_dir=lua_dir)
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
