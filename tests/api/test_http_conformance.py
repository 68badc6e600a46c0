"""HTTP/1.1 conformance of pantherad, black box over raw sockets.

Malformed input goes over raw sockets: HTTP client libraries clean requests up. Every
rejected request is followed, in the same send, by a harmless second request; the test
asserts exactly one response came back (the second was never executed) and that the
server closed the connection.
"""
import json
import socket

import pytest

from panthera_server import (CEILING, is_closed, parse_response, read_response,
                             recv_until_close)

SECOND = b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\nX-Test: second\r\n\r\n"


def assert_error_shape(resp, status):
    assert resp.status == status, resp
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    assert resp.headers.get("x-request-id"), resp.headers
    doc = json.loads(resp.body)
    assert set(doc) == {"error"}, doc
    err = doc["error"]
    assert isinstance(err.get("code"), str) and err["code"], doc
    assert isinstance(err.get("message"), str) and err["message"], doc
    assert set(err) <= {"code", "message", "fields"}, doc
    return err


def assert_rejected(server, request, status, code=None, timeout=3):
    """Send `request` + a pipelined second request; exactly one response with `status`,
    the JSON error shape, Connection: close, and the connection closed by the server."""
    data, closed = server.exchange(request + SECOND, timeout=timeout)
    responses = parse_response(data)
    assert len(responses) == 1, "expected exactly one response, got %r" % data
    resp = responses[0]
    err = assert_error_shape(resp, status)
    if code:
        assert err["code"] == code, err
    assert resp.headers.get("connection", "").lower() == "close", resp.headers
    assert b"second" not in data
    assert closed, "server did not close the connection after %d" % status
    return resp


# ---- malformed framing and syntax -> 400 ----

BAD_400 = {
    "cl_and_te": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two_content_lengths": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                           b"Content-Length: 4\r\n\r\nabcd",
    "te_chunked_identity": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te_gzip_alone": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "bare_lf": b"GET /v1/hello HTTP/1.1\nHost: x\n\n",
    "obs_fold": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "obs_fold_tab": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n",
    "nul_in_header": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "space_before_colon": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n",
    "bare_cr": b"GET /v1/hello HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
    "negative_cl": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "cl_20_digits": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 99999999999999999999\r\n\r\n",
    "cl_not_a_number": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\nab",
    "cl_plus_sign": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
    "cl_list_same_values": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
    "te_chunked_not_last": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_xchunked": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "two_te_headers_cl": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk_missing_crlf": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          b"\r\n3\r\nabcX\r\n0\r\n\r\n",
    "space_in_target": b"GET /v1/hel lo HTTP/1.1\r\nHost: x\r\n\r\n",
    "ctl_in_target": b"GET /v1/hel\x01lo HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty_header_name": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
    "lowercase_version": b"GET /v1/hello http/1.1\r\nHost: x\r\n\r\n",
    "invalid_chunk_size": b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          b"\r\nzz\r\nabc\r\n0\r\n\r\n",
    "missing_host_http11": b"GET /v1/hello HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "garbage_request_line": b"HELLO THERE\r\n\r\n",
    "unknown_method_FOO": b"FOO /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n",
    "target_not_origin_form": b"GET v1/hello HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_400))
def test_malformed_request_is_400_and_closes(server, name):
    assert_rejected(server, BAD_400[name], 400, code="bad_request")


def test_unknown_method_is_400(server):
    """`FOO` is not a method token the parser (llhttp, strict) knows: the request line
    itself is rejected (400), before routing could say 405.  A registered-but-unrouted
    standard method (DELETE) is a routing matter: 405 with Allow."""
    assert_rejected(server, b"FOO /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n", 400)
    with server.connect() as s:
        s.sendall(b"DELETE /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(s)
        assert_error_shape(r, 405)
        assert r.headers["allow"] == "GET, HEAD"


def test_http10_without_host_is_served(server):
    data, closed = server.exchange(b"GET /v1/hello HTTP/1.0\r\n\r\n")
    (resp,) = parse_response(data)
    assert resp.status == 200
    assert resp.json() == {"message": "Hello, World!"}
    assert closed


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.0"])
def test_unsupported_version_is_505(server, version):
    assert_rejected(server, b"GET /v1/hello " + version + b"\r\nHost: x\r\n\r\n", 505)


def test_http09_request_line_is_rejected(server):
    """`GET /path` with no version is an HTTP/0.9 simple request; llhttp reads it as
    version 0.9, so the server answers 505 (an unsupported version) rather than 400."""
    assert_rejected(server, b"GET /v1/hello\r\nHost: x\r\n\r\n", 505)


# ---- sizes ----

def test_header_block_too_large_is_431(server):
    req = b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9216 + b"\r\n\r\n"
    assert_rejected(server, req, 431)


def test_header_block_just_under_limit_is_served(server):
    req = b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 7000 + b"\r\n\r\n"
    data, _ = server.exchange(req + SECOND, timeout=1)
    statuses = [r.status for r in parse_response(data)]
    assert statuses == [200, 200]


def test_many_small_headers_over_size_is_431(server):
    """9 KB spread over many headers (still under max_headers=100)."""
    req = b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%02d: %s\r\n" % (i, b"b" * 120) for i in range(80)) + b"\r\n"
    assert len(req) > 9000
    assert_rejected(server, req, 431)


def test_too_many_headers_is_431(server):
    req = b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n"
    assert_rejected(server, req, 431)


def test_max_headers_exactly_is_served(server):
    # Host + 99 others = 100 = max_headers
    req = b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(99)) + b"\r\n"
    with server.connect() as s:
        s.sendall(req)
        assert read_response(s).status == 200


def test_request_target_too_long_is_414(server):
    req = b"GET /v1/hello/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_rejected(server, req, 414)


def test_content_length_over_limit_is_413_before_body(server):
    with server.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 2097152\r\n\r\n")
        # Answered with no body sent at all: the limit is applied to the head.
        resp = read_response(s, timeout=CEILING)
        err = assert_error_shape(resp, 413)
        assert err["code"] == "payload_too_large"
        assert "1048576 bytes" in err["message"], err  # the limit, so a client can act on it
        assert resp.headers.get("connection", "").lower() == "close"
        # Nothing else follows; the server closes (after a short linger).
        s.sendall(SECOND)
        rest, closed = recv_until_close(s, timeout=5)
        assert rest == b""
        assert closed


def test_chunked_body_over_limit_is_413(server):
    chunk = b"a" * 65536
    with server.connect(timeout=5) as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):  # 1.25 MiB > 1 MiB
                s.sendall(b"10000\r\n" + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n" + SECOND)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = recv_until_close(s, timeout=5)
    responses = parse_response(data)
    assert len(responses) == 1, data[:500]
    err = assert_error_shape(responses[0], 413)
    assert err["code"] == "payload_too_large"
    assert "1048576 bytes" in err["message"], err
    assert closed


def test_body_at_limit_is_accepted(server):
    body = b"z" * (1024 * 1024)
    with server.connect(timeout=5) as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        resp = read_response(s, timeout=5)
    assert resp.status == 200
    assert resp.json()["length"] == len(body)


# ---- Expect ----

def test_expect_100_continue(server):
    body = b'{"a": 1}'
    with server.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.settimeout(3)
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = s.recv(4096)
            assert chunk, "closed before 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        head, _, rest = interim.partition(b"\r\n\r\n")
        assert rest == b""  # no final response before the body is sent
        s.sendall(body)
        resp = read_response(s)
    assert resp.status == 200
    assert resp.json() == {"length": len(body), "body": body.decode(), "json": {"a": 1}}


def test_expect_100_continue_with_too_large_body_is_413_without_100(server):
    with server.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Expect: 100-continue\r\nContent-Length: 2097152\r\n\r\n")
        data, closed = recv_until_close(s, timeout=3)
    assert not data.startswith(b"HTTP/1.1 100"), data[:100]
    (resp,) = parse_response(data)
    assert_error_shape(resp, 413)
    assert closed


def test_expect_unknown_is_417(server):
    req = (b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n"
           b"Content-Length: 2\r\n\r\nhi")
    assert_rejected(server, req, 417)


# ---- pipelining and keep-alive ----

def test_pipelining_20_requests_in_order(server):
    req = b"".join(b"GET /v1/hello/p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(20))
    with server.connect() as s:
        s.sendall(req)
        got = [read_response(s) for _ in range(20)]
        assert not is_closed(s, timeout=0.3)
    assert [r.status for r in got] == [200] * 20
    assert [r.json()["message"] for r in got] == ["Hello, p%d!" % i for i in range(20)]
    ids = [r.headers["x-request-id"] for r in got]
    assert len(set(ids)) == 20


def test_pipelined_mixed_methods_and_bodies(server):
    req = (b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 5\r\n\r\nfirst"
           b"HEAD /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n"
           b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, closed = server.exchange(req)
    rs = parse_response(data, head_requests=(1,))
    assert [r.status for r in rs] == [200, 200, 200, 200]
    assert rs[0].json()["body"] == "first"
    assert rs[1].body == b"" and rs[1].headers["content-length"] == "27"
    assert rs[2].json()["body"] == "second"
    assert rs[3].json() == {"message": "Hello, World!"}
    assert closed


def test_keepalive_100_requests_one_connection(server):
    with server.connect() as s:
        local = s.getsockname()
        for i in range(100):
            s.sendall(b"GET /v1/hello/k%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            r = read_response(s)
            assert r.status == 200
            assert r.json()["message"] == "Hello, k%d!" % i
            assert "close" not in r.headers.get("connection", "").lower()
        assert s.getsockname() == local
        assert not is_closed(s, timeout=0.2)


def test_head_has_length_but_no_body(server):
    with server.connect() as s:
        s.sendall(b"HEAD /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(s, head=True)
        assert r.status == 200
        assert r.headers["content-length"] == "27"
        # No body bytes follow: the next thing on the wire is the next response.
        s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        r2 = read_response(s)
        assert r2.status == 200
        assert r2.body == b'{"message":"Hello, World!"}'


def test_head_then_close_sends_no_body(server):
    data, closed = server.exchange(b"HEAD /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, sep, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: 27" in head
    assert sep and body == b""
    assert closed


def test_connection_close_closes(server):
    with server.connect() as s:
        s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = read_response(s)
        assert r.status == 200
        assert r.headers.get("connection", "").lower() == "close"
        assert is_closed(s, timeout=3)


def test_connection_close_stops_pipeline(server):
    req = (b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + SECOND)
    data, closed = server.exchange(req)
    rs = parse_response(data)
    assert [r.status for r in rs] == [200]
    assert closed


def test_http10_default_closes(server):
    with server.connect() as s:
        s.sendall(b"GET /v1/hello HTTP/1.0\r\nHost: x\r\n\r\n")
        r = read_response(s)
        assert r.status == 200
        assert "keep-alive" not in r.headers.get("connection", "").lower()
        assert is_closed(s, timeout=3)


def test_http10_keepalive_stays_open(server):
    with server.connect() as s:
        s.sendall(b"GET /v1/hello HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        r = read_response(s)
        assert r.status == 200
        assert r.headers.get("connection", "").lower() == "keep-alive"
        assert not is_closed(s, timeout=0.5)
        s.sendall(b"GET /v1/hello/again HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        r2 = read_response(s)
        assert r2.status == 200
        assert r2.json() == {"message": "Hello, again!"}


# ---- request bodies ----

def test_chunked_body_reassembled(server):
    pieces = [b"hello ", b"chunked ", b"x" * 1000, b" world"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with server.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + body)
        r = read_response(s)
    expected = b"".join(pieces)
    assert r.status == 200
    assert r.json()["length"] == len(expected)
    assert r.json()["body"] == expected.decode()


def test_chunked_body_with_extension_and_trailer(server):
    body = b"4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nX-Trailer: t\r\n\r\n"
    with server.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + body)
        r = read_response(s)
        assert r.status == 200
        assert r.json()["body"] == "abcdef"
        # framing intact: the connection is still usable
        s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).status == 200


# The tests below send a request in many small TCP segments (TCP_NODELAY). Where the
# server's reads cut them depends on the machine's load, so they prove framing end to end
# at whatever boundaries happen, nothing more; that every boundary gives the same answer
# is proved deterministically in tests/unit/test_http.c (test_split_reads and
# test_obs_fold_any_split feed the in-process server one byte per loop turn). No sleeps:
# a sleep cannot force a boundary on a busy machine, only slow the suite.


def test_body_split_across_many_sends(server):
    body = bytes(range(32, 127)) * 5  # 475 bytes
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(head), 7):
            s.sendall(head[i:i + 7])
        for i in range(0, len(body), 5):
            s.sendall(body[i:i + 5])
        r = read_response(s)
    assert r.status == 200
    assert r.json()["length"] == len(body)
    assert r.json()["body"] == body.decode()


def test_chunked_body_split_byte_by_byte(server):
    payload = b"split-chunked-body"
    msg = (b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(msg)):
            s.sendall(msg[i:i + 1])
        r = read_response(s)
    assert r.status == 200
    assert r.json()["body"] == payload.decode()


def test_header_value_split_across_sends_is_not_obs_fold(server):
    """A header value that arrives in several reads must not be mistaken for folding."""
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\nX-Test: abc")
        s.sendall(b"def")
        s.sendall(b"ghi\r\n\r\n")
        r = read_response(s)
    assert r.status == 200
    assert r.json()["x-test"] == "abcdefghi"


@pytest.mark.parametrize("cut", [b"X-Test: ab", b"X-Test: ab\r", b"X-Test: ab\r\n",
                                 b"X-Test: ab\r\n ", b"X-Test: ab\r\n b"])
def test_obs_fold_split_across_reads_is_400(server, cut):
    """Folding is rejected wherever the read boundary falls."""
    whole = b"X-Test: ab\r\n bc\r\n\r\n"
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\n" + cut)
        s.sendall(whole[len(cut):] + SECOND)
        data, closed = recv_until_close(s, timeout=3)
    (resp,) = parse_response(data)
    assert_error_shape(resp, 400)
    assert closed


def test_empty_header_value(server):
    with server.connect() as s:
        s.sendall(b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\nX-Test:\r\nAccept: a/b\r\n\r\n")
        r = read_response(s)
    assert r.status == 200
    assert r.json()["x-test"] == ""
    assert r.json()["accept"] == "a/b"


def test_eof_mid_request_gets_no_response(server):
    with server.connect() as s:
        s.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n")
        s.shutdown(socket.SHUT_WR)
        data, closed = recv_until_close(s, timeout=3)
    assert closed
    assert b"200 OK" not in data
