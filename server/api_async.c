/*
 * api_async.c — the SDK functions whose answer comes later, all bound to a request:
 * PostgreSQL queries and transactions, idempotent creates, Redis commands and jobs on the
 * thread pool.
 *
 * Every piece of work a request starts is recorded on the request (req_op_t). When the
 * request ends first — answered early, or its client gone — api_req_cancel_work cancels
 * what is still pending (its callback never runs), rolls back open transactions, and
 * detaches pool jobs (whose done callback still runs, with req NULL, to free their data).
 */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "crash.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "pg.h"
#include "redis.h"
#include "request.h"
#include "seal.h"
#include "stream.h"
#include "channel.h"
#include "util.h"
#include "tasks.h"
#include "work.h"
#include "worker.h"

/* ---- pool work bound to a request (1.1) ---- */

/* OP_PG_WAKE: the COMMIT of a transaction that emitted events (events.c wakes the
 * consumers once it is through). */
enum req_op_kind { OP_PG_QUERY, OP_PG_BEGIN, OP_PG_DONE, OP_REDIS, OP_WORK = API_OP_WORK,
                   OP_PG_WAKE };

/* What an idempotent transaction must remember to record its answer. */
typedef struct idem {
    const char *scope; /* caller id, or "anon:<address>" */
    const char *key;
    bool sealed; /* keys from [auth] token_secret: answers sealed, fingerprint an HMAC */
    seal_keys_t keys;
    char fingerprint[65];
    px_pg_txn_fn cb;
    void *userdata;
} idem_t;

struct px_pg_txn {
    pg_txn_t *txn;
    px_req_t *req;
    struct px_pg_txn *next;
    idem_t *idem; /* NULL for a plain transaction */
    /* px_pg_on_commit's hooks, then px_channel_publish_on_commit's messages: run after
     * COMMIT, before the answer */
    struct commit_hook *hooks;
    bool emitted; /* px_event_emit was called on it */
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

req_op_t *api_op_new(px_req_t *r, int kind)
{
    return op_new(r, kind, (req_op_cb_t){.pg = NULL}, NULL);
}

/* The callback is starting: the handle is spent, the op leaves the request's list. */
void api_op_finish(req_op_t *op)
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

void api_req_interrupt_work(px_req_t *r)
{
    stream_req_interrupted(r);
    for (req_op_t *op = r->ops; op; op = op->next)
        if (op->kind == OP_PG_QUERY || op->kind == OP_PG_BEGIN || op->kind == OP_PG_DONE ||
            op->kind == OP_PG_WAKE)
            pg_interrupt(op->handle);
}

void api_req_cancel_work(px_req_t *r)
{
    /* Close callbacks first: the plugin frees there what its subscriptions use. */
    stream_req_end(r);
    channel_req_end(r);
    while (r->ops) {
        req_op_t *op = r->ops;
        r->ops = op->next;
        if (op->kind == OP_REDIS)
            redis_cancel(op->handle);
        else if (op->kind == OP_WORK)
            work_detach(op);
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
    tasks_req_ending(r);
    json_decref(r->header_overrides);
    r->header_overrides = NULL;
}

static void pg_query_done(const pg_result_t *res, const pg_error_t *err, void *ud)
{
    req_op_t *op = ud;
    px_req_t *r = op->req;
    px_pg_fn cb = op->cb.pg;
    void *user = op->userdata;
    api_op_finish(op);
    crash_enter(r);
    cb(r, (const px_pg_result_t *)res, (const px_pg_error_t *)err, user);
    crash_leave();
}

/* `cb` may be NULL in a transaction only: the statement is queued without a callback, and
 * a failure shows in the commit's error (pg.c keeps the first). `joined`: see
 * pg_txn_query_joined (a statement in a transaction). */
static int start_query(px_req_t *r, pg_txn_t *txn, const char *name, const char *sql, int nparams,
                       const char *const *values, px_pg_fn cb, void *ud, bool joined)
{
    pg_pool_t *pool = r->worker->pg;
    if ((!pool && !txn) || !sql || (!cb && !txn))
        return !sql || (!cb && !txn) ? PX_EINVAL : PX_EUNAVAIL;
    if (!cb) {
        int rc = joined ? pg_txn_query_joined(txn, name, sql, nparams, values, NULL, NULL, NULL)
                 : name ? pg_txn_query_prepared(txn, name, sql, nparams, values, NULL, NULL, NULL)
                        : pg_txn_query(txn, sql, nparams, values, NULL, NULL, NULL);
        return rc ? PX_EINVAL : 0;
    }
    req_op_t *op = op_new(r, OP_PG_QUERY, (req_op_cb_t){.pg = cb}, ud);
    pg_handle_t **h = (pg_handle_t **)&op->handle;
    int rc;
    if (txn && joined)
        rc = pg_txn_query_joined(txn, name, sql, nparams, values, pg_query_done, op, h);
    else if (txn)
        rc = name ? pg_txn_query_prepared(txn, name, sql, nparams, values, pg_query_done, op, h)
                  : pg_txn_query(txn, sql, nparams, values, pg_query_done, op, h);
    else
        rc = name ? pg_query_prepared(pool, name, sql, nparams, values, pg_query_done, op, h)
                  : pg_query(pool, sql, nparams, values, pg_query_done, op, h);
    if (rc) {
        api_op_finish(op);
        return PX_EINVAL;
    }
    return 0;
}

/* A plugin's statement names are its own: see api_pg.c. */
static int plugin_query(px_req_t *r, pg_txn_t *txn, const char *name, const char *sql,
                        int nparams, const char *const *values, px_pg_fn cb, void *ud,
                        bool joined)
{
    char stmt[64];
    if (name && api_pg_stmt_name(r->plugin, name, stmt))
        return PX_EINVAL;
    return start_query(r, txn, name ? stmt : NULL, sql, nparams, values, cb, ud, joined);
}

int api_pg_query(px_req_t *r, const char *name, const char *sql, int nparams,
                 const char *const *values, px_pg_fn cb, void *ud)
{
    return plugin_query(r, NULL, name, sql, nparams, values, cb, ud, false);
}

int api_pg_rows(const px_pg_result_t *res)
{
    return pg_result_rows((const pg_result_t *)res);
}

int api_pg_cols(const px_pg_result_t *res)
{
    return pg_result_cols((const pg_result_t *)res);
}

const char *api_pg_value(const px_pg_result_t *res, int row, int col)
{
    const pg_result_t *pr = (const pg_result_t *)res;
    if (row < 0 || col < 0 || row >= pg_result_rows(pr) || col >= pg_result_cols(pr))
        return NULL;
    return pg_result_value(pr, row, col);
}

int api_pg_colindex(const px_pg_result_t *res, const char *name)
{
    return pg_result_colindex((const pg_result_t *)res, name);
}

int64_t api_pg_affected(const px_pg_result_t *res)
{
    return pg_result_affected((const pg_result_t *)res);
}

int api_pg_error_kind(const px_pg_error_t *err)
{
    return (int)((const pg_error_t *)err)->kind;
}

const char *api_pg_error_sqlstate(const px_pg_error_t *err)
{
    return ((const pg_error_t *)err)->sqlstate;
}

const char *api_pg_error_message(const px_pg_error_t *err)
{
    return ((const pg_error_t *)err)->message;
}

int api_res_pg_error(px_req_t *r, const px_pg_error_t *perr)
{
    const pg_error_t *err = (const pg_error_t *)perr;
    if (err->kind == PG_EUNAVAILABLE)
        return http_respond_error(r, 503, "unavailable", "the database is unavailable; retry",
                                  NULL);
    if (!strcmp(err->sqlstate, "40P01") || !strcmp(err->sqlstate, "40001")) {
        /* PostgreSQL failed this transaction to break a lock cycle with a concurrent one
         * (or a serialization conflict). Nothing of it stayed; the host cannot replay a
         * transaction a handler built step by step, but the client can. */
        log_warn("plugin \"%s\": a statement lost a lock conflict (SQLSTATE %s): %s",
                 r->plugin ? r->plugin : "?", err->sqlstate, err->message);
        return http_respond_error(r, 503, "unavailable",
                                  "a concurrent change got in the way; retry", NULL);
    }
    const char *declared = api_pg_conflict_message(r, perr); /* px_pg_conflict */
    if (!strcmp(err->sqlstate, "23505"))
        return http_respond_error(r, 409, "conflict", declared ? declared : "that already exists",
                                  NULL);
    if (!strcmp(err->sqlstate, "23503"))
        return http_respond_error(r, 409, "conflict",
                                  declared ? declared : "it refers to something that does not exist",
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
    api_op_finish(op);
    crash_enter(r);
    if (!txn) {
        cb(r, NULL, (const px_pg_error_t *)err, user);
        crash_leave();
        return;
    }
    struct px_pg_txn *t = xcalloc(1, sizeof(*t));
    t->txn = txn;
    t->req = r;
    t->next = r->txns;
    r->txns = t;
    cb(r, t, NULL, user);
    crash_leave();
}

int api_pg_begin(px_req_t *r, px_pg_txn_fn cb, void *ud)
{
    if (!r->worker->pg)
        return PX_EUNAVAIL;
    if (!cb)
        return PX_EINVAL;
    req_op_t *op = op_new(r, OP_PG_BEGIN, (req_op_cb_t){.txn = cb}, ud);
    if (pg_txn_begin(r->worker->pg, pg_begin_done, op, (pg_handle_t **)&op->handle)) {
        api_op_finish(op);
        return PX_EINVAL;
    }
    return 0;
}

int api_pg_txn_query(px_pg_txn_t *t, const char *name, const char *sql, int nparams,
                     const char *const *values, px_pg_fn cb, void *ud)
{
    return plugin_query(t->req, t->txn, name, sql, nparams, values, cb, ud, false);
}

int api_pg_txn_query_joined(px_pg_txn_t *t, const char *name, const char *sql, int nparams,
                            const char *const *values, px_pg_fn cb, void *ud)
{
    return plugin_query(t->req, t->txn, name, sql, nparams, values, cb, ud, true);
}

static void pg_end_done(const pg_error_t *err, void *ud)
{
    req_op_t *op = ud;
    px_req_t *r = op->req;
    px_pg_done_fn cb = op->cb.done;
    void *user = op->userdata;
    bool wake = op->kind == OP_PG_WAKE && !err;
    api_op_finish(op);
    if (wake)
        events_wake(r->worker);
    if (cb) {
        crash_enter(r);
        cb(r, (const px_pg_error_t *)err, user);
        crash_leave();
    }
}

/* What a transaction does once it has committed, one list in the order it runs:
 * px_pg_on_commit's hooks in the order they were added, then
 * px_channel_publish_on_commit's messages in theirs (a hook is inserted before the first
 * message, a message appended), so a hook that publishes is heard before the messages
 * and the commit's callback is wrapped once whatever was added. In request memory: a
 * commit whose request ends first never calls back, and they die with the request. */
typedef struct commit_hook {
    px_pg_commit_hook_fn fn; /* NULL: a message to publish */
    void *userdata;
    const char *channel;
    const void *data;
    size_t len;
    struct commit_hook *next;
} commit_hook_t;

typedef struct hooked_commit {
    commit_hook_t *hooks;
    px_pg_done_fn cb;
    void *userdata;
} hooked_commit_t;

static void run_commit_hooks(px_req_t *r, const px_pg_error_t *err, void *ud)
{
    hooked_commit_t *hc = ud;
    for (commit_hook_t *h = hc->hooks; h && !err; h = h->next) {
        if (!h->fn) {
            channel_publish_committed(r, h->channel, h->data, h->len);
            continue;
        }
        crash_enter(r);
        h->fn(r, h->userdata);
        crash_leave();
    }
    if (hc->cb)
        hc->cb(r, err, hc->userdata);
}

int api_pg_on_commit(px_pg_txn_t *t, px_pg_commit_hook_fn fn, void *ud)
{
    if (!t || !fn)
        return PX_EINVAL;
    commit_hook_t *h = arena_alloc(&t->req->arena, sizeof(*h)), **at = &t->hooks;
    while (*at && (*at)->fn)
        at = &(*at)->next;
    *h = (commit_hook_t){.fn = fn, .userdata = ud, .next = *at};
    *at = h;
    return 0;
}

int api_channel_publish_on_commit(px_pg_txn_t *t, const char *channel, const void *data,
                                  size_t len)
{
    if (!t || channel_check(channel, data, len))
        return PX_EINVAL;
    arena_t *a = &t->req->arena;
    commit_hook_t *h = arena_alloc(a, sizeof(*h)), **at = &t->hooks;
    while (*at)
        at = &(*at)->next;
    *h = (commit_hook_t){.channel = arena_strndup(a, channel, strlen(channel)),
                         .data = len ? memcpy(arena_alloc(a, len), data, len) : "",
                         .len = len};
    *at = h;
    return 0;
}

static int end_txn(px_pg_txn_t *t, bool commit, px_pg_done_fn cb, void *ud)
{
    px_req_t *r = t->req;
    pg_txn_t *txn = t->txn;
    if (commit && t->hooks) {
        hooked_commit_t *hc = arena_alloc(&r->arena, sizeof(*hc));
        *hc = (hooked_commit_t){.hooks = t->hooks, .cb = cb, .userdata = ud};
        cb = run_commit_hooks;
        ud = hc;
    }
    int kind = commit && t->emitted ? OP_PG_WAKE : OP_PG_DONE;
    txn_forget(r, t);
    free(t);
    req_op_t *op = op_new(r, kind, (req_op_cb_t){.done = cb}, ud);
    pg_handle_t **h = (pg_handle_t **)&op->handle;
    int rc =
        commit ? pg_txn_commit(txn, pg_end_done, op, h) : pg_txn_rollback(txn, pg_end_done, op, h);
    if (rc) {
        api_op_finish(op);
        return PX_EINVAL;
    }
    return 0;
}

px_req_t *api_txn_req(px_pg_txn_t *t)
{
    return t->req;
}

void api_txn_mark_emitted(px_pg_txn_t *t)
{
    t->emitted = true;
}

int api_pg_commit(px_pg_txn_t *t, px_pg_done_fn cb, void *ud)
{
    return end_txn(t, true, cb, ud);
}

int api_pg_rollback(px_pg_txn_t *t, px_pg_done_fn cb, void *ud)
{
    return end_txn(t, false, cb, ud);
}

static void redis_done(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    req_op_t *op = ud;
    px_req_t *r = op->req;
    px_redis_fn cb = op->cb.redis;
    void *user = op->userdata;
    api_op_finish(op);
    int e = 0;
    if (err)
        e = err->kind == REDIS_ETIMEOUT ? PX_REDIS_TIMEOUT : PX_REDIS_UNAVAILABLE;
    crash_enter(r);
    cb(r, (const px_redis_reply_t *)reply, e, user);
    crash_leave();
}

int api_redis_command(px_req_t *r, int argc, const char *const *argv, const size_t *argvlen,
                      px_redis_fn cb, void *ud)
{
    redis_client_t *client = r->worker->redis;
    if (!client || !redis_is_connected(client))
        return PX_EUNAVAIL;
    if (argc <= 0 || !argv)
        return PX_EINVAL;
    if (!cb) /* fire and forget: nothing to tie to the request */
        return redis_command(client, argc, (const char **)argv, argvlen, NULL, NULL, NULL)
                   ? PX_EUNAVAIL
                   : 0;
    req_op_t *op = op_new(r, OP_REDIS, (req_op_cb_t){.redis = cb}, ud);
    if (redis_command(client, argc, (const char **)argv, argvlen, redis_done, op,
                      (redis_handle_t **)&op->handle)) {
        api_op_finish(op);
        return PX_EUNAVAIL;
    }
    return 0;
}

/* ---- Redis scripts (1.2): redis.c's EVALSHA with the NOSCRIPT fallback ---- */

px_redis_script_t *api_redis_script_new(px_plugin_t *plugin, const char *source)
{
    UNUSED(plugin);
    return source ? (px_redis_script_t *)redis_script_new(source) : NULL;
}

const char *api_redis_script_sha(const px_redis_script_t *script)
{
    return script ? redis_script_sha((const redis_script_t *)script) : NULL;
}

void api_redis_script_free(px_redis_script_t *script)
{
    redis_script_free((redis_script_t *)script);
}

int api_redis_eval(px_req_t *r, const px_redis_script_t *script, int numkeys, int argc,
                   const char *const *argv, const size_t *argvlen, px_redis_fn cb, void *ud)
{
    redis_client_t *client = r->worker->redis;
    if (!script || !cb || numkeys < 0 || argc < numkeys || (argc > 0 && !argv))
        return PX_EINVAL;
    if (!client || !redis_is_connected(client))
        return PX_EUNAVAIL;
    req_op_t *op = op_new(r, OP_REDIS, (req_op_cb_t){.redis = cb}, ud);
    if (redis_eval(client, (const redis_script_t *)script, numkeys, argc, (const char **)argv,
                   argvlen, redis_done, op, (redis_handle_t **)&op->handle)) {
        api_op_finish(op);
        return PX_EUNAVAIL;
    }
    return 0;
}

int api_redis_type(const px_redis_reply_t *reply)
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

long long api_redis_integer(const px_redis_reply_t *reply)
{
    return (long long)redis_reply_integer((const redis_reply_t *)reply);
}

const char *api_redis_string(const px_redis_reply_t *reply, size_t *len)
{
    return redis_reply_string((const redis_reply_t *)reply, len);
}

size_t api_redis_elements(const px_redis_reply_t *reply)
{
    return redis_reply_count((const redis_reply_t *)reply);
}

const px_redis_reply_t *api_redis_element(const px_redis_reply_t *reply, size_t i)
{
    return (const px_redis_reply_t *)redis_reply_element((const redis_reply_t *)reply, i);
}

/* ---- idempotent creates (1.1) ----
 *
 * BEGIN; a transaction-scoped advisory lock on (scope, key) so a concurrent duplicate
 * waits instead of racing; a look for a stored answer younger than 24 h; then either the
 * replay (or 409 for another body) after a rollback, or the handler's own writes, and
 * finally the answer stored by the same transaction that made the writes. Whatever
 * crashes in between, either both the rows and the answer exist or neither does.
 *
 * With an [auth] token_secret (seal.h), the stored answer is sealed and the request's
 * fingerprint is an HMAC: a register's answer holds a working refresh token and its body
 * a password, neither of which a copy of the database should give away. Without one, both
 * are stored as they are (SHA-256 for the fingerprint). */

#define IDEM_PURPOSE "panthera idempotency v1"

/* What a sealed answer is bound to: its row. */
static char *idem_aad(px_req_t *r, const idem_t *idem)
{
    size_t n = strlen(idem->scope) + strlen(idem->key) + 2;
    char *aad = arena_alloc(&r->arena, n);
    snprintf(aad, n, "%s\n%s", idem->scope, idem->key);
    return aad;
}

static int idem_fingerprint(px_req_t *r, idem_t *idem)
{
    const char *method = r->method_name ? r->method_name : "";
    if (idem->sealed) {
        const void *pieces[] = {method, " ", r->path, "\n", r->body.data ? r->body.data : ""};
        const size_t lens[] = {strlen(method), 1, r->path_len, 1, r->body.len};
        return seal_mac_hex(&idem->keys, pieces, lens, ARRAY_SIZE(pieces), idem->fingerprint);
    }
    char *out = idem->fingerprint;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
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
    return 0;
}

static void idem_fail(px_req_t *r, px_pg_txn_t *t, const px_pg_error_t *err)
{
    api_pg_rollback(t, NULL, NULL);
    api_res_pg_error(r, err);
}

static size_t be32(const unsigned char *p)
{
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | (size_t)p[3];
}

static void idem_replay(px_req_t *r, px_pg_txn_t *t, const pg_result_t *res)
{
    idem_t *idem = t->idem;
    int64_t status = 200;
    pg_result_int64(res, 0, 1, &status);
    const char *headers = pg_result_value(res, 0, 2);
    const char *body = pg_result_value(res, 0, 3);
    char *plain = NULL;
    size_t hlen = headers ? strlen(headers) : 0, blen = body ? strlen(body) : 0;
    if (seal_is_sealed(body)) {
        size_t len = 0;
        if (!idem->sealed || seal_open(&idem->keys, idem_aad(r, idem), body, &plain, &len) ||
            len < 4 || (hlen = be32((const unsigned char *)plain)) > len - 4) {
            free(plain);
            log_warn("idempotency: the stored answer for key \"%s\" cannot be opened (was "
                     "[auth] token_secret changed?)",
                     idem->key);
            api_pg_rollback(t, NULL, NULL);
            http_respond_error(r, 409, "conflict",
                               "the first answer to this Idempotency-Key can no longer be read; "
                               "retry with a new key",
                               NULL);
            return;
        }
        headers = plain + 4;
        body = plain + 4 + hlen;
        blen = len - 4 - hlen;
    }
    /* Compared once the answer opened: with another secret the fingerprint differs too, and
     * "can no longer be read" is the true reason. */
    if (strcmp(pg_result_value(res, 0, 0), idem->fingerprint) != 0) {
        free(plain);
        api_pg_rollback(t, NULL, NULL);
        http_respond_error(r, 409, "conflict",
                           "this Idempotency-Key was used for a different request", NULL);
        return;
    }
    /* Headers are "Name: value\r\n" lines, exactly as first sent. */
    buf_append(&r->extra_headers, headers ? headers : "", hlen);
    http_add_header(r, "Idempotent-Replayed", "true");
    char *copy = xstrndup(body ? body : "", blen);
    free(plain);
    api_pg_rollback(t, NULL, NULL);
    http_respond(r, (int)status, "application/json; charset=utf-8", copy, blen, true);
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

static void idem_locked(px_req_t *r, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
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
                2, params, idem_looked_up, t, false);
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
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(10) || $2, 0))", 2, params,
                idem_locked, t, false);
}

int api_pg_begin_idempotent(px_req_t *r, px_pg_txn_fn cb, void *ud)
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
    const char *secret = r->worker->cfg->auth.token_secret;
    idem->sealed = secret && *secret;
    if ((idem->sealed && seal_keys_derive(secret, strlen(secret), IDEM_PURPOSE, &idem->keys) < 0) ||
        idem_fingerprint(r, idem) < 0)
        return http_respond_error(r, 500, "internal", "cannot fingerprint the request", NULL);
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

int api_pg_commit_respond(px_pg_txn_t *t, int status, json_t *body)
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
        const char *headers = r->extra_headers.data ? r->extra_headers.data : "";
        const char *stored = text;
        if (t->idem->sealed) {
            /* One sealed text: the headers' length (4 bytes, big-endian), headers, body. */
            size_t hlen = r->extra_headers.len, blen = strlen(text);
            char *plain = xmalloc(4 + hlen + blen);
            plain[0] = (char)(hlen >> 24), plain[1] = (char)(hlen >> 16);
            plain[2] = (char)(hlen >> 8), plain[3] = (char)hlen;
            memcpy(plain + 4, headers, hlen);
            memcpy(plain + 4 + hlen, text, blen);
            char *sealed = seal_text(&t->idem->keys, idem_aad(r, t->idem), plain, 4 + hlen + blen);
            free(plain);
            if (!sealed) {
                free(text);
                api_pg_rollback(t, NULL, NULL);
                return http_respond_error(r, 500, "internal", "the answer could not be sealed",
                                          NULL);
            }
            stored = arena_strndup(&r->arena, sealed, strlen(sealed));
            free(sealed);
            headers = "";
        }
        const char *params[] = {t->idem->scope, t->idem->key, t->idem->fingerprint,
                                status_s,       headers,      stored};
        start_query(r, t->txn, "px_idem_record",
                    "INSERT INTO panthera_idempotency "
                    "(scope, key, fingerprint, status, headers, body) "
                    "VALUES ($1, $2, $3, $4::int, $5, $6) ON CONFLICT (scope, key) DO UPDATE "
                    "SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, "
                    "headers = EXCLUDED.headers, body = EXCLUDED.body, created_at = now()",
                    6, params, answer_recorded, NULL, false);
    }
    commit_answer_t *a = arena_alloc(&r->arena, sizeof(*a));
    a->status = status;
    a->body = text;
    return api_pg_commit(t, answer_committed, a);
}

/* ---- blocking work on the thread pool (1.1; queues: work.c) ---- */

int api_work(px_req_t *r, px_work_fn work, px_work_done_fn done, void *ud)
{
    return work_submit(r, NULL, work, done, ud);
}
