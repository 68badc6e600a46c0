"""Idempotent creates (API.md "Creates are safe to retry"): a POST with Idempotency-Key is
performed at most once per caller and key; a retry gets the first answer; the same key
with another body is 409; a concurrent duplicate waits; and PostgreSQL restarting in the
middle of it all never yields a second row or loses an acknowledged one."""
import os
import threading
import time
import uuid

import pytest
import requests

from panthera_server import CEILING, Server
from test_pg_pool import pg_ctl, pg_env, pg_ready, server_lock, wait_ready

PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")


def conninfo():
    return "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))


@pytest.fixture(scope="module")
def server():
    s = Server(workers=2, plugins=("pgkit",),
               sections={"postgres": {"conninfo": conninfo(), "wait_timeout": "1s"}})
    s.start()
    yield s
    s.stop()
    s.cleanup()


def post(server, key, text, timeout=5):
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(server.url("/v1/pgkit/notes"), json={"text": text}, headers=headers,
                         timeout=timeout)


def count(server, text):
    r = requests.get(server.url("/v1/pgkit/notes/count"), params={"text": text}, timeout=5)
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def test_retry_returns_the_first_answer(server):
    key, text = uuid.uuid4().hex, "note-" + uuid.uuid4().hex
    first = post(server, key, text)
    assert first.status_code == 201, first.text
    again = post(server, key, text)
    assert again.status_code == 201
    assert again.json() == first.json()  # same id: the same row
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert count(server, text) == 1


def test_same_key_different_body_is_409(server):
    key = uuid.uuid4().hex
    assert post(server, key, "a-" + key).status_code == 201
    r = post(server, key, "b-" + key)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"
    assert count(server, "b-" + key) == 0


def test_without_key_every_post_creates(server):
    text = "plain-" + uuid.uuid4().hex
    assert post(server, None, text).status_code == 201
    assert post(server, None, text).status_code == 201
    assert count(server, text) == 2


def test_bad_key_is_400(server):
    r = post(server, "x" * 300, "too-long")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_key_is_per_caller(server):
    """One key from two callers is two creates: the scope of a key is its caller (here two
    anonymous callers, told apart by address: 127.0.0.1 and 127.0.0.2)."""
    import http.client
    import json
    key, text = "per-caller-" + uuid.uuid4().hex, "per-caller " + uuid.uuid4().hex

    def post_from(address):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30,
                                          source_address=(address, 0))
        try:
            conn.request("POST", "/v1/pgkit/notes", body=json.dumps({"text": text}),
                         headers={"Content-Type": "application/json", "Idempotency-Key": key})
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    first = post_from("127.0.0.1")
    other = post_from("127.0.0.2")
    assert first[0] == 201 and other[0] == 201, (first, other)
    assert first[1]["id"] != other[1]["id"], (first, other)
    # Each caller's retry is its own first answer.
    assert post_from("127.0.0.1") == first
    assert post_from("127.0.0.2") == other
    assert count(server, text) == 2


def test_concurrent_duplicates_make_one_row(server):
    key, text = uuid.uuid4().hex, "dup-" + uuid.uuid4().hex
    results = []

    def hit():
        results.append(post(server, key, text, timeout=10))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert len(results) == 8
    assert all(r.status_code == 201 for r in results), [r.status_code for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert count(server, text) == 1


def wait_acknowledged(acknowledged, n):
    end = time.monotonic() + CEILING
    while len(acknowledged) < n:
        assert time.monotonic() < end, "only %d creates acknowledged" % len(acknowledged)
        time.sleep(0.05)


def test_postgres_restart_never_duplicates_or_loses(server):
    host, port, datadir = pg_env()
    stop = threading.Event()
    acknowledged, attempted, errors = {}, set(), []

    def client(n):
        i = 0
        while not stop.is_set():
            key = "%s-%d-%d" % (uuid.uuid4().hex[:8], n, i)
            text = "restart-" + key
            attempted.add(text)
            deadline = time.time() + 20
            while time.time() < deadline:  # retry every non-2xx with the same key and body
                try:
                    r = post(server, key, text, timeout=5)
                except requests.RequestException:
                    time.sleep(0.05)
                    continue
                if 200 <= r.status_code < 300:
                    acknowledged[text] = r.json()["id"]
                    break
                if r.status_code not in (500, 503):
                    errors.append((r.status_code, r.text))
                    break
                time.sleep(0.05)
            i += 1

    with server_lock(exclusive=True):
        assert wait_ready(host, port, 10)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        try:
            # Creates going through before the restart, and again after it: counted, not
            # slept for.
            wait_acknowledged(acknowledged, 5)
            r = pg_ctl(datadir, host, "-m", "fast", "restart")
            assert r.returncode == 0, r.stderr
            assert wait_ready(host, port, 30)
            wait_acknowledged(acknowledged, len(acknowledged) + 10)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
            if not pg_ready(host, port):
                pg_ctl(datadir, host, "start")
    assert not errors, errors[:3]
    assert len(acknowledged) > 10, "too few creates went through to mean anything"
    with server_lock(exclusive=False):  # another test run may restart it next
        assert wait_ready(host, port, 30)
        for text in attempted:
            n = count(server, text)
            if text in acknowledged:
                assert n == 1, "%s acknowledged but stored %d times" % (text, n)
            else:
                assert n <= 1, "%s stored %d times" % (text, n)


# ---- answers sealed under [auth] token_secret (server/seal.h) ----

SECRET = "idempotency-test-secret-0123456789abcdef"


def sealed_server(secret):
    return Server(workers=1, plugins=("pgkit",),
                  sections={"postgres": {"conninfo": conninfo(), "wait_timeout": "1s"},
                            "auth": {"token_secret": secret}})


def stored_row(key):
    from test_pools import psql
    out = psql("SELECT fingerprint || chr(9) || headers || chr(9) || body "
               "FROM panthera_idempotency WHERE key = '%s'" % key)
    assert out.strip(), "no row stored for key %s" % key
    return out.strip().split("\t")


def test_sealed_answer_replays_and_gives_nothing_away():
    import hashlib
    s = sealed_server(SECRET)
    s.start()
    try:
        key, text = uuid.uuid4().hex, "secret-note-" + uuid.uuid4().hex
        first = post(s, key, text)
        assert first.status_code == 201, first.text
        fingerprint, headers, body = stored_row(key)
        # The database alone shows neither the answer nor a plain hash of the request.
        assert body.startswith("sealed:v1:") and text not in body and headers == ""
        plain = hashlib.sha256(b'POST /v1/pgkit/notes\n'
                               + first.request.body).hexdigest()
        assert fingerprint != plain and len(fingerprint) == 64
        again = post(s, key, text)
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers.get("Idempotent-Replayed") == "true"
        other = post(s, key, text + "-other")
        assert other.status_code == 409
        assert count(s, text) == 1
    finally:
        s.stop()
        s.cleanup()

    # Another secret cannot open it: a clear 409, never the handler run a second time.
    s = sealed_server(SECRET[::-1])
    s.start()
    try:
        r = post(s, key, text)
        assert r.status_code == 409, r.text
        assert "can no longer be read" in r.json()["error"]["message"]
        assert count(s, text) == 1
        assert "cannot be opened" in open(s.error_log_path).read()
    finally:
        s.stop()
        s.cleanup()
