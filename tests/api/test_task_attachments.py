"""Attachments of the task plugin (API.md "Projects and tasks", Conventions "Files"):
upload as a raw body with ?filename=, the type sniffed from the bytes (allow-list, a lying
Content-Type refused), the size limit (exactly at it: stored; one byte over: 413 before the
body is sent), empty files, hostile and non-ASCII filenames, downloads with the host's file
headers (ETag, If-None-Match, Range, nosniff, sandbox, Content-Disposition), the roles
(members upload, viewers read, the uploader / an owner / an admin deletes, non-members 404),
concurrent uploads, activity and events, and that deleting an attachment, a task or a
project releases every blob: after the test the store holds what it held before."""
import hashlib
import socket
import struct
import threading
import time
import urllib.parse
import uuid
import zlib

import pytest

from task_helpers import _services, people, proj, srv, task  # noqa: F401 (shared fixtures)
from task_helpers import (
    activity, add_member, assert_error, blob_files, blob_refs, call, describe, events,
    needs_services, new_task, psql, task_env)

pytestmark = needs_services
LIMIT = 4096
ATTACHMENT_KEYS = {"id", "taskId", "filename", "contentType", "size", "sha256", "uploaderId",
                   "createdAt"}
HTML = b"<!DOCTYPE html>\n<html><body><script>alert(document.cookie)</script></body></html>\n"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def png(width=2, height=2):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\0" + b"\x10\x20\x30" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def env():
    # The sweep runs often with a short grace, so that a blob nobody refers to any more is
    # gone within seconds (test_no_orphan_blobs); the release loop runs every 500 ms.
    with task_env("task_att", config={"attachment_max_size": str(LIMIT),
                                      "release_interval": "500ms"},
                  storage={"sweep_interval": "1s", "sweep_grace": "2s"}) as e:
        yield e


def upload(srv, who, tid, data, filename="notes.txt", ctype="text/plain", **kw):
    headers = {"Content-Type": ctype} if ctype else {}
    headers.update(kw.pop("headers", {}))
    return call(srv, "POST", "/v1/tasks/%s/attachments" % tid, token=who.access, data=data,
                headers=headers, params={"filename": filename} if filename is not None
                else None, **kw)


def uploaded(srv, who, tid, data, **kw):
    r = upload(srv, who, tid, data, **kw)
    assert r.status_code == 201, describe(r)
    doc = r.json()
    assert set(doc) == ATTACHMENT_KEYS, doc
    assert r.headers["Location"] == "/v1/attachments/" + doc["id"]
    return doc


def download(srv, who, aid, **kw):
    return call(srv, "GET", "/v1/attachments/" + aid, token=who.access, **kw)


def wait_for(what, check, ceiling=120):
    """Polls `check` until it is true; the ceiling is only reached by a hang."""
    deadline = time.monotonic() + ceiling
    while not check():
        assert time.monotonic() < deadline, "never happened: " + what
        time.sleep(0.1)


def test_upload_list_download(srv, people, task):
    data = b"meeting notes\nline two\n"
    doc = uploaded(srv, people["member"], task["id"], data, filename="notes.txt")
    assert doc["contentType"] == "text/plain" and doc["size"] == len(data)
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["uploaderId"] == people["member"].id and doc["taskId"] == task["id"]
    image = uploaded(srv, people["owner"], task["id"], png(), filename="pic.png",
                     ctype="image/png")
    assert image["contentType"] == "image/png"
    for who in ("viewer", "member", "owner", "admin"):
        r = call(srv, "GET", "/v1/tasks/%s/attachments" % task["id"], token=people[who].access)
        assert r.status_code == 200, describe(r)
        assert r.json() == {"total": 2, "page": 1, "limit": 10, "attachments": [doc, image]}
    r = call(srv, "GET", "/v1/tasks/%s/attachments" % task["id"], token=people["viewer"].access,
             params={"limit": 1, "page": 2})
    assert r.json()["attachments"] == [image] and r.json()["total"] == 2

    r = download(srv, people["viewer"], doc["id"])
    assert r.status_code == 200 and r.content == data, describe(r)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["ETag"] == '"%s"' % doc["sha256"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert r.headers["Content-Disposition"].startswith("attachment;"), r.headers
    assert "filename*=UTF-8''notes.txt" in r.headers["Content-Disposition"]
    r = download(srv, people["viewer"], image["id"])
    assert r.status_code == 200 and r.content == png()
    assert r.headers["Content-Disposition"].startswith("inline;"), r.headers

    r = download(srv, people["member"], doc["id"],
                 headers={"If-None-Match": '"%s"' % doc["sha256"]})
    assert r.status_code == 304 and r.content == b""
    r = download(srv, people["member"], doc["id"], headers={"Range": "bytes=8-12"})
    assert r.status_code == 206 and r.content == data[8:13]
    assert r.headers["Content-Range"] == "bytes 8-12/%d" % len(data)
    r = download(srv, people["member"], doc["id"], headers={"Range": "bytes=-4"})
    assert r.status_code == 206 and r.content == data[-4:]
    r = download(srv, people["member"], doc["id"], headers={"Range": "bytes=0-1,4-5"})
    assert r.status_code == 200 and r.content == data
    r = download(srv, people["member"], doc["id"], headers={"Range": "bytes=500-600"})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */%d" % len(data)
    head = call(srv, "HEAD", "/v1/attachments/" + doc["id"], token=people["viewer"].access)
    assert head.status_code == 200 and head.content == b""


def test_roles_and_non_members(srv, people, task):
    doc = uploaded(srv, people["member"], task["id"], b"x\n")
    r = upload(srv, people["viewer"], task["id"], b"y\n")
    assert_error(r, 403, "forbidden")
    for who in ("stranger", "member2"):
        assert_error(upload(srv, people[who], task["id"], b"y\n"), 404, "not_found")
        assert_error(download(srv, people[who], doc["id"]), 404, "not_found")
        r = call(srv, "GET", "/v1/tasks/%s/attachments" % task["id"], token=people[who].access)
        assert_error(r, 404, "not_found")
        r = call(srv, "DELETE", "/v1/attachments/" + doc["id"], token=people[who].access)
        assert_error(r, 404, "not_found")
    # A stranger's 404 is the one of an attachment that does not exist.
    missing = download(srv, people["owner"], str(uuid.uuid4()))
    assert_error(missing, 404, "not_found")
    assert missing.json() == download(srv, people["stranger"], doc["id"]).json()
    assert_error(download(srv, people["owner"], "not-a-uuid"), 404, "not_found")
    assert_error(call(srv, "GET", "/v1/attachments/" + doc["id"]), 401)
    # Deletion: not a viewer, not another member; the uploader, an owner, an admin may.
    add_member(srv, people["owner"], task["projectId"], people["member2"], "member")
    for who in ("viewer", "member2"):
        r = call(srv, "DELETE", "/v1/attachments/" + doc["id"], token=people[who].access)
        assert_error(r, 403, "forbidden")
    for who in ("member", "owner", "admin"):
        mine = uploaded(srv, people["member"], task["id"], ("by %s\n" % who).encode())
        r = call(srv, "DELETE", "/v1/attachments/" + mine["id"], token=people[who].access)
        assert r.status_code == 204, describe(r)
        assert_error(download(srv, people["owner"], mine["id"]), 404, "not_found")
        r = call(srv, "DELETE", "/v1/attachments/" + mine["id"], token=people[who].access)
        assert_error(r, 404, "not_found")


def test_empty_and_size_limit(srv, people, task):
    r = upload(srv, people["member"], task["id"], b"")
    assert_error(r, 400)
    at = uploaded(srv, people["member"], task["id"], b"a" * (LIMIT - 1) + b"\n")
    assert at["size"] == LIMIT
    r = upload(srv, people["member"], task["id"], b"a" * LIMIT + b"\n")
    assert_error(r, 413, "payload_too_large")


def test_413_comes_before_the_body(srv, people, task):
    """Only the headers are sent, announcing one byte over the limit: the answer comes
    without the body (a server that waited for it would hang until the ceiling)."""
    host, port = srv.url("/").split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(("POST /v1/tasks/%s/attachments?filename=big.txt HTTP/1.1\r\n"
                      "Host: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %d\r\n\r\n" % (task["id"], people["member"].access,
                                                      LIMIT + 1)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]


def test_types(srv, people, task):
    m = people["member"]
    # Outside the allow-list, by declaration (the route) or by the bytes.
    assert_error(upload(srv, m, task["id"], HTML, "x.html", "text/html"), 415)
    assert_error(upload(srv, m, task["id"], b"\x7fELF\x02\x01\x01" + b"\0" * 60, "a.out",
                        "application/octet-stream"), 415)
    # Lying Content-Types: HTML sent as PNG, as plain text; a PNG sent as a PDF.
    for data, name, ctype in ((HTML, "x.png", "image/png"), (HTML, "x.txt", "text/plain"),
                              (png(), "x.pdf", "application/pdf")):
        r = upload(srv, m, task["id"], data, name, ctype)
        assert_error(r, 415, "unsupported_media_type")
    # "I don't know" is fine: the bytes decide, and the stored type is theirs.
    doc = uploaded(srv, m, task["id"], PDF, filename="spec.pdf", ctype="application/octet-stream")
    assert doc["contentType"] == "application/pdf"
    r = download(srv, m, doc["id"])
    assert r.headers["Content-Type"].startswith("application/pdf")
    assert r.headers["Content-Disposition"].startswith("attachment;")
    csv = uploaded(srv, m, task["id"], b"a,b\n1,2\n", filename="t.csv", ctype="text/csv")
    assert csv["contentType"].startswith("text/")
    r = call(srv, "GET", "/v1/tasks/%s/attachments" % task["id"], token=m.access)
    assert [a["filename"] for a in r.json()["attachments"]] == ["spec.pdf", "t.csv"]


def test_filenames(srv, people, task):
    m = people["member"]
    for given, kept in (("../../etc/passwd.txt", "passwd.txt"),
                        ("C:\\fakepath\\report.txt", "report.txt"),
                        ("résumé 日本 \"q\";.txt", "résumé 日本 \"q\";.txt")):
        doc = uploaded(srv, m, task["id"], b"data\n", filename=given)
        assert doc["filename"] == kept
        disp = download(srv, m, doc["id"]).headers["Content-Disposition"]
        assert "filename*=UTF-8''" + urllib.parse.quote(kept, safe="") in disp, disp
        assert "\r" not in disp and "\n" not in disp
    for given in ("a\r\nSet-Cookie: x=1.txt", "tab\there.txt", "dir/", "..", ""):
        r = upload(srv, m, task["id"], b"data\n", filename=given)
        assert_error(r, 400, "validation_failed", fields=("filename",))
    # A NUL never reaches the plugin: the host refuses it in any query.
    assert_error(upload(srv, m, task["id"], b"data\n", filename="nul\0.txt"), 400)
    r = upload(srv, m, task["id"], b"data\n", filename=None)
    assert_error(r, 400, "validation_failed")
    r = call(srv, "GET", "/v1/tasks/%s/attachments" % task["id"], token=m.access)
    assert r.json()["total"] == 3


def test_concurrent_uploads(srv, people, task):
    results = []

    def one(i):
        data = b"same bytes\n" if i % 2 else ("file %d\n" % i).encode()
        results.append(upload(srv, people["member"], task["id"], data, "f%d.txt" % i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [201] * 12, [describe(r) for r in results]
    docs = [r.json() for r in results]
    assert len({d["id"] for d in docs}) == 12
    assert len({d["sha256"] for d in docs if d["filename"] in
                {"f%d.txt" % i for i in range(1, 12, 2)}}) == 1
    r = call(srv, "GET", "/v1/tasks/%s/attachments" % task["id"],
             token=people["member"].access, params={"limit": 100})
    assert r.json()["total"] == 12
    for d in docs:
        assert download(srv, people["viewer"], d["id"]).status_code == 200


def test_idempotent_upload(srv, people, task):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    a = uploaded(srv, people["member"], task["id"], b"once\n", headers=key)
    r = upload(srv, people["member"], task["id"], b"once\n", headers=key)
    assert r.status_code == 201 and r.json() == a
    r = call(srv, "GET", "/v1/tasks/%s/attachments" % task["id"], token=people["member"].access)
    assert r.json()["total"] == 1


def test_activity_and_events(env, srv, people, task):
    db = env[0]
    doc = uploaded(srv, people["member"], task["id"], b"log\n", filename="log.txt")
    r = call(srv, "DELETE", "/v1/attachments/" + doc["id"], token=people["owner"].access)
    assert r.status_code == 204, describe(r)
    acts = activity(srv, people["owner"].access, task["projectId"])
    assert [(a["action"], a["entity"], a["entityId"], a["changes"]) for a in acts[:2]] == [
        ("detached", "attachment", doc["id"], {"filename": ["log.txt", None]}),
        ("attached", "attachment", doc["id"], {"filename": [None, "log.txt"]})]
    evs = [(t, p) for t, p in events(db, task["id"]) if t.startswith("task.attachment")]
    assert [t for t, _ in evs] == ["task.attachment_added", "task.attachment_deleted"]
    added, removed = evs[0][1], evs[1][1]
    members = sorted(m["userId"] for m in added["members"])
    assert members == sorted([people["owner"].id, people["member"].id, people["viewer"].id])
    assert {k: added[k] for k in ("projectId", "taskId", "title", "attachmentId", "filename",
                                  "contentType", "size", "actorId")} == {
        "projectId": task["projectId"], "taskId": task["id"], "title": task["title"],
        "attachmentId": doc["id"], "filename": "log.txt", "contentType": "text/plain",
        "size": 4, "actorId": people["member"].id}
    assert removed["actorId"] == people["owner"].id and removed["attachmentId"] == doc["id"]


def test_deleting_task_or_project_takes_attachments(srv, people, proj):
    o = people["owner"]
    t1 = new_task(srv, o, proj["id"])
    t2 = new_task(srv, o, proj["id"])
    a1 = uploaded(srv, people["member"], t1["id"], b"goes with its task\n")
    a2 = uploaded(srv, people["member"], t2["id"], b"goes with its project\n")
    r = call(srv, "DELETE", "/v1/tasks/" + t1["id"], token=o.access)
    assert r.status_code == 204, describe(r)
    assert_error(download(srv, o, a1["id"]), 404, "not_found")
    assert_error(call(srv, "GET", "/v1/tasks/%s/attachments" % t1["id"], token=o.access), 404)
    assert download(srv, o, a2["id"]).status_code == 200
    r = call(srv, "DELETE", "/v1/projects/" + proj["id"], token=o.access)
    assert r.status_code == 204, describe(r)
    assert_error(download(srv, o, a2["id"]), 404, "not_found")
    assert_error(download(srv, people["admin"], a2["id"]), 404, "not_found")


def test_zz_no_orphan_blobs(env, srv, people):
    """Runs last in the module: every project the tests made is deleted, then every
    reference the plugin took is released and the sweep removes every blob — the store
    is as empty as before the module (it started empty)."""
    db = env[0]
    r = call(srv, "GET", "/v1/projects", token=people["admin"].access, params={"limit": 100})
    for p in r.json()["projects"]:
        d = call(srv, "DELETE", "/v1/projects/" + p["id"], token=people["admin"].access)
        assert d.status_code == 204, describe(d)
    assert psql(db, "SELECT count(*) FROM task_attachments").strip() == "0"
    wait_for("the release loop dropped every reference",
             lambda: psql(db, "SELECT count(*) FROM task_blob_releases").strip() == "0"
             and blob_refs(srv) == [])
    wait_for("the sweep removed every blob", lambda: blob_files(srv) == [])
