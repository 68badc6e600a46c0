"""Several certificates on one HTTPS listener, chosen by server name (server/tls_names.c):
`openssl s_client -servername` gets each [tls:NAME]'s certificate for its names and
wildcards, [tls]'s for no name or an unknown one; requests, ALPN and resumption work on
every certificate; `pantherad -t` checks every pair and the sections' keys; a reload with
one bad pair keeps the whole old set, a good one brings the new. No timings: every wait
polls for the event itself."""
import os
import re
import shutil
import signal
import tempfile
import time

import pytest

from tls_helpers import Pki, https_server, s_client

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="panthera-sni-")
    try:
        yield Pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def subject(out):
    m = re.search(r"subject=\s*CN\s*=\s*(\S+)", out)
    return m.group(1) if m else None


def served(port, name, *args):
    rc, out = s_client(port, "-ign_eof", *args, stdin=REQUEST, servername=name)
    assert rc == 0, out
    assert "HTTP/1.1 200 OK" in out, out
    return subject(out), out


def sni_server(pki, tmp=None):
    default, default_key, _ = pki.leaf("default", cn="default")
    a, a_key, _ = pki.leaf("a", cn="a.test", dns=("a.test", "*.b.test"))
    c, c_key, _ = pki.leaf("c", kind="rsa", cn="c.test", dns=("c.test",))
    s = https_server(pki, default, default_key)
    s.sections["tls:a"] = {"server_name": "a.test, *.b.test", "certificate": a, "key": a_key}
    s.sections["tls:c"] = {"server_name": "C.test", "certificate": c, "key": c_key}
    s.write_conf()
    return s


@pytest.fixture(scope="module")
def server(pki):
    s = sni_server(pki)
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


@pytest.mark.parametrize("name,cn", [
    ("a.test", "a.test"),
    ("A.Test", "a.test"),        # names compare without case
    ("x.b.test", "a.test"),      # a wildcard covers one label
    ("c.test", "c.test"),        # an RSA certificate next to ECDSA ones
    ("b.test", "default"),       # ... not the wildcard's apex
    ("y.x.b.test", "default"),   # ... nor two labels
    ("unknown.test", "default"),
    ("localhost", "default"),
    (None, "default"),           # no SNI at all
])
def test_the_certificate_follows_the_server_name(server, name, cn):
    got, out = served(server.tls_port, name, "-alpn", "http/1.1")
    assert got == cn, out
    assert "ALPN protocol: http/1.1" in out, out


def test_tls12_picks_by_name_too(server):
    got, out = served(server.tls_port, "c.test", "-tls1_2")
    assert got == "c.test" and "ECDHE-RSA-" in out, out
    got, out = served(server.tls_port, "a.test", "-tls1_2")
    assert got == "a.test" and "ECDHE-ECDSA-" in out, out


def test_a_named_certificate_session_resumes(server, tmp_path):
    sess = str(tmp_path / "a.sess")
    _, out = served(server.tls_port, "a.test", "-sess_out", sess)
    got, out = served(server.tls_port, "a.test", "-sess_in", sess)
    assert "Reused, TLSv1.3" in out, out
    assert got == "a.test"


# ---- the operator's side ----

def check(s):
    s.write_conf()
    return s.check_config()


def test_check_names_the_section_with_a_key_that_does_not_match(pki):
    s = sni_server(pki)
    _, other_key, _ = pki.leaf("other")
    s.sections["tls:c"]["key"] = other_key
    try:
        rc, _, err = check(s)
        assert rc != 0
        assert "[tls:c]" in err and "does not match certificate" in err, err
        assert other_key in err
    finally:
        s.cleanup()


@pytest.mark.parametrize("change,message", [
    (lambda t: t["tls:a"].pop("server_name"), "[tls:a]"),
    (lambda t: t["tls:a"].pop("key"), "needs key"),
    (lambda t: t["tls:c"].update(server_name="x.b.test, *.b.test"), "server_name *.b.test is [tls:a]'s"),
    (lambda t: t["tls:c"].update(server_name="bad_name.test"), "is not a host name"),
    (lambda t: t["tls:c"].update(ocsp_response="/x"), "unknown key \"ocsp_response\" in [tls:c]"),
    (lambda t: t.update({"tls:Bad!": {"server_name": "d.test"}}), "[tls:Bad!]: a name is"),
])
def test_check_refuses_a_bad_section(pki, change, message):
    s = sni_server(pki)
    change(s.sections)
    try:
        rc, _, err = check(s)
        assert rc != 0
        assert message in err, err
    finally:
        s.cleanup()


@pytest.mark.parametrize("section,names,warned", [
    ("tls:c", "elsewhere.test", "elsewhere.test"),
    ("tls:c", "*.c.test", "*.c.test"),     # c's certificate has no wildcard
    ("tls:a", "*.b.test, a.test", None),   # a's has: covered
])
def test_check_warns_when_a_certificate_does_not_cover_its_name(pki, section, names, warned):
    s = sni_server(pki)
    s.sections[section]["server_name"] = names
    try:
        rc, _, err = check(s)
        assert rc == 0, err
        if warned:
            assert "does not cover server_name %s" % warned in err, err
        else:
            assert "does not cover" not in err, err
    finally:
        s.cleanup()


def test_a_reload_with_one_bad_pair_keeps_the_old_set(pki):
    s = sni_server(pki)
    live_chain = os.path.join(s.tmp, "c-live.pem")
    live_key = os.path.join(s.tmp, "c-live.key")
    shutil.copy(s.sections["tls:c"]["certificate"], live_chain)
    shutil.copy(s.sections["tls:c"]["key"], live_key)
    s.sections["tls:c"].update(certificate=live_chain, key=live_key)
    s.write_conf()
    try:
        s.start()
        assert served(s.tls_port, "c.test")[0] == "c.test"
        pids = s.worker_pids()
        # A renewed certificate for c.test arrives without its key: the whole reload is
        # refused and every name keeps its certificate.
        renewed, renewed_key, _ = pki.leaf("c2", cn="c2.test", dns=("c.test",))
        shutil.copy(renewed, live_chain)
        s.signal(signal.SIGHUP)
        s.wait_error_log("reload failed", timeout=60)
        assert "[tls:c]" in s.error_log()
        assert s.worker_pids() == pids
        assert served(s.tls_port, "c.test")[0] == "c.test"
        assert served(s.tls_port, "a.test")[0] == "a.test"
        # The key follows: the next reload serves the renewed certificate.
        shutil.copy(renewed_key, live_key)
        s.signal(signal.SIGHUP)
        s.wait_error_log("reload complete", timeout=60)
        s.wait_gone(pids, timeout=60)
        deadline = time.monotonic() + 60
        while served(s.tls_port, "c.test")[0] != "c2.test":
            assert time.monotonic() < deadline, "the renewed certificate never showed"
            time.sleep(0.1)
        assert served(s.tls_port, "a.test")[0] == "a.test"
        assert served(s.tls_port, None)[0] == "default"
    finally:
        s.cleanup()
