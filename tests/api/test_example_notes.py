"""The SDK 1.2 example plugin, sdk/examples/notes: built in tree (meson) and out of tree
(its Makefile against the installed SDK), both loaded and used: a write emits
note.created in its own transaction, the consumer group counts it exactly once, a
background task's timer keeps a cached total fresh, and the SSE route shows a note
written through the other worker."""
import os
import shutil
import socket
import time
import uuid

import pytest
import requests

from services import pg_lock
from test_idempotency import conninfo
from test_sdk_out_of_tree import run, sdk  # noqa: F401  (the module-scoped SDK install)

from panthera_server import REPO

PGHOST = os.environ.get("PANTHERA_PGHOST")
REDIS_SOCKET = os.environ.get("PANTHERA_REDIS_SOCKET")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
CEILING = 120


def stats(s):
    r = requests.get(s.url("/v1/notes/stats"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def settled_created():
    """The consumer's count once it has caught up with every note written so far (an
    earlier test's last event may still be on its way): equal to the rows in notes_items."""
    from test_pools import psql
    deadline = time.monotonic() + CEILING
    while True:
        counted = int(psql("SELECT n FROM notes_counts WHERE kind = 'created'").strip())
        if counted == int(psql("SELECT count(*) FROM notes_items").strip()):
            return counted
        assert time.monotonic() < deadline, "the consumer never caught up: %d counted" % counted
        time.sleep(0.1)


def exercise(s):
    before = settled_created()
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


def read_until(sock, needle, deadline):
    data = b""
    while needle not in data:
        assert time.monotonic() < deadline, data[-500:]
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        assert chunk, data[-500:]
        data += chunk
    return data


def live_note(s):
    """A stream opened before a write sees it, as an SSE event, once committed."""
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=2)
    try:
        sock.sendall(b"GET /v1/notes/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + CEILING
        head = read_until(sock, b": live", deadline)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
        text = "live-" + uuid.uuid4().hex
        r = requests.post(s.url("/v1/notes"), json={"text": text}, timeout=10)
        assert r.status_code == 201, r.text
        got = read_until(sock, text.encode(), deadline)
        assert b"event: note\n" in got and ('"id":"%s"' % r.json()["id"]).encode() in got, got
    finally:
        sock.close()


def test_in_tree(make_server):
    sections = {"postgres": {"conninfo": conninfo()}, "events": {"poll_interval": "500ms"}}
    if REDIS_SOCKET:
        sections["redis"] = {"address": "unix:" + REDIS_SOCKET}
    with pg_lock(exclusive=True):
        s = make_server(workers=2, plugins=("notes",), sections=sections,
                        plugin_config={"notes": {"refresh": "200"}})
        exercise(s)
        if REDIS_SOCKET:
            counted = stats(s)["created"]
            live_note(s)
            # Stop only once the live note's event is counted: left pending, the next
            # test's server (same database and group) would count it after reading its
            # own starting figure.
            deadline = time.monotonic() + CEILING
            while stats(s)["created"] < counted + 1:
                assert time.monotonic() < deadline, "the live note's event was never counted"
                time.sleep(0.1)
        else:
            r = requests.get(s.url("/v1/notes/stream"), timeout=10)
            assert r.status_code == 503, r.text


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
