"""Retention (README.md "Configuration"): the sweep deletes rows older than `retention`;
a stream resuming from a swept id starts with `event: reset`, and the inbox's
Last-Modified moves with the sweep. Observed: the test waits for the rows to be gone."""
import time

import pytest

from notif_helpers import (CEILING, add_member, call, inbox, needs_services, new_project,
                           notif_env, open_stream, processed, register)

pytestmark = needs_services


@pytest.fixture(scope="module")
def env():
    with notif_env("ntfretain", config={"retention": "1s", "sweep_interval": "200ms"}) as e:
        yield e


def test_swept_point_gets_reset(env):
    db, srv = env
    owner, bob = register(srv), register(srv)
    p = new_project(srv, owner)
    add_member(srv, owner, p["id"], bob, "member")
    processed(db)
    first = call(srv, "GET", "/v1/notifications", token=bob.access)
    (n,) = first.json()["notifications"]
    deadline = time.time() + CEILING
    while inbox(srv, bob)["total"]:
        assert time.time() < deadline, "never swept"
        time.sleep(0.1)
    r = call(srv, "GET", "/v1/notifications", token=bob.access,
             headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert r.status_code == 200 and r.headers["Last-Modified"] != first.headers["Last-Modified"]
    s = open_stream(srv, bob, headers={"Last-Event-ID": n["id"]})
    assert [e["event"] for e in s.before_ready] == ["reset"]
    s.close()
