"""[redis] username, password and database: every new connection sends AUTH and SELECT
before anything else; a refused AUTH keeps the client down (and /readyz says so) without
the password ever reaching a log line. Runs its own password-protected redis-server on a
unix socket, so the shared one is not touched."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from panthera_server import CEILING, Server
from services import pg_lock

PGHOST = os.environ.get("PANTHERA_PGHOST")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = [
    pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL"),
    pytest.mark.skipif(not REDIS_SERVER, reason="redis-server is not installed"),
]
PASSWORD = "s3cret-redis-password"


@pytest.fixture(scope="module")
def private_redis():
    d = tempfile.mkdtemp(prefix="px-redis-auth-")
    sock = os.path.join(d, "redis.sock")
    proc = subprocess.Popen([REDIS_SERVER, "--port", "0", "--unixsocket", sock,
                             "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
                             "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 10
    while not os.path.exists(sock) and time.time() < end:
        time.sleep(0.05)
    assert os.path.exists(sock), "redis-server did not start"
    yield sock
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(d, ignore_errors=True)


def cli(sock, *args, db=0):
    r = subprocess.run(["redis-cli", "-s", sock, "--no-auth-warning", "-a", PASSWORD,
                        "-n", str(db), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def server_with(sock, **redis):
    conninfo = "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))
    return Server(workers=1, plugins=("pgkit",),
                  sections={"postgres": {"conninfo": conninfo},
                            "redis": dict({"address": "unix:" + sock}, **redis)})


def wait_ready(s, want, seconds=CEILING):
    end = time.time() + max(seconds, CEILING)
    while True:
        r = requests.get(s.url("/readyz"), timeout=5)
        if r.status_code == want or time.time() > end:
            return r
        time.sleep(0.1)


@pytest.mark.parametrize("where", ["inline", "file"])
def test_auth_and_database(private_redis, tmp_path, where):
    if where == "file":  # the main config can stay world-readable
        secret = tmp_path / "redis_password"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o600)
        s = server_with(private_redis, password_file=str(secret), database="5")
    else:
        s = server_with(private_redis, password=PASSWORD, database="5")
    with pg_lock(exclusive=False):
        s.start()
        try:
            assert wait_ready(s, 200).status_code == 200
            r = requests.put(s.url("/v1/pgkit/redis/px-auth-key"), data=b"in-db-5", timeout=5)
            assert r.status_code == 200, r.text
            assert cli(private_redis, "GET", "px-auth-key", db=5) == "in-db-5"
            assert cli(private_redis, "EXISTS", "px-auth-key", db=0) == "0"
            r = requests.get(s.url("/v1/pgkit/redis/px-auth-key"), timeout=5)
            assert r.status_code == 200 and r.json()["value"] == "in-db-5"
            # Redis restarting is not tested here; every new connection repeats the
            # handshake: kill the client's connection and the next command still lands in 5.
            cli(private_redis, "CLIENT", "KILL", "TYPE", "normal")
            assert wait_ready(s, 200).status_code == 200
            requests.put(s.url("/v1/pgkit/redis/px-auth-key2"), data=b"again", timeout=5)
            assert cli(private_redis, "GET", "px-auth-key2", db=5) == "again"
        finally:
            s.stop()
            s.cleanup()


def test_wrong_password_keeps_redis_down_and_is_never_logged(private_redis):
    wrong = "not-the-password-4711"
    s = server_with(private_redis, password=wrong)
    with pg_lock(exclusive=False):
        s.start()
        try:
            r = wait_ready(s, 503)
            assert r.status_code == 503 and r.json()["checks"]["redis"] == "down", r.text
            # Other routes do not need Redis and keep working.
            r = requests.get(s.url("/v1/pgkit/echo"), params={"v": "x"}, timeout=5)
            assert r.status_code == 200
            log = s.wait_error_log("Redis refused AUTH")
            assert wrong not in log
        finally:
            s.stop()
            s.cleanup()


def test_acl_username_against_a_real_acl_user(private_redis):
    """[redis] username is sent as AUTH username password: an ACL user that may only touch
    its own keys is served for them, and one with the wrong password is refused."""
    user, secret = "px-acl-user", "acl-password-" + str(os.getpid())
    cli(private_redis, "ACL", "SETUSER", user, "reset", "on", ">" + secret, "~px-acl:*",
        "+@all")
    try:
        s = server_with(private_redis, username=user, password=secret)
        with pg_lock(exclusive=False):
            s.start()
            try:
                assert wait_ready(s, 200).status_code == 200
                r = requests.put(s.url("/v1/pgkit/redis/px-acl:key"), data=b"as-acl-user",
                                 timeout=CEILING)
                assert r.status_code == 200, r.text
                assert cli(private_redis, "GET", "px-acl:key") == "as-acl-user"
                # The connection is the ACL user's: a key outside its pattern is refused.
                r = requests.put(s.url("/v1/pgkit/redis/other-key"), data=b"x", timeout=CEILING)
                assert r.status_code >= 400, r.text
                assert cli(private_redis, "EXISTS", "other-key") == "0"
            finally:
                s.stop()
                s.cleanup()
        s = server_with(private_redis, username=user, password="not-" + secret)
        with pg_lock(exclusive=False):
            s.start()
            try:
                r = wait_ready(s, 503)
                assert r.status_code == 503 and r.json()["checks"]["redis"] == "down", r.text
                assert "Redis refused AUTH" in s.wait_error_log("Redis refused AUTH")
            finally:
                s.stop()
                s.cleanup()
    finally:
        cli(private_redis, "ACL", "DELUSER", user)


def test_username_without_password_is_a_config_error(private_redis):
    s = server_with(private_redis, username="panthera")
    try:
        rc, out, err = s.check_config()
        assert rc != 0
        assert "username needs a password" in out + err
        assert "%s:" % s.conf_path in out + err  # file:line
    finally:
        s.cleanup()
