"""Media and the posts that hold them (plugins/content/README.md, "Media"): a post created
or changed with /v1/media/<id> in its body takes those of its author's uploads no post holds
yet; a media is as visible as its post (a draft's only to its author), one no post holds
only to its uploader; deleting the post deletes its media and drops their blob references,
and the store's sweep then leaves no blob without a reference (checked on the dir backend's
files against the media rows still recorded). Uploads no post took are removed after
media_unattached_ttl (media_sweep.c), their blobs with them.
"""
import glob
import os
import time

import pytest

from content_helpers import (
    assert_error, call, content_env, describe, needs_services, new_post, psql, register,
    upload)

pytestmark = needs_services
CEILING = 120  # seconds: only a hang reaches it (sweep every 1 s, grace 2 s)


@pytest.fixture(scope="module")
def env():
    with content_env("cntmp", storage={"sweep_interval": "1s", "sweep_grace": "2s"}) as (db, s):
        yield s, register(s), register(s)


@pytest.fixture(scope="module")
def short_ttl():
    """A server whose media sweep removes uploads no post took after 2 s."""
    with content_env("cntms", content={"media_unattached_ttl": "2s",
                                       "media_sweep_interval": "1s"},
                     storage={"sweep_interval": "1s", "sweep_grace": "2s"}) as (db, s):
        yield s, register(s)


def status(s, media, user=None):
    return call(s, "GET", media["url"], token=user.access if user else None).status_code


def blob_files(s):
    """The blob ids the dir store holds (<dir>/ab/abcdef..., refs and spool aside)."""
    root = os.path.join(s.tmp, "blobs")
    return {os.path.basename(p) for p in glob.glob(os.path.join(root, "??", "*"))
            if len(os.path.basename(p)) == 64}


def recorded_blobs(s):
    return set(psql(s.db, "SELECT DISTINCT blob_id FROM content_media").split())


def wait_no_orphans(s):
    """Poll until every blob in the store is one a media row still names."""
    end = time.time() + CEILING
    files = recorded = None
    while time.time() < end:
        files, recorded = blob_files(s), recorded_blobs(s)
        if files == recorded:
            return files
        time.sleep(0.2)
    raise AssertionError("orphan blobs remain: %s" % sorted(files - recorded))


def test_visibility_follows_the_post(env):
    s, alice, bob = env
    mine, theirs, loose = upload(s, alice), upload(s, bob), upload(s, alice)
    # Not held by a post: the uploader's alone.
    assert status(s, mine, alice) == 200
    assert status(s, mine, bob) == 404 and status(s, mine) == 404
    # A draft linking Alice's upload and Bob's: it takes only hers.
    post = new_post(s, alice, status="draft",
                    body="<img src=\"%s\"> and %s" % (mine["url"], theirs["url"].upper()
                                                       .replace("/V1/MEDIA/", "/v1/media/")))
    assert status(s, mine, alice) == 200 and status(s, mine, bob) == 404
    assert status(s, mine) == 404
    assert status(s, theirs, bob) == 200 and status(s, theirs, alice) == 404
    held = psql(s.db, "SELECT id FROM content_media WHERE post_id = '%s'" % post["id"]).split()
    assert held == [mine["id"]]
    # Published: anyone sees it.
    r = call(s, "PUT", "/v1/posts/" + post["id"], token=alice.access,
             json_body={"status": "published", "body": "now also %s" % loose["url"]})
    assert r.status_code == 200, describe(r)
    for m in (mine, loose):
        assert status(s, m) == 200 and status(s, m, bob) == 200
    # Bob linking Alice's media from his post does not take it from hers.
    other = new_post(s, bob, body="look %s" % mine["url"])
    assert psql(s.db, "SELECT count(*) FROM content_media WHERE post_id = '%s'"
                % other["id"]).strip() == "0"


def test_post_delete_takes_its_media_and_leaves_no_orphan_blob(env):
    s, alice, bob = env
    a, b, kept = upload(s, alice), upload(s, alice), upload(s, bob)
    post = new_post(s, alice, body="%s %s" % (a["url"], b["url"]))
    blobs = set(psql(s.db, "SELECT blob_id FROM content_media WHERE id IN ('%s', '%s')"
                     % (a["id"], b["id"])).split())
    assert len(blobs) == 2 and blobs <= blob_files(s)

    def refs(blob):
        return glob.glob(os.path.join(s.tmp, "blobs", "refs", blob[:2], blob, "*"))

    assert all(len(refs(blob)) == 1 for blob in blobs)
    r = call(s, "DELETE", "/v1/posts/" + post["id"], token=alice.access)
    assert r.status_code == 204, describe(r)
    for m in (a, b):
        assert_error(call(s, "GET", m["url"], token=alice.access), 404, "not_found")
    assert psql(s.db, "SELECT count(*) FROM content_media WHERE id IN ('%s', '%s')"
                % (a["id"], b["id"])).strip() == "0"
    # The references went with the 204 (the dir store keeps one file per reference).
    for blob in blobs:
        assert refs(blob) == []
    left = wait_no_orphans(s)
    assert not blobs & left
    assert status(s, kept, bob) == 200


def test_unattached_media_expire(short_ttl):
    s, alice = short_ttl
    loose, held = upload(s, alice), upload(s, alice)
    post = new_post(s, alice, body="with %s" % held["url"])
    end = time.time() + CEILING
    while status(s, loose, alice) != 404:
        assert time.time() < end, "the upload no post took was never removed"
        time.sleep(0.2)
    assert status(s, held, alice) == 200 and status(s, held) == 200
    assert psql(s.db, "SELECT post_id FROM content_media").split() == [post["id"]]
    files = wait_no_orphans(s)
    assert len(files) == 1
