"""The host's own endpoints: /healthz and /metrics (Prometheus text)."""
import re
import socket
import time

import requests

from panthera_server import CEILING, read_response

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): float}; asserts the text is well-formed."""
    out = {}
    types = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels, value = m.groups()
        lab = {}
        if labels:
            for part in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels):
                lab[part[0]] = part[1]
        key = (name, frozenset(lab.items()))
        assert key not in out, "duplicate sample %r" % line
        out[key] = float(value)
    return out, types


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(server):
    r = requests.get(server.url("/metrics"), timeout=5)
    assert r.status_code == 200
    return parse_metrics(r.text)[0]


def fresh_get(server, path):
    """One request on its own connection (so both workers get some)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_response(s)


def test_healthz(server):
    r = requests.get(server.url("/healthz"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "ok"}
    assert r.headers.get("X-Request-Id")


def test_healthz_head(server):
    """On a raw socket: requests never reads a HEAD body, so only the bytes can show that
    none was sent (the answer to HEAD ends at the blank line, then the next answer)."""
    data = server.raw(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                      timeout=CEILING)
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200 "), data
    assert int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1)) > 0, head
    assert rest.startswith(b"HTTP/1.1 200 "), "bytes after the HEAD answer's head: %r" % rest[:200]


def test_healthz_post_is_405(server):
    r = requests.post(server.url("/healthz"), timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert r.json()["error"]["code"]


def test_metrics_format(server):
    requests.get(server.url("/v1/hello"), timeout=5)
    r = requests.get(server.url("/metrics"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "version=0.0.4" in r.headers["Content-Type"]
    assert r.text.endswith("\n")
    samples, types = parse_metrics(r.text)
    assert types.get("panthera_http_requests_total") == "counter"
    assert types.get("panthera_http_request_duration_seconds") == "histogram"
    assert types.get("panthera_connections_open") == "gauge"
    assert types.get("panthera_worker_restarts_total") == "counter"
    assert re.search(r'^panthera_http_requests_total\{plugin="hello",status="200"\} \d+$',
                     r.text, re.M)
    assert metric(samples, "panthera_http_requests_total", plugin="hello", status="200") >= 1
    assert ("panthera_http_request_duration_seconds_bucket", frozenset({("le", "+Inf")})) in samples
    assert ("panthera_connections_open", frozenset()) in samples
    assert ("panthera_worker_restarts_total", frozenset()) in samples
    assert metric(samples, "panthera_connections_open") >= 1  # this scrape's own connection


def test_histogram_consistent(server):
    for _ in range(5):
        requests.get(server.url("/v1/hello"), timeout=5)
    samples = scrape(server)
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in samples.items()
                      if k[0] == "panthera_http_request_duration_seconds_bucket"),
                     key=lambda x: x[0])
    assert buckets and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative: %r" % buckets
    total = metric(samples, "panthera_http_request_duration_seconds_count")
    assert buckets[-1][1] == total
    s = metric(samples, "panthera_http_request_duration_seconds_sum")
    assert 0 <= s < total * 10, (s, total)
    # every answered request is counted once in both families
    reqs = sum(v for k, v in samples.items() if k[0] == "panthera_http_requests_total")
    assert reqs == total


def test_requests_counter_increases(server):
    before = scrape(server)
    for _ in range(3):
        assert requests.get(server.url("/v1/hello"), timeout=5).status_code == 200
    requests.get(server.url("/definitely-not-here"), timeout=5)
    after = scrape(server)
    key = dict(plugin="hello", status="200")
    assert metric(after, "panthera_http_requests_total", **key) >= \
        metric(before, "panthera_http_requests_total", **key) + 3
    assert metric(after, "panthera_http_requests_total", plugin="host", status="404") >= \
        metric(before, "panthera_http_requests_total", plugin="host", status="404") + 1


def test_counts_add_up_across_workers(server):
    """50 hello requests on fresh connections, spread over both workers (while one worker
    is busy in a deliberately blocking handler the other must accept), and every scrape,
    whichever worker answers it, counts all 50."""
    assert len(server.worker_pids()) == 2
    before = scrape(server)
    prefixes = set()  # a request id starts with its worker's random prefix
    made = 0

    def blocker(ms):
        """A request that keeps its worker busy, returned once the handler runs."""
        needle = "sleep of %d ms started" % ms
        seen = server.error_log().count(needle)
        b = socket.create_connection(("127.0.0.1", server.port), timeout=CEILING)
        b.sendall(b"GET /v1/test/sleep?ms=%d HTTP/1.1\r\nHost: x\r\n\r\n" % ms)
        deadline = time.monotonic() + CEILING
        while server.error_log().count(needle) == seen and time.monotonic() < deadline:
            time.sleep(0.01)
        return b

    for round_ in range(10):
        if round_ % 2 == 0:
            # the worker that takes the blocker is busy: the other one takes the hellos
            busy = [blocker(300)]
        else:
            # first blocker short, second (on the other worker) long: once the first
            # is answered, its worker takes the hellos
            busy = [blocker(100), blocker(600)]
            with busy.pop(0) as first:
                assert read_response(first, timeout=CEILING).status == 200
        for _ in range(5):
            r = fresh_get(server, "/v1/hello")
            assert r.status == 200
            prefixes.add(r.headers["x-request-id"][:8])
            made += 1
        for b in busy:
            assert read_response(b, timeout=CEILING).status == 200
            b.close()
    assert made == 50
    assert len(prefixes) == 2, "requests all landed on one worker: %r" % prefixes
    key = dict(plugin="hello", status="200")
    base = metric(before, "panthera_http_requests_total", **key)
    for _ in range(6):
        after = scrape(server)
        assert metric(after, "panthera_http_requests_total", **key) >= base + 50
    assert metric(after, "panthera_connections_total") >= \
        metric(before, "panthera_connections_total") + 50


def test_error_statuses_counted(server):
    before = scrape(server)
    requests.get(server.url("/v1/test/error?code=-6"), timeout=5)
    server.raw(b"GET /v1/hello HTTP/1.1\r\n\r\n")  # 400, no Host
    after = scrape(server)
    assert metric(after, "panthera_http_requests_total", plugin="testkit", status="409") == \
        metric(before, "panthera_http_requests_total", plugin="testkit", status="409") + 1
    assert metric(after, "panthera_http_requests_total", plugin="host", status="400") == \
        metric(before, "panthera_http_requests_total", plugin="host", status="400") + 1


def test_connections_open_gauge(server):
    """Ten connections, each served once and left open (keep-alive, so no header deadline
    closes them), are counted; closed, they stop being counted. Other tests' connections
    may close meanwhile, so nothing compares with a count taken before: the gauge must reach
    ten plus the scrape's own connection while they are open, then fall by ten."""
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=CEILING)
             for _ in range(10)]
    try:
        for s in socks:
            s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s, timeout=CEILING).status == 200
        deadline = time.monotonic() + CEILING
        while True:
            peak = metric(scrape(server), "panthera_connections_open")
            if peak >= 11 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert peak >= 11
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + CEILING
    while True:
        now = metric(scrape(server), "panthera_connections_open")
        if now <= peak - 10 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert now <= peak - 10, (peak, now)


def test_worker_restarts_zero_on_healthy_server(server):
    assert metric(scrape(server), "panthera_worker_restarts_total") == 0
