"""SDK 1.1 services that need no PostgreSQL or Redis: blocking work off the loop,
plugin commands on the command line, and the merged /openapi.json."""
import concurrent.futures
import subprocess
import time

import requests

from panthera_server import CEILING, PANTHERAD, Server


def test_work_runs_off_the_loop_within_the_bound(make_server):
    s = make_server(workers=1, extra_server={"blocking_jobs": "2", "blocking_queue": "16"})
    s.start()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        # Two rounds of 4 s jobs, two at a time: at least 8 s of work queued on one worker.
        jobs = [pool.submit(requests.get, s.url("/v1/test/work?ms=4000"), timeout=CEILING)
                for _ in range(4)]
        # Every job is handed over (were they run on the loop, that alone would take
        # 16 s); the loop is free while they run: another route answers before they end.
        s.wait_error_log("work of 4000 ms handed to the pool")
        deadline = time.monotonic() + CEILING
        while s.error_log().count("work of 4000 ms handed to the pool") < 4:
            assert time.monotonic() < deadline, s.error_log()
            time.sleep(0.02)
        hello = requests.get(s.url("/v1/hello"), timeout=CEILING)
        pending = sum(1 for j in jobs if not j.done())
        results = [j.result() for j in jobs]
    assert hello.status_code == 200
    assert pending > 0, "/v1/hello was answered only after every job had ended"
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    # Never more than blocking_jobs at once, but they did overlap.
    assert max(r.json()["max_running"] for r in results) == 2


def test_work_queue_bound_is_503(make_server):
    s = make_server(workers=1, extra_server={"blocking_jobs": "1", "blocking_queue": "1"})
    s.start()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(requests.get, s.url("/v1/test/work?ms=400"), timeout=20)
                for _ in range(5)]
        statuses = sorted(j.result().status_code for j in jobs)
    assert 200 in statuses and 503 in statuses, statuses
    rejected = [j.result() for j in jobs if j.result().status_code == 503][0]
    assert rejected.headers.get("Retry-After")
    assert rejected.json()["error"]["code"] == "unavailable"


def test_plugin_command_runs_and_unknown_lists_them():
    s = Server(workers=1)
    try:
        p = subprocess.run([PANTHERAD, "-c", s.conf_path, "testkit:echo", "a", "b c"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "testkit:echo a b c"
        p = subprocess.run([PANTHERAD, "-c", s.conf_path, "testkit:nope"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2
        assert "testkit:echo" in p.stderr and "testkit:sql" in p.stderr
        # Without [postgres], a command's SQL fails clearly instead of crashing.
        p = subprocess.run([PANTHERAD, "-c", s.conf_path, "testkit:sql", "SELECT 1"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "conninfo" in p.stderr
    finally:
        s.cleanup()


def test_client_address_honours_only_trusted_proxies(make_server):
    plain = make_server(workers=1)
    plain.start()
    r = requests.get(plain.url("/v1/test/client"), headers={"X-Forwarded-For": "203.0.113.9"},
                     timeout=5)
    assert r.json() == {"client": "127.0.0.1"}  # an untrusted peer cannot claim another address
    trusting = make_server(workers=1, sections={"ratelimit": {"trusted_proxies": "127.0.0.1"}})
    trusting.start()
    r = requests.get(trusting.url("/v1/test/client"),
                     headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}, timeout=5)
    assert r.json() == {"client": "203.0.113.9"}  # the right-most untrusted hop


def test_openapi_merges_host_and_plugins(server):
    r = requests.get(server.url("/openapi.json"), timeout=5)
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert "/healthz" in doc["paths"] and "/readyz" in doc["paths"]
    assert doc["paths"]["/v1/test/echo"]["post"]["summary"] == "Echo the request body"
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
