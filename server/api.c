/*
 * api.c — the function table plugins call, generated from the lists in panthera.h, and the
 * synchronous functions behind it (plugins, config, requests, responses, callers, hooks,
 * commands). The asynchronous ones — PostgreSQL, Redis, idempotent creates, pool jobs —
 * live in api_async.c.
 *
 * Each list entry X(ret, name, params, args) must have an `api_<name>` (declared in api.h
 * from the same lists): the table initialiser below names every one, so a function
 * declared in the header but not implemented is a compile or link error, never a NULL
 * slot. tests/unit/test_api.c checks the table's size and that no slot is NULL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include <libpq-fe.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include "hooks.h"
#include "http.h"
#include "log.h"
#include "pg.h"
#include "redis.h"
#include "worker.h"
#include "metrics.h"
#include "plugin.h"
#include "ratelimit.h"
#include "request.h"
#include "route_spec.h"
#include "util.h"

/* ---- plugin lifecycle and config ---- */

int api_route(px_plugin_t *p, const char *method, const char *pattern, px_handler_fn fn,
                     void *userdata)
{
    return api_route_auth(p, method, pattern, fn, userdata, PX_AUTH_NONE, NULL);
}

int api_route_auth(px_plugin_t *p, const char *method, const char *pattern,
                          px_handler_fn fn, void *userdata, int auth, const char *role)
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
    route_t *rt = router_last(set->router);
    rt->auth = auth == PX_AUTH_REQUIRED || auth == PX_AUTH_OPTIONAL ? auth : PX_AUTH_NONE;
    if (role)
        snprintf(rt->role, sizeof(rt->role), "%s", role);
    if (role && rt->auth != PX_AUTH_REQUIRED)
        log_warn("plugin \"%s\": %s %s asks for role \"%s\" without PX_AUTH_REQUIRED; the "
                 "role is checked only when a caller is required",
                 p->name, method, pattern, role);
    p->nroutes++;
    return 0;
}

int api_route_add(px_plugin_t *p, const px_route_spec_t *spec)
{
    if (!spec || spec->size < offsetof(px_route_spec_t, flags)) {
        log_error("plugin \"%s\": px_route_add needs a spec made with PX_ROUTE_SPEC_INIT",
                  p->name);
        return PX_EINVAL;
    }
    px_route_spec_t copy = {0};
    memcpy(&copy, spec, spec->size < sizeof(copy) ? spec->size : sizeof(copy));
    copy.size = sizeof(copy);
    const unsigned known = PX_ROUTE_STREAM | PX_ROUTE_TICKET;
    if (copy.flags & ~known) {
        config_error(p->set->errs, p->section->file, p->section->line,
                     "plugin \"%s\": route %s %s has unknown flags 0x%x", p->name,
                     copy.method ? copy.method : "?", copy.pattern ? copy.pattern : "?",
                     copy.flags & ~known);
        return PX_EINVAL;
    }
    int rc = api_route_auth(p, copy.method, copy.pattern, copy.handler, copy.userdata,
                            copy.auth, copy.role);
    if (rc)
        return rc;
    route_t *rt = router_last(p->set->router);
    rt->flags = copy.flags;
    rt->max_body = copy.max_body;
    rt->spec = copy;
    char err[300];
    rc = route_spec_add(p, rt, err, sizeof(err));
    if (rc)
        config_error(p->set->errs, p->section->file, p->section->line,
                     "plugin \"%s\": route %s %s: %s", p->name, copy.method, copy.pattern, err);
    return rc;
}

int api_config_declare(px_plugin_t *p, const char *key, const char *default_value)
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

const char *api_config_get(px_plugin_t *p, const char *key)
{
    for (size_t i = 0; i < p->nkeys; i++) {
        if (strcmp(p->keys[i].key, key))
            continue;
        const config_entry_t *e = config_plugin_entry(p->section, key);
        return e ? e->value : p->keys[i].default_value;
    }
    return NULL; /* undeclared keys are not readable: declare them so -t can check them */
}

const char *api_plugin_name(px_plugin_t *p)
{
    return p->name;
}

void api_logv(px_plugin_t *p, int level, const char *fmt, va_list ap)
{
    log_msgv(level, p ? p->name : "plugin", fmt, ap);
}

/* ---- requests ---- */

const char *api_req_method(px_req_t *r)
{
    return r->method_name;
}

const char *api_req_path(px_req_t *r)
{
    return r->path;
}

const char *api_req_param(px_req_t *r, const char *name)
{
    const route_t *rt = r->route;
    /* Before dispatch (an on_request hook) nothing is decoded yet. */
    for (size_t i = 0; rt && r->param_values && i < rt->nparams; i++)
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

const char *api_req_query(px_req_t *r, const char *name)
{
    if (!r->query_parsed)
        parse_query(r);
    for (size_t i = 0; i < r->nquery; i++)
        if (!strcmp(r->query_pairs[i].name, name))
            return r->query_pairs[i].value;
    return NULL;
}

const char *api_req_header(px_req_t *r, const char *name)
{
    if (r->header_overrides) {
        /* An on_request hook set (string) or removed (null) this header. */
        const char *key;
        json_t *v;
        json_object_foreach(r->header_overrides, key, v)
        {
            if (!strcasecmp(key, name))
                return json_is_string(v) ? json_string_value(v) : NULL;
        }
    }
    size_t len = strlen(name);
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const header_t *h = &r->headers[i];
        if (h->name_len == len && !strncasecmp(r->head.data + h->name_off, name, len))
            return r->head.data + h->value_off;
    }
    return NULL;
}

const char *api_req_id(px_req_t *r)
{
    return http_req_id(r);
}

const void *api_req_body(px_req_t *r, size_t *len)
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

int api_req_json(px_req_t *r, json_t **out)
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

void *api_req_alloc(px_req_t *r, size_t size)
{
    return arena_alloc(&r->arena, size);
}

/* ---- responses ---- */

int api_res_header(px_req_t *r, const char *name, const char *value)
{
    return http_add_header(r, name, value);
}

int api_res_json(px_req_t *r, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (!text)
        return http_respond_error(r, 500, "internal", "the response could not be encoded", NULL);
    return http_respond(r, status, "application/json; charset=utf-8", text, strlen(text), true);
}

int api_res_send(px_req_t *r, int status, const char *content_type, const void *data,
                        size_t len)
{
    return http_respond(r, status, content_type, (char *)data, len, false);
}

int api_res_error(px_req_t *r, int status, const char *code, const char *message,
                         json_t *fields)
{
    return http_respond_error(r, status, code, message, fields);
}

/* ---- callers and tokens (1.1) ---- */

const char *api_req_caller_id(px_req_t *r)
{
    return r->has_caller ? r->caller_id : NULL;
}

const char *api_req_caller_role(px_req_t *r)
{
    return r->has_caller ? r->caller_role : NULL;
}

const char *api_token_issue(px_req_t *r, const char *sub, const char *role,
                                   int64_t *expires_in)
{
    const auth_settings_t *a = &r->worker->cfg->auth;
    if (!a->token_secret || !sub || !role)
        return NULL;
    int64_t ttl = (int64_t)(a->access_ttl_ms / 1000);
    char *token = auth_jwt_sign((const unsigned char *)a->token_secret, strlen(a->token_secret),
                                a->issuer, sub, role, wall_clock_ms(), ttl);
    if (!token)
        return NULL;
    char *copy = arena_strndup(&r->arena, token, strlen(token));
    free(token);
    if (expires_in)
        *expires_in = ttl;
    return copy;
}

const char *api_req_client(px_req_t *r)
{
    char *text = arena_alloc(&r->arena, 64);
    return ratelimit_request_client(r, text, 64);
}

int64_t api_auth_setting(px_plugin_t *p, const char *name)
{
    const auth_settings_t *a = &p->set->cfg->auth;
    if (!name)
        return -1;
    if (!strcmp(name, "access_ttl"))
        return (int64_t)(a->access_ttl_ms / 1000);
    if (!strcmp(name, "refresh_ttl"))
        return (int64_t)(a->refresh_ttl_ms / 1000);
    if (!strcmp(name, "leeway"))
        return (int64_t)(a->leeway_ms / 1000);
    if (!strcmp(name, "secret"))
        return a->token_secret && *a->token_secret ? 1 : 0;
    return -1;
}

/* ---- commands (1.1) ---- */

int api_command(px_plugin_t *p, const char *name, const char *usage, px_command_fn fn)
{
    if (p->set->registering != p || !name || !*name || !fn)
        return PX_ESTATE;
    for (size_t i = 0; i < p->ncommands; i++)
        if (!strcmp(p->commands[i].name, name))
            return PX_EEXIST;
    p->commands = xrealloc(p->commands, (p->ncommands + 1) * sizeof(plugin_command_t));
    p->commands[p->ncommands++] = (plugin_command_t){
        .name = xstrdup(name), .usage = xstrdup(usage ? usage : ""), .fn = fn};
    return 0;
}

int api_command_sql(px_plugin_t *p, const char *sql, int nparams,
                           const char *const *values, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    PGconn *db = p->command_db;
    if (!db) {
        snprintf(err, errlen, "not in a command, or [postgres] conninfo is not set");
        return PX_ESTATE;
    }
    PGresult *res = PQexecParams(db, sql, nparams, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    int rc;
    if (st == PGRES_TUPLES_OK) {
        rc = PQntuples(res);
    } else if (st == PGRES_COMMAND_OK) {
        const char *n = PQcmdTuples(res);
        rc = n && *n ? atoi(n) : 0;
    } else {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        rc = state && !strcmp(state, "23505") ? PX_ECONFLICT : PX_EINTERNAL;
        snprintf(err, errlen, "%s", PQresultErrorMessage(res));
        size_t n = strlen(err);
        while (n > 0 && err[n - 1] == '\n')
            err[--n] = '\0';
    }
    PQclear(res);
    return rc;
}

/* ---- /openapi.json (1.1) ---- */

int api_openapi(px_plugin_t *p, json_t *fragment)
{
    if (p->set->registering != p || !json_is_object(fragment)) {
        json_decref(fragment);
        return PX_ESTATE;
    }
    if (!p->openapi)
        p->openapi = json_object();
    json_object_update_recursive(p->openapi, fragment);
    json_decref(fragment);
    return 0;
}

/* ---- Lua hooks (1.1) ---- */

int api_hook_answer(px_req_t *r, const char *name, hooks_result_t *out)
{
    if (out->action == HOOKS_DENY) {
        int status = out->status >= 400 && out->status <= 599 ? out->status : 403;
        http_respond_error(r, status, NULL, out->message ? out->message : "denied", NULL);
        return PX_DONE;
    }
    log_error("lua hook %s: %s", name, out->message ? out->message : "failed");
    http_respond_error(r, 500, "internal", "a server hook failed", NULL);
    return PX_DONE;
}

int api_hook_run(px_req_t *r, const char *name, json_t **value)
{
    hooks_t *h = r->worker->hooks;
    if (!h || !name || !value || !hooks_has(h, name))
        return PX_OK;
    hooks_result_t out;
    hooks_call(h, name, *value, &out);
    int rc = PX_OK;
    if (out.action == HOOKS_ALLOW) {
        if (out.value != *value) {
            json_decref(*value);
            *value = json_incref(out.value);
        }
    } else {
        rc = api_hook_answer(r, name, &out);
    }
    hooks_result_clear(&out);
    return rc;
}

/* ---- migrations (1.1) ---- */

int api_migrations(px_plugin_t *p, const px_migration_t *list)
{
    if (p->set->registering != p || !list)
        return PX_ESTATE;
    const config_t *cfg = p->set->cfg;
    if (list[0].name && (!cfg || !cfg->pg.conninfo || !*cfg->pg.conninfo)) {
        config_error(p->set->errs, p->section->file, p->section->line,
                     "plugin \"%s\" has migrations but [postgres] conninfo is not set", p->name);
        return PX_EUNAVAIL;
    }
    for (const px_migration_t *m = list; m->name; m++) {
        if (!m->sql || !*m->name) {
            config_error(p->set->errs, p->section->file, p->section->line,
                         "plugin \"%s\": migration %s has no SQL", p->name, m->name);
            return PX_EINVAL;
        }
        if (m != list && strcmp(m[-1].name, m->name) >= 0) {
            config_error(p->set->errs, p->section->file, p->section->line,
                         "plugin \"%s\": migrations must be sorted and unique (%s after %s)",
                         p->name, m->name, m[-1].name);
            return PX_EINVAL;
        }
    }
    p->migrations = list;
    return 0;
}

/* ---- the table ---- */

#define API_SLOT(ret, name, params, args) .name = api_##name,
const px_api_t plugin_api_table = {
    .size = sizeof(px_api_t),
    .abi_major = PX_ABI_MAJOR,
    .abi_minor = PX_ABI_MINOR,
    PX_API_ALL(API_SLOT)
};
#undef API_SLOT
