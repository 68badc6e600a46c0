"""SDK 1.2 work outside a request (server/tasks.c, server/work.c) through the taskkit
plugin: worker start and drain functions, background tasks and what they may not do,
timers owned by a request or a task, named job queues, singleton jobs and the task
metrics."""
import concurrent.futures
import os
import re
import signal
import time

import pytest
import requests

from services import pg_lock
from test_idempotency import conninfo

PGHOST = os.environ.get("PANTHERA_PGHOST")

# PX_E* codes as the header numbers them.
PX_EINVAL, PX_ENOENT, PX_ESTATE = -1, -5, -10


def metric(server, name, **labels):
    text = requests.get(server.url("/metrics"), timeout=5).text
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return float(m.group(1)) if m else None


def test_lifecycle_runs_in_each_worker_and_at_drain(make_server):
    s = make_server(workers=2, plugins=("taskkit",))
    deadline = time.monotonic() + 60
    while s.error_log().count("taskkit: worker started") < 2:
        assert time.monotonic() < deadline, s.error_log()
        time.sleep(0.05)
    s.signal(signal.SIGTERM)
    text = s.wait_error_log("taskkit: worker draining after", timeout=30)
    ticks = [int(n) for n in re.findall(r"draining after (\d+) ticks", text)]
    assert ticks, text
    s.proc.wait(timeout=30)
    assert "was still open when the worker stopped" not in s.error_log()


def test_misuse_is_refused(make_server):
    s = make_server(workers=1, plugins=("taskkit",))
    r = requests.get(s.url("/v1/taskkit/misuse"), timeout=10)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got == {
        "res_json_on_task": PX_ESTATE,
        "res_send_on_task": PX_ESTATE,
        "res_error_on_task": PX_ESTATE,
        "res_header_on_task": PX_ESTATE,
        "task_is_task": 1,
        "req_is_task": 0,
        "task_end_on_request": PX_ESTATE,
        "timer_null_fn": PX_EINVAL,
        "timer_stop_unknown": PX_ENOENT,
        "work_on_unknown_queue": PX_ENOENT,
        "bad_task_name": True,
        "on_worker_start_after_init": PX_ESTATE,
        "work_queue_after_init": PX_ESTATE,
        "singleton_on_request": PX_EINVAL,
        "timer_stop": 0,
        "timer_stop_again": PX_ENOENT,
        "task_end": 0,
    }


def test_timer_on_a_finished_request_is_refused(make_server):
    s = make_server(workers=1, plugins=("taskkit",))
    assert requests.get(s.url("/v1/taskkit/answered"), timeout=5).status_code == 200
    r = requests.get(s.url("/v1/taskkit/last"), timeout=5)
    assert r.json() == {"timer_after_answer": PX_ESTATE}


def test_request_timer_answers(make_server):
    s = make_server(workers=1, plugins=("taskkit",))
    r = requests.get(s.url("/v1/taskkit/delay?ms=30"), timeout=10)
    assert r.status_code == 200 and r.json() == {"fired": True, "positive_id": True}


def test_ending_a_task_stops_its_timers(make_server):
    s = make_server(workers=1, plugins=("taskkit",))
    # The first task ends itself on its 3rd tick (10 ms); the second, ticking every 20 ms,
    # reports on its 5th: had the first timer outlived its task it would have ticked on.
    r = requests.get(s.url("/v1/taskkit/ephemeral"), timeout=20)
    assert r.status_code == 200
    assert r.json() == {"first": 3, "second": 5}
    assert metric(s, "panthera_task_runs_total", plugin="taskkit", task="ephemeral") == 2


def test_task_jobs_and_metrics(make_server):
    s = make_server(workers=1, plugins=("taskkit",))
    for fail in (0, 0, 1):
        r = requests.get(s.url("/v1/taskkit/job?ms=5&fail=%d" % fail), timeout=10)
        assert r.status_code == 200 and r.json() == {"done_req_is_task": 1}
    r = requests.get(s.url("/v1/taskkit/job?ms=5&queue=slow"), timeout=10)
    assert r.json() == {"done_req_is_task": 1}
    assert metric(s, "panthera_task_runs_total", plugin="taskkit", task="job") == 3
    assert metric(s, "panthera_task_failures_total", plugin="taskkit", task="job") == 0
    assert metric(s, "panthera_task_runs_total", plugin="taskkit", task="job-failing") == 1
    assert metric(s, "panthera_task_failures_total", plugin="taskkit", task="job-failing") == 1
    assert metric(s, "panthera_task_duration_seconds_total", plugin="taskkit", task="job") > 0


def test_a_full_slow_queue_does_not_hold_the_default_queue(make_server):
    s = make_server(workers=1, plugins=("taskkit", "testkit"),
                    extra_server={"blocking_jobs": "1", "blocking_queue": "4"})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(requests.get, s.url("/v1/taskkit/slow?ms=3000"), timeout=60)
                for _ in range(3)]
        fast = requests.get(s.url("/v1/test/work?ms=10"), timeout=30)
        assert fast.status_code == 200
        # The default queue answered while the slow queue still had jobs queued.
        assert not all(f.done() for f in slow)
        assert all(f.result().status_code == 200 for f in slow)


@pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
def test_singleton_runs_on_one_worker_of_two_hosts(make_server):
    pg = {"postgres": {"conninfo": conninfo()}}
    with pg_lock(exclusive=False):
        a = make_server(workers=1, plugins=("taskkit",), sections=pg)
        b = make_server(workers=1, plugins=("taskkit",), sections=pg)
        # Host a holds the lock for 3 s while host b keeps asking: b must be refused.
        # (b's zero-length runs may take the lock first, and then a is the one skipped:
        # that is exclusion too, and the attempt is made again.)
        seen = []
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for attempt in range(5):
                first = pool.submit(requests.get, a.url("/v1/taskkit/single?ms=3000"),
                                    timeout=60)
                outcomes = []
                while not first.done():
                    r = requests.get(b.url("/v1/taskkit/single?ms=0"), timeout=30)
                    outcomes.append(r.json()["outcome"])
                    if outcomes[-1] == "skipped":
                        break
                seen.append((first.result().json()["outcome"], outcomes))
                if seen[-1][0] == "ran" and "skipped" in outcomes:
                    break
        assert seen[-1][0] == "ran" and "skipped" in seen[-1][1], seen
        assert "error" not in str(seen)
        # Once released, the other host gets it.
        r = requests.get(b.url("/v1/taskkit/single?ms=0"), timeout=30)
        assert r.json() == {"outcome": "ran"}
        assert metric(a, "panthera_task_runs_total", plugin="taskkit", task="single") == len(seen)
