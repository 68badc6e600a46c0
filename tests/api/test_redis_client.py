"""The Redis client (server/redis.c) against the real server.

Drives the C program ``$PANTHERA_BUILD/tests/unit/test_redis`` (built by ninja, not part of
the unit suite because it needs Redis) with the services' environment, which
``scripts/dev test`` passes to this suite: PANTHERA_REDIS_SOCKET (the unix socket) and
PANTHERA_RUNDIR (where scripts/lib/services.sh keeps redis.conf and redis.pid).

The pause and restart tests stop the shared Redis for a few seconds (SIGSTOP, SHUTDOWN)
and always leave it running again, as services.sh started it, even when they fail.
"""
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from services import Redis, redis_lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PANTHERA_BUILD", os.path.join(REPO, "build"))
TEST_REDIS = os.path.join(BUILD, "tests", "unit", "test_redis")
COMMAND_TIMEOUT_MS = 100  # REDIS_DEFAULT_COMMAND_TIMEOUT_MS, what the programs run with

pytestmark = pytest.mark.skipif(
    not os.environ.get("PANTHERA_REDIS_SOCKET"),
    reason="PANTHERA_REDIS_SOCKET is not set: run through scripts/dev test, or start Redis "
    "with scripts/dev services and export the variables in .run/env",
)


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


def require_program():
    assert os.access(TEST_REDIS, os.X_OK), f"{TEST_REDIS} is not built: ninja -C {BUILD}"


# ---- the Redis that scripts/lib/services.sh started ----

@pytest.fixture
def redis():
    """The test pauses or restarts the shared Redis: nobody else may be using it."""
    r = Redis()
    with redis_lock(exclusive=True):
        assert r.wait(True, 10), "Redis is not answering before the test"
        try:
            yield r
        finally:
            r.restore()


class LineReader:
    """A child's stdout, line by line, with a time limit on each wait."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self.seen = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream):
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, prefix, seconds):
        end = time.time() + seconds
        while True:
            left = end - time.time()
            if left <= 0:
                raise AssertionError(f"no '{prefix}' line within {seconds} s; got: {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the program ended before '{prefix}'; got: {self.seen}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def rest(self):
        self.thread.join(timeout=10)
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)


# ---- the tests ----

def test_basic():
    require_program()
    p = subprocess.run([TEST_REDIS, "basic"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, output(p)
    assert re.search(r"^\d+ checks, 0 failed$", p.stderr, re.M), output(p)


def test_timeout_against_stopped_redis(redis):
    """Deadlines (CLIENT PAUSE, inside the program), then SIGSTOP: first timeouts, never
    early, then fast failures; SIGCONT: served again. How late the timeouts came and how
    long recovery took are printed, figures rather than pass marks."""
    require_program()
    pid = redis.pid()
    if not pid:
        pytest.skip(f"no redis-server pid in {redis.pidfile}")
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([TEST_REDIS, "timeout"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        reader = LineReader(proc.stdout)
        stopped = False
        try:
            reader.wait_for("ready", 60)
            os.kill(pid, signal.SIGSTOP)
            stopped = True
            proc.stdin.write("stopped\n")
            proc.stdin.flush()
            reader.wait_for("waiting", 20)
        finally:
            if stopped:
                os.kill(pid, signal.SIGCONT)
        try:
            proc.stdin.write("continued\n")
            proc.stdin.flush()
            proc.stdin.close()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = reader.rest()
        err.seek(0)
        text = f"--- stdout\n{out}\n--- stderr\n{err.read()}"
    assert proc.returncode == 0, text
    assert re.search(r"^\d+ checks, 0 failed$", text, re.M), text
    paused = summary("paused", out)
    assert paused["timeouts"] >= 1 and paused["other"] == 0 and paused["ok"] == 0, text
    assert paused["unavailable"] > 0, text
    resumed = summary("resumed", out)
    assert resumed["ok"] > 0, text
    print("redis stopped: slowest callback %d ms (command_timeout %d ms), recovery %d ms"
          % (paused["max_latency_ms"], COMMAND_TIMEOUT_MS, resumed["recovery_ms"]))


def test_loop_survives_redis_restart(redis):
    """A command every 10 ms while Redis is shut down and started again: only
    "unavailable" (or "timeout") errors, every callback delivered, served again. The
    program runs long enough for a slow machine's restart; how soon service came back is
    printed."""
    require_program()
    with tempfile.TemporaryFile(mode="w+") as errfile:
        proc = subprocess.Popen([TEST_REDIS, "loop", "20"], stdout=subprocess.PIPE,
                                stderr=errfile, text=True)
        reader = LineReader(proc.stdout)
        try:
            reader.wait_for("running", 60)
            _restart_during_loop(redis, proc, reader, errfile)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _restart_during_loop(redis, proc, reader, errfile):
    down_at = back_at = 0.0
    time.sleep(1.0)  # served for a while first (ok_before counts it): a lower bound
    down_at = time.time()
    redis.stop()  # redis-server may take a second or two to exit after SHUTDOWN
    # Down for about 2 s: long enough for the client to notice and back off.
    time.sleep(max(0.2, down_at + 2.0 - time.time()))
    redis.start()
    back_at = time.time()
    proc.wait(timeout=120)
    out = reader.rest()
    errfile.seek(0)
    err = errfile.read()
    text = f"--- stdout\n{out}\n--- stderr\n{err}\n(down at {down_at * 1000:.0f}, " \
           f"back at {back_at * 1000:.0f})"
    s = summary("loop", out)
    assert proc.returncode == 0, text
    assert s["other"] == 0 and s["outstanding"] == 0, text
    # Served before, refused while Redis was down, served again after it came back.
    assert s["ok_before"] > 0 and s["ok_after"] > 0, text
    assert s["unavailable"] > 0, "the restart went unnoticed: " + text
    assert s["first_unavailable"] >= down_at * 1000 - 50, text
    assert s["first_ok_after"] > 0, text
    assert s["last_unavailable"] <= s["first_ok_after"], text
    print("redis restart: slowest callback %d ms, served again %d ms after it was back"
          % (s["max_latency_ms"], s["first_ok_after"] - back_at * 1000))
