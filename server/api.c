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
#include "request.h"
#include "util.h"

/* ---- plugin lifecycle and config ---- */

static int api_route_auth(px_plugin_t *p, const char *method, const char *pattern,
                          px_handler_fn fn, void *userdata, int auth, const char *role);

static int api_route(px_plugin_t *p, const char *method, const char *pattern, px_handler_fn fn,
                     void *userdata)
{
    return api_route_auth(p, method, pattern, fn, userdata, PX_AUTH_NONE, NULL);
}

static int api_route_auth(px_plugin_t *p, const char *method, const char *pattern,
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

/* ---- callers and tokens (1.1) ---- */

static const char *api_req_caller_id(px_req_t *r)
{
    return r->has_caller ? r->caller_id : NULL;
}

static const char *api_req_caller_role(px_req_t *r)
{
    return r->has_caller ? r->caller_role : NULL;
}

static const char *api_token_issue(px_req_t *r, const char *sub, const char *role,
                                   int64_t *expires_in)
{
    const auth_settings_t *a = &r->worker->cfg->auth;
    if (!a->token_secret || !sub || !role)
        return NULL;
    int64_t ttl = (int64_t)(a->access_ttl_ms / 1000);
    char *token = auth_jwt_sign((const unsigned char *)a->token_secret, strlen(a->token_secret),
                                a->issuer, sub, role, (int64_t)time(NULL), ttl);
    if (!token)
        return NULL;
    char *copy = arena_strndup(&r->arena, token, strlen(token));
    free(token);
    if (expires_in)
        *expires_in = ttl;
    return copy;
}

static int64_t api_auth_setting(px_plugin_t *p, const char *name)
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

/* ---- pool work bound to a request (1.1) ---- */

enum req_op_kind { OP_PG_QUERY, OP_PG_BEGIN, OP_PG_DONE, OP_REDIS, OP_WORK };

void api_job_detach(req_op_t *op);

/* What an idempotent transaction must remember to record its answer. */
typedef struct idem {
    const char *scope; /* caller id, or "anon:<address>" */
    const char *key;
    char fingerprint[65];
    px_pg_txn_fn cb;
    void *userdata;
} idem_t;

struct px_pg_txn {
    pg_txn_t *txn;
    px_req_t *req;
    struct px_pg_txn *next;
    idem_t *idem; /* NULL for a plain transaction */
};

static req_op_t *op_new(px_req_t *r, int kind, req_op_cb_t cb, void *ud)
{
    req_op_t *op = xcalloc(1, sizeof(*op));
    op->req = r;
    op->kind = kind;
    op->cb = cb;
    op->userdata = ud;
    op->next = r->ops;
    if (r->ops)
        r->ops->prev = op;
    r->ops = op;
    return op;
}

/* The callback is starting: the handle is spent, the op leaves the request's list. */
static void op_finish(req_op_t *op)
{
    px_req_t *r = op->req;
    if (op->prev)
        op->prev->next = op->next;
    else
        r->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    free(op);
}

static void txn_forget(px_req_t *r, struct px_pg_txn *t)
{
    for (struct px_pg_txn **pp = &r->txns; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            return;
        }
    }
}

void api_req_cancel_work(px_req_t *r)
{
    while (r->ops) {
        req_op_t *op = r->ops;
        r->ops = op->next;
        if (op->kind == OP_REDIS)
            redis_cancel(op->handle);
        else if (op->kind == OP_WORK)
            api_job_detach(op);
        else
            pg_cancel(op->handle);
        free(op);
    }
    while (r->txns) {
        struct px_pg_txn *t = r->txns;
        r->txns = t->next;
        pg_txn_abandon(t->txn);
        free(t);
    }
    json_decref(r->header_overrides);
    r->header_overrides = NULL;
}

static void pg_query_done(const pg_result_t *res, const pg_error_t *err, void *ud)
{
    req_op_t *op = ud;
    px_req_t *r = op->req;
    px_pg_fn cb = op->cb.pg;
    void *user = op->userdata;
    op_finish(op);
    cb(r, (const px_pg_result_t *)res, (const px_pg_error_t *)err, user);
}

static int start_query(px_req_t *r, pg_txn_t *txn, const char *name, const char *sql,
                       int nparams, const char *const *values, px_pg_fn cb, void *ud)
{
    pg_pool_t *pool = r->worker->pg;
    if ((!pool && !txn) || !sql || !cb)
        return !sql || !cb ? PX_EINVAL : PX_EUNAVAIL;
    req_op_t *op = op_new(r, OP_PG_QUERY, (req_op_cb_t){.pg = cb}, ud);
    pg_handle_t **h = (pg_handle_t **)&op->handle;
    int rc;
    if (txn)
        rc = name ? pg_txn_query_prepared(txn, name, sql, nparams, values, pg_query_done, op, h)
                  : pg_txn_query(txn, sql, nparams, values, pg_query_done, op, h);
    else
        rc = name ? pg_query_prepared(pool, name, sql, nparams, values, pg_query_done, op, h)
                  : pg_query(pool, sql, nparams, values, pg_query_done, op, h);
    if (rc) {
        op_finish(op);
        return PX_EINVAL;
    }
    return 0;
}

static int api_pg_query(px_req_t *r, const char *name, const char *sql, int nparams,
                        const char *const *values, px_pg_fn cb, void *ud)
{
    return start_query(r, NULL, name, sql, nparams, values, cb, ud);
}

static int api_pg_rows(const px_pg_result_t *res)
{
    return pg_result_rows((const pg_result_t *)res);
}

static int api_pg_cols(const px_pg_result_t *res)
{
    return pg_result_cols((const pg_result_t *)res);
}

static const char *api_pg_value(const px_pg_result_t *res, int row, int col)
{
    const pg_result_t *pr = (const pg_result_t *)res;
    if (row < 0 || col < 0 || row >= pg_result_rows(pr) || col >= pg_result_cols(pr))
        return NULL;
    return pg_result_value(pr, row, col);
}

static int api_pg_colindex(const px_pg_result_t *res, const char *name)
{
    return pg_result_colindex((const pg_result_t *)res, name);
}

static int64_t api_pg_affected(const px_pg_result_t *res)
{
    return pg_result_affected((const pg_result_t *)res);
}

static int api_pg_error_kind(const px_pg_error_t *err)
{
    return (int)((const pg_error_t *)err)->kind;
}

static const char *api_pg_error_sqlstate(const px_pg_error_t *err)
{
    return ((const pg_error_t *)err)->sqlstate;
}

static const char *api_pg_error_message(const px_pg_error_t *err)
{
    return ((const pg_error_t *)err)->message;
}

static int api_res_pg_error(px_req_t *r, const px_pg_error_t *perr)
{
    const pg_error_t *err = (const pg_error_t *)perr;
    if (err->kind == PG_EUNAVAILABLE)
        return http_respond_error(r, 503, "unavailable", "the database is unavailable; retry",
                                  NULL);
    if (!strcmp(err->sqlstate, "23505"))
        return http_respond_error(r, 409, "conflict", "that already exists", NULL);
    if (!strcmp(err->sqlstate, "23503"))
        return http_respond_error(r, 409, "conflict", "it refers to something that does not exist",
                                  NULL);
    if (!strncmp(err->sqlstate, "22", 2)) {
        /* Class 22, data exception: the client's value (bad UTF-8, a number out of range,
         * text where a number belongs) — the request's fault, not ours. */
        char msg[300];
        snprintf(msg, sizeof(msg), "invalid value: %s", err->message);
        return http_respond_error(r, 400, "bad_request", msg, NULL);
    }
    log_error("plugin \"%s\": query failed (SQLSTATE %s): %s", r->plugin ? r->plugin : "?",
              err->sqlstate, err->message);
    return http_respond_error(r, 500, "internal", "a database query failed", NULL);
}

static void pg_begin_done(pg_txn_t *txn, const pg_error_t *err, void *ud)
{
    req_op_t *op = ud;
    px_req_t *r = op->req;
    px_pg_txn_fn cb = op->cb.txn;
    void *user = op->userdata;
    op_finish(op);
    if (!txn) {
        cb(r, NULL, (const px_pg_error_t *)err, user);
        return;
    }
    struct px_pg_txn *t = xcalloc(1, sizeof(*t));
    t->txn = txn;
    t->req = r;
    t->next = r->txns;
    r->txns = t;
    cb(r, t, NULL, user);
}

static int api_pg_begin(px_req_t *r, px_pg_txn_fn cb, void *ud)
{
    if (!r->worker->pg)
        return PX_EUNAVAIL;
    if (!cb)
        return PX_EINVAL;
    req_op_t *op = op_new(r, OP_PG_BEGIN, (req_op_cb_t){.txn = cb}, ud);
    if (pg_txn_begin(r->worker->pg, pg_begin_done, op, (pg_handle_t **)&op->handle)) {
        op_finish(op);
        return PX_EINVAL;
    }
    return 0;
}

static int api_pg_txn_query(px_pg_txn_t *t, const char *name, const char *sql, int nparams,
                            const char *const *values, px_pg_fn cb, void *ud)
{
    return start_query(t->req, t->txn, name, sql, nparams, values, cb, ud);
}

static void pg_end_done(const pg_error_t *err, void *ud)
{
    req_op_t *op = ud;
    px_req_t *r = op->req;
    px_pg_done_fn cb = op->cb.done;
    void *user = op->userdata;
    op_finish(op);
    if (cb)
        cb(r, (const px_pg_error_t *)err, user);
}

static int end_txn(px_pg_txn_t *t, bool commit, px_pg_done_fn cb, void *ud)
{
    px_req_t *r = t->req;
    pg_txn_t *txn = t->txn;
    txn_forget(r, t);
    free(t);
    req_op_t *op = op_new(r, OP_PG_DONE, (req_op_cb_t){.done = cb}, ud);
    pg_handle_t **h = (pg_handle_t **)&op->handle;
    int rc = commit ? pg_txn_commit(txn, pg_end_done, op, h)
                    : pg_txn_rollback(txn, pg_end_done, op, h);
    if (rc) {
        op_finish(op);
        return PX_EINVAL;
    }
    return 0;
}

static int api_pg_commit(px_pg_txn_t *t, px_pg_done_fn cb, void *ud)
{
    return end_txn(t, true, cb, ud);
}

static int api_pg_rollback(px_pg_txn_t *t, px_pg_done_fn cb, void *ud)
{
    return end_txn(t, false, cb, ud);
}

static void redis_done(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    req_op_t *op = ud;
    px_req_t *r = op->req;
    px_redis_fn cb = op->cb.redis;
    void *user = op->userdata;
    op_finish(op);
    int e = 0;
    if (err)
        e = err->kind == REDIS_ETIMEOUT ? PX_REDIS_TIMEOUT : PX_REDIS_UNAVAILABLE;
    cb(r, (const px_redis_reply_t *)reply, e, user);
}

static int api_redis_command(px_req_t *r, int argc, const char *const *argv,
                             const size_t *argvlen, px_redis_fn cb, void *ud)
{
    redis_client_t *client = r->worker->redis;
    if (!client || !redis_is_connected(client))
        return PX_EUNAVAIL;
    if (!cb || argc <= 0 || !argv)
        return PX_EINVAL;
    req_op_t *op = op_new(r, OP_REDIS, (req_op_cb_t){.redis = cb}, ud);
    if (redis_command(client, argc, (const char **)argv, argvlen, redis_done, op,
                      (redis_handle_t **)&op->handle)) {
        op_finish(op);
        return PX_EUNAVAIL;
    }
    return 0;
}

static int api_redis_type(const px_redis_reply_t *reply)
{
    switch (redis_reply_type((const redis_reply_t *)reply)) {
    case REDIS_TYPE_STRING: return PX_REDIS_STRING;
    case REDIS_TYPE_ARRAY: return PX_REDIS_ARRAY;
    case REDIS_TYPE_INTEGER: return PX_REDIS_INTEGER;
    case REDIS_TYPE_NIL: return PX_REDIS_NIL;
    case REDIS_TYPE_STATUS: return PX_REDIS_STATUS;
    default: return PX_REDIS_ERROR;
    }
}

static long long api_redis_integer(const px_redis_reply_t *reply)
{
    return (long long)redis_reply_integer((const redis_reply_t *)reply);
}

static const char *api_redis_string(const px_redis_reply_t *reply, size_t *len)
{
    return redis_reply_string((const redis_reply_t *)reply, len);
}

static size_t api_redis_elements(const px_redis_reply_t *reply)
{
    return redis_reply_count((const redis_reply_t *)reply);
}

static const px_redis_reply_t *api_redis_element(const px_redis_reply_t *reply, size_t i)
{
    return (const px_redis_reply_t *)redis_reply_element((const redis_reply_t *)reply, i);
}

/* ---- idempotent creates (1.1) ----
 *
 * BEGIN; a transaction-scoped advisory lock on (scope, key) so a concurrent duplicate
 * waits instead of racing; a look for a stored answer younger than 24 h; then either the
 * replay (or 409 for another body) after a rollback, or the handler's own writes, and
 * finally the answer stored by the same transaction that made the writes. Whatever
 * crashes in between, either both the rows and the answer exist or neither does. */

static void idem_fingerprint(px_req_t *r, char out[65])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    const char *method = r->method_name ? r->method_name : "";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, method, strlen(method));
    EVP_DigestUpdate(ctx, " ", 1);
    EVP_DigestUpdate(ctx, r->path, r->path_len);
    EVP_DigestUpdate(ctx, "\n", 1);
    if (r->body.len)
        EVP_DigestUpdate(ctx, r->body.data, r->body.len);
    EVP_DigestFinal_ex(ctx, digest, &dlen);
    EVP_MD_CTX_free(ctx);
    for (unsigned int i = 0; i < dlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static void idem_fail(px_req_t *r, px_pg_txn_t *t, const px_pg_error_t *err)
{
    api_pg_rollback(t, NULL, NULL);
    api_res_pg_error(r, err);
}

static void idem_replay(px_req_t *r, px_pg_txn_t *t, const pg_result_t *res)
{
    idem_t *idem = t->idem;
    if (strcmp(pg_result_value(res, 0, 0), idem->fingerprint) != 0) {
        api_pg_rollback(t, NULL, NULL);
        http_respond_error(r, 409, "conflict",
                           "this Idempotency-Key was used for a different request", NULL);
        return;
    }
    int64_t status = 200;
    pg_result_int64(res, 0, 1, &status);
    const char *headers = pg_result_value(res, 0, 2);
    const char *body = pg_result_value(res, 0, 3);
    /* Stored as "Name: value\r\n" lines, exactly as first sent. */
    buf_appends(&r->extra_headers, headers ? headers : "");
    http_add_header(r, "Idempotent-Replayed", "true");
    char *copy = xstrdup(body ? body : "");
    api_pg_rollback(t, NULL, NULL);
    http_respond(r, (int)status, "application/json; charset=utf-8", copy, strlen(copy), true);
}

static void idem_looked_up(px_req_t *r, const px_pg_result_t *pres, const px_pg_error_t *err,
                           void *ud)
{
    px_pg_txn_t *t = ud;
    if (err) {
        idem_fail(r, t, err);
        return;
    }
    const pg_result_t *res = (const pg_result_t *)pres;
    if (pg_result_rows(res) == 1) {
        idem_replay(r, t, res);
        return;
    }
    t->idem->cb(r, t, NULL, t->idem->userdata);
}

static void idem_locked(px_req_t *r, const px_pg_result_t *res, const px_pg_error_t *err,
                        void *ud)
{
    UNUSED(res);
    px_pg_txn_t *t = ud;
    if (err) {
        idem_fail(r, t, err);
        return;
    }
    const char *params[] = {t->idem->scope, t->idem->key};
    start_query(r, t->txn, "px_idem_lookup",
                "SELECT fingerprint, status, headers, body FROM panthera_idempotency "
                "WHERE scope = $1 AND key = $2 AND created_at > now() - interval '24 hours'",
                2, params, idem_looked_up, t);
}

static void idem_begun(px_req_t *r, px_pg_txn_t *t, const px_pg_error_t *err, void *ud)
{
    idem_t *idem = ud;
    if (err) {
        idem->cb(r, NULL, err, idem->userdata);
        return;
    }
    t->idem = idem;
    const char *params[] = {idem->scope, idem->key};
    start_query(r, t->txn, "px_idem_lock",
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(10) || $2, 0))", 2,
                params, idem_locked, t);
}

static int api_pg_begin_idempotent(px_req_t *r, px_pg_txn_fn cb, void *ud)
{
    const char *key = api_req_header(r, "Idempotency-Key");
    if (!key)
        return api_pg_begin(r, cb, ud);
    size_t len = strlen(key);
    bool printable = len > 0 && len <= 255;
    for (size_t i = 0; i < len && printable; i++)
        printable = key[i] >= 0x21 && key[i] <= 0x7e;
    if (!printable) {
        http_respond_error(r, 400, "bad_request",
                           "Idempotency-Key must be 1 to 255 visible ASCII characters", NULL);
        return PX_DONE;
    }
    if (!r->worker->pg)
        return PX_EUNAVAIL;
    idem_t *idem = arena_alloc(&r->arena, sizeof(*idem));
    idem->key = key;
    if (r->has_caller) {
        idem->scope = r->caller_id;
    } else {
        char addr[INET6_ADDRSTRLEN] = "-";
        if (r->conn && r->conn->family == AF_INET)
            uv_inet_ntop(AF_INET, r->conn->addr, addr, sizeof(addr));
        else if (r->conn && r->conn->family == AF_INET6)
            uv_inet_ntop(AF_INET6, r->conn->addr, addr, sizeof(addr));
        size_t n = strlen(addr) + 6;
        char *scope = arena_alloc(&r->arena, n);
        snprintf(scope, n, "anon:%s", addr);
        idem->scope = scope;
    }
    idem_fingerprint(r, idem->fingerprint);
    idem->cb = cb;
    idem->userdata = ud;
    return api_pg_begin(r, idem_begun, idem);
}

typedef struct commit_answer {
    int status;
    char *body;
} commit_answer_t;

static void answer_committed(px_req_t *r, const px_pg_error_t *err, void *ud)
{
    commit_answer_t *a = ud;
    if (err) {
        free(a->body);
        api_res_pg_error(r, err);
        return;
    }
    http_respond(r, a->status, "application/json; charset=utf-8", a->body, strlen(a->body), true);
}

static void answer_recorded(px_req_t *r, const px_pg_result_t *res, const px_pg_error_t *err,
                            void *ud)
{
    UNUSED(res);
    UNUSED(r);
    UNUSED(err); /* a failed statement makes the COMMIT fail: answer_committed reports it */
    UNUSED(ud);
}

static int api_pg_commit_respond(px_pg_txn_t *t, int status, json_t *body)
{
    px_req_t *r = t->req;
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (!text) {
        api_pg_rollback(t, NULL, NULL);
        return http_respond_error(r, 500, "internal", "the response could not be encoded", NULL);
    }
    if (t->idem) {
        char status_s[16];
        snprintf(status_s, sizeof(status_s), "%d", status);
        const char *params[] = {t->idem->scope, t->idem->key, t->idem->fingerprint, status_s,
                                r->extra_headers.data ? r->extra_headers.data : "", text};
        start_query(r, t->txn, "px_idem_record",
                    "INSERT INTO panthera_idempotency "
                    "(scope, key, fingerprint, status, headers, body) "
                    "VALUES ($1, $2, $3, $4::int, $5, $6) ON CONFLICT (scope, key) DO UPDATE "
                    "SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, "
                    "headers = EXCLUDED.headers, body = EXCLUDED.body, created_at = now()",
                    6, params, answer_recorded, NULL);
    }
    commit_answer_t *a = arena_alloc(&r->arena, sizeof(*a));
    a->status = status;
    a->body = text;
    return api_pg_commit(t, answer_committed, a);
}

/* ---- blocking work on the thread pool (1.1) ----
 *
 * Jobs are bounded per worker ([server] blocking_jobs running, blocking_queue waiting):
 * each may hold a lot of memory (a scrypt hash takes ~128 MiB), and libuv's pool is
 * shared with DNS lookups and file work. A job that has started cannot be stopped; when
 * its request ends first, its done callback still runs, with req NULL, so the plugin can
 * free what the job owns. */

typedef struct work_job {
    uv_work_t uv;
    worker_t *worker;
    req_op_t *op; /* NULL once the request ended */
    px_work_fn work;
    px_work_done_fn done;
    void *userdata;
    struct work_job *next;
} work_job_t;

static void job_start(work_job_t *job);

static void job_run(uv_work_t *uv)
{
    work_job_t *job = (work_job_t *)uv;
    job->work(job->userdata);
}

static void job_after(uv_work_t *uv, int status)
{
    work_job_t *job = (work_job_t *)uv;
    worker_t *w = job->worker;
    w->jobs_running--;
    px_req_t *r = NULL;
    if (job->op) {
        r = job->op->req;
        op_finish(job->op);
    }
    job->done(r, status == 0 ? 0 : PX_EUNAVAIL, job->userdata);
    free(job);
    /* Room for the next waiting job. */
    while (w->jobs_head && w->jobs_running < w->cfg->blocking_jobs) {
        work_job_t *next = w->jobs_head;
        w->jobs_head = next->next;
        if (!w->jobs_head)
            w->jobs_tail = NULL;
        w->jobs_waiting--;
        job_start(next);
    }
}

static void job_start(work_job_t *job)
{
    worker_t *w = job->worker;
    w->jobs_running++;
    if (uv_queue_work(w->loop, &job->uv, job_run, job_after) != 0) {
        /* Cannot happen with valid arguments; answer like a stopped worker. */
        w->jobs_running--;
        px_req_t *r = job->op ? job->op->req : NULL;
        if (job->op)
            op_finish(job->op);
        job->done(r, PX_EUNAVAIL, job->userdata);
        free(job);
    }
}

/* Called when the request ends with the job still waiting or running. */
void api_job_detach(req_op_t *op)
{
    work_job_t *job = op->handle;
    job->op = NULL;
}

static int api_work(px_req_t *r, px_work_fn work, px_work_done_fn done, void *ud)
{
    worker_t *w = r->worker;
    if (!work || !done)
        return PX_EINVAL;
    if (w->jobs_running >= w->cfg->blocking_jobs && w->jobs_waiting >= w->cfg->blocking_queue)
        return PX_EUNAVAIL;
    work_job_t *job = xcalloc(1, sizeof(*job));
    job->worker = w;
    job->work = work;
    job->done = done;
    job->userdata = ud;
    job->op = op_new(r, OP_WORK, (req_op_cb_t){.pg = NULL}, NULL);
    job->op->handle = job;
    if (w->jobs_running < w->cfg->blocking_jobs) {
        job_start(job);
    } else {
        if (w->jobs_tail)
            w->jobs_tail->next = job;
        else
            w->jobs_head = job;
        w->jobs_tail = job;
        w->jobs_waiting++;
    }
    return 0;
}

/* ---- commands (1.1) ---- */

static int api_command(px_plugin_t *p, const char *name, const char *usage, px_command_fn fn)
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

static int api_command_sql(px_plugin_t *p, const char *sql, int nparams,
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

static int api_openapi(px_plugin_t *p, json_t *fragment)
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

static int api_hook_run(px_req_t *r, const char *name, json_t **value)
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

static int api_migrations(px_plugin_t *p, const px_migration_t *list)
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
