"""The SDK 1.2 example plugin, sdk/examples/notes: built in tree (meson) and out of tree
(its Makefile against the installed SDK), both loaded and used: a write emits
note.created in its own transaction, the consumer group counts it exactly once, and a
background task's timer keeps a cached total fresh."""
import os
import shutil
import time
import uuid

import pytest
import requests

from services import pg_lock
from test_idempotency import conninfo
from test_sdk_out_of_tree import run, sdk  # noqa: F401  (the module-scoped SDK install)

from panthera_server import REPO

PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
CEILING = 120


def stats(s):
    r = requests.get(s.url("/v1/notes/stats"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def exercise(s):
    before = stats(s)["created"]
    key = uuid.uuid4().hex
    for _ in range(2):  # the same create, retried: one note, one event
        r = requests.post(s.url("/v1/notes"), json={"text": "hi"},
                          headers={"Idempotency-Key": key}, timeout=10)
        assert r.status_code == 201, r.text
    r = requests.post(s.url("/v1/notes"), json={"text": "there"}, timeout=10)
    assert r.status_code == 201, r.text
    r = requests.post(s.url("/v1/notes"), json={"txt": "no"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    deadline = time.monotonic() + CEILING
    while True:
        got = stats(s)
        if got["created"] >= before + 2 and got["cached_total"] >= 2:
            break
        assert time.monotonic() < deadline, got
        time.sleep(0.1)
    # Counted once each: nothing else wrote notes meanwhile (pg_lock is held exclusively).
    assert got["created"] == before + 2, got


def test_in_tree(make_server):
    with pg_lock(exclusive=True):
        s = make_server(workers=2, plugins=("notes",),
                        sections={"postgres": {"conninfo": conninfo()},
                                  "events": {"poll_interval": "500ms"}},
                        plugin_config={"notes": {"refresh": "200"}})
        exercise(s)


def test_out_of_tree(sdk, make_server):  # noqa: F811
    src = os.path.join(sdk.tmp, "notes-plugin")
    shutil.copytree(os.path.join(REPO, "sdk", "examples", "notes"), src,
                    ignore=shutil.ignore_patterns("*.so", "*.o", "meson.build"))
    rc, out, err = run(["make", "-C", src], env=sdk.env, timeout=120)
    so = os.path.join(src, "notes.so")
    assert rc == 0 and os.path.exists(so), out + err
    assert "-Wl,--no-undefined" in out
    with pg_lock(exclusive=True):
        s = make_server(workers=1, plugins=("notes",),
                        sections={"postgres": {"conninfo": conninfo()},
                                  "events": {"poll_interval": "500ms"}},
                        plugin_config={"notes": {"load": so, "refresh": "200"}})
        exercise(s)
