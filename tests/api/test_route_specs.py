"""Routes from specs (px_route_add, px_schema): the host validates a body, query and path
parameters by the schemas the plugin registered before its handler runs, and describes
every route of every plugin in /openapi.json, which a real OpenAPI 3.0 validator accepts.
The speckit test plugin is built twice (speckit, speckit_b): both have a "Comment"."""
import pytest
import requests

import openapi_check
from panthera_server import Server

PLUGINS = ("hello", "testkit", "speckit", "speckit_b")
UUID = "123e4567-e89b-12d3-a456-426614174000"


@pytest.fixture(scope="module")
def spec_server():
    s = Server(workers=1, plugins=PLUGINS)
    s.start()
    yield s
    s.cleanup()


def post(s, path, body, **kw):
    return requests.post(s.url(path), json=body, timeout=10, **kw)


def assert_invalid(r, *fields):
    assert r.status_code == 400, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "validation_failed", err
    assert sorted(err["fields"]) == sorted(fields), err
    assert all(isinstance(v, str) and v for v in err["fields"].values()), err


# One passing and one failing body per keyword of the subset; the 400 names the field.
KEYWORDS = [
    ("type", {"rating": 3}, {"rating": "3"}, "rating"),
    ("required", {}, {"body": None}, "body"),  # body given below unless the case removes it
    ("additionalProperties", {"tags": []}, {"author": "x"}, "author"),
    ("enum", {"status": "open"}, {"status": "opened"}, "status"),
    ("minLength", {"body": "x"}, {"body": ""}, "body"),
    ("maxLength", {"body": "y" * 200}, {"body": "y" * 201}, "body"),
    ("pattern", {"slug": "a-b-9"}, {"slug": "A b"}, "slug"),
    ("minimum", {"rating": 1}, {"rating": 0}, "rating"),
    ("maximum", {"rating": 5}, {"rating": 6}, "rating"),
    ("items", {"tags": ["a", "b"]}, {"tags": ["a", 2]}, "tags[1]"),
    ("maxItems", {"tags": ["a", "b", "c"]}, {"tags": ["a", "b", "c", "d"]}, "tags"),
    ("nullable", {"email": None}, {"slug": None}, "slug"),
    ("format email", {"email": "ada@example.org"}, {"email": "ada@localhost"}, "email"),
    ("format date", {"due": "2024-02-29"}, {"due": "2023-02-29"}, "due"),
    ("format uuid ($ref)", {"reply": {"to": UUID}}, {"reply": {"to": "42"}}, "reply.to"),
]


@pytest.mark.parametrize("keyword,good,bad,field", KEYWORDS, ids=[k[0] for k in KEYWORDS])
def test_each_keyword_passes_and_fails_naming_the_field(spec_server, keyword, good, bad, field):
    body = dict({"body": "hello"}, **good)
    r = post(spec_server, "/v1/speckit/comments", body)
    assert r.status_code == 201, r.text
    assert r.json() == {"received": body}  # the handler saw the body the host validated
    body = dict({"body": "hello"}, **bad)
    if keyword == "required":
        del body["body"]
    assert_invalid(post(spec_server, "/v1/speckit/comments", body), field)


def test_every_mistake_is_named_at_once(spec_server):
    r = post(spec_server, "/v1/speckit/comments",
             {"body": "", "rating": 9, "status": 1, "extra": True, "reply": {}})
    assert_invalid(r, "body", "rating", "status", "extra", "reply.to")


@pytest.mark.parametrize("data,ctype,status,code", [
    (b"{not json", "application/json", 400, "bad_request"),
    (b"body=x", "application/x-www-form-urlencoded", 415, None),
    (b"", "application/json", 400, "bad_request"),
])
def test_a_body_that_is_not_json_is_refused_before_validation(spec_server, data, ctype, status,
                                                              code):
    r = requests.post(spec_server.url("/v1/speckit/comments"), data=data,
                      headers={"Content-Type": ctype}, timeout=10)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code


def test_a_body_of_another_type_names_the_body(spec_server):
    assert_invalid(post(spec_server, "/v1/speckit/comments", ["body"]), "body")


def test_query_parameters(spec_server):
    r = requests.get(spec_server.url("/v1/speckit/comments?limit=100&status=closed&author=" + UUID),
                     timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"limit": "100", "status": "closed", "author": UUID}
    assert requests.get(spec_server.url("/v1/speckit/comments"), timeout=10).status_code == 200
    for query, field in [("limit=0", "limit"), ("limit=101", "limit"), ("limit=1e2", "limit"),
                         ("limit=ten", "limit"), ("status=pending", "status"),
                         ("author=42", "author")]:
        r = requests.get(spec_server.url("/v1/speckit/comments?" + query), timeout=10)
        assert_invalid(r, field)
    r = requests.get(spec_server.url("/v1/speckit/comments?limit=0&status=x&author=y"),
                     timeout=10)
    assert_invalid(r, "limit", "status", "author")


def test_a_path_parameter_its_schema_refuses_is_404(spec_server):
    r = requests.get(spec_server.url("/v1/speckit/comments/" + UUID), timeout=10)
    assert r.status_code == 200 and r.json() == {"id": UUID}
    r = requests.get(spec_server.url("/v1/speckit/comments/not-a-uuid"), timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text


@pytest.mark.parametrize("ctype,status", [
    ("text/plain; charset=utf-8", 200), ("image/png", 200), ("IMAGE/PNG", 200),
    ("application/json", 415), ("imagex/png", 415), ("text/plainish", 415), (None, 415),
])
def test_a_body_of_a_type_the_spec_does_not_list_is_415(spec_server, ctype, status):
    headers = {"Content-Type": ctype} if ctype else {}
    r = requests.post(spec_server.url("/v1/speckit/upload"), data=b"12345", headers=headers,
                      timeout=10)
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json() == {"length": 5}
    else:
        assert "text/plain, image/*" in r.json()["error"]["message"]


def test_schema_check_applies_the_same_rules(spec_server):
    assert post(spec_server, "/v1/speckit/check", {"body": "x"}).status_code == 200
    assert_invalid(post(spec_server, "/v1/speckit/check", {"body": "x", "rating": 0}), "rating")


def test_openapi_validates_and_lists_every_route_of_every_plugin(spec_server):
    doc = requests.get(spec_server.url("/openapi.json"), timeout=10).json()
    openapi_check.validate(doc)
    openapi_check.assert_lists_every_route(spec_server, doc)
    # A plugin that registers no OpenAPI at all (hello) is there with its routes.
    assert "get" in doc["paths"]["/v1/hello/{name}"]
    # Two plugins' "Comment" are both served, each route pointing at its own plugin's.
    schemas = doc["components"]["schemas"]
    assert {"speckit.Comment", "speckit_b.Comment", "Error"} <= set(schemas), sorted(schemas)
    assert schemas["speckit.Comment"]["properties"]["reply"]["$ref"] == \
        "#/components/schemas/speckit.Reply"
    for name in ("speckit", "speckit_b"):
        op = doc["paths"]["/v1/%s/comments" % name]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"] == \
            "#/components/schemas/%s.Comment" % name
        assert {"201", "400", "415"} <= set(op["responses"]), op["responses"]
        get = doc["paths"]["/v1/%s/comments" % name]["get"]
        assert [p["name"] for p in get["parameters"]] == ["limit", "status", "author"]
        assert get["parameters"][0]["schema"]["maximum"] == 100
        # Two entries of status 200 are one response with both media types.
        ok = get["responses"]["200"]
        assert set(ok["content"]) == {"application/json", "text/csv"}, ok
        assert ok["content"]["application/json"]["schema"]["$ref"] == \
            "#/components/schemas/%s.CommentList" % name
        assert ok["content"]["text/csv"] == {}
        assert ok["description"] == \
            "The comments. A second media type of the same status (a fixture)"


@pytest.mark.parametrize("kind,says", [
    ("keyword", "multipleOf"), ("json", "is not JSON"), ("ref", "Nowhere"),
    ("request", "request_schema \"Nowhere\""), ("response", "schema \"Nowhere\""),
    ("name", "twice"), ("group", "schema B: a schema must be a JSON object"),
    ("spool", "request_schema and spool_above do not go together"),
    ("media", "response 200 lists text/csv twice"),
    ("fragment", "schema \"Comment\" is registered with px_schema and in its px_openapi"),
])
def test_a_schema_the_host_cannot_use_stops_start_up_naming_the_plugin(kind, says):
    s = Server(workers=1, plugins=("speckit",), plugin_config={"speckit": {"broken": kind}})
    try:
        rc, _, err = s.check_config()
        assert rc != 0, err
        assert 'plugin "speckit"' in err and says in err, err
    finally:
        s.cleanup()
