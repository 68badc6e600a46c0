"""Authorization matrix of the content plugin, GENERATED over its routes: every operation
/openapi.json lists under the plugin's tag ("content") is called by each caller — anonymous,
the post's author, a commenter (author of the comment, not of the post), another user and an
admin — on a published post and on a draft, each cell on fresh targets. The expected status
comes from the rules of API.md "Content" (RULES below, one per route); a route without a
rule fails the test, so a new route cannot slip past the matrix.
"""
import uuid

import pytest
import requests

from content_helpers import (
    assert_error, call, content_env, describe, make_admin, needs_services, new_post, register)

pytestmark = needs_services

CALLERS = ("anon", "author", "commenter", "other", "admin")


def _visible(caller, draft):
    return not draft or caller == "author"


def _read(ok):
    return lambda caller, draft: ok if _visible(caller, draft) else 404


def _post_write(ok):
    def rule(caller, draft):
        if not _visible(caller, draft):
            return 404
        return ok if caller in ("author", "admin") else 403
    return rule


def _comment_edit(caller, draft):
    if not _visible(caller, draft):
        return 404
    # On a draft only its author could comment, so the author wrote the comment.
    return 200 if caller == ("author" if draft else "commenter") else 403


def _comment_delete(caller, draft):
    if not _visible(caller, draft):
        return 404
    return 204 if caller in ("author", "commenter", "admin") else 403


# (method, OpenAPI path) -> (auth required, rule(caller, draft) -> status for a caller
# with a token).
RULES = {
    ("get", "/v1/posts"): (False, lambda c, d: 200),
    ("get", "/v1/feed"): (False, lambda c, d: 200),
    ("get", "/v1/tags"): (False, lambda c, d: 200),
    # Any user uploads; a media is as visible as the post that holds it (the target's is
    # linked from the target post's body).
    ("post", "/v1/media"): (True, lambda c, d: 201),
    ("get", "/v1/media/{id}"): (False, _read(200)),
    ("post", "/v1/posts"): (True, lambda c, d: 201),
    ("get", "/v1/posts/{id}"): (False, _read(200)),
    ("put", "/v1/posts/{id}"): (True, _post_write(200)),
    ("delete", "/v1/posts/{id}"): (True, _post_write(204)),
    ("post", "/v1/posts/{id}/like"): (True, _read(204)),
    ("delete", "/v1/posts/{id}/like"): (True, _read(204)),
    ("get", "/v1/posts/{id}/comments"): (False, _read(200)),
    ("post", "/v1/posts/{id}/comments"): (True, _read(201)),
    ("put", "/v1/posts/{id}/comments/{commentId}"): (True, _comment_edit),
    ("delete", "/v1/posts/{id}/comments/{commentId}"): (True, _comment_delete),
}
BODIES = {
    ("post", "/v1/posts"): {"title": "matrix", "body": "cell"},
    ("put", "/v1/posts/{id}"): {"title": "changed"},
    ("post", "/v1/posts/{id}/comments"): {"body": "a comment"},
    ("put", "/v1/posts/{id}/comments/{commentId}"): {"body": "edited"},
}


@pytest.fixture(scope="module")
def env():
    with content_env("cntm", storage=True) as (db, s):
        doc = requests.get(s.url("/openapi.json"), timeout=10).json()
        ops = sorted((m, path) for path, item in doc["paths"].items()
                     for m, op in item.items()
                     if isinstance(op, dict) and "content" in op.get("tags", []))
        users = {"author": register(s), "commenter": register(s), "other": register(s),
                 "admin": make_admin(s)}
        yield s, ops, users


def test_every_route_has_a_rule(env):
    _, ops, _ = env
    assert len(ops) >= len(RULES)
    assert [op for op in ops if op not in RULES] == []
    assert [r for r in RULES if r not in ops] == []


def _targets(s, users, draft):
    m = call(s, "POST", "/v1/media", token=users["author"].access, data=_pdf(),
             headers={"Content-Type": "application/pdf"})
    assert m.status_code == 201, describe(m)
    post = new_post(s, users["author"], status="draft" if draft else "published",
                    body="see %s" % m.json()["url"])
    who = users["author"] if draft else users["commenter"]
    r = call(s, "POST", "/v1/posts/%s/comments" % post["id"], token=who.access,
             json_body={"body": "target"})
    assert r.status_code == 201, describe(r)
    return {"id": post["id"], "commentId": r.json()["id"], "mediaId": m.json()["id"]}


def _pdf():
    """A PDF of its own (the same bytes twice would be one blob for two media)."""
    return b"%PDF-1.4\n% " + uuid.uuid4().hex.encode() + b"\n%%EOF\n"


def _request(s, method, path, ids, token):
    """The cell's request: media take a raw file body, the rest JSON."""
    if path == "/v1/media":
        return call(s, "POST", path, token=token, data=_pdf(),
                    headers={"Content-Type": "application/pdf"})
    url = path.format(id=ids["mediaId"]) if path.startswith("/v1/media/") \
        else path.format(**ids)
    return call(s, method.upper(), url, token=token, json_body=BODIES.get((method, path)))


@pytest.mark.parametrize("draft", [False, True], ids=["published", "draft"])
def test_matrix(env, draft):
    s, ops, users = env
    failures = []
    for method, path in ops:
        required, rule = RULES[(method, path)]
        for caller in CALLERS:
            ids = _targets(s, users, draft)
            token = users[caller].access if caller != "anon" else None
            r = _request(s, method, path, ids, token)
            if caller == "anon":
                expect = 401 if required else rule(caller, draft)
            else:
                expect = rule(caller, draft)
            if r.status_code != expect:
                failures.append("%s %s as %s: %s, expected %s" % (
                    method.upper(), path, caller, r.status_code, expect))
            elif expect >= 400:
                assert_error(r, expect)
            # The cell's effect happened exactly when allowed.
            if method == "delete" and path == "/v1/posts/{id}" and expect == 204:
                assert call(s, "GET", "/v1/posts/" + ids["id"],
                            token=users["author"].access).status_code == 404
                assert call(s, "GET", "/v1/media/" + ids["mediaId"],
                            token=users["author"].access).status_code == 404
            if method == "delete" and path == "/v1/posts/{id}" and expect != 204:
                assert call(s, "GET", "/v1/posts/" + ids["id"],
                            token=users["author"].access).status_code == 200
            if method == "delete" and "commentId" in path:
                left = call(s, "GET", "/v1/posts/%s/comments" % ids["id"],
                            token=users["author"].access).json()["total"]
                assert left == (0 if expect == 204 else 1), (path, caller, left)
    assert failures == []


def test_unknown_ids_are_404(env):
    s, ops, users = env
    ids = {"id": str(uuid.uuid4()), "commentId": str(uuid.uuid4())}
    for method, path in ops:
        if "{id}" not in path:
            continue
        r = call(s, method.upper(), path.format(**ids), token=users["admin"].access,
                 json_body=BODIES.get((method, path)))
        assert_error(r, 404, "not_found")
