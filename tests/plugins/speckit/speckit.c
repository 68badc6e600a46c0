/*
 * speckit — routes registered from specs, for the host's tests of px_route_add,
 * px_schema, validation and /openapi.json. Built twice (speckit and speckit_b, by
 * SPECKIT_NAME) so two loaded plugins both have a schema named "Comment".
 *
 *   POST /v1/NAME/comments          body validated by Comment -> 201 {"received": body}
 *   GET  /v1/NAME/comments          ?limit (1..100) &status (open|closed) &author (uuid)
 *                                   -> 200 {"limit": ..., "status": ..., "author": ...}
 *   GET  /v1/NAME/comments/:id      id a uuid (else 404) -> 200 {"id": ...}
 *   POST /v1/NAME/upload            text/plain or any image type only -> 200 {"length": N}
 *   POST /v1/NAME/check             px_schema_check of the body by Comment -> 200 {} or
 *                                   400 with its fields
 *
 * Config ([plugin:NAME]): broken = no | keyword | json | ref | request | response | name |
 * group | fragment | spool
 * registers one defect of that kind, so a test can see init refuse it.
 */
#include <panthera/panthera.h>
#include <string.h>

#ifndef SPECKIT_NAME
#define SPECKIT_NAME "speckit"
#endif
#define PREFIX "/v1/" SPECKIT_NAME

static px_plugin_t *self_plugin;

static int comment_create(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body); /* parsed and validated by the host already */
    if (rc)
        return rc;
    return px_res_json(req, 201, json_pack("{s:O}", "received", body));
}

static int comment_list(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:s?, s:s?, s:s?}", "limit", px_req_query(req, "limit"),
                                 "status", px_req_query(req, "status"), "author",
                                 px_req_query(req, "author")));
}

static int comment_get(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200, json_pack("{s:s}", "id", px_req_param(req, "id")));
}

static int upload(px_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    px_req_body(req, &len);
    return px_res_json(req, 200, json_pack("{s:I}", "length", (json_int_t)len));
}

static int check(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body, *fields = NULL;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    rc = px_schema_check(self_plugin, "Comment", body, &fields);
    if (rc == PX_EINVAL)
        return px_res_error(req, 400, "validation_failed", "checked by px_schema_check", fields);
    return rc ? rc : px_res_json(req, 200, json_object());
}

static const char *const comment_schema =
    "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"body\"],"
    " \"properties\": {"
    "  \"body\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 200},"
    "  \"rating\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 5},"
    "  \"status\": {\"type\": \"string\", \"enum\": [\"open\", \"closed\"]},"
    "  \"email\": {\"type\": \"string\", \"format\": \"email\", \"nullable\": true},"
    "  \"due\": {\"type\": \"string\", \"format\": \"date\"},"
    "  \"slug\": {\"type\": \"string\", \"pattern\": \"^[a-z0-9-]+$\"},"
    "  \"tags\": {\"type\": \"array\", \"maxItems\": 3, \"items\": {\"type\": \"string\"}},"
    "  \"reply\": {\"$ref\": \"#/components/schemas/Reply\"}}}";

static const char *const reply_schema =
    "{\"type\": \"object\", \"required\": [\"to\"], \"properties\": {"
    "  \"to\": {\"type\": \"string\", \"format\": \"uuid\"}}}";

static const char *const list_schema =
    "{\"type\": \"object\", \"properties\": {\"comments\": {\"type\": \"array\","
    " \"items\": {\"$ref\": \"#/components/schemas/Comment\"}}}}";

static int broken(px_plugin_t *self, const char *kind)
{
    if (!strcmp(kind, "keyword"))
        return px_schema(self, "Broken", "{\"type\": \"string\", \"multipleOf\": 3}");
    if (!strcmp(kind, "json"))
        return px_schema(self, "Broken", "{\"type\": ");
    if (!strcmp(kind, "ref"))
        return px_schema(self, "Broken", "{\"$ref\": \"#/components/schemas/Nowhere\"}");
    if (!strcmp(kind, "name"))
        return px_schema(self, "Comment", "{\"type\": \"object\"}");
    if (!strcmp(kind, "fragment")) /* the same name by px_schema and a 1.1 fragment */
        return px_openapi(self, json_pack("{s:{s:{s:{s:s}}}}", "components", "schemas",
                                          "Comment", "type", "object"));
    if (!strcmp(kind, "group"))
        return px_schema(self, NULL, "{\"A\": {\"type\": \"string\"}, \"B\": [1]}");
    px_route_spec_t spec = PX_ROUTE_SPEC_INIT;
    static const px_response_spec_t responses[] = {{200, "Nowhere", NULL, NULL}, {0}};
    static const px_response_spec_t twice[] = {{200, "Comment", NULL, "text/csv"},
                                               {200, NULL, NULL, "text/csv"}, {0}};
    spec.method = "POST";
    spec.pattern = PREFIX "/broken";
    spec.handler = comment_create;
    if (!strcmp(kind, "request"))
        spec.request_schema = "Nowhere";
    else if (!strcmp(kind, "spool"))
        spec.request_schema = "Comment", spec.spool_above = 1024;
    else if (!strcmp(kind, "response"))
        spec.responses = responses;
    else if (!strcmp(kind, "media"))
        spec.responses = twice;
    else
        return 0;
    return px_route_add(self, &spec);
}

static int init(px_plugin_t *self)
{
    self_plugin = self;
    px_config_declare(self, "broken", "no");
    int rc = px_schema(self, "Comment", comment_schema);
    if (!rc)
        rc = px_schema(self, "CommentList", list_schema);
    if (!rc)
        rc = px_schema(self, "Reply", reply_schema); /* after Comment, which names it */

    static const px_response_spec_t created[] = {
        {201, "Comment", "The comment as received", NULL}, {0}};
    px_route_spec_t spec = PX_ROUTE_SPEC_INIT;
    spec.method = "POST";
    spec.pattern = PREFIX "/comments";
    spec.handler = comment_create;
    spec.request_schema = "Comment";
    spec.responses = created;
    spec.summary = "Create a comment";
    if (!rc)
        rc = px_route_add(self, &spec);

    static const px_param_spec_t query[] = {
        {"limit", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100, \"default\": 10}",
         0, "page size"},
        {"status", "{\"type\": \"string\", \"enum\": [\"open\", \"closed\"]}", 0, NULL},
        {"author", "{\"type\": \"string\", \"format\": \"uuid\"}", 0, NULL},
        {NULL, NULL, 0, NULL}};
    /* One 200 in two media types: the document merges them into one response. */
    static const px_response_spec_t listed[] = {
        {200, "CommentList", "The comments", NULL},
        {200, NULL, "A second media type of the same status (a fixture)", "text/csv"}, {0}};
    px_route_spec_t list = PX_ROUTE_SPEC_INIT;
    list.method = "GET";
    list.pattern = PREFIX "/comments";
    list.handler = comment_list;
    list.query = query;
    list.responses = listed;
    list.auth = PX_AUTH_OPTIONAL;
    if (!rc)
        rc = px_route_add(self, &list);

    static const px_param_spec_t params[] = {
        {"id", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, "the comment's id"},
        {NULL, NULL, 0, NULL}};
    px_route_spec_t get = PX_ROUTE_SPEC_INIT;
    get.method = "GET";
    get.pattern = PREFIX "/comments/:id";
    get.handler = comment_get;
    get.params = params;
    if (!rc)
        rc = px_route_add(self, &get);
    static const char *const types[] = {"text/plain", "image/*", NULL};
    px_route_spec_t up = PX_ROUTE_SPEC_INIT;
    up.method = "POST";
    up.pattern = PREFIX "/upload";
    up.handler = upload;
    up.content_types = types;
    if (!rc)
        rc = px_route_add(self, &up);
    if (!rc)
        rc = px_route(self, "POST", PREFIX "/check", check, NULL);
    if (!rc)
        rc = broken(self, px_config_get(self, "broken"));
    return rc;
}

PX_PLUGIN(SPECKIT_NAME, "1.0.0", init, NULL, NULL);
