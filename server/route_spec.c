/*
 * route_spec.c — a route's spec, enforced. px_route_add (api.c) registers the route and
 * hands the spec here; px_schema registers the plugin's component schemas. Both are
 * compiled during the plugin's init by validate.c, so a schema the host cannot check fails
 * start-up with the plugin's name instead of being skipped; route_spec_finish, once init
 * has returned, resolves what may be registered in any order ($refs, the request schema a
 * route names). Per request, route_spec_check runs after the gateway, the limiter and the
 * on_request hooks (http.c), just before the handler: it parses the body once (the
 * handler's px_req_json then returns it) and answers every failure at once.
 *
 * Path parameters are checked first and answer 404: a malformed id names nothing, the
 * same answer as a well-formed id that does not exist, so the two cannot be told apart.
 * The document those same specs produce is openapi.c's.
 */
#include "route_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "http.h"
#include "log.h"
#include "util.h"

static validate_registry_t *host_schemas;

const validate_registry_t *route_spec_host_schemas(void)
{
    if (host_schemas)
        return host_schemas;
    host_schemas = validate_registry_new();
    json_t *error = json_pack(
        "{s:s, s:s, s:b, s:[s], s:{s:{s:s, s:b, s:[s, s], s:{s:{s:s}, s:{s:s}, "
        "s:{s:s, s:s, s:{s:s}}}}}}",
        "description", "API.md's error shape: every error answer has it", "type", "object",
        "additionalProperties", 0, "required", "error", "properties", "error", "type", "object",
        "additionalProperties", 0, "required", "code", "message", "properties", "code", "type",
        "string", "message", "type", "string", "fields", "type", "object", "description",
        "validation_failed only: field -> reason", "additionalProperties", "type", "string");
    char err[256];
    if (validate_registry_add(host_schemas, "Error", error, err, sizeof(err)) ||
        validate_registry_link(host_schemas, NULL, err, sizeof(err))) {
        log_error("host schema: %s", err);
        abort();
    }
    json_decref(error);
    return host_schemas;
}

static validate_registry_t *plugin_schemas(px_plugin_t *p)
{
    if (!p->schemas)
        p->schemas = validate_registry_new();
    return p->schemas;
}

/* The ":name" segments of `rt`'s pattern: the index of `name`, or -1. */
static int path_param_index(const route_t *rt, const char *name)
{
    for (size_t i = 0; i < rt->nparams; i++)
        if (!strcmp(rt->param_names[i], name))
            return (int)i;
    return -1;
}

/* Compile a list of parameter specs into `out`. */
static int compile_params(px_plugin_t *p, route_t *rt, const px_param_spec_t *list, bool path,
                          route_param_check_t **out, size_t *n, char *err, size_t errlen)
{
    size_t count = 0;
    while (list && list[count].name)
        count++;
    *n = 0;
    *out = count ? xcalloc(count, sizeof(route_param_check_t)) : NULL;
    for (size_t i = 0; i < count; i++) {
        const px_param_spec_t *ps = &list[i];
        int index = path ? path_param_index(rt, ps->name) : 0;
        if (index < 0) {
            snprintf(err, errlen, "params names \"%s\", which the pattern has no :%s for",
                     ps->name, ps->name);
            return PX_EINVAL;
        }
        json_error_t jerr;
        json_t *schema = json_loads(ps->schema ? ps->schema : "{\"type\":\"string\"}", 0, &jerr);
        if (!schema) {
            snprintf(err, errlen, "parameter %s: its schema is not JSON: %s", ps->name, jerr.text);
            return PX_EINVAL;
        }
        const validate_node_t *node =
            validate_registry_compile(plugin_schemas(p), schema, err, errlen);
        const char *type = json_string_value(json_object_get(schema, "type"));
        bool one_value = !type || (strcmp(type, "array") && strcmp(type, "object"));
        if (node && !one_value)
            snprintf(err, errlen, "parameter %s: a parameter is one value (type %s is not "
                     "supported)", ps->name, type);
        json_decref(schema);
        if (!node || !one_value)
            return PX_EINVAL;
        (*out)[(*n)++] = (route_param_check_t){
            .name = ps->name, .required = path || ps->required, .index = (size_t)index,
            .node = node};
    }
    return 0;
}

int route_spec_add(px_plugin_t *p, route_t *rt, char *err, size_t errlen)
{
    const px_route_spec_t *spec = &rt->spec;
    if (!spec->request_schema && !spec->query && !spec->params && !spec->content_types)
        return 0;
    if (spec->request_schema && spec->spool_above) {
        /* The validator reads the body in memory; a JSON body worth spooling is a file. */
        snprintf(err, errlen, "request_schema and spool_above do not go together: a validated "
                 "JSON body stays in memory (max_body bounds it)");
        return PX_EINVAL;
    }
    route_checks_t *c = xcalloc(1, sizeof(*c));
    c->next = p->checks;
    p->checks = c; /* owned by the plugin from here on, even when compiling fails */
    c->route = rt;
    c->body_name = spec->request_schema;
    c->content_types = spec->content_types;
    int rc = compile_params(p, rt, spec->query, false, &c->query, &c->nquery, err, errlen);
    if (!rc)
        rc = compile_params(p, rt, spec->params, true, &c->path, &c->npath, err, errlen);
    if (!rc)
        rt->checks = c;
    return rc;
}

static bool schema_known(px_plugin_t *p, const char *name)
{
    json_t *frag = json_object_get(json_object_get(p->openapi, "components"), "schemas");
    return validate_registry_get(p->schemas, name) ||
           validate_registry_get(route_spec_host_schemas(), name) || json_object_get(frag, name);
}

struct responses_ctx {
    px_plugin_t *p;
    config_errors_t *errs;
    int rc;
};

static void check_responses(const route_t *rt, void *arg)
{
    struct responses_ctx *ctx = arg;
    px_plugin_t *p = ctx->p;
    if (strcmp(rt->owner, p->name))
        return;
    for (const px_response_spec_t *r = rt->spec.responses; r && r->status; r++) {
        if (r->schema && !schema_known(p, r->schema)) {
            config_error(ctx->errs, p->section ? p->section->file : "",
                         p->section ? p->section->line : 0,
                         "plugin \"%s\": route %s %s: response %d names schema \"%s\", which "
                         "was never registered with px_schema",
                         p->name, router_method_name(rt->method), rt->pattern, r->status,
                         r->schema);
            ctx->rc = -1;
        }
        /* Entries of one status merge into one response (openapi.c); the same media type
         * twice in it would leave one of the two silently unserved. */
        const char *type = r->content_type ? r->content_type : "application/json";
        for (const px_response_spec_t *e = rt->spec.responses; e != r; e++) {
            if (e->status != r->status || !(e->schema || e->content_type) ||
                !(r->schema || r->content_type) ||
                strcmp(type, e->content_type ? e->content_type : "application/json"))
                continue;
            config_error(ctx->errs, p->section ? p->section->file : "",
                         p->section ? p->section->line : 0,
                         "plugin \"%s\": route %s %s: response %d lists %s twice; give each "
                         "status one entry per media type",
                         p->name, router_method_name(rt->method), rt->pattern, r->status, type);
            ctx->rc = -1;
            break;
        }
    }
}

int route_spec_finish(px_plugin_t *p, config_errors_t *errs)
{
    char err[300];
    const char *file = p->section ? p->section->file : "";
    int line = p->section ? p->section->line : 0;
    if (p->schemas && validate_registry_link(p->schemas, route_spec_host_schemas(), err,
                                             sizeof(err))) {
        config_error(errs, file, line, "plugin \"%s\": %s", p->name, err);
        return -1;
    }
    int rc = 0;
    for (route_checks_t *c = p->checks; c; c = c->next) {
        if (!c->body_name)
            continue;
        c->body = validate_registry_get(p->schemas, c->body_name);
        if (!c->body) {
            config_error(errs, file, line,
                         "plugin \"%s\": route %s %s: request_schema \"%s\" was never registered "
                         "with px_schema",
                         p->name, router_method_name(c->route->method), c->route->pattern,
                         c->body_name);
            rc = -1;
        }
    }
    /* Every response schema must exist, or the served document would point at nothing. */
    struct responses_ctx ctx = {p, errs, 0};
    if (p->set && p->set->router)
        router_foreach(p->set->router, check_responses, &ctx);
    if (ctx.rc)
        rc = -1;
    return rc;
}

void route_spec_free(px_plugin_t *p)
{
    for (route_checks_t *c = p->checks, *next; c; c = next) {
        next = c->next;
        free(c->query);
        free(c->path);
        free(c);
    }
    p->checks = NULL;
    validate_registry_free(p->schemas);
    p->schemas = NULL;
}

/* Is the request's Content-Type one of `types`: a type ("image/png") or a whole family
 * ("image/" then a star)? Parameters (";charset=...") and case do not count. */
static bool type_accepted(const char *ctype, const char *const *types)
{
    size_t n = strcspn(ctype, "; \t");
    for (const char *const *t = types; *t; t++) {
        size_t tn = strlen(*t);
        if (tn == n && !strncasecmp(ctype, *t, n))
            return true;
        if (tn >= 2 && !strcmp(*t + tn - 2, "/*") && n > tn - 1 &&
            !strncasecmp(ctype, *t, tn - 1))
            return true;
    }
    return false;
}

int route_spec_check(px_req_t *r)
{
    const route_checks_t *c = r->route ? r->route->checks : NULL;
    if (!c)
        return 0;
    json_t *fields = json_object();
    for (size_t i = 0; i < c->npath; i++) {
        const char *v = r->param_values[c->path[i].index];
        if (v && validate_text(c->path[i].node, v, c->path[i].name, fields)) {
            char msg[160];
            snprintf(msg, sizeof(msg), "nothing here: %s %s", c->path[i].name,
                     json_string_value(json_object_get(fields, c->path[i].name)));
            json_decref(fields);
            http_respond_error(r, 404, "not_found", msg, NULL);
            return 1;
        }
    }
    const char *ctype = api_req_header(r, "Content-Type");
    if (c->content_types && (ctype || r->body.len) &&
        !type_accepted(ctype ? ctype : "", c->content_types)) {
        json_decref(fields);
        buf_t msg = {0};
        buf_printf(&msg, "this route takes a body of type");
        for (const char *const *t = c->content_types; *t; t++)
            buf_printf(&msg, "%s %s", t == c->content_types ? "" : ",", *t);
        http_respond_error(r, 415, "bad_request", msg.data, NULL);
        buf_free(&msg);
        return 1;
    }
    if (c->body) {
        json_t *body;
        int rc = api_req_json(r, &body);
        if (rc) {
            json_decref(fields);
            const char *code;
            int status = http_error_status(rc, &code);
            http_respond_error(r, status, code, r->json_error, NULL);
            return 1;
        }
        validate_value(c->body, body, "", fields);
    }
    for (size_t i = 0; i < c->nquery; i++) {
        const route_param_check_t *q = &c->query[i];
        const char *v = api_req_query(r, q->name);
        if (!v && q->required)
            json_object_set_new(fields, q->name, json_string("is required"));
        else if (v)
            validate_text(q->node, v, q->name, fields);
    }
    if (json_object_size(fields) == 0) {
        json_decref(fields);
        return 0;
    }
    http_respond_error(r, 400, "validation_failed", "the request has invalid fields", fields);
    return 1;
}

/* ---- the SDK functions (1.2 routes) ---- */

int api_schema(px_plugin_t *p, const char *name, const char *json_text)
{
    if (p->set->registering != p) {
        log_error("plugin \"%s\": px_schema(%s) outside init is ignored", p->name,
                  name ? name : "?");
        return PX_ESTATE;
    }
    const char *file = p->section ? p->section->file : "";
    int line = p->section ? p->section->line : 0;
    json_error_t jerr = {0};
    json_t *schema = json_text ? json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!schema) {
        config_error(p->set->errs, file, line,
                     "plugin \"%s\": schema \"%s\" is not JSON: %s (line %d, column %d)", p->name,
                     name ? name : "?", json_text ? jerr.text : "no text", jerr.line, jerr.column);
        return PX_EINVAL;
    }
    char err[300];
    int rc = 0;
    if (name) {
        rc = validate_registry_add(plugin_schemas(p), name, schema, err, sizeof(err));
    } else if (!json_is_object(schema)) {
        snprintf(err, sizeof(err), "px_schema without a name takes an object of name -> schema");
        rc = PX_EINVAL;
    } else {
        const char *key;
        json_t *one;
        json_object_foreach(schema, key, one)
        {
            if ((rc = validate_registry_add(plugin_schemas(p), key, one, err, sizeof(err))))
                break;
        }
    }
    json_decref(schema);
    if (rc)
        config_error(p->set->errs, file, line, "plugin \"%s\": %s", p->name, err);
    return rc;
}

int api_schema_check(px_plugin_t *p, const char *name, const json_t *value, json_t **fields)
{
    if (fields)
        *fields = NULL;
    if (p->set && p->set->registering == p)
        return PX_ESTATE; /* $refs are resolved only once init is over */
    const validate_node_t *node = name ? validate_registry_get(p->schemas, name) : NULL;
    if (!node)
        return PX_ENOENT;
    json_t *out = json_object();
    if (validate_value(node, value, "", out) == 0) {
        json_decref(out);
        return 0;
    }
    if (fields)
        *fields = out;
    else
        json_decref(out);
    return PX_EINVAL;
}
