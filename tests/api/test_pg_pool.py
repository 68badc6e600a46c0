"""The PostgreSQL pool (server/pg.c) against the real server.

Drives the C program ``$PANTHERA_BUILD/tests/unit/test_pg`` (built by ninja, not part of
the unit suite because it needs PostgreSQL) with the services' environment, which
``scripts/dev test`` passes to this suite: PANTHERA_PGHOST (socket directory),
PANTHERA_PGPORT, PANTHERA_PGDATABASE, PANTHERA_PGUSER and PANTHERA_RUNDIR (the cluster's
data lives in ``$PANTHERA_RUNDIR/pgdata``, see scripts/lib/services.sh).

The restart tests stop the shared PostgreSQL for a few seconds and always leave it
running again, even when they fail. Several test runs may share one PostgreSQL (two
checkouts' worth of `scripts/dev test` at once): these tests take a lock per server, shared
for the ordinary ones, exclusive for a restart, so they never restart it under each other.
Other suites' tests are not covered by the lock; within one pytest run they never overlap.
"""
import os
import re
import select
import subprocess
import time

import pytest

from services import pg_lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PANTHERA_BUILD", os.path.join(REPO, "build"))
TEST_PG = os.path.join(BUILD, "tests", "unit", "test_pg")
PG_BIN = os.environ.get("PANTHERA_PG_BIN", "/usr/lib/postgresql/15/bin")
WAIT_TIMEOUT_MS = 2000  # PG_DEFAULT_WAIT_TIMEOUT_MS, what "loop" runs with

pytestmark = pytest.mark.skipif(
    not os.environ.get("PANTHERA_PGHOST"),
    reason="PANTHERA_PGHOST is not set: run through scripts/dev test, or start PostgreSQL "
    "with scripts/dev services and export the variables in .run/env",
)


def server_lock(exclusive, timeout=180):
    """Serializes restarts with every other use of the same PostgreSQL by these tests."""
    return pg_lock(exclusive, timeout)


def run_test_pg(*args, timeout):
    assert os.access(TEST_PG, os.X_OK), f"{TEST_PG} is not built: ninja -C {BUILD}"
    with server_lock(exclusive=False):
        return subprocess.run([TEST_PG, *args], capture_output=True, text=True, timeout=timeout)


def output(proc_or_text):
    if isinstance(proc_or_text, str):
        return proc_or_text
    return f"--- stdout\n{proc_or_text.stdout}\n--- stderr\n{proc_or_text.stderr}"


def summary(line_prefix, text):
    """{"ok": 3, ...} from a line such as "loop: ok=3 unavailable=0 ..."."""
    for line in text.splitlines():
        if line.startswith(line_prefix + ":"):
            return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}
    raise AssertionError(f"no '{line_prefix}:' line in the output:\n{text}")


def test_basic():
    p = run_test_pg("basic", timeout=120)
    assert p.returncode == 0, output(p)
    assert re.search(r"^\d+ checks, 0 failed$", p.stderr, re.M), output(p)


def test_queue():
    p = run_test_pg("queue", timeout=60)
    assert p.returncode == 0, output(p)
    assert re.search(r"^\d+ checks, 0 failed$", p.stderr, re.M), output(p)
    s = summary("queue", p.stdout)
    assert s == {"ok": 2, "overflow": 13, "expired": 5}, output(p)


# ---- restarting PostgreSQL under load ----

def pg_env():
    host = os.environ["PANTHERA_PGHOST"]
    port = os.environ.get("PANTHERA_PGPORT", "5432")
    rundir = os.environ.get("PANTHERA_RUNDIR")
    if not rundir:
        pytest.skip("PANTHERA_RUNDIR is not set: cannot find the cluster to restart")
    datadir = os.path.join(rundir, "pgdata")
    if not os.path.isdir(datadir):
        pytest.skip(f"{datadir} does not exist: not a cluster scripts/dev started")
    return host, port, datadir


def as_pg(cmd):
    """Like as_pg in scripts/lib/services.sh: the cluster belongs to user postgres."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def pg_ctl(datadir, host, *args):
    cmd = as_pg([os.path.join(PG_BIN, "pg_ctl"), "-D", datadir,
                 "-l", os.path.join(host, "postgresql.log"), "-w", "-t", "30", *args])
    return subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=60)


def pg_ready(host, port):
    return subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q", "-h", host, "-p", port],
                          timeout=10).returncode == 0


def wait_ready(host, port, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if pg_ready(host, port):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["restart", "stop-2s-start"])
def test_loop_survives_restart(how):
    host, port, datadir = pg_env()
    assert os.access(TEST_PG, os.X_OK), f"{TEST_PG} is not built: ninja -C {BUILD}"
    with server_lock(exclusive=True):
        loop_during_restart(how, host, port, datadir)


def loop_during_restart(how, host, port, datadir):
    assert wait_ready(host, port, 10), "PostgreSQL is not ready before the test"
    # Long enough for a slow machine's restart to fall inside it; the restart waits for
    # the program's "running" line, then for a while of service before it (a lower bound).
    loop = subprocess.Popen([TEST_PG, "loop", "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([loop.stdout], [], [], 60)
        assert ready and loop.stdout.readline() == "running\n", "the loop did not start"
        time.sleep(1)
        down_at = time.time()
        if how == "restart":
            r = pg_ctl(datadir, host, "-m", "fast", "restart")
            assert r.returncode == 0, output(r)
        else:
            r = pg_ctl(datadir, host, "-m", "fast", "stop")
            assert r.returncode == 0, output(r)
            time.sleep(2)
            r = pg_ctl(datadir, host, "start")
            assert r.returncode == 0, output(r)
        assert wait_ready(host, port, 30), "PostgreSQL did not come back"
        back_at = time.time()
        out, err = loop.communicate(timeout=120)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.communicate()
        if not pg_ready(host, port):
            pg_ctl(datadir, host, "start")
    text = f"--- stdout\n{out}\n--- stderr\n{err}\n(down at {down_at * 1000:.0f}, " \
           f"back at {back_at * 1000:.0f})"
    s = summary("loop", out)
    # No error but "unavailable", no callback missing.
    assert loop.returncode == 0, text
    assert s["other"] == 0 and s["outstanding"] == 0, text
    # Served before, refused only while PostgreSQL was down, served again after.
    assert s["ok_before"] > 0 and s["ok_after"] > 0, text
    assert s["unavailable"] > 0, "the restart went unnoticed: " + text
    assert s["first_unavailable"] >= down_at * 1000 - 50, text
    assert s["first_ok_after"] > 0, text
    assert s["last_unavailable"] <= s["first_ok_after"], text
    print("postgres %s: slowest callback %d ms (wait_timeout %d ms), served again %d ms "
          "after it was back" % (how, s["max_latency_ms"], WAIT_TIMEOUT_MS,
                                 s["first_ok_after"] - back_at * 1000))
