#!/usr/bin/env python3
"""Soak: mixed API load for a long time with faults injected on a schedule (issue 11).

Not part of any test suite: run it by hand, after `scripts/dev services`, on a machine
that may have its private PostgreSQL restarted and its Redis stopped (it takes the test
suite's exclusive locks on both, so a test run of the same checkout waits for it).

    tests/bench/soak.py                       # 30 minutes
    tests/bench/soak.py --duration 180        # 3 minutes, the same schedule compressed

The server: a release build (PANTHERA_BUILD, default build/), 2 workers, the user and
hello plugins on a database of its own, Redis. The load: --clients threads, each looping
over a mix of requests: register with an Idempotency-Key (retried with the same key until
a 201 is acknowledged: that is the write that must never be lost or doubled), login,
GET /v1/users/me, GET /v1/hello and /healthz.

The schedule, as fractions of --duration, one phase each:

    0.00 baseline     0.15 PostgreSQL restart (pg_ctl -m fast restart)
    0.30 Redis stop   0.45 Redis start      0.55 SIGKILL of one worker
    0.70 SIGHUP       0.85 final

Printed: per phase, the requests and their outcomes (2xx, 4xx, 429, 503, other 5xx,
transport errors); RSS of the master and workers every --sample seconds; and at the end
the writes: registrations acknowledged, how many of those are missing from PostgreSQL
(lost writes), keys whose retries were answered with two different ids and usernames
stored twice (duplicates), and registrations never acknowledged. Exit status 1 when a
write was lost or doubled.
"""
import argparse
import collections
import json
import os
import random
import signal
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
os.environ.setdefault("PANTHERA_BUILD", os.path.abspath(os.path.join(HERE, "..", "..", "build")))

import requests  # noqa: E402

from services import Redis, pg_lock, redis_lock  # noqa: E402
from test_pg_pool import pg_ctl, pg_env, wait_ready  # noqa: E402
from user_helpers import (  # noqa: E402
    FAST_SCRYPT, SECRET, conninfo, create_database, drop_database, psql)
from panthera_server import Server  # noqa: E402

SCHEDULE = [(0.00, "baseline"), (0.15, "pg-restart"), (0.30, "redis-down"),
            (0.45, "redis-back"), (0.55, "worker-kill"), (0.70, "sighup"), (0.85, "final")]


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Soak:
    def __init__(self, args):
        self.args = args
        self.phase = "baseline"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes = collections.defaultdict(collections.Counter)  # phase -> outcome
        self.acked = {}  # idempotency key -> (username, id)
        self.id_conflicts = []  # keys answered with two ids
        self.unacked = 0
        self.accounts = []  # (username, password) that exist
        self.rss = []
        self.failed = True  # until a report says otherwise

    def count(self, outcome):
        with self.lock:
            self.outcomes[self.phase][outcome] += 1

    def call(self, method, path, **kw):
        try:
            r = requests.request(method, self.server.url(path), timeout=10, **kw)
        except requests.RequestException as e:
            self.count("transport:" + type(e).__name__)
            return None
        s = r.status_code
        self.count("2xx" if s < 300 else "429" if s == 429 else "4xx" if s < 500
                   else "503" if s == 503 else "5xx")
        return r

    def register(self, rnd):
        name = "soak_" + uuid.uuid4().hex[:16]
        body = {"username": name, "email": name.replace("_", "-") + "@example.com",
                "password": "pw-" + uuid.uuid4().hex}
        key = uuid.uuid4().hex
        first_id = None
        end = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < end:
            r = self.call("POST", "/v1/auth/register", json=body,
                          headers={"Idempotency-Key": key})
            if r is not None and r.status_code == 201:
                uid = r.json()["userId"]
                with self.lock:
                    if first_id and first_id != uid:
                        self.id_conflicts.append(key)
                    self.acked[key] = (name, uid)
                    self.accounts.append((name, body["password"]))
                if first_id is None:
                    first_id = uid
                    # Now and then retry an acknowledged create: it must replay the same id.
                    if rnd.random() < 0.2:
                        continue
                return
            if r is not None and r.status_code < 500 and r.status_code != 429:
                return  # a client error: nothing to retry
            time.sleep(0.2)
        if not self.stop.is_set():  # the run's end is not the server's failure
            with self.lock:
                self.unacked += 1

    def client(self, seed):
        rnd = random.Random(seed)
        token = None
        while not self.stop.is_set():
            x = rnd.random()
            if x < 0.25:
                self.register(rnd)
            elif x < 0.45 and self.accounts:
                with self.lock:
                    name, pw = rnd.choice(self.accounts)
                r = self.call("POST", "/v1/auth/login", json={"username": name, "password": pw})
                if r is not None and r.status_code == 200:
                    token = r.json()["accessToken"]
            elif x < 0.65 and token:
                self.call("GET", "/v1/users/me", headers={"Authorization": "Bearer " + token})
            elif x < 0.9:
                self.call("GET", "/v1/hello")
            else:
                self.call("GET", "/healthz")

    def fault(self, phase):
        if phase == "pg-restart":
            host, port, datadir = pg_env()
            r = pg_ctl(datadir, host, "-m", "fast", "restart")
            if r.returncode:
                print("pg_ctl restart failed: " + r.stderr, file=sys.stderr)
            wait_ready(host, port, 60)
        elif phase == "redis-down":
            self.redis.stop()
        elif phase == "redis-back":
            self.redis.start()
        elif phase == "worker-kill":
            pids = self.server.worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
        elif phase == "sighup":
            self.server.signal(signal.SIGHUP)

    def sample(self, t0):
        pids = [self.server.master_pid] + list(self.server.worker_pids())
        kib = rss_kib(pids)
        self.rss.append((time.monotonic() - t0, kib))
        print("  t=%5.0f s  phase=%-11s  rss=%6.1f MiB  (%d processes)" % (
            time.monotonic() - t0, self.phase, kib / 1024, len(pids)), flush=True)

    def run(self):
        a = self.args
        db = create_database("soak")
        self.server = Server(workers=2, plugins=("hello", "user"),
                             plugin_config={"user": dict(FAST_SCRYPT)},
                             sections={"postgres": {"conninfo": conninfo(db), "wait_timeout": "2s"},
                                       "redis": {"address": "unix:" +
                                                 os.environ["PANTHERA_REDIS_SOCKET"]},
                                       "auth": {"token_secret": SECRET}})
        self.redis = Redis()
        try:
            self.server.start(timeout=30)
            t0 = time.monotonic()
            threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                       for i in range(a.clients)]
            for t in threads:
                t.start()
            pending = [(frac * a.duration, name) for frac, name in SCHEDULE[1:]]
            next_sample = 0.0
            while time.monotonic() - t0 < a.duration:
                now = time.monotonic() - t0
                if pending and now >= pending[0][0]:
                    _, name = pending.pop(0)
                    self.phase = name
                    print("==> %5.0f s: %s" % (now, name), flush=True)
                    self.fault(name)
                if now >= next_sample:
                    self.sample(t0)
                    next_sample += a.sample
                time.sleep(0.2)
            self.stop.set()
            for t in threads:
                t.join(70)
            self.sample(t0)
            self.report(db)
        finally:
            self.stop.set()
            self.redis.restore()
            host, port, datadir = pg_env()
            if not wait_ready(host, port, 1):
                pg_ctl(datadir, host, "start")
            self.server.cleanup()
            drop_database(db)

    def report(self, db):
        print("\nper phase (requests by outcome):")
        for _, name in SCHEDULE:
            c = self.outcomes.get(name, collections.Counter())
            print("  %-11s %6d  %s" % (name, sum(c.values()),
                                       json.dumps(dict(sorted(c.items())))))
        stored = psql(db, "SELECT username || ' ' || id FROM users WHERE username LIKE 'soak%'")
        rows = [line.split() for line in stored.split("\n") if line.strip()]
        by_name = collections.Counter(name for name, _ in rows)
        ids = {uid for _, uid in rows}
        lost = [k for k, (_, uid) in self.acked.items() if uid not in ids]
        doubled = [n for n, k in by_name.items() if k > 1]
        print("\nwrites: %d registrations acknowledged, %d lost, %d duplicated "
              "(%d keys answered with two ids, %d usernames stored twice), %d never "
              "acknowledged within 60 s" % (len(self.acked), len(lost),
                                           len(self.id_conflicts) + len(doubled),
                                           len(self.id_conflicts), len(doubled), self.unacked))
        first = self.rss[0][1] if self.rss else 0
        last = self.rss[-1][1] if self.rss else 0
        peak = max((k for _, k in self.rss), default=0)
        print("rss: first %.1f MiB, last %.1f MiB, peak %.1f MiB over %d samples" % (
            first / 1024, last / 1024, peak / 1024, len(self.rss)))
        self.failed = bool(lost or doubled or self.id_conflicts)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    p.add_argument("--clients", type=int, default=8, help="load threads (default 8)")
    p.add_argument("--sample", type=float, default=15, help="seconds between RSS samples")
    args = p.parse_args()
    for var in ("PANTHERA_PGHOST", "PANTHERA_REDIS_SOCKET", "PANTHERA_RUNDIR"):
        if not os.environ.get(var):
            sys.exit("soak: %s is not set: run scripts/dev services and export .run/env" % var)
    soak = Soak(args)
    with pg_lock(True, timeout=600), redis_lock(True, timeout=600):
        soak.run()
    sys.exit(1 if soak.failed else 0)


if __name__ == "__main__":
    main()
