"""The gateway (server/http.c check_caller, server/auth.c): bearer JWTs checked before any
plugin code runs, for routes registered with px_route_auth.

Tokens are crafted here with hmac/hashlib/base64 (HS256 over the configured secret), so
the server's verifier is tested against an independent signer, not against itself.
testkit's routes: GET /v1/test/private (token required) and /v1/test/whoami (optional)
answer {"id": sub, "role": role}; /v1/test/adminonly needs role admin;
POST /v1/test/token issues a token with the server's own signer.

Every request has a timeout; the module takes a few seconds.
"""
import base64
import hashlib
import hmac
import json
import os
import time

import pytest
import requests

from panthera_server import Server, ServerError, parse_response

SECRET = "k7Qm2vXr9Lp4Tz8Wn3Bd6Hs1Jf5Yc0Ga2Ue7Ri4Oq9Mx3NwE"  # 48 characters
assert len(SECRET) == 48
ISSUER = "panthera-test"
AUTH = {"token_secret": SECRET, "issuer": ISSUER, "leeway": "5s"}
LEEWAY = 5
TIMEOUT = 5


# ---- crafting tokens ----

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(obj):
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def make_jwt(claims, *, secret=SECRET, alg="HS256", header=None, signature=None):
    """A compact JWS. `alg` picks the header's alg and how it is signed: HS256/HS384/HS512
    with HMAC over `secret`, "none" with an empty signature. `signature` (bytes) overrides."""
    header = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = segment(header) + "." + segment(claims)
    if signature is None:
        digests = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
        if alg in digests:
            key = secret.encode() if isinstance(secret, str) else secret
            signature = hmac.new(key, signing_input.encode(), digests[alg]).digest()
        else:
            signature = b""
    return signing_input + "." + b64url(signature)


def claims(sub="user-1", role="user", *, exp_in=300, iss=ISSUER, **extra):
    now = int(time.time())
    c = {"sub": sub, "role": role, "iat": now}
    if iss is not None:
        c["iss"] = iss
    if exp_in is not None:
        c["exp"] = now + exp_in
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def bearer(token):
    return {"Authorization": "Bearer " + token}


# ---- checking answers ----

def assert_error(resp, status, code):
    assert resp.status_code == status, (resp.status_code, resp.headers, resp.text[:300])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    assert resp.headers.get("X-Request-Id"), resp.headers
    doc = resp.json()
    assert set(doc) == {"error"}, doc
    err = doc["error"]
    assert err.get("code") == code, doc
    assert isinstance(err.get("message"), str) and err["message"], doc
    assert set(err) <= {"code", "message", "fields"}, doc
    return err


def assert_401(resp):
    err = assert_error(resp, 401, "unauthorized")
    www = resp.headers.get("WWW-Authenticate", "")
    assert www.split(" ")[0].lower() == "bearer", resp.headers
    return err


@pytest.fixture(scope="module")
def gw():
    s = Server(workers=2, plugins=("hello", "testkit"), sections={"auth": dict(AUTH)})
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


def get(s, path, headers=None):
    return requests.get(s.url(path), headers=headers or {}, timeout=TIMEOUT)


# ---- the happy path ----

def test_valid_token_passes_with_caller(gw):
    r = get(gw, "/v1/test/private", bearer(make_jwt(claims("user-1", "user"))))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "user-1", "role": "user"}


def test_valid_token_with_nbf_in_the_past(gw):
    r = get(gw, "/v1/test/private",
            bearer(make_jwt(claims("u-nbf", "user", nbf=int(time.time()) - 10))))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "u-nbf"


def test_utf8_sub_round_trips(gw):
    r = get(gw, "/v1/test/private", bearer(make_jwt(claims("Zoë-🐆", "user"))))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "Zoë-🐆", "role": "user"}


# ---- time claims ----

def test_expired_beyond_leeway_is_401(gw):
    r = get(gw, "/v1/test/private", bearer(make_jwt(claims(exp_in=-(LEEWAY + 60)))))
    err = assert_401(r)
    assert "expired" in err["message"], err


def test_expired_within_leeway_is_accepted(gw):
    # exp 2 s ago, leeway 5 s: still good for ~3 s.
    r = get(gw, "/v1/test/private", bearer(make_jwt(claims("u-late", exp_in=-2))))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "u-late"


def test_not_yet_valid_is_401(gw):
    r = get(gw, "/v1/test/private",
            bearer(make_jwt(claims(nbf=int(time.time()) + LEEWAY + 60))))
    err = assert_401(r)
    assert "not yet" in err["message"], err


def test_nbf_within_leeway_is_accepted(gw):
    r = get(gw, "/v1/test/private", bearer(make_jwt(claims(nbf=int(time.time()) + 2))))
    assert r.status_code == 200, r.text


def test_missing_exp_is_401(gw):
    r = get(gw, "/v1/test/private", bearer(make_jwt(claims(exp_in=None))))
    assert_401(r)


def test_exp_not_an_integer_is_401(gw):
    r = get(gw, "/v1/test/private",
            bearer(make_jwt(claims(exp_in=None, exp=str(int(time.time()) + 300)))))
    assert_401(r)


# ---- signature and algorithm ----

def test_wrong_signature_is_401(gw):
    r = get(gw, "/v1/test/private",
            bearer(make_jwt(claims(), secret="another-secret-that-is-48-characters-long-xxxx")))
    err = assert_401(r)
    assert "signature" in err["message"], err


def test_payload_tampered_after_signing_is_401(gw):
    token = make_jwt(claims("user-1", "user"))
    h, _, sig = token.split(".")
    forged = h + "." + segment(claims("user-1", "admin")) + "." + sig
    assert_401(get(gw, "/v1/test/private", bearer(forged)))
    assert_401(get(gw, "/v1/test/adminonly", bearer(forged)))


def test_alg_none_with_empty_signature_is_401(gw):
    token = make_jwt(claims(), alg="none")
    assert token.endswith(".")
    assert_401(get(gw, "/v1/test/private", bearer(token)))


def test_alg_none_carrying_a_valid_hs256_signature_is_401(gw):
    """The header's alg must be exactly HS256, even when the MAC would verify."""
    h = segment({"alg": "none", "typ": "JWT"})
    p = segment(claims())
    mac = hmac.new(SECRET.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    assert_401(get(gw, "/v1/test/private", bearer(h + "." + p + "." + b64url(mac))))


def test_alg_hs512_correctly_signed_is_401(gw):
    token = make_jwt(claims(), alg="HS512")
    err = assert_401(get(gw, "/v1/test/private", bearer(token)))
    assert "alg" in err["message"], err


@pytest.mark.parametrize("alg", ["hs256", "HS384", "RS256"])
def test_other_algs_are_401(gw, alg):
    token = make_jwt(claims(), header={"alg": alg, "typ": "JWT"},
                     signature=hmac.new(SECRET.encode(), b"x", hashlib.sha256).digest())
    assert_401(get(gw, "/v1/test/private", bearer(token)))


# ---- shape ----

def test_three_garbage_segments_is_401(gw):
    assert_401(get(gw, "/v1/test/private", bearer("a.b.c")))


@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c.d", "....", "eyJ.eyJ.", "a!b.c.d"])
def test_malformed_tokens_are_401(gw, token):
    assert_401(get(gw, "/v1/test/private", bearer(token)))


def big_token(total):
    """A correctly signed HS256 token of about `total` bytes (a padding claim)."""
    base = len(make_jwt(claims(pad="")))
    pad = "p" * int((total - base) * 3 / 4)
    return make_jwt(claims(pad=pad))


def test_64k_token_is_401_when_the_header_limit_allows_it(make_server):
    s = make_server(workers=1, sections={"auth": dict(AUTH)}, http={"max_header_size": "128k"})
    token = big_token(64 * 1024)
    assert 63 * 1024 < len(token) < 66 * 1024
    r = requests.get(s.url("/v1/test/private"), headers=bearer(token), timeout=TIMEOUT)
    assert_401(r)
    # The same server still serves normal tokens afterwards.
    r = requests.get(s.url("/v1/test/private"), headers=bearer(make_jwt(claims())),
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text


def test_64k_token_with_default_header_limit_is_431(gw):
    token = big_token(64 * 1024)
    req = ("GET /v1/test/private HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
           % token).encode()
    data, _ = gw.exchange(req, timeout=3)
    resps = parse_response(data)
    assert len(resps) == 1, data[:500]
    assert resps[0].status == 431, resps[0]
    doc = resps[0].json()
    assert set(doc) == {"error"} and doc["error"]["code"], doc


# ---- issuer and claims ----

def test_wrong_issuer_is_401(gw):
    err = assert_401(get(gw, "/v1/test/private", bearer(make_jwt(claims(iss="someone-else")))))
    assert "issuer" in err["message"], err


def test_missing_issuer_is_401(gw):
    assert_401(get(gw, "/v1/test/private", bearer(make_jwt(claims(iss=None)))))


@pytest.mark.parametrize("bad", [{"sub": None}, {"role": None}, {"role": "Admin"},
                                 {"sub": 42}, {"sub": ""}])
def test_bad_sub_or_role_is_401(gw, bad):
    c = claims()
    for k, v in bad.items():
        if v is None:
            c.pop(k)
        else:
            c[k] = v
    assert_401(get(gw, "/v1/test/private", bearer(make_jwt(c))))


def test_duplicate_role_key_is_401(gw):
    """{"role":"user","role":"admin"}: parsers disagree on duplicates, so refuse them."""
    now = int(time.time())
    payload = ('{"sub":"u","role":"user","role":"admin","iss":"%s","exp":%d}'
               % (ISSUER, now + 300)).encode()
    h = segment({"alg": "HS256", "typ": "JWT"})
    p = b64url(payload)
    mac = hmac.new(SECRET.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    assert_401(get(gw, "/v1/test/adminonly", bearer(h + "." + p + "." + b64url(mac))))


# ---- the Authorization header itself ----

def test_basic_scheme_is_401(gw):
    assert_401(get(gw, "/v1/test/private", {"Authorization": "Basic xyz"}))


def test_no_authorization_header_is_401(gw):
    err = assert_401(get(gw, "/v1/test/private"))
    assert err["message"]


def test_bearer_without_token_is_401(gw):
    assert_401(get(gw, "/v1/test/private", {"Authorization": "Bearer"}))


def test_scheme_is_case_insensitive(gw):
    r = get(gw, "/v1/test/private", {"Authorization": "bearer " + make_jwt(claims())})
    assert r.status_code == 200, r.text


# ---- roles ----

def test_adminonly_with_user_token_is_403(gw):
    r = get(gw, "/v1/test/adminonly", bearer(make_jwt(claims("user-1", "user"))))
    assert_error(r, 403, "forbidden")
    assert "WWW-Authenticate" not in r.headers


def test_adminonly_with_admin_token_is_200(gw):
    r = get(gw, "/v1/test/adminonly", bearer(make_jwt(claims("boss", "admin"))))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "boss", "role": "admin"}


def test_adminonly_without_token_is_401(gw):
    assert_401(get(gw, "/v1/test/adminonly"))


# ---- optional auth ----

def test_whoami_anonymous_is_200_with_nulls(gw):
    r = get(gw, "/v1/test/whoami")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": None, "role": None}


def test_whoami_with_valid_token(gw):
    r = get(gw, "/v1/test/whoami", bearer(make_jwt(claims("u-9", "user"))))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "u-9", "role": "user"}


@pytest.mark.parametrize("header", ["Bearer a.b.c", "Basic xyz"])
def test_whoami_with_bad_token_is_401(gw, header):
    """A present but invalid credential is refused even where auth is optional."""
    assert_401(get(gw, "/v1/test/whoami", {"Authorization": header}))


def test_whoami_with_expired_token_is_401(gw):
    assert_401(get(gw, "/v1/test/whoami", bearer(make_jwt(claims(exp_in=-600)))))


def test_unauthenticated_route_ignores_authorization(gw):
    r = get(gw, "/v1/hello", {"Authorization": "Bearer a.b.c"})
    assert r.status_code == 200, r.text


# ---- tokens the server issues ----

def test_issued_tokens_verify(gw):
    r = requests.post(gw.url("/v1/test/token"), json={"sub": "alice", "role": "admin"},
                      timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    doc = r.json()
    token = doc["accessToken"]
    assert doc["expiresIn"] == 900  # the default access_ttl, 15 min
    h, p, sig = token.split(".")
    assert json.loads(b64url_decode(h)) == {"alg": "HS256", "typ": "JWT"}
    payload = json.loads(b64url_decode(p))
    assert payload["iss"] == ISSUER and payload["sub"] == "alice" and payload["role"] == "admin"
    assert payload["exp"] - payload["iat"] == 900
    assert abs(payload["iat"] - time.time()) < 30
    # Signed with the configured secret: our own HMAC agrees.
    mac = hmac.new(SECRET.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    assert b64url(mac) == sig
    for path in ("/v1/test/private", "/v1/test/adminonly", "/v1/test/whoami"):
        r = get(gw, path, bearer(token))
        assert r.status_code == 200, (path, r.text)
        assert r.json() == {"id": "alice", "role": "admin"}


# ---- configuration ----

def line_of(path, needle):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if needle in line:
                return n
    raise AssertionError("%r not in %s" % (needle, path))


def test_short_secret_fails_check_naming_file_and_line():
    s = Server(workers=1, sections={"auth": {"token_secret": "x" * 31, "issuer": ISSUER}})
    try:
        rc, out, err = s.check_config()
        assert rc != 0, (out, err)
        line = line_of(s.conf_path, "token_secret")
        assert "%s:%d:" % (s.conf_path, line) in err, err
        assert "32" in err, err
        assert "configuration OK" not in out
    finally:
        s.cleanup()


def test_secret_of_exactly_32_bytes_is_accepted():
    s = Server(workers=1, sections={"auth": {"token_secret": "y" * 32, "issuer": ISSUER}})
    try:
        rc, out, err = s.check_config()
        assert rc == 0, (out, err)
    finally:
        s.cleanup()


def test_short_secret_refuses_to_start():
    s = Server(workers=1, sections={"auth": {"token_secret": "short"}})
    try:
        with pytest.raises(ServerError):
            s.start(timeout=5)
        assert s.proc.returncode != 0
        line = line_of(s.conf_path, "token_secret")
        assert "%s:%d:" % (s.conf_path, line) in s.error_log(), s.error_log()
    finally:
        s.cleanup()


def test_token_secret_file_with_trailing_newline(make_server, tmp_path):
    secret_file = tmp_path / "token_secret"
    secret_file.write_text(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    s = make_server(workers=1, sections={"auth": {"token_secret_file": str(secret_file),
                                                   "issuer": ISSUER}})
    rc, out, err = s.check_config()
    assert rc == 0, (out, err)
    r = requests.get(s.url("/v1/test/private"), headers=bearer(make_jwt(claims("f-1"))),
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "f-1"
    # The newline is not part of the key.
    r = requests.get(s.url("/v1/test/private"),
                     headers=bearer(make_jwt(claims(), secret=SECRET + "\n")), timeout=TIMEOUT)
    assert_401(r)


def test_token_secret_file_missing_fails_check(tmp_path):
    s = Server(workers=1, sections={"auth": {"token_secret_file": str(tmp_path / "nope")}})
    try:
        rc, out, err = s.check_config()
        assert rc != 0, (out, err)
        line = line_of(s.conf_path, "token_secret_file")
        assert "%s:%d:" % (s.conf_path, line) in err, err
    finally:
        s.cleanup()


def test_no_secret_configured_means_401_not_500(make_server):
    """Without [auth] a protected route cannot be reached, but it answers 401, not 500."""
    s = make_server(workers=1)
    r = requests.get(s.url("/v1/test/private"), headers=bearer(make_jwt(claims())),
                     timeout=TIMEOUT)
    assert_401(r)
