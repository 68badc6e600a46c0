"""The edges of reading plain connections through the worker's own edge-triggered epoll
(server/io_loop.c): an edge is reported once, so a reader that paused must read again when
it resumes; a hang-up arrives as its own event; a request may come a byte at a time; and
a closed connection's fd number, reused at once by the next one, must never receive the
old connection's events. Each test fails by a hang (a ceiling only a hang reaches), a
missing or misplaced answer, or an answer on the wrong connection."""
import json
import socket
import struct
import threading

import pytest

from panthera_server import CEILING, Server, parse_response, read_response, recv_until_close


@pytest.fixture(scope="module")
def server():
    # One worker: every connection below shares one epoll set and one fd table.
    s = Server(workers=1)
    s.start()
    yield s
    s.stop()
    s.cleanup()


def connect(server):
    sock = socket.create_connection((server.host, server.port), timeout=CEILING)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def query_request(value, close=False, pad=0):
    return (b"GET /v1/test/query?q=%s HTTP/1.1\r\nHost: x\r\n%s%s\r\n"
            % (value.encode(), b"X-Pad: %s\r\n" % (b"p" * pad) if pad else b"",
               b"Connection: close\r\n" if close else b""))


def test_pipelined_past_the_read_ahead_behind_an_in_flight_request(server):
    # The first request is answered from the thread pool; behind it come far more than
    # the 64 KiB read ahead while a request is in flight, so reading stops with the rest
    # in the socket, and the edge that announced it has passed when the answer is out.
    # Without reading again on resume the connection would hang here. (Fewer requests
    # than keepalive_requests, 1000, each padded: about 180 KiB in all.)
    n = 900
    tail = b"".join(query_request("p%d" % i, pad=150) for i in range(n))
    assert len(tail) > 2 * 64 * 1024
    tail += query_request("last", close=True)
    sock = connect(server)
    sock.sendall(b"GET /v1/test/work?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
    sender = threading.Thread(target=sock.sendall, args=(tail,))
    sender.start()
    data, closed = recv_until_close(sock, timeout=CEILING)
    sender.join()
    sock.close()
    assert closed
    responses = parse_response(data)
    assert len(responses) == n + 2, (len(responses), data[-300:])
    assert all(r.status == 200 for r in responses)
    assert "max_running" in json.loads(responses[0].body)
    values = [json.loads(r.body)["q"] for r in responses[1:]]
    assert values == ["p%d" % i for i in range(n)] + ["last"]


def test_requests_then_half_close_are_all_answered(server):
    sock = connect(server)
    sock.sendall(query_request("one") + query_request("two"))
    sock.shutdown(socket.SHUT_WR)
    data, closed = recv_until_close(sock, timeout=CEILING)
    sock.close()
    assert closed
    assert [json.loads(r.body)["q"] for r in parse_response(data)] == ["one", "two"]


def test_half_close_behind_an_in_flight_request_ends_it(server):
    # The hang-up is noticed while the request works (its own EPOLLRDHUP edge): the
    # connection closes without an answer and the request is logged as 499.
    sock = connect(server)
    sock.sendall(b"GET /v1/test/work?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.shutdown(socket.SHUT_WR)
    data, closed = recv_until_close(sock, timeout=CEILING)
    sock.close()
    assert closed and data == b""
    def gone(lines):
        return [e for e in lines if e.get("path") == "/v1/test/work" and e.get("status") == 499]
    assert gone(server.wait_access_log(gone, timeout=CEILING))


def test_request_sent_a_byte_at_a_time(server):
    body = b'{"pieces": "many"}'
    req = (b"POST /v1/test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    sock = connect(server)
    for i in range(len(req)):
        sock.sendall(req[i:i + 1])
    r = read_response(sock, timeout=CEILING)
    assert r.status == 200
    assert json.loads(r.body)["json"] == {"pieces": "many"}
    # The same connection goes on: the edge of the next request is seen.
    sock.sendall(query_request("after"))
    assert json.loads(read_response(sock, timeout=CEILING).body)["q"] == "after"
    sock.close()


def test_connection_churn_never_crosses_connections(server):
    # Keep-alive connections opened first hold their fds while hundreds of others open and
    # close around them, so the fd numbers of the closed ones are reused at once; every
    # answer must still be the one its own connection asked for.
    keep = [connect(server) for _ in range(8)]
    for rnd in range(3):
        for i in range(150):
            kind = i % 4
            sock = connect(server)
            if kind == 0:
                sock.sendall(query_request("c%d" % i, close=True))
                data, _ = recv_until_close(sock, timeout=CEILING)
                assert json.loads(parse_response(data)[0].body)["q"] == "c%d" % i
            elif kind == 1:
                pass  # opened and closed with nothing sent
            elif kind == 2:
                sock.sendall(b"GET /v1/test/query?q=partial HTTP/1.1\r\nHo")
            if kind >= 2:
                # A reset instead of a FIN (SO_LINGER 0): the server sees an error event.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if kind == 3:
                sock.sendall(query_request("reset%d" % i))
            sock.close()
        for k, sock in enumerate(keep):
            value = "k%d-%d" % (k, rnd)
            sock.sendall(query_request(value))
            assert json.loads(read_response(sock, timeout=CEILING).body)["q"] == value
    for sock in keep:
        sock.close()
    assert "epoll" not in open(server.error_log_path).read()
