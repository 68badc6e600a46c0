"""The process model, seen from outside: respawn, backoff, reload, drain, log reopening.

Every test starts its own pantherad (``make_server``) because it kills workers or
signals the master.  Helpers local to this file: ``ClientLoop`` (threads hammering an
URL over keep-alive sessions, counting failures), ``metric()``, ``wait_until()``.

No step is ordered by a sleep and no assertion reads a clock: a test waits for the event
itself (a log line, a worker pid, a number of answered requests) with a ceiling only a
hang reaches.  How fast a worker is replaced is a benchmark figure, not a test.
"""
import json
import os
import re
import resource
import signal
import socket
import threading
import time

import pytest
import requests
import requests.adapters

from panthera_server import CEILING, Server, ServerError, parse_response

HELLO = "/v1/hello"


# ---------------------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def no_core_dumps(monkeypatch):
    """Workers crash on purpose here; keep core dumps (and slow dump helpers) out. In a
    sanitizer build, let SIGSEGV kill the worker as it would in production (ASan's own
    handler would turn it into "exited with status 1")."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "handle_segv=0")
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    yield
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


def wait_until(pred, timeout=CEILING, interval=0.02):
    """pred() once it is true, or its last value after `timeout` (at least CEILING) s."""
    deadline = time.monotonic() + max(timeout, CEILING)
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


def session():
    """A keep-alive session that retries nothing."""
    s = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=1)
    s.mount("http://", adapter)
    return s


def metric(server, name):
    text = session().get(server.url("/metrics"), timeout=3).text
    m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
    assert m, "%s not in /metrics:\n%s" % (name, text)
    return float(m.group(1))


def hello_ok(r):
    return r.status_code == 200 and "World!" in r.text


class ClientLoop:
    """`threads` threads, each with one keep-alive session, GET `path` until stopped."""

    def __init__(self, server, threads=2, path=HELLO, check=hello_ok):
        self.url = server.url(path)
        self.check = check
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        s = session()
        while not self.stop_event.is_set():
            try:
                r = s.get(self.url, timeout=5)
                good = self.check(r)
                why = None if good else "%d %r" % (r.status_code, r.text[:200])
            except requests.RequestException as e:
                good, why = False, repr(e)
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append((time.monotonic(), why))
        s.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def wait_ok(self, more):
        """Waits until `more` further requests have been answered well: the load was
        really there across whatever the test just did."""
        with self.lock:
            target = self.ok + more
        assert wait_until(lambda: self.ok >= target), (
            "the clients got %d good answers of %d awaited; failures: %r"
            % (self.ok, target, self.failures[:5]))

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)
        assert not any(t.is_alive() for t in self.threads), "client threads did not stop"

    def __exit__(self, *exc):
        self.stop()
        return False


def recv_all(sock, timeout):
    """Bytes read until EOF, a reset or `timeout` seconds of silence."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def wait_reopened(server, pids):
    """Waits until the master and each of `pids` wrote "log files reopened" into the
    error log file at its configured path (the new file after a rotation)."""
    def done():
        try:
            with open(server.error_log_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return False
        return all("[%d]: log files reopened" % pid in text
                   for pid in [server.master_pid] + list(pids))
    assert wait_until(done), "logs not reopened by %r:\n%s" % (pids, server.error_log())


def get_with_id(server, request_id):
    r = session().get(server.url(HELLO), headers={"X-Request-Id": request_id}, timeout=CEILING)
    assert hello_ok(r), r.text
    return request_id


def ids_in(path):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return set()
    out = set()
    for line in text.splitlines():
        try:
            out.add(json.loads(line).get("request_id"))
        except ValueError:
            pass
    return out


def count_lines(text, needle):
    return sum(1 for line in text.splitlines() if needle in line)


def wait_reloads(server, n, timeout=10):
    """Wait until the error log says generation n+1 serves (n reloads completed)."""
    return server.wait_error_log("reload complete: generation %d serving" % (n + 1), timeout)


def write_dropin(server, name, text):
    path = os.path.join(server.conf_dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def dropin_path(server, plugin):
    idx = server.plugins.index(plugin)
    return os.path.join(server.conf_dir, "%02d-%s.conf" % ((idx + 1) * 10, plugin))


# ---------------------------------------------------------------------------- respawn

def test_sigkill_worker_is_replaced(make_server):
    s = make_server(workers=2)
    before = s.wait_workers(2)
    restarts = metric(s, "panthera_worker_restarts_total")
    with ClientLoop(s, threads=2) as loop:
        loop.wait_ok(20)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        new = wait_until(lambda: (lambda p: p if len(p) == 2 and victim not in p else None)(
            s.worker_pids()), interval=0.01)
        loop.wait_ok(20)
    assert new, "no replacement worker: %r\n%s" % (s.worker_pids(), s.error_log())
    assert set(new) - set(before), "no new pid among %r" % new
    assert len(loop.failures) <= 2, loop.failures  # only requests on the killed worker
    assert metric(s, "panthera_worker_restarts_total") == restarts + 1
    assert "worker pid %d killed by signal 9" % victim in s.error_log()
    assert s.running()


def test_plugin_crash_takes_one_worker_only(make_server):
    s = make_server(workers=2)
    before = s.wait_workers(2)
    with ClientLoop(s, threads=2) as loop:
        loop.wait_ok(10)
        with pytest.raises(requests.ConnectionError):
            session().get(s.url("/v1/test/crash"), timeout=CEILING)
        new = wait_until(lambda: (lambda p: p if len(p) == 2 and p != before else None)(
            s.worker_pids()), interval=0.01)
        loop.wait_ok(20)
    assert new, "worker not replaced: %r" % s.worker_pids()
    assert len(set(before) - set(new)) == 1, (before, new)
    assert len(loop.failures) <= 2, loop.failures
    for _ in range(10):
        assert hello_ok(session().get(s.url(HELLO), timeout=3))
    log = s.wait_error_log("killed by signal 11")
    assert re.search(r"worker pid \d+ killed by signal 11", log), log


# ---------------------------------------------------------------------------- backoff

def test_reload_into_crashing_plugin_fails_and_old_workers_serve(make_server):
    s = make_server(workers=2)
    before = s.wait_workers(2)
    with ClientLoop(s, threads=2) as loop:
        loop.wait_ok(10)
        with open(dropin_path(s, "testkit"), "w") as f:
            f.write("[plugin:testkit]\ncrash_at_init = yes\n")
        s.signal(signal.SIGHUP)
        log = s.wait_error_log("reload failed")
        # Served on after the failure: a respawn loop of the new workers would show as
        # more than one abort per configured worker below.
        loop.wait_ok(40)
    assert loop.failures == [], loop.failures[:5]
    assert s.worker_pids() == before
    assert "the running configuration stays in service" in log
    log = s.error_log()
    assert count_lines(log, "reload failed") == 1, log
    # The new workers are not respawned: at most one start per configured worker.
    assert count_lines(log, "killed by signal 6") <= 2, log
    assert session().get(s.url("/v1/test/config"), timeout=3).json()["crash_at_init"] == "no"


def test_worker_dying_young_is_backed_off(make_server):
    s = make_server(workers=1)
    seen = set(s.wait_workers(1))
    t0 = time.monotonic()
    kills = 0
    current = next(iter(seen))
    while kills < 6:
        os.kill(current, signal.SIGKILL)
        kills += 1
        if kills == 6:
            break
        pids = wait_until(lambda: [p for p in s.worker_pids() if p not in seen], interval=0.005)
        assert pids, "no replacement after kill %d:\n%s" % (kills, s.error_log())
        current = pids[0]
        seen.add(current)
    window = time.monotonic() - t0
    # Not spun: six deaths cost at least 0.1 + 0.2 + 0.4 + 0.8 + 1.0 s of waiting (a lower
    # bound, which a slow machine only makes easier to meet). A worker that was serving
    # waits at most a second (crash.c, master.c): the service is never left without one
    # for longer, yet a loop of deaths is still slowed down.
    assert window > 2.0, "six young deaths replaced within %.2fs: no backoff" % window
    log = s.wait_error_log("next start in 1000 ms")
    seen.update(s.worker_pids())
    assert len(seen) <= 10, "master forked %d workers" % len(seen)
    delays = [int(d) for d in re.findall(r"keeps dying young; next start in (\d+) ms", log)]
    assert len(delays) >= 4, log
    assert all(a <= b for a, b in zip(delays, delays[1:])) and max(delays) == 1000, delays
    assert s.running()


def test_crash_at_start_does_not_spin():
    """Workers that abort in init from the very start: backed off, not forked in a loop.
    Each death is followed by one longer wait, whatever the speed of the machine."""
    s = Server(workers=1, plugin_config={"testkit": {"crash_at_init": "yes"}})
    try:
        s.launch()  # never healthy: nothing to wait for but the log
        s.wait_error_log("next start in 800 ms")
        s.stop()
        log = s.error_log()
        deaths = count_lines(log, "killed by signal 6")
        delays = [int(d) for d in re.findall(r"next start in (\d+) ms", log)]
        # The first young death waits 100 ms unannounced; every later one announces its
        # wait, doubled each time.
        assert delays[:3] == [200, 400, 800], log
        assert all(a < b for a, b in zip(delays, delays[1:])), log
        assert len(delays) <= deaths <= len(delays) + 1, log
        assert not s.running()
    finally:
        s.cleanup()


# ---------------------------------------------------------------------------- reload

def test_sighup_under_load_loses_nothing(make_server):
    s = make_server(workers=2)
    before = s.wait_workers(2)
    master = s.master_pid
    with ClientLoop(s, threads=3) as loop:
        loop.wait_ok(20)
        for i in range(3):
            s.signal(signal.SIGHUP)
            wait_reloads(s, i + 1)
            loop.wait_ok(20)
    assert loop.failures == [], "%d failures, first: %r" % (len(loop.failures), loop.failures[:5])
    after = s.wait_workers(2)
    assert not set(after) & set(before), (before, after)
    assert s.master_pid == master and s.running()
    assert "already in progress" not in s.error_log()


def test_sighup_applies_plugin_setting(make_server):
    s = make_server(workers=2)
    old = s.wait_workers(2)
    assert session().get(s.url(HELLO), timeout=3).json()["message"] == "Hello, World!"
    with open(dropin_path(s, "hello"), "w") as f:
        f.write("[plugin:hello]\ngreeting = Howdy\n")
    s.signal(signal.SIGHUP)
    wait_reloads(s, 1)
    # "reload complete" comes before the old workers have stopped accepting.
    s.wait_gone(old)
    r = session().get(s.url(HELLO), timeout=3)
    assert r.json()["message"] == "Howdy, World!"
    assert session().get(s.url("/v1/hello/Ann"), timeout=3).json()["message"] == "Howdy, Ann!"


BROKEN = {
    # kind -> (file: a new drop-in or an existing plugin's, its text, error line, message)
    "syntax": ("90-broken.conf", "[http]\n# a comment\nthis line has no equals sign\n", 3,
               "syntax error"),
    "server_key": ("90-broken.conf", "[server]\n\nbogus_key = 1\n", 3,
                   'unknown key "bogus_key" in [server]'),
    # Only the plugin knows its keys: this one is caught by the new workers, not the master.
    "plugin_key": ("10-hello.conf", "[plugin:hello]\ngreeting = Howdy\ncolour = blue\n", 3,
                   'unknown key "colour" in [plugin:hello]'),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_config_at_sighup_is_refused(make_server, kind):
    s = make_server(workers=2)
    before = s.wait_workers(2)
    name, text, line, needle = BROKEN[kind]
    path = write_dropin(s, name, text)
    with ClientLoop(s, threads=2) as loop:
        loop.wait_ok(10)
        s.signal(signal.SIGHUP)
        log = s.wait_error_log("reload failed")
        loop.wait_ok(20)
    assert "%s:%d:" % (path, line) in log, log
    assert needle in log, log
    assert loop.failures == [], loop.failures[:5]
    assert s.worker_pids() == before
    assert session().get(s.url(HELLO), timeout=3).json()["message"] == "Hello, World!"


# ---------------------------------------------------------------------------- stop

def test_sigterm_drains_slow_request(make_server):
    s = make_server(workers=2)
    result = {}

    def slow():
        try:
            r = requests.get(s.url("/v1/test/sleep?ms=1500"), timeout=10)
            result["status"], result["body"] = r.status_code, r.json()
        except requests.RequestException as e:
            result["error"] = repr(e)
        result["at"] = time.monotonic()

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    s.wait_error_log("sleep of 1500 ms started")  # in flight, inside the handler
    s.signal(signal.SIGTERM)
    t.join(timeout=CEILING)
    assert result.get("status") == 200, result
    assert result["body"] == {"slept_ms": 1500}
    rc = s.proc.wait(timeout=CEILING)
    assert rc == 0, s.error_log()
    # The listeners are closed now: a new connection is refused outright.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((s.host, s.port), timeout=2).close()
    assert "shutting down" in s.error_log()


def test_sigterm_drains_slow_upload(make_server):
    # debug: a worker says "draining N connections" when SIGTERM reaches it.
    s = make_server(workers=2, log_level="debug")
    body = b"x" * 2000
    sock = s.connect(timeout=CEILING)
    try:
        # The 100 Continue says the worker has parsed the head: the request is in flight.
        sock.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.settimeout(CEILING)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue"), "no 100 Continue"
        sock.sendall(body[:1000])
        s.signal(signal.SIGTERM)
        assert wait_until(lambda: count_lines(s.error_log(), "draining ") >= 2), s.error_log()
        sock.sendall(body[1000:])
        data = recv_all(sock, timeout=CEILING)
    finally:
        sock.close()
    responses = parse_response(data)
    assert responses and responses[0].status == 200, data[:300]
    assert responses[0].json()["length"] == len(body)
    assert s.proc.wait(timeout=CEILING) == 0, s.error_log()


# ---------------------------------------------------------------------------- logs, pid file

def test_sigusr1_reopens_logs(make_server):
    s = make_server(workers=2)
    sess = session()
    assert hello_ok(sess.get(s.url(HELLO), timeout=3))
    assert s.wait_access_log(lambda lines: len(lines) >= 2)
    os.rename(s.access_log_path, s.access_log_path + ".1")
    os.rename(s.error_log_path, s.error_log_path + ".1")
    s.signal(signal.SIGUSR1)
    wait_reopened(s, s.worker_pids())
    ids = {get_with_id(s, "reopen-%d" % i) for i in range(10)}
    s.wait_access_log(lambda ls: ids <= {x.get("request_id") for x in ls})
    assert ids <= ids_in(s.access_log_path), "requests after SIGUSR1 not in the new access log"
    # A worker line (the plugin's log) and a master line (the crash) reach the new error log.
    with pytest.raises(requests.ConnectionError):
        session().get(s.url("/v1/test/crash"), timeout=CEILING)
    text = wait_until(lambda: (lambda t: t if "killed by signal 11" in t else None)(
        open(s.error_log_path).read()))
    assert text and "crashing on purpose" in text and "killed by signal 11" in text, text


def test_workers_started_after_sigusr1_write_new_access_log(make_server):
    """logrotate's sequence: rename, USR1; a worker respawned afterwards must not keep
    writing into the renamed file."""
    s = make_server(workers=1)
    assert hello_ok(session().get(s.url(HELLO), timeout=3))
    assert s.wait_access_log(lambda lines: len(lines) >= 2)
    rotated = s.access_log_path + ".1"
    os.rename(s.access_log_path, rotated)
    s.signal(signal.SIGUSR1)
    old = s.worker_pids()
    wait_reopened(s, old)
    os.kill(old[0], signal.SIGKILL)
    s.wait_workers(1, exclude=old)
    ids = {get_with_id(s, "respawned-%d" % i) for i in range(5)}
    # Wait for the lines in either file, then say which one they reached.
    assert wait_until(lambda: ids <= ids_in(s.access_log_path) | ids_in(rotated)), (
        "the respawned worker's requests are in neither access log")
    stray = ids & ids_in(rotated)
    assert not stray, ("the respawned worker wrote %d requests into the rotated access log "
                       "(the master does not reopen the access log on SIGUSR1)" % len(stray))


def test_pid_file_written_and_removed(make_server):
    s = make_server(workers=1)
    with open(s.pid_file) as f:
        assert int(f.read().strip()) == s.master_pid
    assert s.stop() == 0
    assert not os.path.exists(s.pid_file)


def test_sighup_applies_new_access_log_path(make_server):
    """Changing access_log needs no restart: after SIGHUP the new workers log there."""
    s = make_server(workers=2)
    assert hello_ok(session().get(s.url(HELLO), timeout=3))
    new_path = os.path.join(s.tmp, "access-new.log")
    s.extra_server["access_log"] = new_path
    s.write_conf()
    s.signal(signal.SIGHUP)
    wait_reloads(s, 1)
    s.wait_workers(2)
    ids = {get_with_id(s, "reloaded-%d" % i) for i in range(5)}
    assert wait_until(lambda: ids <= ids_in(new_path) | ids_in(s.access_log_path)), (
        "the requests after the reload are in neither access log")
    stray = ids & ids_in(s.access_log_path)
    assert not stray and ids <= ids_in(new_path), (
        "after the reload, %d requests went on into the old file instead of access_log = %s"
        % (len(stray), new_path))
