"""Authorization matrix of the notification plugin, GENERATED over its routes: every
operation /openapi.json lists under the tag "notifications" is called by each caller —
anonymous, the notification's recipient, another user and an admin — on a fresh
notification. The expected status comes from the rules of API.md "Notifications" (RULES
below, one per route): a notification exists only for its recipient (anyone else, an
admin included, gets 404 for its id), every route needs a token. A route without a rule
fails the test, so a new route cannot slip past the matrix."""
import pytest
import requests

from notif_helpers import (add_member, call, describe, inbox, make_admin, needs_services,
                           new_project, notif_env, open_stream, processed, register)

pytestmark = needs_services

CALLERS = ("anon", "recipient", "other", "admin")


def _own(ok):
    return lambda caller: ok if caller == "recipient" else 404


# (method, OpenAPI path) -> (request body or None, rule(caller with a token) -> status).
RULES = {
    ("get", "/v1/notifications"): (None, lambda c: 200),
    ("post", "/v1/notifications/{id}/read"): (None, _own(204)),
    ("post", "/v1/notifications/read-all"): ({}, lambda c: 204),
    ("get", "/v1/notifications/unread-count"): (None, lambda c: 200),
    ("post", "/v1/notifications/stream-tickets"): (None, lambda c: 200),
    ("get", "/v1/notifications/stream"): (None, lambda c: 200),
    ("get", "/v1/notifications/preferences"): (None, lambda c: 200),
    ("put", "/v1/notifications/preferences"): (
        {"mention": {"inApp": True, "email": "daily"}}, lambda c: 200),
}


@pytest.fixture(scope="module")
def env():
    with notif_env("ntfmatrix") as (db, s):
        doc = requests.get(s.url("/openapi.json"), timeout=10).json()
        ops = sorted((m, path) for path, item in doc["paths"].items()
                     for m, op in item.items()
                     if isinstance(op, dict) and "notifications" in op.get("tags", []))
        users = {"recipient": register(s), "other": register(s), "admin": make_admin(s)}
        yield db, s, ops, users


def test_every_route_has_a_rule(env):
    db, s, ops, users = env
    assert ops, "no notification routes in /openapi.json"
    assert set(ops) == set(RULES), set(ops) ^ set(RULES)


def fresh_notification(s, db, recipient):
    owner = register(s)
    p = new_project(s, owner)
    add_member(s, owner, p["id"], recipient, "viewer")
    processed(db)
    return inbox(s, recipient)["notifications"][0]["id"]


@pytest.mark.parametrize("caller", CALLERS)
def test_matrix(env, caller):
    db, s, ops, users = env
    token = users[caller].access if caller != "anon" else None
    for method, path in ops:
        body, rule = RULES[(method, path)]
        want = 401 if caller == "anon" else rule(caller)
        url = path.replace("{id}", fresh_notification(s, db, users["recipient"]))
        if path.endswith("/stream"):
            st = open_stream(s, users[caller] if token else None, ready=False)
            got = st.status
            st.close()
        else:
            r = call(s, method.upper(), url, token=token, json_body=body)
            got = r.status_code
            if got == 401:
                assert r.headers.get("WWW-Authenticate") == "Bearer"
        assert got == want, "%s %s as %s: %s, expected %s" % (method, path, caller, got, want)
