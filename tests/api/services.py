"""The shared PostgreSQL and Redis that scripts/lib/services.sh runs, as the API tests
use them: one lock protocol, so that a test stopping or restarting a service never pulls
it from under another test run, and one way to stop and start Redis.

A test that uses a service holds its lock shared; one that stops, pauses or restarts it
holds it exclusively. The lock files live in the temp dir, named after the service's
address, so two checkouts sharing a service share the lock too.
"""
import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
import time

import pytest


@contextlib.contextmanager
def file_lock(name, exclusive, timeout=180):
    with open(os.path.join(tempfile.gettempdir(), name), "a") as f:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        end = time.time() + timeout
        while True:
            try:
                fcntl.flock(f, mode)
                break
            except BlockingIOError:
                if time.time() > end:
                    pytest.fail(f"another test run held {f.name} for {timeout} s")
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lock_name(service, key):
    return f"panthera-test-{service}-" + hashlib.sha256(key.encode()).hexdigest()[:12] + ".lock"


def pg_lock(exclusive=False, timeout=180):
    key = f"{os.environ['PANTHERA_PGHOST']}:{os.environ.get('PANTHERA_PGPORT', '5432')}"
    return file_lock(_lock_name("pg", key), exclusive, timeout)


def redis_lock(exclusive=False, timeout=180):
    return file_lock(_lock_name("redis", os.environ["PANTHERA_REDIS_SOCKET"]), exclusive,
                     timeout)


class Redis:
    """The Redis services.sh started: stopped and started the way it does it."""

    def __init__(self):
        self.sock = os.environ["PANTHERA_REDIS_SOCKET"]
        rundir = os.environ.get("PANTHERA_RUNDIR")
        if not rundir:
            pytest.skip("PANTHERA_RUNDIR is not set: cannot find the Redis to stop and start")
        self.conf = os.path.join(rundir, "redis.conf")
        self.pidfile = os.path.join(rundir, "redis.pid")
        if not os.path.isfile(self.conf):
            pytest.skip(f"{self.conf} does not exist: not a Redis scripts/dev started")

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-s", self.sock, *args], capture_output=True,
                              text=True, timeout=5)

    def alive(self):
        try:
            return self.cli("ping").stdout.strip() == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def pid(self):
        """Like redis_pid in services.sh: the pid file's process, if it is redis-server."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except (OSError, ValueError):
            return None
        return pid if comm.startswith("redis-server") else None

    def wait(self, alive, seconds):
        end = time.time() + seconds
        while time.time() < end:
            if self.alive() == alive:
                return True
            time.sleep(0.05)
        return False

    def start(self):
        """Like redis_start in services.sh (its config daemonizes)."""
        r = subprocess.run(["redis-server", self.conf], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert self.wait(True, 10), "Redis is not answering 10 s after redis-server"

    def stop(self):
        """Like redis_stop in services.sh: SHUTDOWN NOSAVE, else SIGTERM."""
        pid = self.pid()
        r = self.cli("shutdown", "nosave")
        if r.returncode != 0 and pid:
            os.kill(pid, signal.SIGTERM)
        end = time.time() + 10
        while time.time() < end and (self.alive() or (pid and os.path.exists(f"/proc/{pid}"))):
            time.sleep(0.05)
        assert not self.alive(), "Redis did not stop within 10 s"

    def restore(self):
        """Leave Redis running: resume it if paused, start it if gone."""
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if not self.wait(True, 3):
            self.start()
