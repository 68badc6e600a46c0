"""HTTPS (server/tls.c): what testssl.sh would look at, checked with `openssl s_client`
and Python's ssl module against a private CA made with the openssl command line —
protocols refused and accepted, ciphers, ALPN, session resumption across workers, OCSP
stapling, HSTS and the redirect listener — then the operator's side: `pantherad -t` on a
key that does not match and a certificate about to expire, a certificate renewed by SIGHUP
under a client loop, a bad one refused at reload, and hostile handshakes that must not
hurt anyone else. No timings: every wait polls for the event itself."""
import os
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time

import pytest

from panthera_server import parse_response
from tls_helpers import Pki, client_context, https_get, https_server, s_client

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="panthera-tls-")
    try:
        yield Pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_server(pki):
    chain, key, serial = pki.leaf("main")
    ocsp = pki.ocsp_response(chain, serial, os.path.join(pki.dir, "main.ocsp"))
    s = https_server(pki, chain, key, redirect=True, tls={"ocsp_response": ocsp,
                                                          "hsts": "max-age=63072000"})
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


# ---- protocols, ciphers, ALPN ----

@pytest.mark.parametrize("proto", ["-tls1", "-tls1_1"])
def test_old_protocols_are_refused(tls_server, proto):
    rc, out = s_client(tls_server.tls_port, proto, "-cipher", "ALL:@SECLEVEL=0")
    assert rc != 0, out
    assert "Cipher is (NONE)" in out


@pytest.mark.parametrize("proto,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls12_and_tls13_are_accepted_with_alpn(tls_server, proto, name):
    rc, out = s_client(tls_server.tls_port, proto, "-alpn", "http/1.1", "-ign_eof",
                       stdin=REQUEST)
    assert rc == 0, out
    assert "Protocol  : %s" % name in out, out
    assert "ALPN protocol: http/1.1" in out, out
    assert "HTTP/1.1 200 OK" in out, out


def test_tls13_is_preferred(tls_server):
    _, facts = https_get(tls_server.tls_port, tls_server.ca)
    assert facts["version"] == "TLSv1.3"
    assert facts["alpn"] == "http/1.1"


def test_weak_tls12_ciphers_are_refused(tls_server):
    # Outside Mozilla's intermediate list (the certificate is ECDSA): CBC with SHA-1 or
    # SHA-2, static RSA key exchange.
    for cipher in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-SHA"):
        rc, out = s_client(tls_server.tls_port, "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0")
        assert rc != 0 and "Cipher is (NONE)" in out, (cipher, out)
    rc, out = s_client(tls_server.tls_port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256",
                       "-ign_eof", stdin=REQUEST)
    assert rc == 0 and "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in out, out


def test_a_client_without_http11_gets_no_application_protocol(tls_server):
    rc, out = s_client(tls_server.tls_port, "-alpn", "h2")
    assert rc != 0
    assert "no application protocol" in out, out


# ---- HTTP over TLS ----

def test_https_answers_with_hsts_and_plain_does_not(tls_server):
    resp, _ = https_get(tls_server.tls_port, tls_server.ca)
    assert resp.status == 200
    assert resp.headers["strict-transport-security"] == "max-age=63072000"
    plain = parse_response(tls_server.raw(REQUEST))[0]
    assert plain.status == 200
    assert "strict-transport-security" not in plain.headers


def test_keepalive_and_pipelining_over_tls(tls_server):
    ctx = client_context(tls_server.ca)
    raw = socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        one = b"GET /v1/hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
        s.sendall(one * 3 + REQUEST)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
    responses = parse_response(data)
    assert [r.status for r in responses] == [200, 200, 200, 200]


def test_a_large_response_crosses_many_records(tls_server):
    # /openapi.json is the host's biggest answer; every byte must come out in order.
    resp, _ = https_get(tls_server.tls_port, tls_server.ca, "/openapi.json")
    plain = parse_response(tls_server.raw(REQUEST.replace(b"/healthz", b"/openapi.json")))[0]
    assert resp.status == 200
    assert resp.body == plain.body


def test_redirect_listener_sends_clients_to_https(tls_server):
    sock = socket.create_connection(("127.0.0.1", tls_server.redirect_port), timeout=10)
    sock.sendall(b"GET /v1/hello?name=x HTTP/1.1\r\nHost: example.org:8080\r\n"
                 b"Connection: close\r\n\r\n")
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    sock.close()
    resp = parse_response(out)[0]
    assert resp.status == 308
    assert resp.headers["location"] == "https://example.org:%d/v1/hello?name=x" % \
        tls_server.tls_port


def test_redirect_refuses_a_host_it_would_not_write(tls_server):
    sock = socket.create_connection(("127.0.0.1", tls_server.redirect_port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: evil\"<x>\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    sock.close()
    resp = parse_response(out)[0]
    assert resp.status == 400
    assert "location" not in resp.headers


# ---- resumption, stapling ----

def test_session_ticket_resumes_on_another_worker(tls_server):
    """A ticket issued by one worker resumes on the other: the keys are derived, not
    per process. Which worker answered is in the X-Request-Id prefix."""
    ctx = client_context(tls_server.ca)
    resp, first = https_get(tls_server.tls_port, tls_server.ca, ctx=ctx)
    issuer = resp.headers["x-request-id"][:8]
    assert first["session"] is not None and first["session"].has_ticket
    seen = set()
    for _ in range(400):
        resp, facts = https_get(tls_server.tls_port, tls_server.ca, ctx=ctx,
                                session=first["session"])
        assert facts["reused"], "a full handshake where the ticket should have resumed"
        seen.add(resp.headers["x-request-id"][:8])
        if seen - {issuer}:
            break
    assert seen - {issuer}, "every connection went to the issuing worker"


def test_resumption_with_s_client(tls_server, tmp_path):
    sess = str(tmp_path / "sess.pem")
    rc, out = s_client(tls_server.tls_port, "-sess_out", sess, "-ign_eof", stdin=REQUEST)
    assert rc == 0 and "New, TLSv1.3" in out, out
    rc, out = s_client(tls_server.tls_port, "-sess_in", sess, "-ign_eof", stdin=REQUEST)
    assert rc == 0 and "Reused, TLSv1.3" in out, out
    rc, out = s_client(tls_server.tls_port, "-tls1_2", "-sess_out", sess, "-ign_eof",
                       stdin=REQUEST)
    assert rc == 0, out
    rc, out = s_client(tls_server.tls_port, "-tls1_2", "-sess_in", sess, "-ign_eof",
                       stdin=REQUEST)
    assert rc == 0 and "Reused, TLSv1.2" in out, out


def test_ocsp_response_is_stapled(tls_server):
    rc, out = s_client(tls_server.tls_port, "-status", "-ign_eof", stdin=REQUEST)
    assert rc == 0, out
    assert "OCSP Response Status: successful" in out, out
    assert "Cert Status: good" in out, out


def sent_chain(port):
    """The subjects of the certificates the server sent, leaf first."""
    rc, out = s_client(port, "-showcerts", stdin=b"")
    assert rc == 0, out
    return [line.split("s:", 1)[1].strip() for line in out.splitlines()
            if line.startswith(" ") and line.lstrip()[:1].isdigit() and " s:" in line]


def test_the_chain_sent_is_the_files_own(tls_server, pki, tmp_path):
    # The context never builds a chain of its own (SSL_MODE_NO_AUTO_CHAIN): the file's
    # intermediates go out, and a file with the leaf alone sends the leaf alone.
    whole = sent_chain(tls_server.tls_port)
    assert len(whole) == 2 and "CN = localhost" in whole[0], whole
    chain, key, _ = pki.leaf("leafonly")
    leaf = tmp_path / "leaf.pem"
    text = open(chain).read()
    leaf.write_text(text[:text.index("-----END CERTIFICATE-----") + 26])
    s = https_server(pki, str(leaf), key)
    try:
        s.start()
        alone = sent_chain(s.tls_port)
        assert len(alone) == 1 and "CN = localhost" in alone[0], alone
        _, facts = https_get(s.tls_port, s.ca)
        assert facts["version"] == "TLSv1.3"
    finally:
        s.cleanup()


# ---- hostile clients ----

def probe_ok(s):
    resp, _ = https_get(s.tls_port, s.ca)
    return resp.status == 200


def read_until_closed(sock, ceiling=30):
    sock.settimeout(ceiling)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data, True
            data += chunk
    except ConnectionResetError:
        return data, True
    except socket.timeout:
        return data, False


@pytest.mark.parametrize("junk", [
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",             # a ClientHello that says nothing
    b"\x16\x03\x01\x40\x00" + b"\x01\x00\x3f\xfc" + b"\xff" * 200 + b"\x00" * 16180,
    b"\x16\x03\x03\x00\x30" + os.urandom(48),                 # random handshake bytes
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                     # plain HTTP on the TLS port
    b"\x80\x2e\x01\x00\x02\x00\x15" + b"\x00" * 41,           # an SSLv2 hello
])
def test_malformed_client_hello_is_closed_and_hurts_nobody(tls_server, junk):
    sock = socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=10)
    sock.sendall(junk)
    data, closed = read_until_closed(sock)
    sock.close()
    assert closed, "the server kept a connection that sent garbage"
    assert b"HTTP/1.1" not in data
    assert probe_ok(tls_server)
    assert tls_server.running()


def test_half_open_handshake_storm(pki):
    """Connections that start a handshake and stall are closed at header_timeout, and a
    probe client is served all along."""
    chain, key, _ = pki.leaf("storm")
    s = https_server(pki, chain, key, http={"header_timeout": "3s"})
    try:
        s.start()
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # a record cut after 6 bytes
        socks = []
        for _ in range(150):
            c = socket.create_connection(("127.0.0.1", s.tls_port), timeout=10)
            c.sendall(hello)
            socks.append(c)
        for _ in range(5):
            assert probe_ok(s)
        for c in socks:
            data, closed = read_until_closed(c, ceiling=60)
            assert closed, "a stalled handshake outlived header_timeout"
            c.close()
        assert probe_ok(s)
    finally:
        s.cleanup()


# ---- the operator's side: -t, expiry, reload ----

def test_check_refuses_a_key_that_does_not_match(pki):
    chain, _, _ = pki.leaf("a")
    _, other_key, _ = pki.leaf("b")
    s = https_server(pki, chain, other_key)
    try:
        rc, out, err = s.check_config()
        assert rc != 0
        assert "does not match certificate" in err, err
        assert other_key in err and chain in err
    finally:
        s.cleanup()


def test_check_names_an_unreadable_certificate(pki, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    _, key, _ = pki.leaf("c")
    s = https_server(pki, str(bad), key)
    try:
        rc, _, err = s.check_config()
        assert rc != 0
        assert str(bad) in err and "no usable PEM certificate" in err, err
    finally:
        s.cleanup()


def test_check_warns_before_expiry(pki):
    soon, soon_key, _ = pki.leaf("soon", days=10)
    later, later_key, _ = pki.leaf("later", days=50)
    s = https_server(pki, soon, soon_key)
    try:
        rc, out, err = s.check_config()
        assert rc == 0, err
        assert "expires in" in err and "renew it" in err, err
    finally:
        s.cleanup()
    s = https_server(pki, later, later_key)
    try:
        rc, out, err = s.check_config()
        assert rc == 0, err
        assert "expires in" not in err, err
    finally:
        s.cleanup()


def test_an_ssl_listener_needs_a_certificate(pki):
    s = https_server(pki, "", "")
    s.sections.pop("tls")
    s.write_conf()
    try:
        rc, _, err = s.check_config()
        assert rc != 0
        assert "needs [tls] certificate and key" in err, err
    finally:
        s.cleanup()


def test_rsa_certificate_and_ticket_key_file(pki, tmp_path):
    chain, key, _ = pki.leaf("rsa", kind="rsa")
    ticket = tmp_path / "ticket.key"
    ticket.write_bytes(os.urandom(80))
    s = https_server(pki, chain, key, tls={"ticket_key_file": str(ticket)})
    try:
        s.start()
        rc, out = s_client(s.tls_port, "-tls1_2", "-ign_eof", stdin=REQUEST)
        assert rc == 0 and "ECDHE-RSA-" in out, out
        ctx = client_context(s.ca)
        _, first = https_get(s.tls_port, s.ca, ctx=ctx)
        _, again = https_get(s.tls_port, s.ca, ctx=ctx, session=first["session"])
        assert again["reused"]
    finally:
        s.cleanup()
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 8)
    s = https_server(pki, chain, key, tls={"ticket_key_file": str(short)})
    try:
        rc, _, err = s.check_config()
        assert rc != 0 and "at least 32" in err, err
    finally:
        s.cleanup()


def current_cert(s):
    _, facts = https_get(s.tls_port, s.ca)
    return facts["cert"]


def test_reload_renews_the_certificate_under_a_client_loop(pki):
    chain, key, _ = pki.leaf("live")
    s = https_server(pki, chain, key)
    live_chain = os.path.join(s.tmp, "live.pem")
    live_key = os.path.join(s.tmp, "live.key")
    shutil.copy(chain, live_chain)
    shutil.copy(key, live_key)
    s.sections["tls"] = {"certificate": live_chain, "key": live_key}
    s.write_conf()
    failures, done = [], threading.Event()
    served = [0]

    def loop():
        ctx = client_context(s.ca)
        while not done.is_set():
            try:
                resp, _ = https_get(s.tls_port, s.ca, ctx=ctx)
                if resp.status != 200:
                    failures.append(resp.status)
                served[0] += 1
            except Exception as e:  # noqa: BLE001 (any failure is the finding)
                failures.append(repr(e))

    try:
        s.start()
        old = current_cert(s)
        t = threading.Thread(target=loop)
        t.start()
        try:
            new_chain, new_key, _ = pki.leaf("renewed")
            shutil.copy(new_chain, live_chain + ".tmp")
            shutil.copy(new_key, live_key + ".tmp")
            os.rename(live_key + ".tmp", live_key)
            os.rename(live_chain + ".tmp", live_chain)
            before = served[0]
            s.signal(signal.SIGHUP)
            s.wait_error_log("reload complete", timeout=60)
            deadline = time.monotonic() + 60
            while current_cert(s) == old:
                assert time.monotonic() < deadline, "the renewed certificate never showed"
                time.sleep(0.1)
            while served[0] < before + 20:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            done.set()
            t.join()
        assert failures == []
        assert current_cert(s) != old
    finally:
        s.cleanup()


def test_a_bad_certificate_at_reload_keeps_the_old_one(pki):
    chain, key, _ = pki.leaf("keep")
    _, wrong_key, _ = pki.leaf("wrong")
    s = https_server(pki, chain, key)
    live_key = os.path.join(s.tmp, "live.key")
    shutil.copy(key, live_key)
    s.sections["tls"]["key"] = live_key
    s.write_conf()
    try:
        s.start()
        old = current_cert(s)
        pids = s.worker_pids()
        shutil.copy(wrong_key, live_key)
        s.signal(signal.SIGHUP)
        s.wait_error_log("reload failed", timeout=60)
        log = s.error_log()
        assert "does not match certificate" in log, log
        assert current_cert(s) == old
        assert s.worker_pids() == pids
    finally:
        s.cleanup()
