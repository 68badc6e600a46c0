"""Answers that do not go through http_conn_write in one piece, over HTTPS: a file
response (sendfile on plain HTTP, sealed pieces read off the loop on TLS) and a streamed
answer (chunks written as they come). Every byte must arrive in order, decrypted, on the
same connection the client opened — plaintext on a TLS connection would be a protocol
error at best and a leak at worst."""
import hashlib
import os
import shutil
import socket
import ssl
import tempfile

import pytest
import requests

from panthera_server import Server, free_port
from tls_helpers import Pki, client_context


@pytest.fixture(scope="module")
def server():
    d = tempfile.mkdtemp(prefix="panthera-tls-bodies-")
    pki = Pki(d)
    chain, key, _ = pki.leaf("bodies")
    s = Server(workers=1, plugins=("filekit", "streamkit"),
               sections={"tls": {"certificate": chain, "key": key},
                         "storage": {"backend": "dir", "sweep_interval": "0"}})
    s.sections["storage"]["dir"] = "blobs"
    s.tls_port = free_port()
    s.extra_server["listen"] = "127.0.0.1:%d, 127.0.0.1:%d ssl" % (s.port, s.tls_port)
    s.write_conf()
    s.ca = pki.ca
    try:
        s.start()
        yield s
    finally:
        s.cleanup()
        shutil.rmtree(d, ignore_errors=True)


def https_raw(server, request, timeout=30):
    ctx = client_context(server.ca)
    raw = socket.create_connection(("127.0.0.1", server.tls_port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_file_download_over_tls_is_whole_and_ranged(server):
    data = os.urandom(3 * 1024 * 1024 + 12345)  # many pieces, not a multiple of one
    r = requests.post(server.url("/v1/files"), data=data,
                      headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert r.status_code == 201, r.text
    blob = r.json()
    url = "https://localhost:%d/v1/files/%s" % (server.tls_port, blob["id"])
    # requests resolves localhost itself; the certificate is for "localhost".
    got = requests.get(url, verify=server.ca, timeout=60)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
    part = requests.get(url, verify=server.ca, headers={"Range": "bytes=70000-2170000"},
                        timeout=60)
    assert part.status_code == 206
    assert part.content == data[70000:2170001]
    # The same connection serves the next request after a file: keep-alive over TLS.
    with requests.Session() as sess:
        for _ in range(3):
            again = sess.get(url, verify=server.ca, headers={"Range": "bytes=0-99999"},
                             timeout=60)
            assert again.status_code == 206 and again.content == data[:100000]


def test_streamed_chunks_over_tls_arrive_whole(server):
    raw = https_raw(server, b"GET /v1/streamkit/chunks?n=4&size=300000 HTTP/1.1\r\n"
                            b"Host: localhost\r\nConnection: close\r\n\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    decoded, rest = b"", body
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            break
        decoded, rest = decoded + rest[:size], rest[size + 2:]
    assert len(decoded) == 4 * 300000
    assert decoded.count(b"piece") == 4
