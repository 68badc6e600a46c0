"""The per-account login throttle while Redis is away (issue 11 item 6). It counts in
PostgreSQL (limit.c says why: it once counted in Redis with this table as a fallback, and
the two stores split the count under load), so Redis being away changes nothing.

The server is given a Redis address nobody listens on, so the shared Redis of the other
tests is never touched. With login_limit 3, three wrong passwords are 401 and the next
login, the right password included, is 429 with Retry-After, whichever of the two
workers each request reaches (fresh connections); another account is unaffected. Before
the fix, all of them were 401.
"""
import pytest
import requests

from user_helpers import (
    create_database, drop_database, needs_services, register, shared_services,
    strong_password, uniq, user_server)

pytestmark = needs_services


@pytest.fixture(scope="module")
def srv():
    with shared_services():
        db = create_database("usr_thrpg")
    s = user_server(db, config={"scrypt_n": "16384", "login_limit": "3",
                                "login_window": "60s"})
    s.sections["redis"] = {"address": "unix:/nonexistent/panthera-redis.sock"}
    s.write_conf()
    try:
        with shared_services():
            s.start(timeout=30)
        yield s
    finally:
        s.cleanup()
        drop_database(db)


def login(s, username, password):
    return requests.post(s.url("/v1/auth/login"), json={"username": username,
                                                         "password": password},
                         headers={"Connection": "close"}, timeout=30)


def test_failed_logins_are_throttled_without_redis(srv):
    pw = strong_password()
    a = register(srv, password=pw)
    other_pw = strong_password()
    b = register(srv, password=other_pw)
    codes = [login(srv, a.username, "wrong-" + pw).status_code for _ in range(3)]
    assert codes == [401] * 3, codes
    r = login(srv, a.username, pw)
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.json()["error"]["code"] == "rate_limited"
    assert login(srv, a.username, "wrong-" + pw).status_code == 429
    # Another account is not held back, and its successes do not count.
    for _ in range(5):
        assert login(srv, b.username, other_pw).status_code == 200


def test_successful_logins_give_their_attempt_back(srv):
    pw = strong_password()
    a = register(srv, username=uniq("ok"), password=pw)
    for _ in range(6):
        assert login(srv, a.username, pw).status_code == 200
    assert [login(srv, a.username, "x" + pw).status_code for _ in range(3)] == [401] * 3
    assert login(srv, a.username, pw).status_code == 429
