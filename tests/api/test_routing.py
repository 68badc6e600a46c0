"""Routing, parameters, error mapping, request ids and the access log."""
import datetime
import time

import pytest
import requests

from panthera_server import parse_response, read_response

JSON_CT = "application/json; charset=utf-8"


def assert_error(resp, status, code=None):
    """`resp` is a requests.Response or a panthera_server.Response."""
    got = getattr(resp, "status_code", None) or resp.status
    assert got == status, (got, getattr(resp, "text", None) or resp.body)
    headers = {k.lower(): v for k, v in resp.headers.items()}
    assert headers.get("content-type") == JSON_CT, headers
    assert headers.get("x-request-id"), headers
    doc = resp.json()
    assert list(doc) == ["error"], doc
    assert set(doc["error"]) == {"code", "message"}, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    if code:
        assert doc["error"]["code"] == code, doc
    return doc["error"]


def get(server, path, **kw):
    kw.setdefault("timeout", 5)
    return requests.get(server.url(path), **kw)


# ---- 404 / 405 ----

@pytest.mark.parametrize("path", ["/nope", "/v1/hello/", "/v1/hello/a/b", "/v1//hello",
                                  "/V1/HELLO", "/v1", "/"])
def test_404_shape(server, path):
    r = get(server, path)
    assert_error(r, 404, "not_found")


def test_405_shape_and_allow(server):
    r = requests.post(server.url("/v1/hello"), data=b"", timeout=5)
    assert_error(r, 405)
    assert r.headers["Allow"] == "GET, HEAD"
    r = requests.delete(server.url("/v1/hello/bob"), timeout=5)
    assert_error(r, 405)
    assert r.headers["Allow"] == "GET, HEAD"


def test_405_lists_every_method_of_the_path(server):
    r = requests.get(server.url("/v1/test/echo"), timeout=5)
    assert_error(r, 405)
    allowed = [m.strip() for m in r.headers["Allow"].split(",")]
    assert sorted(allowed) == ["POST", "PUT"]


def test_405_keeps_connection_usable(server):
    with server.connect() as s:
        s.sendall(b"DELETE /v1/hello HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).status == 405
        assert read_response(s).status == 200


def test_head_on_get_route(server):
    r = requests.head(server.url("/v1/hello/bob"), timeout=5)
    assert r.status_code == 200
    assert r.content == b""
    g = get(server, "/v1/hello/bob")
    assert int(r.headers["Content-Length"]) == len(g.content)
    assert r.headers["Content-Type"] == g.headers["Content-Type"]


def test_head_on_404_has_no_body(server):
    data = server.raw(b"HEAD /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert body == b""


# ---- parameters and percent-decoding ----

def test_param_percent_decoded(server):
    r = get(server, "/v1/hello/a%20b")
    assert r.status_code == 200
    assert r.json() == {"message": "Hello, a b!"}


def test_param_plus_is_not_space(server):
    r = get(server, "/v1/hello/a+b")
    assert r.json() == {"message": "Hello, a+b!"}


def test_param_utf8(server):
    r = get(server, "/v1/hello/%C3%A9t%C3%A9")
    assert r.json() == {"message": "Hello, \u00e9t\u00e9!"}


def test_param_encoded_slash_stays_in_segment(server):
    r = get(server, "/v1/test/params/x%2Fz/y")
    assert r.status_code == 200
    assert r.json() == {"a": "x/z", "b": "y"}


def test_params(server):
    r = get(server, "/v1/test/params/x/y")
    assert r.status_code == 200
    assert r.json() == {"a": "x", "b": "y"}


@pytest.mark.parametrize("path", [b"/v1/hello/%00", b"/v1/hello/%zz", b"/v1/hello/a%2",
                                  b"/v1/hello/%", b"/v1/test/params/ok/%G1"])
def test_bad_percent_encoding_is_400(server, path):
    data = server.raw(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    (resp,) = parse_response(data)
    assert_error(resp, 400, "bad_request")


def test_query_parsing(server):
    r = get(server, "/v1/test/query?page=2&q=a+b%21")
    assert r.status_code == 200
    assert r.json() == {"page": "2", "q": "a b!", "empty": None}


def test_query_empty_values(server):
    r = get(server, "/v1/test/query?empty&page=")
    assert r.json() == {"page": "", "q": None, "empty": ""}


def test_query_first_value_wins(server):
    data = server.raw(b"GET /v1/test/query?page=1&page=2 HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
    (resp,) = parse_response(data)
    assert resp.status == 200
    assert resp.json() == {"page": "1", "q": None, "empty": None}


def test_absolute_form_target(server):
    data = server.raw(b"GET http://x/v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    (resp,) = parse_response(data)
    assert resp.status == 200
    assert resp.json() == {"message": "Hello, World!"}
    data = server.raw(b"GET http://x/v1/test/query?page=7 HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
    (resp,) = parse_response(data)
    assert resp.json()["page"] == "7"


# ---- handler outcomes ----

def test_handler_without_answer_is_500(server):
    r = get(server, "/v1/test/noanswer")
    assert_error(r, 500, "internal")
    server.wait_error_log("returned without answering", timeout=3)


@pytest.mark.parametrize("code,status,name", [
    (-1, 400, "bad_request"), (-2, 415, None), (-3, 401, "unauthorized"),
    (-4, 403, "forbidden"), (-5, 404, "not_found"), (-6, 409, "conflict"),
    (-7, 413, "payload_too_large"), (-8, 503, "unavailable"), (-9, 500, "internal"),
    (-10, 500, "internal"), (-99, 500, "internal"),
])
def test_error_codes_map_to_status(server, code, status, name):
    r = get(server, "/v1/test/error?code=%d" % code)
    assert_error(r, status, name)


def test_error_keeps_connection_alive(server):
    with server.connect() as s:
        s.sendall(b"GET /v1/test/error?code=-6 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).status == 409
        assert read_response(s).status == 200


def test_503_has_retry_after(server):
    """API.md: '503 (+ Retry-After)'."""
    r = get(server, "/v1/test/error?code=-8")
    assert r.status_code == 503
    assert r.headers.get("Retry-After", "").isdigit(), r.headers


def test_401_has_www_authenticate(server):
    """API.md: 401 comes with `WWW-Authenticate: Bearer`."""
    r = get(server, "/v1/test/error?code=-3")
    assert r.status_code == 401
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers


def test_json_body(server):
    r = requests.post(server.url("/v1/test/json"), data=b'{"a": [1, 2, {"b": null}]}',
                      headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_CT
    assert r.json() == {"a": [1, 2, {"b": None}]}


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "Application/JSON",
                                   "application/merge-patch+json"])
def test_json_content_type_variants(server, ctype):
    r = requests.post(server.url("/v1/test/json"), data=b'{"a":1}',
                      headers={"Content-Type": ctype}, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json() == {"a": 1}


@pytest.mark.parametrize("body", [b'{"a":', b"", b"not json", b'{"a":1,"a":2}', b"\xff\xfe"])
def test_malformed_json_is_400(server, body):
    r = requests.post(server.url("/v1/test/json"), data=body,
                      headers={"Content-Type": "application/json"}, timeout=5)
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("ctype", ["text/plain", None, "application/jsonx", "application/x-www-form-urlencoded"])
def test_non_json_content_type_is_415(server, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = requests.post(server.url("/v1/test/json"), data=b'{"a":1}', headers=headers, timeout=5)
    assert_error(r, 415)


# ---- request ids ----

def test_request_id_on_every_response(server):
    cases = [
        (b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        (b"POST /v1/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
        (b"GET /v1/hello HTTP/1.1\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /v1/test/noanswer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 500),
        (b"GET /v1/hello HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ]
    ids = set()
    for req, status in cases:
        (resp,) = parse_response(server.raw(req))
        assert resp.status == status
        rid = resp.headers.get("x-request-id")
        assert rid and len(rid) <= 64, (status, resp.headers)
        ids.add(rid)
    assert len(ids) == len(cases)


def test_sane_request_id_echoed(server):
    for rid in ["abc-123", "f47ac10b-58cc-4372-a567-0e02b2c3d479", "a.b_c:d", "x" * 40]:
        r = get(server, "/v1/hello", headers={"X-Request-Id": rid})
        assert r.headers["X-Request-Id"] == rid
    r = get(server, "/v1/test/headers", headers={"X-Request-Id": "trace-1"})
    assert r.headers["X-Request-Id"] == "trace-1"
    assert r.json()["x-request-id"] == "trace-1"


@pytest.mark.parametrize("n", [47, 48, 49, 56, 57, 58, 59, 63, 64, 65])
def test_long_request_id_is_answered_intact(server, n):
    """An incoming X-Request-Id of 48..64 characters passes the server's sanity check
    (<= 64 chars) but must not overflow the request's id buffer: the request is answered
    normally with that id echoed exactly; a longer one is replaced by a fresh id."""
    rid = b"r" * n
    before = server.worker_pids()
    data = server.raw(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + rid +
                      b"\r\nConnection: close\r\n\r\n", timeout=30)
    resps = parse_response(data)
    assert len(resps) == 1, "no response to a request with a %d-char X-Request-Id: %r" % (n, data)
    resp = resps[0]
    assert resp.status == 200
    assert resp.body == b'{"message":"Hello, World!"}'
    got = resp.headers["x-request-id"].encode()
    if n <= 64:
        assert got == rid, got
    else:
        assert got and b"r" * 8 not in got, got
    assert server.worker_pids() == before
    # the request's other fields survived: its duration is sane in the access log
    gid = got.decode()
    lines = server.wait_access_log(lambda ls: any(l.get("request_id") == gid for l in ls))
    (line,) = [l for l in lines if l.get("request_id") == gid]
    assert 0 <= line["duration_ms"] < 10000, line


def test_sane_request_id_echoed_on_errors(server):
    r = get(server, "/nope", headers={"X-Request-Id": "err-trace-1"})
    assert r.status_code == 404
    assert r.headers["X-Request-Id"] == "err-trace-1"


@pytest.mark.parametrize("rid", [b"a b", b"x" * 200, b"", b"a\"b", b"<script>", b"a/b", b"\xc3\xa9"])
def test_insane_request_id_replaced(server, rid):
    data = server.raw(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + rid +
                      b"\r\nConnection: close\r\n\r\n")
    (resp,) = parse_response(data)
    assert resp.status == 200
    got = resp.headers["x-request-id"]
    assert got and got.encode() != rid
    assert len(got) <= 64
    assert all(c.isalnum() or c in "-_.:" for c in got), got


# ---- access log ----

ACCESS_KEYS = {"time", "method", "path", "status", "bytes", "duration_ms", "request_id", "plugin"}


def wait_for_ids(server, ids, timeout=5):
    ids = set(ids)
    lines = server.wait_access_log(lambda ls: ids <= {l.get("request_id") for l in ls}, timeout)
    found = {l["request_id"]: l for l in lines if l.get("request_id") in ids}
    assert set(found) == ids, "access log lacks %r" % (ids - set(found))
    return found


def test_access_log_one_line_per_request(server):
    ids = {}
    for path, rid in [("/v1/hello", "al-hello"), ("/nope", "al-404"), ("/v1/hello/x", "al-hello-x")]:
        r = get(server, path, headers={"X-Request-Id": rid})
        ids[rid] = r
    found = wait_for_ids(server, ids)
    for rid, resp in ids.items():
        line = found[rid]
        assert ACCESS_KEYS <= set(line), line
        assert line["method"] == "GET"
        assert line["status"] == resp.status_code
        assert isinstance(line["bytes"], int) and line["bytes"] >= len(resp.content)
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert found["al-hello"]["plugin"] == "hello"
    assert found["al-hello"]["path"] == "/v1/hello"
    assert found["al-hello-x"]["plugin"] == "hello"
    assert found["al-404"]["plugin"] == "host"
    assert found["al-404"]["path"] == "/nope"
    all_lines = server.access_log_lines()
    for rid in ids:
        assert sum(1 for l in all_lines if l.get("request_id") == rid) == 1


def test_access_log_bytes_is_wire_size(server):
    data = server.raw(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: al-bytes\r\n"
                      b"Connection: close\r\n\r\n")
    found = wait_for_ids(server, ["al-bytes"])
    assert found["al-bytes"]["bytes"] == len(data)


def test_access_log_bad_request_logged(server):
    server.raw(b"GET /v1/hello HTTP/1.1\r\nX-Request-Id: al-bad\r\n\r\n")
    found = wait_for_ids(server, ["al-bad"])
    assert found["al-bad"]["status"] == 400
    assert found["al-bad"]["plugin"] == "host"


def test_access_log_never_has_query(server):
    r = get(server, "/v1/test/query?access_token=secret-token-xyz&page=1",
            headers={"X-Request-Id": "al-token"})
    assert r.status_code == 200
    r = get(server, "/nope?access_token=secret-token-xyz", headers={"X-Request-Id": "al-token-404"})
    assert r.status_code == 404
    found = wait_for_ids(server, ["al-token", "al-token-404"])
    assert found["al-token"]["path"] == "/v1/test/query"
    assert found["al-token"]["plugin"] == "testkit"
    assert found["al-token-404"]["path"] == "/nope"
    with open(server.access_log_path, errors="replace") as f:
        assert "secret-token-xyz" not in f.read()


def test_access_log_escapes_path(server):
    server.raw(b'GET /v1/hello/a%22b%5C HTTP/1.1\r\nHost: x\r\nX-Request-Id: al-esc\r\n'
               b'Connection: close\r\n\r\n')
    found = wait_for_ids(server, ["al-esc"])  # the line parsed as JSON
    assert found["al-esc"]["path"] == "/v1/hello/a%22b%5C"
    assert found["al-esc"]["status"] == 200


def test_access_log_escapes_raw_bytes_in_the_path(server):
    # A quote and a backslash sent raw in the target (llhttp takes both; it refuses
    # controls and non-ASCII there): escaped, the line still parses as JSON.
    server.raw(b'GET /v1/nowhere/a"b\\c"\\ HTTP/1.1\r\nHost: x\r\n'
               b'X-Request-Id: al-raw\r\nConnection: close\r\n\r\n')
    found = wait_for_ids(server, ["al-raw"])  # the line parsed as JSON
    assert found["al-raw"]["path"] == '/v1/nowhere/a"b\\c"\\'
    assert found["al-raw"]["method"] == "GET" and found["al-raw"]["status"] == 404
    with open(server.access_log_path, "rb") as f:
        raw = [l for l in f if b'"al-raw"' in l]
    assert b'"path":"/v1/nowhere/a\\"b\\\\c\\"\\\\"' in raw[0], raw


def _parse_log_time(s):
    assert s.endswith("Z"), s
    return datetime.datetime.strptime(s[:-1], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def test_access_log_time_is_wall_clock(server):
    """`time` is the wall-clock time of the request, to the millisecond it claims."""
    sent = {}
    for i in range(8):
        rid = "al-time-%d" % i
        t0 = time.time()
        get(server, "/v1/hello", headers={"X-Request-Id": rid})
        t1 = time.time()
        sent[rid] = (t0, t1)
        time.sleep(0.137)
    found = wait_for_ids(server, sent)
    off = []
    for rid, (t0, t1) in sent.items():
        logged = _parse_log_time(found[rid]["time"])
        if not (t0 - 0.05 <= logged <= t1 + 0.05):
            off.append((rid, found[rid]["time"], round(logged - t0, 3)))
    assert not off, "access-log times off the wall clock (rid, logged, logged - sent): %r" % off


@pytest.mark.parametrize("query", [b"q=%zz", b"q=%0", b"q=a%00b", b"q=%", b"page=1&q=%g1"])
def test_malformed_query_encoding_is_400(server, query):
    # Raw: an HTTP library would re-encode the stray '%'. A value the handler would
    # silently miss must not pass for an absent one.
    data = server.raw(b"GET /v1/test/query?" + query + b" HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
    (resp,) = parse_response(data)
    assert resp.status == 400
    assert resp.json()["error"]["code"] == "bad_request"
    assert "query" in resp.json()["error"]["message"]
