"""Authorization matrix of the reporting plugin, GENERATED over its routes: every GET
/openapi.json lists under /v1/reports is called by an anonymous client, a user who is not
a member, a viewer, a member, an owner and an admin (not a member), and the status is the
one the rules give: project reports for the project's members (any role) and admins,
404 for everyone else signed in; the site activity report for admins only (403). A route
the document has and RULES lacks (or the reverse) fails the test."""
import pytest
import requests

import openapi_check

from reporting_helpers import (
    REPORT_PATHS, add_member, get_report, make_admin, needs_services, new_project, register,
    reporting_env, shared_services, wait_consumed)

pytestmark = needs_services

CALLERS = ("anon", "stranger", "viewer", "member", "owner", "admin")
RULES = {
    "/v1/reports/projects/{id}/summary": "members",
    "/v1/reports/projects/{id}/burndown": "members",
    "/v1/reports/projects/{id}/flow": "members",
    "/v1/reports/activity": "admin",
}


def expected(path, caller):
    if caller == "anon":
        return 401
    if RULES[path] == "admin":
        return 200 if caller == "admin" else 403
    return 404 if caller == "stranger" else 200


@pytest.fixture(scope="module")
def env():
    with reporting_env("rep_matrix") as e:
        yield e


@pytest.fixture(autouse=True)
def _services():
    with shared_services():
        yield


def operations(srv):
    r = requests.get(srv.url("/openapi.json"), timeout=10)
    assert r.status_code == 200
    ops = []
    for path, item in r.json()["paths"].items():
        if path.startswith(REPORT_PATHS):
            ops += [(m.upper(), path) for m in item if m in ("get", "post", "put", "delete",
                                                             "patch")]
    return sorted(ops)


def test_openapi_document(env):
    """The served document validates, lists every route, and states the definitions and
    the representations of each report: one 200 response with a media type for each form
    the route serves (and the description names them too)."""
    srv = env[1]
    doc = requests.get(srv.url("/openapi.json"), timeout=10).json()
    openapi_check.validate(doc)
    openapi_check.assert_lists_every_route(srv, doc)
    summary = doc["paths"]["/v1/reports/projects/{id}/summary"]["get"]
    assert "last reopening" in summary["description"]
    assert "text/csv" in summary["description"]
    flow = doc["paths"]["/v1/reports/projects/{id}/flow"]["get"]
    assert "text/csv" in flow["description"] and "image/svg+xml" in flow["description"]
    schemas = doc["components"]["schemas"]
    forms = {"summary": ("application/json", "text/csv"),
             "burndown": ("application/json", "text/csv", "image/svg+xml"),
             "flow": ("application/json", "text/csv", "image/svg+xml")}
    paths = {"/v1/reports/projects/{id}/" + k: v for k, v in forms.items()}
    paths["/v1/reports/activity"] = forms["flow"]
    for path, types in paths.items():
        ok = doc["paths"][path]["get"]["responses"]["200"]
        assert sorted(ok["content"]) == sorted(types), (path, ok)
        for ctype, media in ok["content"].items():
            ref = media["schema"]["$ref"].rsplit("/", 1)[1]
            assert ref in schemas, (path, ref)
            if ctype != "application/json":
                assert schemas[ref]["type"] == "string", (path, ref)
        assert "text/csv" in ok["description"], (path, ok)


def test_every_route_has_a_rule(env):
    ops = operations(env[1])
    assert all(m == "GET" for m, _ in ops), ops
    assert {p for _, p in ops} == set(RULES)


def test_matrix(env):
    db, srv = env
    with shared_services():
        people = {k: register(srv) for k in ("owner", "member", "viewer", "stranger")}
        people["admin"] = make_admin(srv)
        p = new_project(srv, people["owner"])
        add_member(srv, people["owner"], p["id"], people["member"], "member")
        add_member(srv, people["owner"], p["id"], people["viewer"], "viewer")
        wait_consumed(db)
    failures = []
    for method, path in operations(srv):
        url = path.replace("{id}", p["id"])
        for caller in CALLERS:
            token = None if caller == "anon" else people[caller].access
            for accept in ("application/json", "text/csv"):
                r = get_report(srv, url, token, accept=accept)
                want = expected(path, caller)
                if r.status_code != want:
                    failures.append((path, caller, accept, r.status_code, want))
    assert not failures, failures
