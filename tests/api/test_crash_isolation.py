"""A plugin that crashes a worker hurts only the requests it was running (server/crash.c,
server/master.c): the master logs plugin, route and request id, writes the lost request's
access log line (status 0), counts crashes per route in /metrics, and after [server]
crash_limit crashes within crash_window switches the route off (503 from every worker)
until a reload, while every other route keeps serving.

testkit's GET /v1/test/crash segfaults in its handler, GET /v1/test/crash_later in a
callback (a px_work done). Every wait polls the event with a ceiling only a hang reaches.
"""
import re
import signal

import pytest
import requests

from test_process import (ClientLoop, metric, no_core_dumps, session,  # noqa: F401
                          wait_reloads, wait_until)

CRASH = "/v1/test/crash"


def crash_metric(s, route, name="panthera_route_crashes_total"):
    text = session().get(s.url("/metrics"), timeout=5).text
    m = re.search(r'^%s\{plugin="testkit",route="GET %s"\} (\S+)$' % (name, re.escape(route)),
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def hit(s, path, rid):
    """One request on its own connection: 'crashed' (no answer), or the status."""
    try:
        r = session().get(s.url(path), headers={"X-Request-Id": rid}, timeout=10)
    except requests.ConnectionError:
        return "crashed"
    if r.status_code == 503:
        assert r.json()["error"]["code"] == "unavailable", r.text
    return r.status_code


def test_crashing_route_is_switched_off_and_others_keep_serving(make_server):
    s = make_server(workers=2)
    s.wait_workers(2)
    with ClientLoop(s, threads=2) as loop:
        outcomes = [hit(s, CRASH, "crash-%d" % i) for i in range(50)]
    crashes = outcomes.count("crashed")
    # Every request either crashed a worker (no response, as nginx) or met the switch.
    assert set(outcomes) <= {"crashed", 503}, outcomes
    assert 3 <= crashes <= 10, outcomes
    first_503 = outcomes.index(503)
    assert all(o == 503 for o in outcomes[first_503:]), outcomes
    # /v1/hello: the only failures are the loop's own keep-alive connections that sat on a
    # worker when it died (at most one per thread and crash); the service never stopped.
    assert len(loop.failures) <= 2 * crashes, loop.failures
    assert loop.ok > 50, loop.ok

    log = s.wait_error_log('route GET /v1/test/crash of plugin "testkit" crashed 3 workers')
    assert re.search(r'worker pid \d+ killed by signal 11 \(Segmentation fault\) in plugin '
                     r'"testkit", route GET /v1/test/crash, request crash-0 ', log), log
    assert len(re.findall(r"every worker answers it 503", log)) == 1, log
    assert "keeps dying young" not in log, log
    lines = [l for l in s.wait_access_log(
        lambda ls: any(l.get("request_id") == "crash-0" for l in ls), timeout=10)
        if l.get("request_id") == "crash-0"]
    assert lines[0]["status"] == 0 and lines[0]["path"] == CRASH, lines
    assert lines[0]["plugin"] == "testkit" and lines[0].get("crashed") is True, lines
    assert lines[0]["remote"] == "127.0.0.1" and lines[0]["method"] == "GET", lines
    assert crash_metric(s, CRASH) == crashes
    assert crash_metric(s, CRASH, "panthera_route_disabled") == 1
    # Other routes of the same plugin serve.
    assert session().get(s.url("/v1/test/config"), timeout=5).status_code == 200

    # A reload switches the route back on: it crashes again, rather than answering 503.
    s.signal(signal.SIGHUP)
    assert wait_reloads(s, 1, timeout=30)
    s.wait_error_log("route(s) switched off after crashes serve again")
    assert wait_until(lambda: crash_metric(s, CRASH, "panthera_route_disabled") == 0, 10)
    assert hit(s, CRASH, "after-reload") == "crashed"
    assert wait_until(lambda: crash_metric(s, CRASH) == crashes + 1, 10)
    assert session().get(s.url("/v1/hello"), timeout=5).status_code == 200


def test_crash_in_a_callback_names_its_request(make_server):
    s = make_server(workers=2, extra_server={"crash_limit": 1, "crash_window": "1h"})
    s.wait_workers(2)
    assert hit(s, "/v1/test/crash_later", "later-1") == "crashed"
    log = s.wait_error_log("request later-1")
    assert re.search(r'in plugin "testkit", route GET /v1/test/crash_later, request later-1 '
                     r'\(path /v1/test/crash_later\)', log), log
    # crash_limit 1: one crash switches it off.
    assert wait_until(lambda: hit(s, "/v1/test/crash_later", "later-2") == 503, 10)


def test_crash_in_a_pool_thread_names_its_request(make_server):
    s = make_server(workers=2)
    s.wait_workers(2)
    assert hit(s, "/v1/test/crash_job", "job-1") == "crashed"
    log = s.wait_error_log("request job-1")
    assert re.search(r'in plugin "testkit", route GET /v1/test/crash_job, request job-1 ', log), log


def test_crash_limit_zero_never_switches_off(make_server):
    s = make_server(workers=2, extra_server={"crash_limit": 0})
    s.wait_workers(2)
    for i in range(4):
        assert hit(s, CRASH, "z-%d" % i) == "crashed"
        assert wait_until(lambda: crash_metric(s, CRASH) == i + 1, 10)
    assert crash_metric(s, CRASH, "panthera_route_disabled") == 0


def test_worker_killed_outside_plugin_code_names_no_route(make_server):
    import os
    s = make_server(workers=1)
    pid = s.wait_workers(1)[0]
    os.kill(pid, signal.SIGSEGV)
    log = s.wait_error_log("worker pid %d killed by signal 11" % pid)
    line = [l for l in log.splitlines() if "worker pid %d" % pid in l][0]
    assert "in plugin" not in line and "replacing it" in line, line


@pytest.mark.parametrize("value", ["-1", "x"])
def test_bad_crash_limit_is_a_config_error(tmp_path, value):
    from panthera_server import Server
    s = Server(workers=1, extra_server={"crash_limit": value})
    try:
        rc, out, err = s.check_config()
        assert rc != 0 and "crash_limit" in out + err, (rc, out, err)
    finally:
        s.cleanup()
