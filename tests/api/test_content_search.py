"""Search: GET /v1/posts?q= (API.md, "Content"; plugins/content/README.md, "Search").

- Quality on a fixed corpus shipped with the tests (data/content_corpus.json: 200 posts in
  English and French, 22 written to be found and 178 generated fillers, some mentioning a
  query word once): 20 queries with phrases, negation, `or`, folded accents, typos and a
  short prefix, each with the posts that must come first.
- The highlight: only the returned page's, bounded, the post's own HTML escaped, only
  <b> marks as markup.
- 50 hostile query strings never give a 500.
"""
import json
import os
import re

import pytest

from content_helpers import (
    assert_error, assert_post, call, content_env, describe, needs_services, register)

pytestmark = needs_services

CORPUS = json.load(open(os.path.join(os.path.dirname(__file__), "data",
                                     "content_corpus.json"), encoding="utf-8"))


@pytest.fixture(scope="module")
def env():
    with content_env("cnts") as (db, s):
        authors = [register(s) for _ in range(3)]
        ids = {}
        for i, p in enumerate(CORPUS["posts"]):
            r = call(s, "POST", "/v1/posts", token=authors[i % 3].access,
                     json_body={"title": p["title"], "body": p["body"], "tags": p["tags"]})
            assert r.status_code == 201, describe(r)
            ids[r.json()["id"]] = p["key"]
        yield s, ids, authors


def search(s, q, token=None, **params):
    r = call(s, "GET", "/v1/posts", token=token, params={"q": q, **params})
    assert r.status_code == 200, describe(r)
    return r.json()


@pytest.mark.parametrize("case", CORPUS["queries"], ids=[c["q"] for c in CORPUS["queries"]])
def test_quality(env, case):
    s, ids, _ = env
    got = search(s, case["q"], limit=len(case["top"]))
    keys = [ids.get(p["id"]) for p in got["posts"]]
    assert sorted(keys) == sorted(case["top"]), (case, keys, got["total"])
    for p in got["posts"]:
        assert_post(p)
        assert "<b>" in p["highlight"], (case, p["highlight"])


def test_ranking_is_stable_across_pages(env):
    s, _, _ = env
    full = search(s, "notes", limit=100)
    assert full["total"] > 20
    paged = []
    for page in range(1, 4):
        paged += [p["id"] for p in search(s, "notes", limit=7, page=page)["posts"]]
    assert paged == [p["id"] for p in full["posts"]][:21]
    assert search(s, "notes", limit=100) == full


def test_title_outranks_body(env):
    s, ids, _ = env
    got = search(s, "redis", limit=100)
    keys = [ids[p["id"]] for p in got["posts"]]
    assert keys[0] == "redis" and len(keys) > 1, keys


def test_filters_combine_with_search(env):
    s, ids, authors = env
    got = search(s, "notes", authorId=authors[1].id, limit=100)
    assert got["total"] > 0
    assert all(p["authorId"] == authors[1].id for p in got["posts"])
    got = search(s, "sourdough", tag="baking")
    assert [ids[p["id"]] for p in got["posts"]] == ["sourdough"]
    assert search(s, "sourdough", tag="chess")["total"] == 0


def test_no_match_and_blank(env):
    s, _, _ = env
    got = search(s, "zzqxv")
    assert got["total"] == 0 and got["posts"] == []
    blank = search(s, "   ")
    assert blank["total"] == len(CORPUS["posts"]) and "highlight" not in blank["posts"][0]


def test_highlight_escapes_html_and_is_bounded(env):
    s, _, authors = env
    body = ("<script>alert('x')</script> & <img src=x onerror=y> the zebrafish " +
            "filler words here " * 400 + " zebrafish again \"quoted\"")
    r = call(s, "POST", "/v1/posts", token=authors[0].access,
             json_body={"title": "<i>Aquarium</i> notes", "body": body})
    assert r.status_code == 201, describe(r)
    got = search(s, "zebrafish aquarium")
    assert got["total"] == 1, got
    hl = got["posts"][0]["highlight"]
    assert set(re.findall(r"<[^>]*>", hl)) <= {"<b>", "</b>"}, hl
    assert "<b>zebrafish</b>" in hl and "<b>Aquarium</b>" in hl, hl
    assert "&lt;" in hl and "<script" not in hl and "<img" not in hl, hl
    assert len(hl) < 1000, len(hl)
    # The post itself is returned as stored.
    assert got["posts"][0]["body"] == body


def test_drafts_searchable_only_by_author(env):
    s, _, authors = env
    r = call(s, "POST", "/v1/posts", token=authors[2].access,
             json_body={"title": "unreleased quokka", "body": "x", "status": "draft"})
    assert r.status_code == 201
    assert search(s, "quokka")["total"] == 0
    assert search(s, "quokka", token=authors[0].access, status="draft")["total"] == 0
    assert search(s, "quokka", token=authors[2].access, status="draft")["total"] == 1


HOSTILE = [
    '"', '""', '"""', "'", "''", "\\", "\\\\", "-", "--", "- -", "or", "or or", "OR",
    "-or", '"-"', "!", "!!!", "&", "|", "&|!", "(", ")", "()", "(a", "a)", ":*", "a:*",
    "a:B", "<->", "a <-> b", "a & !b", "'a' & 'b'", "\"unterminated phrase", "-\"neg phrase\"",
    "%", "%%", "_", "*", "$1", "\t\n\r", "🙂🙃", "ß", "\u200b", "' OR 1=1 --",
    "x" * 500, "word " * 100, "a" * 499 + "é", "\u00e9" * 300, "＂全角＂", "\ufeffbom",
]
assert len(HOSTILE) == 50


@pytest.mark.parametrize("q", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_query_never_500(env, q):
    s, _, _ = env
    r = call(s, "GET", "/v1/posts", params={"q": q})
    assert r.status_code == 200, describe(r)
    doc = r.json()
    assert set(doc) == {"total", "page", "limit", "posts"}


@pytest.mark.parametrize("raw", ["%00", "a%00b", "%FF", "%C3", "%ED%A0%80", "%C0%AF",
                                 "a" * 10240, "%22" * 3000])
def test_hostile_bytes_are_refused_not_500(env, raw):
    s, _, _ = env
    r = call(s, "GET", "/v1/posts?q=" + raw)
    # 414 when the host refuses the request line as too long, else the schema's 400.
    assert_error(r, (400, 414))
