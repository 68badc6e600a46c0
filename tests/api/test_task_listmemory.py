"""Task lists answered from a worker's memory alone (plugins/task/generation.c): a page and
the caller's role, stamped with the host's generation, are served without PostgreSQL
while no write of the plugin committed since. What must hold: every kind of write shows
in the very next list on either worker (the writer's bump happens before its answer); a
member removed, or a project deleted, is 404 at once on either worker; a stranger never
gets a page or a 304; another host's message on the channel "list" drops what is
stamped; while the channel is down nothing is served from memory.

list_cache_ttl is 600 s here, so only the generation can make a stamped page go: a
mechanism that failed to bump would serve the old page and fail these tests. Changes made
behind the server's back (psql; the trigger moves the list version, no worker hears of
it) show what memory answers. Which worker serves a connection is read from /proc
(worker_pin.py); task_list_memory_hits_total says whether an answer came from memory."""
import os
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from task_helpers import _services, people, srv  # noqa: F401 (shared fixtures)
from task_helpers import (
    add_member, needs_services, new_project, new_task, psql, register, task_env,
    task_metric)
from worker_pin import Pinned, pinned_pair

pytestmark = needs_services
CEILING = 60  # seconds: only a hang reaches it
TTL = {"list_cache_ttl": "600s"}


@pytest.fixture(scope="module")
def env():
    with task_env("task_listmem", config=TTL, workers=2) as e:
        yield e


def memory_hits(s):
    return task_metric(s, "task_list_memory_hits_total")


def tasks_path(pid):
    return "/v1/projects/%s/tasks" % pid


def listed(conn, who, pid):
    return conn.get(tasks_path(pid), who.access, limit=50, sort="rank")


def from_memory(conn, who, pid):
    """List until an answer came from the worker's memory (its channel is up, the page and
    the caller's role are stamped with the current generation); that answer."""
    end = time.monotonic() + CEILING
    while True:
        before = memory_hits(conn.s)
        doc = listed(conn, who, pid)
        if memory_hits(conn.s) == before + 1:
            return doc
        assert time.monotonic() < end, "the worker never answered from memory"
        time.sleep(0.05)


def status_of(conn, who, pid, headers=None):
    r, _ = conn.raw("GET", tasks_path(pid), who.access, headers=headers, limit=50, sort="rank")
    return r.status


def by_id(doc, task):
    return next((t for t in doc["tasks"] if t["id"] == task["id"]), None)


def test_every_write_shows_at_once_on_either_worker(srv, people):
    owner, member = people["owner"], people["member"]
    pid = new_project(srv, owner)["id"]
    add_member(srv, owner, pid, member, "member")
    tasks = [new_task(srv, owner, pid, title="task %d" % i) for i in range(4)]
    a, b = pinned_pair(srv)

    def create(w):
        # With an Idempotency-Key: answered by px_pg_commit_respond, bumped all the same.
        r, raw = w.raw("POST", "/v1/projects/%s/tasks" % pid, member.access,
                       {"title": "created"}, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status == 201, raw

    def order(doc):
        return [t["id"] for t in doc["tasks"]]

    writes = [
        ("create", create,
         lambda d: [t["title"] for t in d["tasks"]].count("created") == 1),
        ("update", lambda w: w.request("PUT", "/v1/tasks/%s" % tasks[0]["id"], member.access,
                                       {"title": "renamed"}),
         lambda d: by_id(d, tasks[0])["title"] == "renamed"),
        ("dependency", lambda w: w.request("PUT", "/v1/tasks/%s" % tasks[1]["id"],
                                           member.access, {"dependsOn": [tasks[2]["id"]]}),
         lambda d: by_id(d, tasks[1])["dependsOn"] == [tasks[2]["id"]]),
        ("move", lambda w: w.request("POST", "/v1/tasks/%s/move" % tasks[3]["id"],
                                     member.access, {"before": tasks[0]["id"]}),
         lambda d: order(d).index(tasks[3]["id"]) < order(d).index(tasks[0]["id"])),
        ("delete", lambda w: w.request("DELETE", "/v1/tasks/%s" % tasks[2]["id"], owner.access),
         lambda d: by_id(d, tasks[2]) is None and by_id(d, tasks[1])["dependsOn"] == []),
    ]
    try:
        for n, (name, write, seen) in enumerate(writes):
            writer, reader = (a, b) if n % 2 == 0 else (b, a)
            # Both workers answer this list from memory, as it was before the write.
            for c in (a, b):
                assert not seen(from_memory(c, member, pid)), name
            write(writer)
            assert seen(listed(reader, member, pid)), (name, "the other worker")
            assert seen(listed(writer, member, pid)), (name, "the writer's worker")
    finally:
        a.close()
        b.close()


def test_removed_members_and_strangers_get_404_on_either_worker(srv, people):
    owner, member, viewer = people["owner"], people["member"], people["viewer"]
    stranger, admin = people["stranger"], people["admin"]
    pid = new_project(srv, owner)["id"]
    add_member(srv, owner, pid, member, "member")
    add_member(srv, owner, pid, viewer, "viewer")
    new_task(srv, owner, pid, title="secret")
    a, b = pinned_pair(srv)
    try:
        for c in (a, b):
            for who in (member, viewer, admin):
                from_memory(c, who, pid)
        r, _ = a.raw("GET", tasks_path(pid), member.access, limit=50, sort="rank")
        etag = r.getheader("ETag")
        # A stranger: never the page nor a 304, though both workers hold it.
        for c in (a, b):
            for headers in (None, {"If-None-Match": etag}):
                assert status_of(c, stranger, pid, headers) == 404
        # A member removed on one worker is 404 on the other at once, and on the first.
        a.request("DELETE", "/v1/projects/%s/members/%s" % (pid, member.id), owner.access)
        for c in (b, a):
            for headers in (None, {"If-None-Match": etag}):
                assert status_of(c, member, pid, headers) == 404
        # A project deleted: 404 for everyone at once, an admin too.
        for c in (a, b):
            from_memory(c, viewer, pid)
            from_memory(c, admin, pid)
        b.request("DELETE", "/v1/projects/%s" % pid, owner.access)
        for c in (a, b):
            assert status_of(c, viewer, pid) == 404
            assert status_of(c, admin, pid) == 404
    finally:
        a.close()
        b.close()


def behind_the_back(db, task, title):
    """A change no worker hears of (its list version moves in PostgreSQL)."""
    psql(db, "UPDATE task_tasks SET title = '%s' WHERE id = '%s'" % (title, task["id"]))


def list_channels():
    p = subprocess.run(["redis-cli", "-s", os.environ["PANTHERA_REDIS_SOCKET"], "PUBSUB",
                        "CHANNELS", "px:*:task:list"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_another_hosts_message_drops_what_is_stamped(env, people):
    db, s = env
    owner = people["owner"]
    pid = new_project(s, owner)["id"]
    task = new_task(s, owner, pid, title="here")
    a, b = pinned_pair(s)
    try:
        for c in (a, b):
            from_memory(c, owner, pid)
        behind_the_back(db, task, "elsewhere")
        # Nobody told the workers: memory still answers the page as it was.
        for c in (a, b):
            assert by_id(from_memory(c, owner, pid), task)["title"] == "here"
        channels = list_channels()
        assert channels, "nobody subscribed to the list channel"
        for name in channels:
            p = subprocess.run(["redis-cli", "-s", os.environ["PANTHERA_REDIS_SOCKET"],
                                "PUBLISH", name, "another-host/1"], capture_output=True,
                               text=True, timeout=10)
            assert p.returncode == 0, p.stderr
        for c in (a, b):
            end = time.monotonic() + CEILING
            while by_id(listed(c, owner, pid), task)["title"] != "elsewhere":
                assert time.monotonic() < end, "the channel message never dropped the page"
                time.sleep(0.05)
    finally:
        a.close()
        b.close()


class OwnRedis:
    """A redis-server of this test alone, on a unix socket, to stop and start again."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="task-listmem-redis-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--save", "",
             "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        end = time.monotonic() + CEILING
        while subprocess.run(["redis-cli", "-s", self.sock, "PING"], capture_output=True,
                             text=True).stdout.strip() != "PONG":
            assert time.monotonic() < end, "redis-server never answered"
            time.sleep(0.05)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=CEILING)
            self.proc = None


def test_nothing_is_served_from_memory_while_the_channel_is_down():
    redis = OwnRedis()
    redis.start()
    try:
        with task_env("task_listmem_down", config=TTL, workers=1,
                      redis="unix:" + redis.sock) as (db, s):
            owner = register(s)
            pid = new_project(s, owner)["id"]
            task = new_task(s, owner, pid, title="before")
            c = Pinned(s)
            try:
                from_memory(c, owner, pid)
                redis.stop()
                behind_the_back(db, task, "while down")
                # Only PostgreSQL can show this change: memory would answer "before" for
                # 600 s. Polled while the worker notices the connection is gone.
                end = time.monotonic() + CEILING
                while by_id(listed(c, owner, pid), task)["title"] != "while down":
                    assert time.monotonic() < end, "a stamped page was served with no channel"
                    time.sleep(0.05)
                hits = memory_hits(s)
                for _ in range(3):
                    assert by_id(listed(c, owner, pid), task)["title"] == "while down"
                assert memory_hits(s) == hits
                # Back: memory answers again, and not what was stamped before the outage.
                redis.start()
                assert by_id(from_memory(c, owner, pid), task)["title"] == "while down"
            finally:
                c.close()
    finally:
        redis.stop()


def test_a_host_keeping_nothing_still_tells_the_others_of_its_writes():
    """list_cache_ttl = 0: this host answers every list from PostgreSQL, so it subscribes
    to nothing (PX_GENERATION_PUBLISH_ONLY), but hosts that keep pages must still hear its
    writes on the channel "list"."""
    redis = OwnRedis()
    redis.start()
    try:
        with task_env("task_listmem_pub", config={"list_cache_ttl": "0"}, workers=1,
                      redis="unix:" + redis.sock) as (db, s):
            owner = register(s)
            pid = new_project(s, owner)["id"]
            p = subprocess.run(["redis-cli", "-s", redis.sock, "PUBSUB", "CHANNELS",
                                "px:*:task:list"], capture_output=True, text=True, timeout=10)
            assert p.returncode == 0 and p.stdout.split() == [], p.stdout + p.stderr
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.settimeout(CEILING)  # only a hang reaches it
            try:
                listener.connect(redis.sock)
                listener.sendall(b"PSUBSCRIBE px:*:task:list\r\n")
                heard = b""
                while b"psubscribe" not in heard:
                    heard += listener.recv(4096)
                new_task(s, owner, pid, title="published")
                # The message names this host: "<hostname>/<master pid>".
                origin = (socket.gethostname() + "/").encode()
                while b"pmessage" not in heard or origin not in heard:
                    chunk = listener.recv(4096)
                    assert chunk, "redis closed the subscriber"
                    heard += chunk
            finally:
                listener.close()
    finally:
        redis.stop()
