"""The console plugin's static serving (plugins/console/README.md): the app shell at / and
/app/... (SPA fallback), /assets/<file> with ETag/304 and Cache-Control, a strict CSP on
every answer, 404 in the API's error shape for a missing file, and no way out of the
embedded table (path traversal, encoded or not, is a 404, never a file of the host)."""
import hashlib
import os
import re

import pytest
import requests

from panthera_server import REPO, Server

STATIC = os.path.join(REPO, "plugins", "console", "static")


@pytest.fixture(scope="module")
def srv():
    s = Server(workers=1, plugins=("console",))
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


def get(s, path, **headers):
    return requests.get(s.url(path), headers=headers, timeout=30)


def assert_strict(r):
    csp = r.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-cache"


def shell():
    with open(os.path.join(STATIC, "index.html"), "rb") as f:
        return f.read()


@pytest.mark.parametrize("path", ["/", "/app", "/app/projects", "/app/projects/x/members",
                                  "/app/tasks/1234", "/app/a/b/c/d/e"])
def test_shell_and_spa_fallback(srv, path):
    r = get(srv, path)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.content == shell()
    assert r.headers["ETag"] == '"%s"' % hashlib.sha256(shell()).hexdigest()
    assert_strict(r)


def test_shell_has_no_inline_script_or_style():
    html = shell().decode()
    for m in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S):
        assert "src=" in m.group(1) and not m.group(2).strip(), m.group(0)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)


def test_every_asset_with_type_etag_and_304(srv):
    names = sorted(n for n in os.listdir(STATIC) if n != "index.html")
    assert "app.js" in names and "app.css" in names
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in names:
        with open(os.path.join(STATIC, name), "rb") as f:
            body = f.read()
        r = get(srv, "/assets/" + name)
        assert r.status_code == 200, (name, r.status_code)
        assert r.content == body, name
        assert r.headers["Content-Type"].startswith(types[os.path.splitext(name)[1]]), name
        etag = '"%s"' % hashlib.sha256(body).hexdigest()
        assert r.headers["ETag"] == etag
        assert_strict(r)
        again = get(srv, "/assets/" + name, **{"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"] == etag
        other = get(srv, "/assets/" + name, **{"If-None-Match": '"0000"'})
        assert other.status_code == 200


def test_missing_asset_is_404_in_error_shape(srv):
    for path in ("/assets/nope.js", "/assets/index.html", "/assets/APP.JS", "/assets/app.js.map"):
        r = get(srv, path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("target", [
    "/assets/../../../../etc/passwd",
    "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/assets/%2e%2e/%2e%2e/etc/passwd",
    "/assets/..%5c..%5cetc%5cpasswd",
    "/assets/%252e%252e%252fetc%252fpasswd",
    "/assets/....//....//etc/passwd",
    "/assets/app.js%00.css",
    "/assets//etc/passwd",
    "/app/../../etc/passwd",
])
def test_path_traversal_refused(srv, target):
    # Sent raw, so no client normalises the dots away first.
    raw = srv.raw(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target).encode(),
                  timeout=30)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"root:" not in raw
    # A path under /app is the app's own route (the shell); anything else names no file.
    assert status in (400, 404) or (status == 200 and body == shell()), (target, status, raw[:300])
    if target.startswith("/assets/"):
        assert status in (400, 404), (target, status)


def test_console_only_reads_get(srv):
    r = requests.post(srv.url("/assets/app.js"), data=b"x", timeout=30)
    assert r.status_code == 405


def test_openapi_documents_the_console_routes(srv):
    import openapi_check
    doc = requests.get(srv.url("/openapi.json"), timeout=30).json()
    openapi_check.validate(doc)
    openapi_check.assert_lists_every_route(srv, doc)
    assert "/assets/{name}" in doc["paths"] and "/" in doc["paths"]
