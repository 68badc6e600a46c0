/*
 * api.c — the function table plugins call, generated from the lists in panthera.h.
 *
 * Each list entry X(ret, name, params, args) must have a static `api_<name>` here: the
 * table initialiser below names every one, so a function declared in the header but not
 * implemented is a compile error, never a NULL slot. tests/unit/test_api.c checks the
 * table's size and that no slot is NULL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "request.h"
#include "util.h"

/* ---- plugin lifecycle and config ---- */

static int api_route(px_plugin_t *p, const char *method, const char *pattern, px_handler_fn fn,
                     void *userdata)
{
    plugin_set_t *set = p->set;
    if (set->registering != p) {
        log_error("plugin \"%s\": px_route(%s %s) outside init is ignored", p->name,
                  method ? method : "?", pattern ? pattern : "?");
        return PX_ESTATE;
    }
    char err[300];
    int rc = router_add(set->router, method, pattern, fn, userdata, p->name,
                        metrics_plugin_id(p->name), err, sizeof(err));
    if (rc) {
        config_error(set->errs, p->section->file, p->section->line, "plugin \"%s\": route: %s",
                     p->name, err);
        return rc;
    }
    p->nroutes++;
    return 0;
}

static int api_config_declare(px_plugin_t *p, const char *key, const char *default_value)
{
    if (p->set->registering != p || !key)
        return PX_ESTATE;
    for (size_t i = 0; i < p->nkeys; i++)
        if (!strcmp(p->keys[i].key, key))
            return PX_EEXIST;
    p->keys = xrealloc(p->keys, (p->nkeys + 1) * sizeof(config_key_t));
    p->keys[p->nkeys++] = (config_key_t){
        .key = xstrdup(key), .default_value = default_value ? xstrdup(default_value) : NULL};
    return 0;
}

static const char *api_config_get(px_plugin_t *p, const char *key)
{
    for (size_t i = 0; i < p->nkeys; i++) {
        if (strcmp(p->keys[i].key, key))
            continue;
        const config_entry_t *e = config_plugin_entry(p->section, key);
        return e ? e->value : p->keys[i].default_value;
    }
    return NULL; /* undeclared keys are not readable: declare them so -t can check them */
}

static const char *api_plugin_name(px_plugin_t *p)
{
    return p->name;
}

static void api_logv(px_plugin_t *p, int level, const char *fmt, va_list ap)
{
    log_msgv(level, p ? p->name : "plugin", fmt, ap);
}

/* ---- requests ---- */

static const char *api_req_method(px_req_t *r)
{
    return r->method_name;
}

static const char *api_req_path(px_req_t *r)
{
    return r->path;
}

static const char *api_req_param(px_req_t *r, const char *name)
{
    const route_t *rt = r->route;
    for (size_t i = 0; rt && i < rt->nparams; i++)
        if (!strcmp(rt->param_names[i], name))
            return r->param_values[i];
    return NULL;
}

static void parse_query(px_req_t *r)
{
    r->query_parsed = true;
    if (!r->query || !*r->query)
        return;
    size_t n = 1;
    for (const char *q = r->query; *q; q++)
        n += *q == '&';
    r->query_pairs = arena_alloc(&r->arena, n * sizeof(query_pair_t));
    const char *p = r->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (klen > 0) {
            char *k = http_decode(r, p, klen, true);
            char *v = eq ? http_decode(r, eq + 1, len - klen - 1, true) : (char *)"";
            if (k && v)
                r->query_pairs[r->nquery++] = (query_pair_t){k, v};
        }
        if (!amp)
            break;
        p = amp + 1;
    }
}

static const char *api_req_query(px_req_t *r, const char *name)
{
    if (!r->query_parsed)
        parse_query(r);
    for (size_t i = 0; i < r->nquery; i++)
        if (!strcmp(r->query_pairs[i].name, name))
            return r->query_pairs[i].value;
    return NULL;
}

static const char *api_req_header(px_req_t *r, const char *name)
{
    size_t len = strlen(name);
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const header_t *h = &r->headers[i];
        if (h->name_len == len && !strncasecmp(r->head.data + h->name_off, name, len))
            return r->head.data + h->value_off;
    }
    return NULL;
}

static const char *api_req_id(px_req_t *r)
{
    return http_req_id(r);
}

static const void *api_req_body(px_req_t *r, size_t *len)
{
    if (len)
        *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

static bool is_json_type(const char *ctype)
{
    if (!ctype)
        return false;
    size_t n = strcspn(ctype, ";");
    while (n > 0 && (ctype[n - 1] == ' ' || ctype[n - 1] == '\t'))
        n--;
    if (n == 16 && !strncasecmp(ctype, "application/json", 16))
        return true;
    /* application/<something>+json, e.g. application/merge-patch+json */
    return n > 17 && !strncasecmp(ctype, "application/", 12) && !strncasecmp(ctype + n - 5, "+json", 5);
}

static int api_req_json(px_req_t *r, json_t **out)
{
    *out = NULL;
    if (r->json) {
        *out = r->json;
        return 0;
    }
    if (!is_json_type(api_req_header(r, "Content-Type"))) {
        r->json_error = "the body must be JSON (Content-Type: application/json)";
        return PX_ENOTJSON;
    }
    json_error_t err;
    r->json = json_loadb(r->body.data ? r->body.data : "", r->body.len,
                         JSON_REJECT_DUPLICATES, &err);
    if (!r->json) {
        char *msg = arena_alloc(&r->arena, 200);
        snprintf(msg, 200, "malformed JSON at line %d column %d: %s", err.line, err.column,
                 err.text);
        r->json_error = msg;
        return PX_EINVAL;
    }
    *out = r->json;
    return 0;
}

static void *api_req_alloc(px_req_t *r, size_t size)
{
    return arena_alloc(&r->arena, size);
}

/* ---- responses ---- */

static int api_res_header(px_req_t *r, const char *name, const char *value)
{
    return http_add_header(r, name, value);
}

static int api_res_json(px_req_t *r, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (!text)
        return http_respond_error(r, 500, "internal", "the response could not be encoded", NULL);
    return http_respond(r, status, "application/json; charset=utf-8", text, strlen(text), true);
}

static int api_res_send(px_req_t *r, int status, const char *content_type, const void *data,
                        size_t len)
{
    return http_respond(r, status, content_type, (char *)data, len, false);
}

static int api_res_error(px_req_t *r, int status, const char *code, const char *message,
                         json_t *fields)
{
    return http_respond_error(r, status, code, message, fields);
}

/* ---- the table ---- */

#define API_SLOT(ret, name, params, args) .name = api_##name,
const px_api_t plugin_api_table = {
    .size = sizeof(px_api_t),
    .abi_major = PX_ABI_MAJOR,
    .abi_minor = PX_ABI_MINOR,
    PX_API_1_0(API_SLOT) PX_API_VOID_1_0(API_SLOT)
};
#undef API_SLOT
