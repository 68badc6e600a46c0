"""The user plugin's Redis profile cache as stored (plugins/user/cache.c): values carry the
plugin's tag, GET /v1/users/me answers the cached bytes as they are, and a value that is
not the plugin's (no tag: another writer, an older format) is a miss that PostgreSQL
answers and the plugin writes back in its own format."""
import json
import os
import subprocess
import time

import pytest

from user_helpers import (assert_user, call, module_env, needs_services, register,
                          shared_services)

pytestmark = needs_services

REDIS_SOCKET = os.environ.get("PANTHERA_REDIS_SOCKET", "")


def redis(*args):
    r = subprocess.run(["redis-cli", "-s", REDIS_SOCKET, "--raw", *args],
                       capture_output=True, timeout=10, check=True)
    return r.stdout.decode().rstrip("\n")


@pytest.fixture(scope="module")
def srv():
    with module_env("usr_cache") as (_, s):
        yield s


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


def key(uid):
    return "panthera:user:profile:" + uid


def wait_cached(uid):
    end = time.time() + 30
    while not redis("GET", key(uid)):
        assert time.time() < end, "the profile was never cached"
        time.sleep(0.05)
    return redis("GET", key(uid))


def test_me_from_cache_is_the_stored_bytes(srv):
    a = register(srv)
    first = call(srv, "GET", "/v1/users/me", token=a.access)
    assert first.status_code == 200, first.text
    stored = wait_cached(a.id)
    assert stored.startswith("u1:"), stored[:20]
    assert json.loads(stored[3:]) == first.json()
    second = call(srv, "GET", "/v1/users/me", token=a.access)
    assert second.status_code == 200
    assert second.content == stored[3:].encode()
    assert second.headers["Content-Type"] == "application/json; charset=utf-8"
    assert_user(second.json(), username=a.username)


def test_a_value_without_the_tag_is_a_miss_and_is_rewritten(srv):
    a = register(srv)
    call(srv, "GET", "/v1/users/me", token=a.access)
    wait_cached(a.id)
    # Another writer's value: well-formed JSON claiming another role, without the tag.
    forged = json.dumps({"id": a.id, "username": "someone-else", "role": "admin"})
    redis("SET", key(a.id), forged)
    r = call(srv, "GET", "/v1/users/me", token=a.access)
    assert r.status_code == 200, r.text
    assert_user(r.json(), username=a.username, role="user")
    end = time.time() + 30
    while not redis("GET", key(a.id)).startswith("u1:"):
        assert time.time() < end, "the foreign value was never replaced"
        time.sleep(0.05)
    r = call(srv, "GET", "/v1/users/%s" % a.id, token=a.access)
    assert r.status_code == 200
    assert_user(r.json(), username=a.username, role="user")
