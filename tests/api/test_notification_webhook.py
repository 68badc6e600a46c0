"""Webhooks of the notification plugin (issue 15 item 5): registration with the secret
shown once, signed deliveries the receiver verifies, retries with backoff, the delivery
log, SSRF refusals at registration and at every send, and the authorization matrix of
the delivery routes, generated from /openapi.json."""
import json
import time
import uuid

import pytest
import requests

from delivery_helpers import (Receiver, delivery_server, unsubscribe_token, verify_signature,
                              wait_sql)
from notif_helpers import (add_member, assert_error, call, create_database, describe,
                           drop_database, make_admin, needs_services, new_project, new_task,
                           processed, psql, register, shared_services)

pytestmark = needs_services

WEBHOOK_KEYS = {"id", "url", "description", "createdAt"}


class Env:
    def __init__(self, prefix, **conf):
        with shared_services():
            self.db = create_database(prefix)
        # No relay: these tests are about webhooks (the mail rows just wait).
        self.srv = delivery_server(self.db, 9, **conf)
        with shared_services():
            self.srv.start(timeout=30)

    def close(self):
        self.srv.cleanup()
        drop_database(self.db)


@pytest.fixture(scope="module")
def env():
    e = Env("ntfhook", webhook_allow_loopback="true")
    e.rx = Receiver()
    yield e
    e.rx.close()
    e.close()


@pytest.fixture(scope="module")
def strict():
    """A server without the test-only loopback allowance: production's rules."""
    e = Env("ntfhooks")
    yield e
    e.close()


def register_hook(srv, acct, url, **extra):
    body = {"url": url}
    body.update(extra)
    return call(srv, "POST", "/v1/notifications/webhooks", token=acct.access, json_body=body)


def assign(env, bob):
    owner = register(env.srv)
    p = new_project(env.srv, owner)
    add_member(env.srv, owner, p["id"], bob, "member")
    t = new_task(env.srv, owner, p["id"], assigneeId=bob.id)
    processed(env.db)
    return t


def test_register_list_get_delete(env):
    bob, other = register(env.srv), register(env.srv)
    r = register_hook(env.srv, bob, env.rx.url("/a"), description="chat bridge")
    assert r.status_code == 201, describe(r)
    doc = r.json()
    assert set(doc) == WEBHOOK_KEYS | {"secret"} and doc["secret"].startswith("whsec_")
    assert r.headers["Location"] == "/v1/notifications/webhooks/" + doc["id"]
    r = call(env.srv, "GET", "/v1/notifications/webhooks", token=bob.access)
    assert r.status_code == 200, describe(r)
    lst = r.json()
    assert lst["total"] == 1 and [w["id"] for w in lst["webhooks"]] == [doc["id"]]
    assert all(set(w) == WEBHOOK_KEYS for w in lst["webhooks"])  # never the secret again
    r = call(env.srv, "GET", "/v1/notifications/webhooks/" + doc["id"], token=bob.access)
    assert r.status_code == 200 and r.json()["description"] == "chat bridge", describe(r)
    # Someone else's webhook does not exist for them.
    for method in ("GET", "DELETE"):
        assert_error(call(env.srv, method, "/v1/notifications/webhooks/" + doc["id"],
                          token=other.access), 404)
    assert call(env.srv, "GET", "/v1/notifications/webhooks", token=other.access).json()["total"] == 0
    r = call(env.srv, "DELETE", "/v1/notifications/webhooks/" + doc["id"], token=bob.access)
    assert r.status_code == 204, describe(r)
    assert_error(call(env.srv, "GET", "/v1/notifications/webhooks/" + doc["id"],
                      token=bob.access), 404)
    assert_error(call(env.srv, "GET", "/v1/notifications/webhooks/not-a-uuid",
                      token=bob.access), 404)


def test_validation(env):
    bob = register(env.srv)
    for body in ({}, {"url": 5}, {"url": "https://x.test/", "extra": 1},
                 {"url": "https://x.test/", "description": "a\nb"}):
        assert_error(call(env.srv, "POST", "/v1/notifications/webhooks", token=bob.access,
                          json_body=body), 400, "validation_failed")
    for url in ("ftp://x.test/hook", "https://user:pw@x.test/", "not a url",
                "https://x.test/#f", "https://nonexistent.invalid/hook"):
        r = register_hook(env.srv, bob, url)
        assert_error(r, 400, "validation_failed", fields=("url",))


def test_idempotent_create(env):
    bob = register(env.srv)
    key = str(uuid.uuid4())
    h = {"Idempotency-Key": key}
    r1 = call(env.srv, "POST", "/v1/notifications/webhooks", token=bob.access, headers=h,
              json_body={"url": env.rx.url("/idem")})
    r2 = call(env.srv, "POST", "/v1/notifications/webhooks", token=bob.access, headers=h,
              json_body={"url": env.rx.url("/idem")})
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert call(env.srv, "GET", "/v1/notifications/webhooks", token=bob.access).json()["total"] == 1


def test_delivery_is_signed_and_logged(env):
    bob = register(env.srv)
    r = register_hook(env.srv, bob, env.rx.url("/signed"))
    assert r.status_code == 201, describe(r)
    hook = r.json()
    t = assign(env, bob)
    got = env.rx.wait(2, "/signed")  # project.member_added, then task.assigned
    by_type = {}
    for path, headers, body in got:
        assert headers["Content-Type"] == "application/json"
        assert verify_signature(hook["secret"], headers["X-Panthera-Signature"], body,
                                tolerance=600), headers
        # Any change to the body breaks the signature.
        assert not verify_signature(hook["secret"], headers["X-Panthera-Signature"], body + b" ")
        doc = json.loads(body)
        assert doc["type"] == "notification" and doc["webhookId"] == hook["id"]
        assert headers["X-Panthera-Delivery"] == doc["id"]
        by_type[doc["notification"]["type"]] = doc
    n = by_type["task.assigned"]["notification"]
    assert n["payload"]["taskId"] == t["id"]
    # The log: both delivered, once each.
    wait_sql(env.db, "SELECT count(*) FROM notification_webhook_delivery WHERE webhook_id = "
                     "'%s' AND state = 'delivered'" % hook["id"], "2", "delivered")
    r = call(env.srv, "GET", "/v1/notifications/webhooks/%s/deliveries" % hook["id"],
             token=bob.access)
    assert r.status_code == 200, describe(r)
    log = r.json()
    assert log["total"] == 2
    for d in log["deliveries"]:
        assert d["state"] == "delivered" and d["attempts"] == 1 and d["lastStatus"] == 200, d
        assert d["deliveredAt"] and d["nextAttemptAt"] is None
    assert {d["notificationId"] for d in log["deliveries"]} == {
        by_type[k]["notification"]["id"] for k in by_type}
    assert len(env.rx.wait(2, "/signed")) == 2


def test_failed_delivery_is_retried(env):
    bob = register(env.srv)
    hook = register_hook(env.srv, bob, env.rx.url("/flaky")).json()
    env.rx.statuses[:] = [500, 503]
    assign(env, bob)
    wait_sql(env.db, "SELECT count(*) FROM notification_webhook_delivery WHERE webhook_id = "
                     "'%s' AND state = 'delivered'" % hook["id"], "2", "delivered after retries")
    log = call(env.srv, "GET", "/v1/notifications/webhooks/%s/deliveries" % hook["id"],
               token=bob.access).json()
    assert sum(d["attempts"] for d in log["deliveries"]) == 4, log
    assert all(d["lastStatus"] == 200 for d in log["deliveries"]), log


def test_a_send_rechecks_the_address(env):
    """DNS rebinding: the check at registration passed, but by the send the endpoint
    points inside (simulated by changing the stored URL, as a changed DNS answer would):
    the send is refused, and the log says why."""
    bob = register(env.srv)
    hook = register_hook(env.srv, bob, env.rx.url("/rebind")).json()
    psql(env.db, "UPDATE notification_webhook SET url = 'https://169.254.169.254/latest' "
                 "WHERE id = '%s'" % hook["id"])
    assign(env, bob)
    wait_sql(env.db, "SELECT count(*) FROM notification_webhook_delivery WHERE webhook_id = "
                     "'%s' AND state = 'dead'" % hook["id"], "2", "refused at send")
    log = call(env.srv, "GET", "/v1/notifications/webhooks/%s/deliveries" % hook["id"],
               token=bob.access).json()
    assert all(d["lastError"] == "refused: link-local" for d in log["deliveries"]), log
    assert not env.rx.wait(0, "/rebind")


@pytest.mark.parametrize("url,why", [
    ("https://localhost/hook", "loopback"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[::ffff:169.254.169.254]/", "link-local"),
    ("https://10.1.2.3/hook", "private"),
    ("https://192.168.0.10/hook", "private"),
    ("https://100.64.0.1/hook", "shared address space"),
    ("https://[fd00:ec2::254]/", "unique local"),
    ("https://0.0.0.0/", "unspecified"),
])
def test_ssrf_refused_at_registration(strict, url, why):
    bob = register(strict.srv)
    r = register_hook(strict.srv, bob, url)
    assert_error(r, 400, "validation_failed", fields=("url",))
    assert r.json()["error"]["fields"]["url"] == "refused: " + why, r.json()


def test_http_only_to_loopback_and_only_with_the_allowance(env, strict):
    bob = register(strict.srv)
    r = register_hook(strict.srv, bob, "http://127.0.0.1:9/hook")
    assert_error(r, 400, "validation_failed", fields=("url",))
    bob = register(env.srv)
    r = register_hook(env.srv, bob, "http://8.8.8.8/hook")
    assert_error(r, 400, "validation_failed", fields=("url",))
    assert r.json()["error"]["fields"]["url"] == "refused: must be an https URL"
    # The allowance opens loopback only, never the metadata address.
    r = register_hook(env.srv, bob, "https://169.254.169.254/")
    assert_error(r, 400, "validation_failed", fields=("url",))


def test_loopback_allowance_warns_in_config_check(env, strict):
    rc, out, err = env.srv.check_config()
    assert rc == 0, err
    assert "webhook_allow_loopback is on" in out + err, out + err
    rc, out, err = strict.srv.check_config()
    assert rc == 0 and "webhook_allow_loopback" not in out + err, out + err


# ---- the authorization matrix of the delivery routes, generated from /openapi.json ----

CALLERS = ("anon", "owner", "other", "admin")
MINE = ("/v1/notifications/webhooks", "/v1/notifications/unsubscribe")


def _owner_only(ok):
    return lambda caller: ok if caller == "owner" else 404


RULES = {
    ("get", "/v1/notifications/webhooks"): (True, lambda c: 200),
    ("post", "/v1/notifications/webhooks"): (True, lambda c: 201),
    ("get", "/v1/notifications/webhooks/{id}"): (True, _owner_only(200)),
    ("delete", "/v1/notifications/webhooks/{id}"): (True, _owner_only(204)),
    ("get", "/v1/notifications/webhooks/{id}/deliveries"): (True, _owner_only(200)),
    # The token is the credential: whoever holds it, with or without a bearer.
    ("post", "/v1/notifications/unsubscribe"): (False, lambda c: 204),
    ("get", "/v1/notifications/unsubscribe"): (False, lambda c: 200),
}


def test_authorization_matrix(env):
    spec = requests.get(env.srv.url("/openapi.json"), timeout=30).json()
    ops = [(m, p) for p, item in spec["paths"].items() if p.startswith(MINE)
           for m in item if m in ("get", "post", "put", "patch", "delete")]
    assert set(ops) == set(RULES), set(ops) ^ set(RULES)
    admin = make_admin(env.srv)
    key = psql(env.db, "SELECT key FROM notification_delivery_key").strip()
    for method, path in sorted(ops):
        needs_auth, rule = RULES[(method, path)]
        for caller in CALLERS:
            owner, other = register(env.srv), register(env.srv)
            hook = register_hook(env.srv, owner, env.rx.url("/matrix")).json()
            token = {"anon": None, "owner": owner.access, "other": other.access,
                     "admin": admin.access}[caller]
            url = path.replace("{id}", hook["id"])
            params = None
            body = None
            if "unsubscribe" in path:
                params = {"token": unsubscribe_token(key, owner.id, "post.liked",
                                                     int(time.time()) + 600)}
            elif method == "post":
                body = {"url": env.rx.url("/matrix2")}
            want = 401 if needs_auth and caller == "anon" else rule(caller)
            h = {"Authorization": "Bearer " + token} if token else {}
            r = requests.request(method.upper(), env.srv.url(url), params=params, json=body,
                                 headers=h, timeout=30)
            assert r.status_code == want, (method, path, caller, r.status_code, r.text[:200])
