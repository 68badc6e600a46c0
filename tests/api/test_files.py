"""Files (issue 10, item 4): per-route body limits, bodies spooled to disk, the host's blob
store (directory and PostgreSQL backends), and file responses with ETag, Range and safe
headers. Driven through tests/plugins/filekit (see its header for the routes)."""
import contextlib
import hashlib
import http.client
import os
import socket
import time
import urllib.parse

import pytest
import requests

from panthera_server import PANTHERAD, Server, read_response

PGHOST = os.environ.get("PANTHERA_PGHOST")
BACKENDS = ["dir", pytest.param("postgres", marks=pytest.mark.skipif(
    not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL"))]

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082")
HTML = b"<!DOCTYPE html><html><head><title>x</title></head><body><script>alert(1)</script></body></html>\n"


def sanitized():
    """An ASan build keeps freed memory in quarantine: its RSS says nothing about ours."""
    with open(PANTHERAD, "rb") as f:
        return b"__asan_init" in f.read()


def conninfo():
    return "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))


def make(backend, workers=1, storage=None):
    sections = {"storage": {"backend": backend, "sweep_interval": "0"}}
    if backend == "postgres":
        sections["postgres"] = {"conninfo": conninfo()}
    sections["storage"].update(storage or {})
    s = Server(workers=workers, plugins=("filekit",), sections=sections)
    # Relative to the config file: inside the server's temp dir, removed with it.
    s.sections["storage"].setdefault("dir", "blobs")
    s.write_conf()
    return s


@contextlib.contextmanager
def pg_shared():
    if not PGHOST:
        yield
        return
    from services import pg_lock
    with pg_lock(exclusive=False):
        yield


@pytest.fixture(scope="module", params=BACKENDS)
def server(request):
    with pg_shared():
        s = make(request.param)
        try:
            s.start()
            yield s
        finally:
            s.cleanup()


def upload(server, data, path="/v1/files", ctype="application/octet-stream", **query):
    q = ("?" + urllib.parse.urlencode(query)) if query else ""
    return requests.post(server.url(path + q), data=data, headers={"Content-Type": ctype},
                         timeout=60)


def stored(server, data, **kw):
    r = upload(server, data, **kw)
    assert r.status_code == 201, r.text
    return r.json()


def rss_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


# ---- limits and spooling ----

def test_route_limit_is_413_before_the_body(server):
    # The route takes 64 MiB: a larger Content-Length is refused before any body is sent,
    # and no 100 Continue invites it.
    with server.connect(timeout=10) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Expect: 100-continue\r\n\r\n" % (65 * 1024 * 1024))
        r = read_response(sock, timeout=10)
    assert r.status == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert "67108864 bytes (this route's max_body)" in r.json()["error"]["message"]
    # The same size the host-wide limit (1 MiB) refuses elsewhere is fine on this route.
    two_mb = os.urandom(2 * 1024 * 1024)
    assert upload(server, two_mb, path="/v1/files/small").status_code == 413
    assert stored(server, two_mb)["size"] == len(two_mb)


def test_anonymous_body_for_a_caller_only_spooling_route_is_401_before_the_body(server):
    with server.connect(timeout=10) as sock:
        sock.sendall(b"POST /v1/files/private HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Expect: 100-continue\r\n\r\n" % (10 * 1024 * 1024))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 401 "), data  # not 100 Continue first
    assert b"WWW-Authenticate: Bearer" in data
    # With a token (an invalid one here) the body is read and the gateway answers.
    r = requests.post(server.url("/v1/files/private"), data=b"x" * 100000,
                      headers={"Authorization": "Bearer nope"}, timeout=30)
    assert r.status_code == 401


def test_chunked_body_over_the_route_limit_is_413(server):
    with server.connect(timeout=10) as sock:
        sock.sendall(b"POST /v1/files/small HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(20):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = read_response(sock, timeout=10)
    assert r.status == 413


def test_small_bodies_stay_in_memory_large_ones_spool(server):
    r = upload(server, b"a" * 1000, path="/v1/files/sink")
    assert r.json() == {"size": 1000, "spooled": False}
    r = upload(server, b"a" * (200 * 1024), path="/v1/files/sink")
    assert r.json() == {"size": 200 * 1024, "spooled": True}


def test_50mb_upload_keeps_worker_memory_flat_and_downloads_identical(server):
    [pid] = server.wait_workers(1)
    # Warm up: libmagic's database and the thread pool are loaded once per worker.
    stored(server, os.urandom(300 * 1024))
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")  # resets VmHWM, the peak resident size, to the current size
    idle = rss_kb(pid, "VmRSS")

    size = 50 * 1024 * 1024
    digest = hashlib.sha256()
    piece = os.urandom(1024 * 1024)

    def body():
        for i in range(size // len(piece)):
            block = piece[i % 7:] + piece[:i % 7]  # not 50 equal blocks
            digest.update(block)
            yield block

    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    conn.putrequest("POST", "/v1/files")
    conn.putheader("Content-Length", str(size))
    conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    for block in body():
        conn.send(block)
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    assert resp.status == 201, out
    import json
    blob = json.loads(out)
    peak = rss_kb(pid, "VmHWM")
    assert blob["spooled"] is True and blob["size"] == size
    assert blob["id"] == blob["sha256"] == digest.hexdigest()
    # A few MiB over idle at most: chunks in flight, never the body.
    if not sanitized():
        assert peak - idle < 6 * 1024, "worker peak %d KiB over idle %d KiB" % (peak, idle)

    down = hashlib.sha256()
    with requests.get(server.url("/v1/files/" + blob["id"]), stream=True, timeout=120) as r:
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == size
        for block in r.iter_content(1 << 20):
            down.update(block)
    assert down.hexdigest() == blob["sha256"]


def spool_fds(server, pid):
    spool = os.path.join(server.tmp, "blobs", ".spool")
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith(spool):
            out.append(target)
    return out


def test_abandoned_upload_leaves_no_file_behind(server):
    [pid] = server.wait_workers(1)
    with server.connect(timeout=10) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % (40 * 1024 * 1024))
        for _ in range(8):
            sock.sendall(os.urandom(1024 * 1024))
        # Mid-body, the spool file is open (and has no name).
        for _ in range(300):
            if spool_fds(server, pid):
                break
            time.sleep(0.1)
        assert spool_fds(server, pid), "the body was never spooled"
    # The client went away: the file is closed (so gone), whatever job was running.
    for _ in range(600):
        if not spool_fds(server, pid):
            break
        time.sleep(0.1)
    assert spool_fds(server, pid) == []
    assert [n for n in os.listdir(os.path.join(server.tmp, "blobs", ".spool"))] == []
    assert upload(server, b"still fine", path="/v1/files/sink").status_code == 200


def test_same_bytes_same_id_and_bytes_put(server):
    data = os.urandom(5000)
    a = stored(server, data, path="/v1/files/small")
    b = stored(server, data, path="/v1/files/bytes")
    assert a["id"] == b["id"] == hashlib.sha256(data).hexdigest()
    assert a["size"] == 5000


# ---- file responses ----

def test_etag_304_and_ranges(server):
    data = os.urandom(300 * 1024)
    blob = stored(server, data)
    url = server.url("/v1/files/" + blob["id"])
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == data
    etag = r.headers["ETag"]
    assert etag == '"%s"' % blob["sha256"]
    assert r.headers["Accept-Ranges"] == "bytes"

    r = requests.get(url, headers={"If-None-Match": etag}, timeout=30)
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag
    r = requests.get(url, headers={"If-None-Match": 'W/"nope", ' + etag}, timeout=30)
    assert r.status_code == 304
    r = requests.get(url, headers={"If-None-Match": '"other"'}, timeout=30)
    assert r.status_code == 200

    for rng, first, last in [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, len(data) - 1),
                             ("bytes=-500", len(data) - 500, len(data) - 1),
                             ("bytes=100-99999999", 100, len(data) - 1),
                             ("bytes=70000-270000", 70000, 270000)]:
        r = requests.get(url, headers={"Range": rng}, timeout=30)
        assert r.status_code == 206, rng
        assert r.reason == "Partial Content"
        assert r.headers["Content-Range"] == "bytes %d-%d/%d" % (first, last, len(data))
        assert r.content == data[first:last + 1], rng

    r = requests.get(url, headers={"Range": "bytes=0-1,5-6"}, timeout=30)
    assert r.status_code == 200 and r.content == data
    r = requests.get(url, headers={"Range": "bytes=%d-" % len(data)}, timeout=30)
    assert r.status_code == 416 and r.reason == "Range Not Satisfiable"
    assert r.headers["Content-Range"] == "bytes */%d" % len(data)
    assert r.json()["error"]["code"] == "range_not_satisfiable"
    # If-Range with another ETag: the whole (changed) file instead of a piece.
    r = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'}, timeout=30)
    assert r.status_code == 200 and len(r.content) == len(data)
    r = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}, timeout=30)
    assert r.status_code == 206 and r.content == data[:10]


def blob_fds(server, pid):
    blobs = os.path.join(server.tmp, "blobs")
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith(blobs):
            out.append(target)
    return out


@pytest.fixture(scope="module")
def big(server):
    data = os.urandom(8 * 1024 * 1024 + 12345)
    return data, stored(server, data)


def test_slow_reader_gets_every_byte(server, big):
    # A client that reads nothing for a while fills the socket: sendfile hits EAGAIN and
    # the host must wait for the socket (one chunk written the ordinary way), then go on.
    data, blob = big
    with server.connect(timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(("GET /v1/files/%s HTTP/1.1\r\nHost: x\r\n\r\n" % blob["id"]).encode())
        time.sleep(0.5)  # not an assertion: just a full socket for the server to meet
        got = b""
        while len(got) < 1 << 20:
            got += sock.recv(4096)
            time.sleep(0.0005)
        r = read_response_rest(sock, got)
    assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == blob["sha256"]


def read_response_rest(sock, already):
    from panthera_server import _leftover
    _leftover[sock] = already
    return read_response(sock, timeout=30)


def test_client_leaving_mid_download_lets_the_file_go(server, big):
    data, blob = big
    [pid] = server.wait_workers(1)
    with server.connect(timeout=30) as sock:
        sock.sendall(("GET /v1/files/%s HTTP/1.1\r\nHost: x\r\n\r\n" % blob["id"]).encode())
        sock.recv(65536)
        for _ in range(300):
            if blob_fds(server, pid):
                break
            time.sleep(0.1)
        assert blob_fds(server, pid), "the file was never open"
    for _ in range(600):
        if not blob_fds(server, pid):
            break
        time.sleep(0.1)
    assert blob_fds(server, pid) == []
    r = requests.get(server.url("/v1/files/" + blob["id"]), headers={"Range": "bytes=0-9"},
                     timeout=30)
    assert r.status_code == 206 and r.content == data[:10]


def test_same_upload_at_once_is_stored_once(server):
    import concurrent.futures
    data = os.urandom(3 * 1024 * 1024)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: upload(server, data), range(6)))
    assert [r.status_code for r in results] == [201] * 6, [r.text for r in results]
    assert {r.json()["id"] for r in results} == {hashlib.sha256(data).hexdigest()}
    r = requests.get(server.url("/v1/files/" + results[0].json()["id"]), timeout=60)
    assert r.content == data


def test_head_and_small_file(server):
    blob = stored(server, b"hello, file\n", path="/v1/files/small")
    url = server.url("/v1/files/" + blob["id"])
    r = requests.head(url, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Length"] == "12" and r.content == b""
    r = requests.get(url, timeout=30)
    assert r.content == b"hello, file\n"
    assert r.headers["Content-Type"] == "text/plain"
    # Keep-alive goes on after a file response on the same connection.
    with server.connect(timeout=10) as sock:
        path = "/v1/files/" + blob["id"]
        sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\nGET %s HTTP/1.1\r\nHost: x\r\n"
                      "Range: bytes=0-4\r\n\r\n" % (path, path)).encode())
        first = read_response(sock, timeout=10)
        second = read_response(sock, timeout=10)
    assert first.status == 200 and first.body == b"hello, file\n"
    assert second.status == 206 and second.body == b"hello"


def test_unknown_and_malformed_ids_are_404(server):
    r = requests.get(server.url("/v1/files/" + "0" * 64), timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = requests.get(server.url("/v1/files/../../etc/passwd"), timeout=30)
    assert r.status_code == 404
    r = requests.get(server.url("/v1/files/ZZ%2F..%2Fx"), timeout=30)
    assert r.status_code == 404
    r = requests.get(server.url("/v1/files/%s/stat" % ("a" * 64)), timeout=30)
    assert r.status_code == 404


def test_html_declared_as_png_is_refused_or_served_as_attachment(server):
    r = upload(server, HTML, path="/v1/files/small", ctype="image/png", allow="image/")
    assert r.status_code == 415, r.text
    assert "text/html" in r.json()["error"]["message"]
    blob = stored(server, HTML, path="/v1/files/small", ctype="image/png")
    assert blob["contentType"] == "text/html"
    r = requests.get(server.url("/v1/files/%s?name=cat.png" % blob["id"]), timeout=30)
    assert r.headers["Content-Type"] == "text/html"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"] == "sandbox"


def test_raster_images_inline_svg_attachment(server):
    png = stored(server, PNG, path="/v1/files/small", allow="image/")
    assert png["contentType"] == "image/png"
    r = requests.get(server.url("/v1/files/%s?name=dot.png" % png["id"]), timeout=30)
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Content-Disposition"] == \
        "inline; filename=\"dot.png\"; filename*=UTF-8''dot.png"
    svg = stored(server, b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                         b'width="1" height="1"><script>alert(1)</script></svg>\n',
                 path="/v1/files/small")
    assert svg["contentType"] == "image/svg+xml"
    r = requests.get(server.url("/v1/files/%s?name=x.svg" % svg["id"]), timeout=30)
    assert r.headers["Content-Disposition"].startswith("attachment;")


def test_hostile_filename_is_encoded_safely(server):
    blob = stored(server, b"data", path="/v1/files/small")
    name = 'a"b\r\nSet-Cookie: x=1;% ünïcødé 日本.txt'
    with server.connect(timeout=10) as sock:
        sock.sendall(("GET /v1/files/%s?name=%s HTTP/1.1\r\nHost: x\r\n\r\n"
                      % (blob["id"], urllib.parse.quote(name))).encode())
        r = read_response(sock, timeout=10)
    assert r.status == 200
    assert "set-cookie" not in r.headers
    [disp] = [v for k, v in r.raw_headers if k.lower() == "content-disposition"]
    assert "\r" not in disp and "\n" not in disp
    assert disp.startswith('attachment; filename="a_b__Set-Cookie: x=1;_ ')
    fallback = disp.split('filename="', 1)[1].split('"', 1)[0]
    assert all(32 <= ord(ch) < 127 for ch in fallback)
    star = disp.split("filename*=", 1)[1]
    assert star.startswith("UTF-8''")
    assert all(ch.isalnum() or ch in "%!#$&+-.^_`|~" for ch in star[7:]), star
    assert urllib.parse.unquote(star[7:], encoding="utf-8") == name
    # A path (either separator) is cut to its last part.
    r = requests.get(server.url("/v1/files/%s?name=%s" % (blob["id"], urllib.parse.quote(
        "..\\..\\etc/passwd"))), timeout=30)
    assert r.headers["Content-Disposition"] == \
        "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"


# ---- references and the sweep ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_sweep_removes_only_unreferenced_blobs(backend):
    with pg_shared():
        s = make(backend, storage={"sweep_interval": "1s", "sweep_grace": "2s"})
        try:
            s.start()
            kept = stored(s, os.urandom(3000), path="/v1/files/small", ref="keep:1")
            dropped = stored(s, os.urandom(3000), path="/v1/files/small")
            later = stored(s, os.urandom(3000), path="/v1/files/small", ref="keep:2")
            stat = lambda b: requests.get(s.url("/v1/files/%s/stat" % b["id"]), timeout=30)

            def wait_gone(blob):
                for _ in range(900):  # a ceiling only a hang reaches; grace 2 s, sweep every 1 s
                    if stat(blob).status_code == 404:
                        return
                    time.sleep(0.1)
                pytest.fail("blob %s was never swept" % blob["id"])

            wait_gone(dropped)
            assert stat(kept).status_code == 200 and stat(later).status_code == 200
            # A reference to a swept blob is refused: the plugin must store it again.
            r = requests.put(s.url("/v1/files/%s/refs/again" % dropped["id"]), timeout=30)
            assert r.status_code == 404
            # Dropping the last reference lets the sweep take it; another is untouched.
            r = requests.delete(s.url("/v1/files/%s/refs/keep:2" % later["id"]), timeout=30)
            assert r.status_code == 204
            wait_gone(later)
            assert stat(kept).status_code == 200
            r = requests.put(s.url("/v1/files/%s/refs/more" % kept["id"]), timeout=30)
            assert r.status_code == 200 and r.json()["size"] == 3000
        finally:
            s.cleanup()
