"""Request smuggling and framing vectors, over raw sockets (issue 11's campaign).

Each vector is sent with a harmless second request behind it in the same send. A vector
that is refused must get exactly one answer, in the API's error shape, with
Connection: close, and the connection must then close: the second request never runs
(it would echo "second" back). A request-smuggling bug is exactly a second request that
runs with framing the server and a proxy in front of it read differently.

Groups: obs-fold in every position (an empty first line included), HTTP/1.0 with
Transfer-Encoding, fields in a chunked trailer, duplicate Authorization, a bare CR as a
line end, and the classic CL/TE disagreements, which were already refused and must stay
so. Also the error codes each refusal carries.
"""
import socket
import time

import pytest

from panthera_server import Server, parse_response, read_response, recv_until_close
from test_gateway_auth import AUTH, claims, make_jwt
from test_http_conformance import assert_error_shape

SECOND = b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\nX-Test: second\r\n\r\n"
ECHO = b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


@pytest.fixture(scope="module")
def srv():
    s = Server(workers=2, plugins=("hello", "testkit"), sections={"auth": dict(AUTH)})
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


def refused(server, request, status=400, code="bad_request"):
    data, closed = server.exchange(request + SECOND, timeout=3)
    responses = parse_response(data)
    assert len(responses) == 1, "expected exactly one response, got %r" % data[:600]
    err = assert_error_shape(responses[0], status)
    assert err["code"] == code, err
    assert responses[0].headers.get("connection", "").lower() == "close", responses[0].headers
    assert b"second" not in data, data
    assert closed, "the connection stayed open after %d" % status
    return err


# ---- obs-fold: every one is a 400, wherever it is ----

FOLDS = {
    "te_empty_first_line": ECHO + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "te_empty_first_line_tab": ECHO + b"Transfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n",
    "te_ows_then_fold": ECHO + b"Transfer-Encoding: \r\n chunked\r\n\r\n0\r\n\r\n",
    "cl_empty_first_line": ECHO + b"Content-Length:\r\n 5\r\n\r\nhello",
    "custom_empty_first_line": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A:\r\n b\r\n\r\n",
    "fold_of_nothing": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A:\r\n \r\nX-B: c\r\n\r\n",
    "fold_of_nothing_last": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A:\r\n \r\n\r\n",
    "host_empty_first_line": b"GET /v1/hello HTTP/1.1\r\nHost:\r\n x\r\n\r\n",
    "fold_after_text": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "double_fold": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n c\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(FOLDS))
def test_obs_fold_is_400(srv, name):
    refused(srv, FOLDS[name])


@pytest.mark.parametrize("cut", [len(ECHO) + 18, len(ECHO) + 19, len(ECHO) + 20])
def test_obs_fold_split_across_reads_is_400(srv, cut):
    """The fold's CRLF and its space arrive in separate reads: the check must not depend on
    both being in one buffer."""
    req = FOLDS["te_empty_first_line"] + SECOND
    with srv.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req[:cut])
        time.sleep(0.3)  # lets the server read the first part on its own (not asserted)
        try:
            s.sendall(req[cut:])
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = recv_until_close(s, timeout=3)
    responses = parse_response(data)
    assert len(responses) == 1, data[:600]
    assert responses[0].status == 400
    assert b"second" not in data
    assert closed


def test_header_value_split_across_reads_is_not_a_fold(srv):
    """A value that merely arrives in two reads is one value, not a fold."""
    req = b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\nX-Test: first-half"
    with srv.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req)
        time.sleep(0.3)
        s.sendall(b"-second-half\r\n\r\n")
        r = read_response(s)
    assert r.status == 200
    assert r.json()["x-test"] == "first-half-second-half"


def test_empty_header_value_is_served(srv):
    with srv.connect() as s:
        s.sendall(b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\nX-Test:\r\nAccept: */*\r\n\r\n")
        r = read_response(s)
    assert r.status == 200
    assert r.json()["x-test"] == "" and r.json()["accept"] == "*/*"


# ---- HTTP/1.0 and Transfer-Encoding (RFC 9112 6.1: faulty framing) ----

HTTP10_TE = {
    "keepalive_chunked": b"POST /v1/test/echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
                         b"Content-Type: text/plain\r\n" + CHUNKED + b"\r\n3\r\nabc\r\n0\r\n\r\n",
    "chunked": b"POST /v1/test/echo HTTP/1.0\r\nHost: x\r\nContent-Type: text/plain\r\n"
               + CHUNKED + b"\r\n0\r\n\r\n",
    "get_keepalive_chunked": b"GET /v1/hello HTTP/1.0\r\nConnection: keep-alive\r\n" + CHUNKED
                             + b"\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(HTTP10_TE))
def test_http10_with_transfer_encoding_is_400(srv, name):
    refused(srv, HTTP10_TE[name])


def test_http10_with_content_length_keeps_alive(srv):
    with srv.connect() as s:
        s.sendall(b"POST /v1/test/echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
                  b"Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc")
        r = read_response(s)
        assert r.status == 200 and r.json()["body"] == "abc"
        s.sendall(b"GET /v1/hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert read_response(s).status == 200


# ---- trailers are never headers ----

def chunked_with_trailer(head, trailer):
    return head + CHUNKED + b"\r\n3\r\nabc\r\n0\r\n" + trailer + b"\r\n"


FORBIDDEN_TRAILERS = {
    "host": b"Host: evil.example\r\n",
    "authorization": b"Authorization: Bearer x.y.z\r\n",
    "content_length": b"Content-Length: 10\r\n",
    "transfer_encoding": b"Transfer-Encoding: chunked\r\n",
    "cookie": b"Cookie: session=1\r\n",
    "content_type": b"Content-Type: application/json\r\n",
    "after_allowed": b"X-Checksum: 1\r\nHOST: evil.example\r\n",
    "x_forwarded_for": b"X-Forwarded-For: 10.0.0.1\r\n",
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN_TRAILERS))
def test_forbidden_field_in_trailer_is_400(srv, name):
    refused(srv, chunked_with_trailer(ECHO, FORBIDDEN_TRAILERS[name]))


def test_authorization_in_trailer_does_not_authenticate(srv):
    token = make_jwt(claims("trailer-user", "admin"))
    req = chunked_with_trailer(b"POST /v1/test/token HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: application/json\r\n",
                               b"Authorization: Bearer " + token.encode() + b"\r\n")
    refused(srv, req)
    get = (b"GET /v1/test/private HTTP/1.1\r\nHost: x\r\n" + CHUNKED + b"\r\n0\r\n"
           b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
    data, _ = srv.exchange(get, timeout=3)
    (resp,) = parse_response(data)
    assert resp.status in (400, 401), resp
    assert b"trailer-user" not in data


def test_harmless_trailer_is_dropped_not_merged(srv):
    req = (b"GET /v1/test/headers HTTP/1.1\r\nHost: x\r\n" + CHUNKED +
           b"\r\n3\r\nabc\r\n0\r\nX-Test: from-trailer\r\nAccept: trailer/*\r\n\r\n")
    with srv.connect() as s:
        s.sendall(req)
        r = read_response(s)
        assert r.status == 200
        assert "x-test" not in r.json() and "accept" not in r.json(), r.json()
        # The framing held: the connection serves the next request.
        s.sendall(SECOND)
        assert read_response(s).json()["x-test"] == "second"


def test_oversized_trailer_is_431(srv):
    trailer = b"".join(b"X-T%03d: %s\r\n" % (i, b"t" * 200) for i in range(60))
    data, closed = srv.exchange(chunked_with_trailer(ECHO, trailer) + SECOND, timeout=3)
    responses = parse_response(data)
    assert len(responses) == 1, data[:300]
    assert responses[0].status == 431
    assert closed


# ---- small ones ----

def test_two_authorization_headers_are_400(srv):
    a = make_jwt(claims("first-user"))
    b = make_jwt(claims("second-user"))
    req = (b"GET /v1/test/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a.encode() +
           b"\r\nAuthorization: Bearer " + b.encode() + b"\r\n\r\n")
    refused(srv, req)


def test_bare_cr_after_request_line_is_400(srv):
    refused(srv, b"GET /v1/hello HTTP/1.1\rHost: x\r\n\r\n")


def test_bare_cr_in_header_line_is_400(srv):
    refused(srv, b"GET /v1/hello HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n")


# ---- the classic disagreements: refused before, and must stay refused ----

CLASSIC = {
    "cl_te": ECHO + b"Content-Length: 6\r\n" + CHUNKED + b"\r\n0\r\n\r\nX",
    "te_cl": ECHO + CHUNKED + b"Content-Length: 6\r\n\r\n0\r\n\r\nX",
    "te_space_before_colon": ECHO + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te_xchunked": ECHO + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te_chunked_identity": ECHO + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te_vertical_tab": ECHO + b"Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n",
    "te_nul": ECHO + b"Transfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n",
    "te_twice": ECHO + CHUNKED + CHUNKED + b"\r\n0\r\n\r\n",
    "cl_twice_differ": ECHO + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "cl_list": ECHO + b"Content-Length: 3, 3\r\n\r\nabc",
    "cl_hex": ECHO + b"Content-Length: 0x3\r\n\r\nabc",
    "cl_space_inside": ECHO + b"Content-Length: 1 0\r\n\r\nabcdefghij",
    "cl_negative": ECHO + b"Content-Length: -3\r\n\r\nabc",
    "chunk_size_0x": ECHO + CHUNKED + b"\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "chunk_lf_only": ECHO + CHUNKED + b"\r\n3\nabc\n0\n\n",
    "chunk_data_too_long": ECHO + CHUNKED + b"\r\n3\r\nabcd\r\n0\r\n\r\n",
    "chunk_size_overflow": ECHO + CHUNKED + b"\r\n10000000000000000\r\nabc\r\n0\r\n\r\n",
    "request_line_lf_only": b"GET /v1/hello HTTP/1.1\nHost: x\n\n",
    "header_lf_only": b"GET /v1/hello HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    "nul_in_target": b"GET /v1/hel\x00lo HTTP/1.1\r\nHost: x\r\n\r\n",
    "two_hosts": b"GET /v1/hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "space_in_field_name": b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
    "leading_space_first_field": b"GET /v1/hello HTTP/1.1\r\n Host: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_classic_vector_refused(srv, name):
    data, closed = srv.exchange(CLASSIC[name] + SECOND, timeout=3)
    responses = parse_response(data)
    assert len(responses) == 1, "expected exactly one response, got %r" % data[:600]
    assert 400 <= responses[0].status < 500 or responses[0].status == 505, responses[0]
    assert_error_shape(responses[0], responses[0].status)
    assert b"second" not in data
    assert closed


# ---- each refusal has its own error code ----

def test_error_codes_per_status(srv):
    refused(srv, b"GET /v1/hello/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
            "uri_too_long")
    refused(srv, b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9216 + b"\r\n\r\n",
            431, "header_fields_too_large")
    refused(srv, ECHO + b"Expect: something\r\nContent-Length: 2\r\n\r\nhi", 417,
            "expectation_failed")
    refused(srv, b"GET /v1/hello HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported")
    refused(srv, ECHO + b"Content-Length: 2097152\r\n\r\n", 413, "payload_too_large")
    with srv.connect() as s:
        s.sendall(b"DELETE /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(s)
        assert assert_error_shape(r, 405)["code"] == "method_not_allowed"
        s.sendall(b"POST /v1/test/json HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 2\r\n\r\n{}")
        r = read_response(s)
        assert assert_error_shape(r, 415)["code"] == "unsupported_media_type"


def test_request_timeout_code(make_server):
    s = make_server(workers=1, http={"header_timeout": "1s"})
    with s.connect(timeout=10) as c:
        c.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n")
        data, closed = recv_until_close(c, timeout=10)
    (resp,) = parse_response(data)
    assert assert_error_shape(resp, 408)["code"] == "request_timeout"
    assert closed
