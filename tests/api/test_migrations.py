"""Schema migrations: applied once per database by the master before workers start,
under an advisory lock, each in its own transaction (ARCHITECTURE.md, "Each plugin owns
its schema"). Uses its own database so tests never see each other's tables."""
import os
import re
import subprocess
import time
import uuid

import pytest
import requests

from panthera_server import CEILING, PANTHERAD, Server

PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")


def psql(db, *sql):
    args = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", PGHOST,
            "-p", os.environ.get("PANTHERA_PGPORT", "5432"),
            "-U", os.environ.get("PANTHERA_PGUSER", "panthera"), db]
    for s in sql:
        args += ["-c", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.fixture
def database():
    name = "mig_" + uuid.uuid4().hex[:12]
    psql("panthera", "CREATE DATABASE " + name)
    yield name
    psql("panthera", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def conninfo(db):
    return "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"), db,
        os.environ.get("PANTHERA_PGUSER", "panthera"))


def make(db, plugins=("migkit",)):
    return Server(workers=1, plugins=plugins, sections={"postgres": {"conninfo": conninfo(db)}})


def test_two_hosts_starting_at_once_apply_each_migration_once(database):
    a, b = make(database), make(database)
    try:
        # Start both masters before waiting for either: their migrators race for the lock.
        procs = []
        for s in (a, b):
            procs.append(subprocess.Popen([PANTHERAD, "-c", s.conf_path],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        deadline = time.time() + 15
        answers = []
        for s in (a, b):
            while True:
                try:
                    r = requests.get(s.url("/v1/migkit/applied"), timeout=2)
                    answers.append(r)
                    break
                except requests.ConnectionError:
                    assert time.time() < deadline, "a host did not come up"
                    time.sleep(0.1)
        for r in answers:
            assert r.status_code == 200, r.text
            assert r.json() == {"rows": "1"}  # 002 inserted its row exactly once
        rows = psql(database, "SELECT plugin || ' ' || name FROM panthera_migrations "
                              "WHERE plugin = 'migkit' ORDER BY 1")
        assert rows.split("\n")[:2] == ["migkit 001_items", "migkit 002_counter"]
        # Each migration once, the host's own six included, though two hosts raced.
        assert psql(database, "SELECT count(*) FROM panthera_migrations").strip() == "8"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        a.cleanup()
        b.cleanup()


MIGRATION_LOCK_KEY = 8097880389138280289  # server/migrate.c: "panthera" in ASCII


def advisory_locks(db, granted):
    return int(psql(db, "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = "
                        "l.database WHERE l.locktype = 'advisory' AND d.datname = '%s' "
                        "AND l.granted = %s" % (db, "true" if granted else "false")).strip())


def wait_for(pred, what):
    end = time.monotonic() + CEILING
    while not pred():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def test_second_master_waits_for_the_migration_lock(database):
    """While another host holds the migration lock (here a psql session), a starting
    master waits for it, with nothing applied and no worker serving; once it is released
    the master migrates and serves."""
    holder = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PGHOST,
         "-p", os.environ.get("PANTHERA_PGPORT", "5432"),
         "-U", os.environ.get("PANTHERA_PGUSER", "panthera"), database],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    s = make(database)
    try:
        holder.stdin.write("SELECT pg_advisory_lock(%d);\n" % MIGRATION_LOCK_KEY)
        holder.stdin.flush()
        wait_for(lambda: advisory_locks(database, True) == 1, "psql did not take the lock")
        s.launch()
        wait_for(lambda: advisory_locks(database, False) == 1, "the master did not wait")
        assert s.running()
        assert psql(database, "SELECT to_regclass('migkit_applied') IS NULL").strip() == "t"
        holder.stdin.close()  # psql ends, the lock goes with its session
        holder.wait(CEILING)

        def serving():
            try:
                return requests.get(s.url("/v1/migkit/applied"), timeout=CEILING).ok
            except requests.ConnectionError:
                return False

        wait_for(serving, "the master did not go on once the lock was free")
        assert requests.get(s.url("/v1/migkit/applied"), timeout=CEILING).json() == {"rows": "1"}
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        s.cleanup()


def test_restart_applies_nothing_new(database):
    with make(database) as s:
        s.start()
    with make(database) as s:
        s.start()
        assert "applied migration" not in s.error_log()
    assert psql(database, "SELECT count(*) FROM migkit_applied").strip() == "1"


def test_an_event_log_of_the_old_schema_is_upgraded(database):
    """A database migrated before 003 (the log still has its created_at index): the next
    start drops the index, keeps the events, and records 003 once."""
    with make(database) as s:
        s.start()
    psql(database,
         "CREATE INDEX panthera_events_created ON panthera_events (created_at)",
         "DELETE FROM panthera_migrations WHERE plugin = 'host' AND name = '003_events_prune_by_id'",
         "INSERT INTO panthera_events (type, aggregate_id, producer, payload)"
         " VALUES ('old.kept', 'a1', 'test', '{\"n\": 1}')")
    with make(database) as s:
        s.start()
        assert 'plugin "host": applied migration 003_events_prune_by_id' in s.error_log()
    assert psql(database, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                          "'panthera_events_created'").strip() == "0"
    assert psql(database, "SELECT type || ' ' || aggregate_id || ' ' || payload::text"
                          " FROM panthera_events").strip() == 'old.kept a1 {"n": 1}'
    with make(database) as s:
        s.start()
        assert "applied migration" not in s.error_log()
    assert psql(database, "SELECT count(*) FROM panthera_migrations WHERE plugin = 'host'"
                ).strip() == "6"


def test_the_relays_xid_frontier_becomes_an_id_frontier(database):
    """A database migrated before 006 (each event row has its transaction id, indexed, and
    each group an xmin frontier): the next start gives each group the id just below its
    oldest event at or above that frontier, or the log's last id when there is none, and
    drops the index and the column; the events stay."""
    with make(database) as s:
        s.start()
    psql(database,
         "ALTER TABLE panthera_events ADD COLUMN xid xid8 NOT NULL"
         " DEFAULT pg_current_xact_id(),"
         " ALTER id SET DEFAULT nextval('panthera_events_id_seq')",
         "CREATE INDEX panthera_events_xid ON panthera_events (xid)",
         "ALTER TABLE panthera_event_groups DROP COLUMN frontier_id, DROP COLUMN next_id,"
         " DROP COLUMN next_by, DROP COLUMN next_xmax,"
         " ADD COLUMN frontier xid8 NOT NULL DEFAULT '0'",
         "DELETE FROM panthera_migrations WHERE plugin = 'host'"
         " AND name = '006_events_frontier_by_id'")
    for i in range(3):  # one transaction each: ids and xids both rise
        psql(database, "INSERT INTO panthera_events (type, aggregate_id, producer, payload)"
                       " VALUES ('old.kept', 'a%d', 'test', '{}')" % i)
    rows = [line.split("|") for line in
            psql(database, "SELECT id, xid FROM panthera_events ORDER BY id").split()]
    (id1, _), (id2, xid2), (id3, xid3) = [(int(i), int(x)) for i, x in rows]
    psql(database, "INSERT INTO panthera_event_groups (group_name, plugin, pattern, frontier)"
                   " VALUES ('behind', 'x', '%%', '0'), ('middle', 'x', '%%', '%d'),"
                   " ('ahead', 'x', '%%', '%d')" % (xid2, xid3 + 1))
    with make(database) as s:
        s.start()
        assert 'plugin "host": applied migration 006_events_frontier_by_id' in s.error_log()
    frontiers = dict(line.split("|") for line in psql(
        database, "SELECT group_name, frontier_id FROM panthera_event_groups").split())
    assert frontiers == {"behind": str(id1 - 1), "middle": str(id2 - 1), "ahead": str(id3)}
    assert psql(database, "SELECT count(*) FROM pg_indexes WHERE indexname ="
                          " 'panthera_events_xid'").strip() == "0"
    assert psql(database, "SELECT count(*) FROM pg_attribute WHERE attrelid ="
                          " 'panthera_events'::regclass AND attname = 'xid'"
                          " AND NOT attisdropped").strip() == "0"
    assert psql(database, "SELECT string_agg(aggregate_id, ' ' ORDER BY id)"
                          " FROM panthera_events").strip() == "a0 a1 a2"
    # The id's default takes the transaction id before it draws (a drawn id whose
    # transaction has no id yet would be invisible to the relay's frontier).
    default = psql(database, "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef"
                             " WHERE adrelid = 'panthera_events'::regclass AND adnum = 1")
    assert re.match(r"CASE WHEN \(pg_current_xact_id\(\) IS NOT NULL\) THEN nextval\(",
                    " ".join(default.split())), default


def test_failing_migration_rolls_back_and_stops_startup(database):
    s = make(database, plugins=("migbad",))
    try:
        proc = subprocess.run([PANTHERAD, "-c", s.conf_path], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode != 0
        log = s.error_log() + proc.stderr
        assert 'plugin "migbad": migration 002_broken failed and was rolled back' in log
        assert "SELEKT" in log  # PostgreSQL's own message
        # 001 is applied and recorded; nothing of 002 is left behind.
        assert psql(database, "SELECT name FROM panthera_migrations WHERE plugin = 'migbad'"
                    ).split() == ["001_ok"]
        assert psql(database, "SELECT to_regclass('migbad_half_done') IS NULL").strip() == "t"
    finally:
        s.cleanup()


def test_migrations_without_postgres_is_a_clear_error():
    s = Server(workers=1, plugins=("migkit",))
    try:
        proc = subprocess.run([PANTHERAD, "-c", s.conf_path], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode != 0
        assert 'plugin "migkit" has migrations but [postgres] conninfo is not set' in (
            s.error_log() + proc.stderr)
    finally:
        s.cleanup()
