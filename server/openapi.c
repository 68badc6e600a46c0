/*
 * openapi.c — GET /openapi.json: one OpenAPI 3.0 document for the whole server, built once
 * when every plugin's init is over (plugin.c calls openapi_build), so a defect in it is a
 * start-up error that `pantherad -t` reports, not a surprise at the first request.
 *
 * Every route is in it, whoever registered it and however: a route from px_route_add is
 * described from its spec (parameters, request body, responses, security, and the error
 * answers the host itself gives for it: 400 when it validates, 401 and 403 when it is
 * gated, 404 for a checked path parameter, 415 for a JSON body); one from px_route or
 * px_route_auth (hello, third-party plugins) gets what the host knows of it (its path
 * parameters and its gate). A plugin's 1.1 px_openapi fragment still comes last and wins
 * for the operations it writes out by hand.
 *
 * Component schemas are per plugin: the user plugin's "User" is served as "user.User",
 * and every "$ref" of that plugin (in its schemas, its fragment and its routes) is
 * rewritten to match, so two plugins may both name a schema "Comment". A "$ref" to a name
 * the plugin does not have is left to the host's own schemas ("Error"). Should two
 * served names still meet, that is an init error naming both owners, never a merge.
 */
#include "openapi.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "route_spec.h"
#include "util.h"

static const char *const schema_prefix = "#/components/schemas/";

static json_t *host_paths(void)
{
    json_t *ok = json_pack("{s:s}", "description", "OK");
    json_t *paths = json_pack(
        "{s:{s:{s:s, s:[s], s:{s:O}}}, s:{s:{s:s, s:[s], s:{s:O, s:{s:s}}}},"
        " s:{s:{s:s, s:[s], s:{s:O}}}, s:{s:{s:s, s:[s], s:{s:O}}}}",
        "/healthz", "get", "summary", "The process is alive", "tags", "host", "responses", "200",
        ok, "/readyz", "get", "summary", "PostgreSQL and Redis answer", "tags", "host",
        "responses", "200", ok, "503", "description", "A dependency is down", "/metrics", "get",
        "summary", "Prometheus metrics", "tags", "host", "responses", "200", ok, "/openapi.json",
        "get", "summary", "This document", "tags", "host", "responses", "200", ok);
    json_decref(ok);
    return paths;
}

/* ---- names ---- */

/* Does plugin `p` itself have a component schema called `name`? */
static bool own_schema(const px_plugin_t *p, const char *name)
{
    return validate_registry_get(p->schemas, name) ||
           json_object_get(json_object_get(json_object_get(p->openapi, "components"), "schemas"),
                           name);
}

static char *served_name(const px_plugin_t *p, const char *name)
{
    return xasprintf("%s.%s", p->name, name);
}

static json_t *schema_ref(const px_plugin_t *p, const char *name)
{
    char *ref = own_schema(p, name) ? xasprintf("%s%s.%s", schema_prefix, p->name, name)
                                    : xasprintf("%s%s", schema_prefix, name);
    json_t *out = json_pack("{s:s}", "$ref", ref);
    free(ref);
    return out;
}

/* Rewrite every "$ref" of `v` (changed in place) that names one of `p`'s schemas. */
static void rewrite_refs(const px_plugin_t *p, json_t *v)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            rewrite_refs(p, item);
        }
        return;
    }
    if (!json_is_object(v))
        return;
    const char *key;
    json_t *item;
    json_object_foreach(v, key, item)
    {
        const char *ref = json_string_value(item);
        if (!strcmp(key, "$ref") && ref && !strncmp(ref, schema_prefix, strlen(schema_prefix)) &&
            own_schema(p, ref + strlen(schema_prefix))) {
            char *served = xasprintf("%s%s.%s", schema_prefix, p->name, ref + strlen(schema_prefix));
            json_object_set_new(v, key, json_string(served));
            free(served);
        } else {
            rewrite_refs(p, item);
        }
    }
}

/* Add `p`'s schema `name` (a copy of `schema`) to `schemas`; a served name that is taken
 * already is an error naming the owner. */
static int add_schema(json_t *schemas, json_t *owners, const px_plugin_t *p, const char *name,
                      const json_t *schema, config_errors_t *errs)
{
    char *served = served_name(p, name);
    const char *owner = json_string_value(json_object_get(owners, served));
    int rc = 0;
    if (owner) {
        config_error(errs, p->section ? p->section->file : "", p->section ? p->section->line : 0,
                     "plugin \"%s\": component schema \"%s\" is served as \"%s\", a name plugin "
                     "\"%s\" already uses; rename one of them",
                     p->name, name, served, owner);
        rc = -1;
    } else {
        json_t *copy = json_deep_copy(schema);
        rewrite_refs(p, copy);
        json_object_set_new(schemas, served, copy);
        json_object_set_new(owners, served, json_string(p->name));
    }
    free(served);
    return rc;
}

/* ---- operations ---- */

/* "/v1/users/:userId" as OpenAPI writes it: "/v1/users/{userId}". */
static char *openapi_path(const char *pattern)
{
    buf_t out = {0};
    for (const char *s = pattern; *s;) {
        size_t seg = strcspn(s, "/");
        if (s[0] == ':') {
            buf_printf(&out, "{%.*s}", (int)seg - 1, s + 1);
        } else {
            buf_append(&out, s, seg);
        }
        s += seg;
        if (*s == '/') {
            buf_append(&out, "/", 1);
            s++;
        }
    }
    buf_append(&out, "", 1);
    return out.data;
}

static const px_param_spec_t *find_param(const px_param_spec_t *list, const char *name)
{
    for (; list && list->name; list++)
        if (!strcmp(list->name, name))
            return list;
    return NULL;
}

static json_t *parameter(const px_plugin_t *p, const char *name, const char *in, bool required,
                         const px_param_spec_t *ps)
{
    json_t *schema = ps && ps->schema ? json_loads(ps->schema, 0, NULL) : NULL;
    if (!schema)
        schema = json_pack("{s:s}", "type", "string");
    rewrite_refs(p, schema);
    json_t *out = json_pack("{s:s, s:s, s:b, s:o}", "name", name, "in", in, "required", required,
                            "schema", schema);
    if (ps && ps->description)
        json_object_set_new(out, "description", json_string(ps->description));
    return out;
}

static json_t *parameters(const px_plugin_t *p, const route_t *rt)
{
    json_t *list = json_array();
    for (size_t i = 0; i < rt->nparams; i++)
        json_array_append_new(list, parameter(p, rt->param_names[i], "path", true,
                                              find_param(rt->spec.params, rt->param_names[i])));
    for (const px_param_spec_t *q = rt->spec.query; q && q->name; q++)
        json_array_append_new(list, parameter(p, q->name, "query", q->required != 0, q));
    return list;
}

static json_t *request_body(const px_plugin_t *p, const px_route_spec_t *spec)
{
    json_t *content = json_object();
    if (spec->request_schema)
        json_object_set_new(content, "application/json",
                            json_pack("{s:o}", "schema", schema_ref(p, spec->request_schema)));
    for (const char *const *t = spec->content_types; t && *t; t++)
        if (!json_object_get(content, *t))
            json_object_set_new(content, *t,
                                json_pack("{s:{s:s, s:s}}", "schema", "type", "string", "format",
                                          "binary"));
    if (json_object_size(content) == 0) {
        json_decref(content);
        return NULL;
    }
    return json_pack("{s:b, s:o}", "required", spec->request_schema != NULL, "content", content);
}

static void error_response(json_t *responses, int status, const char *description)
{
    char key[8];
    snprintf(key, sizeof(key), "%d", status);
    if (json_object_get(responses, key))
        return;
    json_object_set_new(responses, key,
                        json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", description, "content",
                                  "application/json", "schema", "$ref",
                                  "#/components/schemas/Error"));
}

/* The entry `r` into `out`: the first entry of a status makes its response object; a later
 * one of the same status adds its media type to that object's "content" (a report served
 * as JSON, CSV and SVG is one 200 with three media types) and its description, when it
 * has one, as a further sentence. route_spec.c has refused a media type listed twice. */
static void add_response(json_t *out, const px_plugin_t *p, const px_response_spec_t *r)
{
    char key[8];
    snprintf(key, sizeof(key), "%d", r->status);
    json_t *resp = json_object_get(out, key);
    if (!resp) {
        resp = json_pack("{s:s}", "description",
                         r->description ? r->description : http_status_reason(r->status));
        json_object_set_new(out, key, resp);
    } else if (r->description) {
        const char *first = json_string_value(json_object_get(resp, "description"));
        size_t n = strlen(first);
        char *joined = xasprintf("%s%s%s", first, n && first[n - 1] == '.' ? " " : ". ",
                                 r->description);
        json_object_set_new(resp, "description", json_string(joined));
        free(joined);
    }
    if (!r->schema && !r->content_type)
        return; /* no body described (a 204, or a plain status) */
    json_t *content = json_object_get(resp, "content");
    if (!content) {
        content = json_object();
        json_object_set_new(resp, "content", content);
    }
    json_t *media = r->schema ? json_pack("{s:o}", "schema", schema_ref(p, r->schema))
                              : json_object();
    json_object_set_new(content, r->content_type ? r->content_type : "application/json", media);
}

static json_t *responses(const px_plugin_t *p, const route_t *rt)
{
    const px_route_spec_t *spec = &rt->spec;
    json_t *out = json_object();
    for (const px_response_spec_t *r = spec->responses; r && r->status; r++)
        add_response(out, p, r);
    if (json_object_size(out) == 0)
        json_object_set_new(out, "200",
                            json_pack("{s:s}", "description",
                                      "The handler's answer (its plugin does not describe it)"));
    /* The answers the host gives on the route's behalf, whatever the handler does. */
    if (rt->checks && (rt->checks->body || rt->checks->nquery))
        error_response(out, 400,
                       "Malformed JSON (bad_request) or invalid fields (validation_failed, with "
                       "fields)");
    if (rt->auth != PX_AUTH_NONE)
        error_response(out, 401, "No valid bearer token (unauthorized)");
    if (rt->auth == PX_AUTH_REQUIRED && rt->role[0])
        error_response(out, 403, "The caller's role may not do this (forbidden)");
    if (rt->checks && rt->checks->npath)
        error_response(out, 404, "A path parameter names nothing (not_found)");
    if (rt->checks && rt->checks->body)
        error_response(out, 415, "The body is not JSON");
    error_response(out, 503, "Unavailable (PostgreSQL unreachable, or the route is disabled)");
    return out;
}

static json_t *operation(const px_plugin_t *p, const route_t *rt)
{
    const px_route_spec_t *spec = &rt->spec;
    json_t *op = json_object();
    if (spec->summary) {
        json_object_set_new(op, "summary", json_string(spec->summary));
    } else {
        char *summary = xasprintf("%s %s (plugin %s)", router_method_name(rt->method),
                                  rt->pattern, p->name);
        json_object_set_new(op, "summary", json_string(summary));
        free(summary);
    }
    if (spec->description)
        json_object_set_new(op, "description", json_string(spec->description));
    json_object_set_new(op, "tags", json_pack("[s]", spec->tag ? spec->tag : p->name));
    json_t *params = parameters(p, rt);
    if (json_array_size(params))
        json_object_set_new(op, "parameters", params);
    else
        json_decref(params);
    json_t *body = request_body(p, spec);
    if (body)
        json_object_set_new(op, "requestBody", body);
    if (rt->auth == PX_AUTH_REQUIRED)
        json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearerAuth"));
    else if (rt->auth == PX_AUTH_OPTIONAL)
        json_object_set_new(op, "security", json_pack("[{}, {s:[]}]", "bearerAuth"));
    json_object_set_new(op, "responses", responses(p, rt));
    return op;
}

struct routes_ctx {
    const px_plugin_t *plugin;
    json_t *paths;
};

static void add_route(const route_t *rt, void *arg)
{
    struct routes_ctx *ctx = arg;
    if (strcmp(rt->owner, ctx->plugin->name))
        return;
    char *path = openapi_path(rt->pattern);
    json_t *item = json_object_get(ctx->paths, path);
    if (!item) {
        item = json_object();
        json_object_set_new(ctx->paths, path, item);
    }
    char method[16];
    snprintf(method, sizeof(method), "%s", router_method_name(rt->method));
    for (char *m = method; *m; m++)
        *m = (char)tolower((unsigned char)*m);
    json_object_set_new(item, method, operation(ctx->plugin, rt));
    free(path);
}

/* ---- the document ---- */

static json_t *document(const plugin_set_t *set, config_errors_t *errs)
{
    json_t *schemas = json_object();
    const validate_registry_t *host = route_spec_host_schemas();
    for (size_t i = 0; i < validate_registry_count(host); i++)
        json_object_set(schemas, validate_registry_name(host, i), validate_registry_json(host, i));
    json_t *doc = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:[{s:s}], s:o, s:{s:{s:{s:s, s:s, s:s}}, s:o}}", "openapi",
        "3.0.3", "info", "title", "Panthera", "version", PX_VERSION, "description",
        "Every route of every loaded plugin, described from what each registered.", "servers",
        "url", "/", "paths", host_paths(), "components", "securitySchemes", "bearerAuth", "type",
        "http", "scheme", "bearer", "bearerFormat", "JWT", "schemas", schemas);
    json_t *owners = json_object();
    json_t *paths = json_object_get(doc, "paths");
    int rc = 0;
    for (size_t i = 0; i < set->n; i++) {
        const px_plugin_t *p = set->items[i];
        for (size_t k = 0; k < validate_registry_count(p->schemas); k++)
            if (add_schema(schemas, owners, p, validate_registry_name(p->schemas, k),
                           validate_registry_json(p->schemas, k), errs))
                rc = -1;
        json_t *frag_schemas =
            json_object_get(json_object_get(p->openapi, "components"), "schemas");
        const char *name;
        json_t *schema;
        json_object_foreach(frag_schemas, name, schema)
        {
            if (validate_registry_get(p->schemas, name)) {
                config_error(errs, p->section ? p->section->file : "",
                             p->section ? p->section->line : 0,
                             "plugin \"%s\": schema \"%s\" is registered with px_schema and in "
                             "its px_openapi fragment; keep one",
                             p->name, name);
                rc = -1;
            } else if (add_schema(schemas, owners, p, name, schema, errs)) {
                rc = -1;
            }
        }
        struct routes_ctx ctx = {p, paths};
        router_foreach(set->router, add_route, &ctx);
        /* A 1.1 fragment's hand-written operations replace the generated ones. */
        json_t *frag_paths = json_deep_copy(json_object_get(p->openapi, "paths"));
        rewrite_refs(p, frag_paths);
        const char *path;
        json_t *item;
        json_object_foreach(frag_paths, path, item)
        {
            json_t *into = json_object_get(paths, path);
            if (into && json_is_object(item))
                json_object_update(into, item);
            else
                json_object_set(paths, path, item);
        }
        json_decref(frag_paths);
    }
    json_decref(owners);
    if (rc) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

int openapi_build(plugin_set_t *set, config_errors_t *errs)
{
    json_t *doc = document(set, errs);
    if (!doc)
        return -1;
    free(set->openapi_text);
    set->openapi_text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    set->openapi_len = set->openapi_text ? strlen(set->openapi_text) : 0;
    json_decref(doc);
    return 0;
}

static int handle_openapi(px_req_t *req, void *ud)
{
    const plugin_set_t *set = ud;
    if (!set->openapi_text)
        return PX_EINTERNAL;
    return http_respond(req, 200, "application/json; charset=utf-8", set->openapi_text,
                        set->openapi_len, false);
}

void openapi_register(plugin_set_t *set)
{
    plugin_host_route(set, "GET", "/openapi.json", handle_openapi, set);
}
