"""SDK 1.2 PostgreSQL ergonomics (server/api_pg.c, server/pg.c) through helperkit and
pgkit: per-plugin statement names, typed getters and column names, statements queued in a
transaction with no callback whose commit reports the first failure's own error."""
import os
import subprocess
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


def _psql_args():
    return ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", PGHOST,
            "-p", os.environ.get("PANTHERA_PGPORT", "5432"),
            "-U", os.environ.get("PANTHERA_PGUSER", "panthera"),
            os.environ.get("PANTHERA_PGDATABASE", "panthera")]


def test_a_statement_that_loses_a_deadlock_runs_again(server):
    """A statement outside a transaction that PostgreSQL fails to break a lock cycle (40P01)
    left nothing behind: the host runs it again (pg_pipeline.c) instead of answering the
    request with the error. Here pgkit's statement takes advisory lock a then b, while a
    psql session holds b and then asks for a; the statement waited first, so its backend's
    deadlock check runs first and fails it."""
    a, b = (int.from_bytes(os.urandom(6), "big") for _ in range(2))
    holder = subprocess.Popen(_psql_args(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, bufsize=1)

    def run(sql):
        holder.stdin.write(sql + "\n\\echo __done__\n")
        holder.stdin.flush()
        while True:
            line = holder.stdout.readline()
            assert line, "psql ended"
            if line.strip() == "__done__":
                return

    answer = {}
    try:
        run("BEGIN; SELECT pg_advisory_xact_lock(%d);" % b)
        t = threading.Thread(target=lambda: answer.update(r=requests.get(
            server.url("/v1/pgkit/locks"), params={"a": a, "b": b}, timeout=120)))
        t.start()
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
                   " AND query LIKE 'SELECT pg_advisory_xact_lock($1::bigint)%'")
        while psql_value(waiting) != "1":
            assert t.is_alive(), answer
            threading.Event().wait(0.05)
        # Half a second between the two waits: the statement's deadlock check comes first.
        threading.Event().wait(0.5)
        run("SELECT pg_advisory_xact_lock(%d);" % a)  # returns once the statement gave way
        run("COMMIT;")
        t.join(120)
        r = answer["r"]
        assert r.status_code == 200, (r.status_code, r.text, server.error_log()[-2000:])
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def psql_value(sql):
    return subprocess.run(_psql_args() + ["-c", sql],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()
