"""Live channels across hosts (px_channel_*) through the streamkit plugin: an SSE stream
subscribed to a channel, messages published by a request, after a commit only, by a
pattern, from another pantherad sharing the Redis. What subscribers are told while Redis is stopped and once it
is back is in test_channels_outage.py (it needs Redis to itself).

The subscriber is a dedicated connection per worker (CLIENT LIST shows it subscribed), and
names live in the plugin's namespace "px:<db>:<plugin>:<name>". Nothing here asserts a
duration: each test waits for the event itself with a generous ceiling."""
import os
import subprocess
import time

import pytest
import requests

from panthera_server import Server
from services import pg_lock, redis_lock
from sse_client import SSE
from test_redis_auth import PASSWORD, private_redis  # noqa: F401 (a fixture)

REDIS_SOCKET = os.environ.get("PANTHERA_REDIS_SOCKET")
PGHOST = os.environ.get("PANTHERA_PGHOST")
pytestmark = pytest.mark.skipif(not REDIS_SOCKET, reason="PANTHERA_REDIS_SOCKET is unset")


def sections(pg=False):
    out = {"redis": {"address": "unix:" + (REDIS_SOCKET or "")}}
    if pg and PGHOST:
        out["postgres"] = {"conninfo": "host=%s port=%s dbname=%s user=%s" % (
            PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
            os.environ.get("PANTHERA_PGDATABASE", "panthera"),
            os.environ.get("PANTHERA_PGUSER", "panthera"))}
    return out


def redis_auth_cli(sock, *args):
    return subprocess.run(["redis-cli", "-s", sock, "--no-auth-warning", "-a", PASSWORD, *args],
                          capture_output=True, text=True, timeout=10).stdout


def redis_cli(*args):
    return subprocess.run(["redis-cli", "-s", REDIS_SOCKET, *args], capture_output=True,
                          text=True, timeout=10).stdout


@pytest.fixture(scope="module")
def server():
    s = Server(workers=2, plugins=("streamkit",), log_level="info", sections=sections(pg=True))
    with redis_lock(exclusive=False):
        s.start()
        yield s
        s.stop()
    s.cleanup()


def subscribed(port, query, timeout=20):
    """An SSE stream whose subscription Redis has confirmed."""
    s = SSE(port, "/v1/streamkit/sse?" + query)
    s.events_until(lambda e: e["event"] == "status" and e["data"] == "up", timeout=timeout)
    return s


def publish(server, channel, data, path="/v1/streamkit/publish", **params):
    return requests.post(server.url(path), params={"channel": channel, "data": data, **params},
                         timeout=10)


def test_message_reaches_every_subscriber_of_the_channel(server):
    streams = [subscribed(server.port, "channel=room") for _ in range(6)]
    other = subscribed(server.port, "channel=elsewhere")
    try:
        assert publish(server, "room", "hello room").status_code == 204
        for s in streams:
            ev = s.events_until(lambda e: e["event"] == "room")[-1]
            assert ev["data"] == "hello room" and ev["id"]
        assert publish(server, "elsewhere", "second").status_code == 204
        # Messages on one connection arrive in order: "elsewhere" sees its own, never "room".
        seen = other.events_until(lambda e: e["event"] == "elsewhere")
        assert all(e["event"] != "room" for e in seen)
    finally:
        for s in streams + [other]:
            s.close()


def test_one_subscriber_connection_per_worker_and_namespaced_names(server):
    streams = [subscribed(server.port, "channel=ns-%d" % i) for i in range(4)]
    streams += [subscribed(server.port, "channel=ns-0") for _ in range(3)]
    try:
        channels = redis_cli("PUBSUB", "CHANNELS", "px:*:streamkit:ns-*").split()
        assert sorted(set(channels)) == ["px:0:streamkit:ns-%d" % i for i in range(4)]
        # Several local subscribers to ns-0 share one Redis subscription per worker, so
        # Redis counts at most one subscriber per worker (2), not 4.
        counts = redis_cli("PUBSUB", "NUMSUB", "px:0:streamkit:ns-0").split()
        assert 1 <= int(counts[1]) <= 2, counts
        # A raw PUBLISH on the namespaced name is what px_channel_publish sends.
        redis_cli("PUBLISH", "px:0:streamkit:ns-1", "from outside")
        ev = streams[1].events_until(lambda e: e["event"] == "ns-1")[-1]
        assert ev["data"] == "from outside"
    finally:
        for s in streams:
            s.close()
    # The owners ended: their subscriptions went with them.
    end = time.time() + 20
    while time.time() < end and redis_cli("PUBSUB", "CHANNELS", "px:*:streamkit:ns-*").split():
        time.sleep(0.05)
    assert redis_cli("PUBSUB", "CHANNELS", "px:*:streamkit:ns-*").split() == []


def test_pattern_subscription(server):
    s = subscribed(server.port, "channel=user.*&pattern=1")
    try:
        assert publish(server, "user.42", "for 42").status_code == 204
        assert publish(server, "team.1", "not for us").status_code == 204
        assert publish(server, "user.7", "for 7").status_code == 204
        events = s.events_until(lambda e: e["event"] == "user.7")
        got = [(e["event"], e["data"]) for e in events if e["event"] not in ("hello", "status")]
        assert got == [("user.42", "for 42"), ("user.7", "for 7")]
    finally:
        s.close()


@pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
def test_publish_on_commit_only(server):
    with pg_lock(exclusive=False):
        s = subscribed(server.port, "channel=txn")
        try:
            path = "/v1/streamkit/publish-txn"
            assert publish(server, "txn", "rolled back", path, rollback="1").status_code == 204
            assert publish(server, "txn", "committed", path).status_code == 204
            events = s.events_until(lambda e: e["event"] == "txn")
            assert [e["data"] for e in events if e["event"] == "txn"] == ["committed"]
        finally:
            s.close()


@pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
def test_commit_hooks_are_heard_before_the_messages_in_either_order(server):
    """px_pg_on_commit's hooks run before px_channel_publish_on_commit's messages, whichever
    was added first; neither on rollback."""
    with pg_lock(exclusive=False):
        s = subscribed(server.port, "channel=txnorder")
        try:
            path = "/v1/streamkit/publish-txn"
            assert publish(server, "txnorder", "rolled back", path, hook="first",
                           rollback="1").status_code == 204
            for when in ("first", "last"):
                assert publish(server, "txnorder", "message, hook added " + when, path,
                               hook=when).status_code == 204
            events = s.events_until(lambda e: e["data"] == "message, hook added last")
            assert [e["data"] for e in events if e["event"] == "txnorder"] == [
                "hook", "message, hook added first", "hook", "message, hook added last"]
        finally:
            s.close()


def test_publish_when_redis_is_not_configured_is_503(make_server):
    s = make_server(workers=1, plugins=("streamkit",))
    s.start()
    r = publish(s, "x", "y")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    st = SSE(s.port, "/v1/streamkit/sse")
    try:
        ev = st.events_until(lambda e: e["event"] == "nochannel")[-1]
        assert ev["data"] == "-8"  # PX_EUNAVAIL
    finally:
        st.close()


def test_two_hosts_sharing_redis():
    a = Server(workers=1, plugins=("streamkit",), sections=sections())
    b = Server(workers=1, plugins=("streamkit",), sections=sections())
    with redis_lock(exclusive=False):
        a.start()
        b.start()
        try:
            s = subscribed(b.port, "channel=cluster")
            try:
                assert publish(a, "cluster", "from host A").status_code == 204
                ev = s.events_until(lambda e: e["event"] == "cluster")[-1]
                assert ev["data"] == "from host A"
            finally:
                s.close()
        finally:
            a.stop()
            b.stop()
    a.cleanup()
    b.cleanup()


def test_subscriber_sends_auth_and_names_carry_the_database(private_redis):
    s = Server(workers=1, plugins=("streamkit",), log_level="info", sections={
        "redis": {"address": "unix:" + private_redis, "password": PASSWORD, "database": "3"}})
    s.start()
    try:
        st = subscribed(s.port, "channel=authed")
        try:
            assert publish(s, "authed", "behind a password").status_code == 204
            ev = st.events_until(lambda e: e["event"] == "authed")[-1]
            assert ev["data"] == "behind a password"
            # Pub/sub ignores databases: the name carries it, so deployments on other
            # databases of the same Redis never hear each other.
            assert "px:3:streamkit:authed" in redis_auth_cli(private_redis, "PUBSUB", "CHANNELS")
        finally:
            st.close()
    finally:
        s.stop()
    s.cleanup()


def test_subscriber_refused_by_redis_is_told_down_and_the_password_stays_out_of_logs(
        private_redis):
    s = Server(workers=1, plugins=("streamkit",), log_level="debug", sections={
        "redis": {"address": "unix:" + private_redis, "password": "wrong-password"}})
    s.start()
    try:
        st = SSE(s.port, "/v1/streamkit/sse?channel=refused")
        try:
            st.events_until(lambda e: e["event"] == "status" and e["data"] == "down", timeout=30)
        finally:
            st.close()
        assert "wrong-password" not in s.error_log()
        assert s.running()
    finally:
        s.stop()
    s.cleanup()


def test_unsubscribe_from_inside_a_delivery(server):
    leaver = subscribed(server.port, "channel=leave&unsub=1")
    stayer = subscribed(server.port, "channel=leave")
    try:
        assert publish(server, "leave", "first").status_code == 204
        events = leaver.events_until(lambda e: e["event"] == "leave")
        assert [e["event"] for e in events[-2:]] == ["left", "leave"]
        assert events[-1]["data"] == "first"
        assert publish(server, "leave", "second").status_code == 204
        stayer.events_until(lambda e: e["event"] == "leave" and e["data"] == "second")
        # The stayer has "second"; the leaver must never get it. (A negative check: it
        # cannot fail falsely, only miss a late delivery, and "second" reached the stayer
        # already.)
        try:
            more = leaver.next_event(timeout=1)
        except TimeoutError:
            more = None
        assert more is None or more["event"] != "leave", more
    finally:
        leaver.close()
        stayer.close()
