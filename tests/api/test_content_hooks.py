"""The content plugin's Lua hook points with the shipped example
scripts/lua/50-banned-words.lua: before_post_publish refuses a published create or a PUT
whose result is published, before_comment_create a comment; drafts pass until published;
a hook that changes the value is validated like a request.
"""
import os
import re
import shutil
import tempfile

import pytest

from content_helpers import (
    assert_error, call, content_env, describe, events, needs_services, new_post, register)
from user_helpers import SHIPPED_LUA

pytestmark = needs_services

REWRITE = """
function before_comment_create(c)
    if c.body == "shout" then return {set = {body = "SHOUT"}} end
    if c.body == "empty" then return {set = {body = ""}} end
    return true
end
"""


@pytest.fixture(scope="module")
def env():
    lua = tempfile.mkdtemp(prefix="content-lua-")
    shutil.copy(os.path.join(SHIPPED_LUA, "50-banned-words.lua"), lua)
    with open(os.path.join(lua, "60-rewrite.lua"), "w") as f:
        f.write(REWRITE)
    try:
        with content_env("cnth", lua_dir=lua) as (db, s):
            yield s, register(s), register(s)
    finally:
        shutil.rmtree(lua, ignore_errors=True)


def test_banned_post_refused(env):
    s, alice, _ = env
    for body in ({"title": "Great SpamWord deal", "body": "x"},
                 {"title": "ok", "body": "visit casinobonus now"},
                 {"title": "ok", "body": "x", "tags": ["buy-followers"]}):
        r = call(s, "POST", "/v1/posts", token=alice.access, json_body=body)
        assert_error(r, 400)
        assert "banned" in r.json()["error"]["message"], describe(r)
    assert call(s, "GET", "/v1/posts", params={"authorId": alice.id}).json()["total"] == 0
    # Words that merely contain a banned one pass.
    new_post(s, alice, title="antispamwordsmith", body="spamwords")


def test_draft_passes_until_published(env):
    s, alice, _ = env
    draft = new_post(s, alice, status="draft", title="spamword draft")
    r = call(s, "PUT", "/v1/posts/" + draft["id"], token=alice.access,
             json_body={"status": "published"})
    # The PUT sets only the status: the hook sees no banned text in it...
    assert r.status_code == 200, describe(r)
    # ...but an edit of a published post is checked.
    r = call(s, "PUT", "/v1/posts/" + draft["id"], token=alice.access,
             json_body={"body": "now with spamword"})
    assert_error(r, 400)
    got = call(s, "GET", "/v1/posts/" + draft["id"]).json()
    assert got["version"] == 2 and "spamword" not in got["body"]
    other = new_post(s, alice, status="draft")
    r = call(s, "PUT", "/v1/posts/" + other["id"], token=alice.access,
             json_body={"status": "published", "title": "spamword"})
    assert_error(r, 400)
    assert events(s, other["id"]) == []


def test_comments(env):
    s, alice, bob = env
    post = new_post(s, alice)
    base = "/v1/posts/%s/comments" % post["id"]
    assert_error(call(s, "POST", base, token=bob.access,
                      json_body={"body": "get casinobonus"}), 400)
    r = call(s, "POST", base, token=bob.access, json_body={"body": "shout"})
    assert r.status_code == 201 and r.json()["body"] == "SHOUT", describe(r)
    assert_error(call(s, "POST", base, token=bob.access, json_body={"body": "empty"}), 400,
                 "validation_failed")
    assert call(s, "GET", "/v1/posts/" + post["id"]).json()["commentCount"] == 1


def test_check_config_lists_the_content_hooks(env):
    s, _, _ = env
    rc, out, err = s.check_config()
    assert rc == 0, err
    assert "note: lua:" not in out, out
    hooks = out.split("hooks:\n", 1)[1]
    for name in ("before_post_publish", "before_comment_create"):
        assert re.search(r"^  %s +content +checks or changes " % name, hooks, re.M), out
