"""SDK 1.2 PostgreSQL ergonomics (server/api_pg.c, server/pg.c) through helperkit and
pgkit: per-plugin statement names, typed getters and column names, statements queued in a
transaction with no callback whose commit reports the first failure's own error."""
import os
import threading
import uuid

import pytest
import requests

from panthera_server import Server

PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
TIMEOUT = 10


def conninfo():
    return "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))


@pytest.fixture(scope="module")
def server():
    # One connection per worker: both plugins' statements meet on the same session.
    s = Server(workers=1, plugins=("pgkit", "helperkit"),
               sections={"postgres": {"conninfo": conninfo(), "pool_size": 1}})
    s.start()
    yield s
    s.stop()
    s.cleanup()


def test_two_plugins_may_name_a_statement_alike(server):
    name = "stmt-" + uuid.uuid4().hex[:8]
    r = requests.post(server.url("/v1/pgkit/items"), json={"name": name}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    item = r.json()["id"]
    errors = []

    def both(n):
        for i in range(n):
            a = requests.get(server.url("/v1/pgkit/items/%s" % item), timeout=TIMEOUT)
            b = requests.get(server.url("/v1/helperkit/stmt"), params={"v": str(i)},
                             timeout=TIMEOUT)
            if a.status_code != 200 or a.json()["name"] != name:
                errors.append(("pgkit", a.status_code, a.text))
            if b.status_code != 200 or b.json() != {"value": "%d@helperkit" % i}:
                errors.append(("helperkit", b.status_code, b.text))

    threads = [threading.Thread(target=both, args=(15,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [], errors[:5]


def test_typed_getters_and_column_names(server):
    r = requests.get(server.url("/v1/helperkit/types"), timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["int"] == {"value": 42}
    assert doc["big"] == {"rc": -16}          # PX_EOVERFLOW: does not fit int64
    assert doc["int_on_text"] == {"rc": -1}   # PX_EINVAL
    assert doc["bool"] == {"rc": 0, "value": 1}
    assert doc["bool_on_text"] == -1 and doc["bool_on_null"] == -1
    assert doc["double"] == {"rc": 0, "value": 2.5}
    assert doc["double_on_text"] == -1
    assert doc["inf"] == {"rc": 0, "positive": True}
    assert doc["columns"] == ["i", "b", "d", "n", "s", "big", "inf", None]
    assert doc["null"] == 1 and doc["not_null"] == 0


def batch(server, names, scores=None):
    body = {"names": names}
    if scores is not None:
        body["scores"] = scores
    r = requests.post(server.url("/v1/helperkit/batch"), json=body, timeout=TIMEOUT)
    assert r.status_code in (200, 201), r.text
    return r


def test_queued_statements_commit_together(server):
    names = ["b-%s-%d" % (uuid.uuid4().hex[:6], i) for i in range(5)]
    r = batch(server, names)
    assert r.status_code == 201 and r.json() == {"inserted": 5}


def test_commit_reports_the_first_failing_statements_own_error(server):
    taken = "dup-" + uuid.uuid4().hex[:8]
    assert batch(server, [taken]).status_code == 201
    # Second statement violates the unique constraint; the third would fail with 25P02.
    fresh = "fresh-" + uuid.uuid4().hex[:8]
    r = batch(server, [fresh, taken, "later-" + uuid.uuid4().hex[:8]])
    err = r.json()["error"]
    assert err["sqlstate"] == "23505", err
    assert err["constraint"] == "helperkit_items_name_key", err
    assert err["detail"] == "Key (name)=(%s) already exists." % taken, err
    # Nothing of the failed batch was committed: the fresh name is still free.
    assert batch(server, [fresh]).status_code == 201


def test_commit_reports_a_check_violation(server):
    r = batch(server, ["neg-" + uuid.uuid4().hex[:8]], [-1])
    err = r.json()["error"]
    assert err["sqlstate"] == "23514" and err["constraint"] == "helperkit_items_score_check", err
