"""Shared helpers for the black-box tests of the `content` plugin (API.md, "Content"):
test_content_*.py. Builds on user_helpers (same services, locks, database-per-module and
the `call()` checks every answer goes through); the server loads `user` (accounts and
tokens) and `content`.
"""
import contextlib
import json
import os
import re
import subprocess
import uuid

from panthera_server import Server
from user_helpers import (  # noqa: F401 (re-exported for the test modules)
    FAST_SCRYPT, SECRET, assert_error, call, conninfo, create_database, describe, psql,
    drop_database, make_admin, needs_services, register, shared_services, uniq)

POST_KEYS = {"id", "authorId", "kind", "title", "body", "tags", "status", "publishedAt",
             "createdAt", "updatedAt", "version", "commentCount", "likeCount", "likedByMe"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def content_server(db, *, content=None, workers=2, lua_dir=None, redis_address=None,
                   storage=False):
    sections = {
        "postgres": {"conninfo": conninfo(db), "wait_timeout": "2s"},
        "redis": {"address": redis_address or
                  "unix:" + __import__("os").environ["PANTHERA_REDIS_SOCKET"]},
        "auth": {"token_secret": SECRET},
    }
    if lua_dir:
        sections["lua"] = {"dir": lua_dir}
    if storage:
        sections["storage"] = {"backend": "dir", "dir": "blobs", "sweep_interval": "0"}
        if isinstance(storage, dict):
            sections["storage"].update(storage)
    return Server(workers=workers, plugins=("user", "content"),
                  plugin_config={"user": dict(FAST_SCRYPT), "content": dict(content or {})},
                  sections=sections)


@contextlib.contextmanager
def content_env(prefix="cnt", **kw):
    """A fresh database and a started user+content server on it; both gone afterwards."""
    with shared_services():
        db = create_database(prefix)
    s = content_server(db, **kw)
    s.db = db
    try:
        with shared_services():
            s.start(timeout=30)
        yield db, s
    finally:
        s.cleanup()
        drop_database(db)


def assert_post(doc, **expect):
    assert isinstance(doc, dict), doc
    assert set(doc) - {"highlight"} == POST_KEYS, sorted(doc)
    for k in ("createdAt", "updatedAt"):
        assert RFC3339_UTC.match(doc[k]), (k, doc)
    assert (doc["publishedAt"] is None) == (doc["status"] == "draft"), doc
    for k, v in expect.items():
        assert doc[k] == v, (k, doc[k], v)
    return doc


def new_post(server, acct, expect=201, **fields):
    body = {"title": "A title", "body": "Some body text"}
    body.update(fields)
    r = call(server, "POST", "/v1/posts", token=acct.access, json_body=body)
    assert r.status_code == expect, describe(r)
    return r.json() if expect == 201 else r


def events(server, aggregate):
    """The events the content plugin emitted about `aggregate`, oldest first:
    [(type, payload)], read from the host's log (panthera_events)."""
    out = psql(server.db, "SELECT type || ' ' || payload::text FROM panthera_events "
               "WHERE aggregate_id = '%s' AND producer = 'content' ORDER BY id" % aggregate)
    return [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1]))
            for line in out.splitlines() if line]


def upload(s, user):
    """A small PDF uploaded by `user` (POST /v1/media): its Media JSON."""
    r = call(s, "POST", "/v1/media", token=user.access,
             data=b"%PDF-1.4\n% " + uuid.uuid4().hex.encode() + b"\n%%EOF\n",
             headers={"Content-Type": "application/pdf"})
    assert r.status_code == 201, describe(r)
    return r.json()


REDIS = os.environ.get("PANTHERA_REDIS_SOCKET", "")


def redis(*args):
    """One redis-cli command on the test services' Redis; its answer split into words."""
    p = subprocess.run(["redis-cli", "-s", REDIS, *args], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()
