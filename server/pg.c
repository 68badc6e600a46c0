/*
 * pg.c — the per-worker asynchronous PostgreSQL pool: its requests and the delivery of
 * their callbacks, the queue of requests waiting for a connection and the kick that hands
 * them out, transactions, the pool's own life and the calls of pg.h. What a connection
 * sends and reads (the pipeline, prepared statements) is in pg_pipeline.c; one
 * connection's life (name lookup, handshake, socket watcher, backoff, loss) is in
 * pg_conn.c; what the three share is in pg_internal.h.
 *
 * Why it looks like this. A worker runs every request on one libuv loop, so a single
 * blocking libpq call stalls every client of that worker. libpq can be driven without
 * blocking, but only if each of its calls is made when the socket says so: connecting is
 * PQconnectStartParams then PQconnectPoll steps, each telling us whether to wait for
 * read or write readiness; querying is PQsend* then PQflush on writable, PQconsumeInput and
 * PQgetResult (until NULL, while !PQisBusy) on readable. One uv_poll_t per connection
 * watches PQsocket().
 *
 * Who runs when. Work is a request (pg_handle_t). It waits in one of three places: the
 * pool's FIFO of requests waiting for a connection (bounded, with a deadline checked by
 * one timer), a transaction's own queue (its connection is pinned), or on a connection.
 * When it finishes, it moves to the pool's "done" list, and an idle handle delivers the
 * callbacks on the next loop iteration. Callbacks therefore never run inside a pg_* call
 * or in the middle of our I/O handling: the user may call anything from them, including
 * pg_pool_close, and we never have to re-check the world after calling out. Connections
 * are taken back and reused as soon as their results are in, before the callbacks run.
 *
 * Failure. A connection that fails is retried in the background (see pg_conn.c). When no
 * connection is up and the last attempt failed, the server is down as far as we know:
 * waiting requests fail at once and new ones fail fast instead of holding their HTTP
 * clients for wait_timeout_ms each. Fast, but not blind: a request that finds the pool down
 * starts an attempt ahead of the backoff (at most every 100 ms) and, when attempts have
 * been failing fast, waits for it, so the first request after PostgreSQL comes back is
 * served rather than told to retry for up to the 5 s backoff. A connection is only reused outside a transaction
 * when PostgreSQL says it is idle (not inside a transaction); otherwise the pool sends
 * ROLLBACK first (see pg_pipeline.c), which is also how abandoned transactions end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pg_internal.h"
#include "util.h"

#define STMT_NAME_MAX 63 /* NAMEDATALEN - 1 */
#define PARAMS_MAX 65535 /* the protocol's limit */

static void on_deliver(uv_idle_t *idle);
static void txn_maybe_free(pg_txn_t *txn);
static void pool_maybe_finish(pg_pool_t *pool);

/* libpq messages end with a newline and may span lines; log lines and callers want one. */
char *pg_one_line(const char *s)
{
    char *out = xstrdup(s && *s ? s : "unknown error");
    size_t n = 0;
    for (const char *p = out; *p; p++) {
        bool space = *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t';
        if (space && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = space ? ' ' : *p;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return out;
}

/* ---- requests ---- */

pg_handle_t *pg_req_new(pg_pool_t *pool, enum req_kind kind, const char *name, const char *sql,
                        int nparams, const char *const *values)
{
    size_t sql_len = strlen(sql) + 1, name_len = name ? strlen(name) + 1 : 0;
    size_t size = sizeof(pg_handle_t) + (size_t)nparams * sizeof(char *) + sql_len + name_len;
    for (int i = 0; i < nparams; i++)
        if (values[i])
            size += strlen(values[i]) + 1;
    pg_handle_t *req = xcalloc(1, size);
    list_init(&req->link);
    req->pool = pool;
    req->kind = kind;
    req->nparams = nparams;
    req->values = (const char **)(req + 1);
    char *p = (char *)(req->values + nparams);
    memcpy(p, sql, sql_len);
    req->sql = p;
    p += sql_len;
    if (name) {
        memcpy(p, name, name_len);
        req->name = p;
        p += name_len;
    }
    for (int i = 0; i < nparams; i++) {
        if (!values[i])
            continue;
        size_t len = strlen(values[i]) + 1;
        memcpy(p, values[i], len);
        req->values[i] = p;
        p += len;
    }
    return req;
}

static void req_free(pg_handle_t *req)
{
    pg_txn_t *txn = req->txn;
    if (txn && req->kind == REQ_BEGIN)
        txn->begin = NULL;
    else if (txn)
        txn->ndone--;
    PQclear(req->result.pg);
    free(req->message);
    free(req->detail);
    free(req->constraint);
    free(req);
    if (txn)
        txn_maybe_free(txn);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* Remember the first statement of a transaction that failed on its own (see pg_txn). */
static void txn_note_failure(pg_txn_t *txn, const pg_handle_t *req)
{
    const PGresult *res = req->result.pg;
    bool failed = req->errkind == PG_EQUERY ||
                  (!req->errkind && res && PQresultStatus(res) == PGRES_FATAL_ERROR);
    if (txn->failed || req->kind != REQ_QUERY || !failed)
        return;
    const char *state = req->message ? req->sqlstate
                        : res         ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                                      : NULL;
    if (!state || !strcmp(state, "25P02"))
        return;
    txn->failed = true;
    snprintf(txn->fail_sqlstate, sizeof(txn->fail_sqlstate), "%s", state);
    if (req->message) {
        txn->fail_message = xstrdup(req->message);
        txn->fail_detail = dup_or_null(req->detail);
        txn->fail_constraint = dup_or_null(req->constraint);
    } else {
        const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        txn->fail_message = xstrdup(msg ? msg : "a statement of the transaction failed");
        txn->fail_detail = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
        txn->fail_constraint = dup_or_null(PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME));
    }
}

bool pg_txn_first_error(pg_txn_t *txn, pg_handle_t *commit)
{
    if (!txn || !txn->failed)
        return false;
    memcpy(commit->sqlstate, txn->fail_sqlstate, sizeof(commit->sqlstate));
    commit->message = xstrdup(txn->fail_message);
    commit->detail = dup_or_null(txn->fail_detail);
    commit->constraint = dup_or_null(txn->fail_constraint);
    return true;
}

/* The work is over: queue the callback, or free the request if nobody wants it. A
 * transaction stays allocated while callbacks of its requests are due, so that abandoning
 * it can still silence them (see deliver). */
void pg_req_finish(pg_handle_t *req)
{
    pg_pool_t *pool = req->pool;
    if (req->kind != REQ_BEGIN && req->txn)
        txn_note_failure(req->txn, req);
    if (req->kind == REQ_BEGIN && req->errkind)
        req->txn->ended = req->txn->abandoned = true; /* the caller never gets it */
    else if (req->kind != REQ_BEGIN && req->txn && req->silent)
        req->txn = NULL;
    else if (req->kind != REQ_BEGIN && req->txn)
        req->txn->ndone++;
    if (req->silent) {
        req_free(req);
        return;
    }
    req->where = AT_DONE;
    list_push(&pool->done, &req->link);
    uv_idle_start(&pool->deliver, on_deliver);
}

void pg_req_fail(pg_handle_t *req, pg_errkind_t kind, const char *sqlstate, const char *why)
{
    PQclear(req->result.pg);
    req->result.pg = NULL;
    free(req->message);
    req->message = pg_one_line(why);
    req->errkind = kind;
    snprintf(req->sqlstate, sizeof(req->sqlstate), "%s", sqlstate ? sqlstate : "");
    pg_req_finish(req);
}

/* Keeps what a running request gets: the first error if there is one, else the last. */
void pg_answer_keep(pg_handle_t *req, PGresult *res)
{
    if (!req->result.pg) {
        req->result.pg = res;
    } else if (PQresultStatus(req->result.pg) == PGRES_FATAL_ERROR) {
        PQclear(res);
    } else {
        PQclear(req->result.pg);
        req->result.pg = res;
    }
}

static void error_fill(const pg_handle_t *req, pg_error_t *err)
{
    memset(err, 0, sizeof(*err));
    err->kind = req->errkind;
    const PGresult *res = req->result.pg;
    if (req->message) {
        err->message = req->message;
        err->detail = req->detail;
        err->constraint = req->constraint;
        memcpy(err->sqlstate, req->sqlstate, sizeof(err->sqlstate));
    } else if (res) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state ? state : "XX000");
        err->message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        err->detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        err->constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    }
    if (!err->message)
        err->message = "no answer from PostgreSQL";
}

static void deliver(pg_handle_t *req)
{
    pg_error_t err;
    const pg_error_t *e = NULL;
    if (req->errkind) {
        error_fill(req, &err);
        e = &err;
    }
    req->where = AT_CALLBACK;
    if (req->kind != REQ_BEGIN && req->txn && req->txn->abandoned) {
        req_free(req); /* its answer came in before pg_txn_abandon, its callback is off */
        return;
    }
    switch (req->kind) {
    case REQ_QUERY: req->cb.query(e ? NULL : &req->result, e, req->ud); break;
    case REQ_BEGIN: {
        /* From here on the caller owns the transaction and may end it in the callback. */
        pg_txn_t *txn = req->txn;
        req->txn = NULL;
        txn->begin = NULL;
        if (e)
            txn_maybe_free(txn);
        req->cb.txn(e ? NULL : txn, e, req->ud);
        break;
    }
    case REQ_PING:
    case REQ_COMMIT:
    case REQ_ROLLBACK: req->cb.done(e, req->ud); break;
    }
    req_free(req);
}

/* Delivers what finished before this iteration; what the callbacks start or fail waits
 * for the next one, so a caller retrying in a tight loop cannot starve the loop. */
static void on_deliver(uv_idle_t *idle)
{
    pg_pool_t *pool = idle->data;
    link_t batch;
    list_move(&batch, &pool->done);
    while (!list_empty(&batch))
        deliver(pg_req_pop(&batch)); /* pg_cancel may unlink other entries meanwhile */
    if (list_empty(&pool->done))
        uv_idle_stop(idle);
    pool_maybe_finish(pool);
}

/* ---- the wait queue ---- */

static void wait_timer_arm(pg_pool_t *pool);

static void on_wait_timer(uv_timer_t *timer)
{
    pg_pool_t *pool = timer->data;
    uint64_t now = uv_now(pool->loop);
    while (!list_empty(&pool->waiting)) {
        pg_handle_t *req = pg_req_first(&pool->waiting);
        if (req->deadline > now)
            break;
        list_unlink(&req->link);
        pool->nwaiting--;
        char why[96];
        snprintf(why, sizeof(why), "no PostgreSQL connection became free within %d ms",
                 pool->wait_timeout_ms);
        pg_req_fail(req, PG_EUNAVAILABLE, NULL, why);
    }
    wait_timer_arm(pool);
}

/* One timer for the whole queue: every entry has the same timeout, so the head always
 * expires first. Entries leaving early only make the timer fire once for nothing. */
static void wait_timer_arm(pg_pool_t *pool)
{
    if (list_empty(&pool->waiting)) {
        uv_timer_stop(&pool->wait_timer);
        return;
    }
    uint64_t deadline = pg_req_first(&pool->waiting)->deadline, now = uv_now(pool->loop);
    uv_timer_start(&pool->wait_timer, on_wait_timer, deadline > now ? deadline - now : 0, 0);
}

void pg_fail_waiting(pg_pool_t *pool, pg_errkind_t kind, const char *why)
{
    while (!list_empty(&pool->waiting)) {
        pool->nwaiting--;
        pg_req_fail(pg_req_pop(&pool->waiting), kind, NULL, why);
    }
    uv_timer_stop(&pool->wait_timer);
}

/* Up, nothing in flight, no transaction and no cancel on its way: it takes waiting work
 * at the next kick. */
static bool conn_idle(const conn_t *c)
{
    return c->state == CONN_READY && c->nsent == 0 && !c->txn && !c->cancelling;
}

static conn_t *idle_conn(const pg_pool_t *pool)
{
    for (int i = 0; i < pool->size; i++)
        if (conn_idle(&pool->conns[i]))
            return &pool->conns[i];
    return NULL;
}

int pg_idle_count(const pg_pool_t *pool)
{
    int idle = 0;
    for (int i = 0; i < pool->size; i++)
        idle += conn_idle(&pool->conns[i]);
    return idle;
}

/* Runs just before the loop would block: everything submitted since the last time goes
 * out now, as few groups as the rules allow (see pg_pipeline.c), each with one send. */
static void on_kick(uv_prepare_t *kick)
{
    pg_pool_t *pool = kick->data;
    uv_prepare_stop(kick);
    conn_t *c;
    while (!list_empty(&pool->waiting) && (c = idle_conn(pool)))
        pg_pipeline_next(c);
    for (int i = 0; i < pool->size; i++) {
        c = &pool->conns[i];
        if (c->txn_kick) { /* no statement came to join: the joining one goes alone */
            c->txn_kick = false;
            pg_pipeline_next(c);
        }
    }
}

/* Every request that needs a connection of its own comes through here. The queue's bound
 * counts what waits for a busy connection: an idle one takes at least one at the kick. */
static void submit(pg_pool_t *pool, pg_handle_t *req)
{
    if (pool->up == 0 && pool->down && !pg_conn_probe(pool)) { /* none up, so none idle */
        char *why = xasprintf("PostgreSQL is unreachable: %s",
                              pool->last_error ? pool->last_error : "not connected");
        pg_req_fail(req, PG_EUNAVAILABLE, NULL, why);
        free(why);
        return;
    }
    int idle = pg_idle_count(pool);
    if (pool->nwaiting >= pool->queue_max + idle) {
        char why[96];
        snprintf(why, sizeof(why), "%d queries already wait for a PostgreSQL connection",
                 pool->nwaiting - idle);
        pg_req_fail(req, PG_EUNAVAILABLE, NULL, why);
        return;
    }
    req->where = AT_WAITING;
    req->deadline = uv_now(pool->loop) + (uint64_t)pool->wait_timeout_ms;
    list_push(&pool->waiting, &req->link);
    pool->nwaiting++;
    if (idle > 0)
        uv_prepare_start(&pool->kick, on_kick);
    if (!uv_is_active((uv_handle_t *)&pool->wait_timer))
        wait_timer_arm(pool);
}

void pg_wait_requeue(pg_pool_t *pool, link_t *again)
{
    /* Ahead of everything that waits: they were taken before it, and their deadlines are
     * the earliest. */
    link_t *first = again->next, *last = again->prev;
    first->prev = &pool->waiting;
    last->next = pool->waiting.next;
    pool->waiting.next->prev = last;
    pool->waiting.next = first;
    wait_timer_arm(pool);
    uv_prepare_start(&pool->kick, on_kick);
}

/* ---- transactions ---- */

static void txn_maybe_free(pg_txn_t *txn)
{
    if (!txn->ended || txn->conn || txn->begin || txn->ndone > 0)
        return;
    pg_pool_t *pool = txn->pool;
    pool->ntxn--;
    free(txn->fail_message);
    free(txn->fail_detail);
    free(txn->fail_constraint);
    free(txn);
    pool_maybe_finish(pool);
}

/* The transaction lets go of its connection: it has ended, or been abandoned and rolled
 * back. */
void pg_txn_unpin(pg_txn_t *txn)
{
    if (txn->conn)
        txn->conn->txn = NULL;
    txn->conn = NULL;
    txn_maybe_free(txn);
}

/* The pinned connection is gone (lost, or the pool closes). */
static void txn_break(pg_txn_t *txn, pg_errkind_t kind, const char *why, const char *sqlstate)
{
    txn->conn = NULL;
    while (!list_empty(&txn->queue))
        pg_req_fail(pg_req_pop(&txn->queue), kind, sqlstate, why);
    pg_handle_t *begin = txn->begin;
    if (begin && begin->where == AT_DONE && !begin->errkind) {
        /* The caller has not seen it yet: turn the success into the failure it now is. */
        PQclear(begin->result.pg);
        begin->result.pg = NULL;
        begin->errkind = kind;
        begin->message = pg_one_line(why);
        snprintf(begin->sqlstate, sizeof(begin->sqlstate), "%s", sqlstate ? sqlstate : "");
        txn->ended = txn->abandoned = true;
    }
    txn_maybe_free(txn);
}

void pg_fail_sent(link_t *sent, pg_txn_t *txn, pg_errkind_t kind, const char *sqlstate,
                  const char *why)
{
    while (!list_empty(sent))
        pg_req_fail(pg_req_pop(sent), kind, sqlstate, why);
    if (txn)
        txn_break(txn, kind, why, sqlstate);
}

/* Not a word about txn after pg_pipeline_next: the connection may finish with it and free it. */
static void txn_abandon(pg_txn_t *txn)
{
    txn->ended = txn->abandoned = true;
    while (!list_empty(&txn->queue)) {
        pg_handle_t *req = pg_req_pop(&txn->queue);
        req->txn = NULL; /* not counted in ndone: it never finished */
        req_free(req);
    }
    conn_t *c = txn->conn;
    if (!c)
        txn_maybe_free(txn);
    else if (c->nsent > 0)
        for (link_t *l = c->sent.next; l != &c->sent; l = l->next)
            pg_req_of(l)->silent = true; /* pinned: what runs is the transaction's */
    else
        pg_pipeline_next(c); /* idle: roll back now */
}

/* ---- the pool ---- */

static void pool_free(pg_pool_t *pool)
{
    pg_close_cb cb = pool->close_cb;
    void *ud = pool->close_ud;
    pg_conn_params_free(pool);
    free(pool->last_error);
    free(pool->conns);
    free(pool);
    if (cb)
        cb(ud);
}

void pg_release(pg_pool_t *pool)
{
    if (--pool->open == 0 && pool->finishing)
        pool_free(pool);
}

static void on_handle_closed(uv_handle_t *handle)
{
    pg_pool_t *pool = handle->data;
    pg_release(pool);
}

/* Once closing, nothing left to deliver and no transaction left to end: close the last
 * handles; the pool is freed when the last close callback has run. */
static void pool_maybe_finish(pg_pool_t *pool)
{
    if (!pool->closing || pool->in_close || pool->finishing || !list_empty(&pool->done) ||
        pool->ntxn > 0)
        return;
    pool->finishing = true;
    uv_close((uv_handle_t *)&pool->deliver, on_handle_closed);
    uv_close((uv_handle_t *)&pool->kick, on_handle_closed);
    uv_close((uv_handle_t *)&pool->wait_timer, on_handle_closed);
}

static int config_value(int value, int fallback, const char *name)
{
    if (value == 0)
        return fallback;
    if (value < 0)
        log_error("postgres: %s must not be negative (%d)", name, value);
    return value;
}

pg_pool_t *pg_pool_new(uv_loop_t *loop, const pg_config_t *cfg)
{
    if (!loop || !cfg)
        return NULL;
    pg_pool_t *pool = xcalloc(1, sizeof(*pool));
    pool->loop = loop;
    pool->size = config_value(cfg->size, PG_DEFAULT_SIZE, "size");
    pool->queue_max = config_value(cfg->queue_max, PG_DEFAULT_QUEUE_MAX, "queue_max");
    pool->wait_timeout_ms =
        config_value(cfg->wait_timeout_ms, PG_DEFAULT_WAIT_TIMEOUT_MS, "wait_timeout_ms");
    pool->connect_timeout_ms =
        config_value(cfg->connect_timeout_ms, PG_DEFAULT_CONNECT_TIMEOUT_MS, "connect_timeout_ms");
    pool->statement_timeout_ms =
        cfg->statement_timeout_ms == -1
            ? 0
            : config_value(cfg->statement_timeout_ms, PG_DEFAULT_STATEMENT_TIMEOUT_MS,
                           "statement_timeout_ms");
    if (pool->size < 0 || pool->queue_max < 0 || pool->wait_timeout_ms < 0 ||
        pool->connect_timeout_ms < 0 || pool->statement_timeout_ms < 0)
        goto fail;
    if (pg_conn_params(pool, cfg->conninfo) < 0)
        goto fail;
    pool->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)pool;
    if (!pool->rng)
        pool->rng = 1;
    list_init(&pool->waiting);
    list_init(&pool->done);
    uv_timer_init(loop, &pool->wait_timer);
    pool->wait_timer.data = pool;
    uv_idle_init(loop, &pool->deliver);
    pool->deliver.data = pool;
    uv_prepare_init(loop, &pool->kick);
    pool->kick.data = pool;
    pool->open = 3 + pool->size;
    pool->conns = xcalloc((size_t)pool->size, sizeof(conn_t));
    for (int i = 0; i < pool->size; i++)
        pg_conn_init(&pool->conns[i], pool);
    for (int i = 0; i < pool->size; i++)
        pg_conn_connect(&pool->conns[i]);
    return pool;

fail:
    pg_conn_params_free(pool);
    free(pool);
    return NULL;
}

static void conn_cancel(conn_t *c);

void pg_pool_close(pg_pool_t *pool, pg_close_cb done, void *ud)
{
    if (!pool || pool->closing)
        return;
    pool->closing = true;
    pool->in_close = true; /* no finishing halfway: what follows still queues callbacks */
    pool->close_cb = done;
    pool->close_ud = ud;
    const char *why = "the PostgreSQL pool is closing";
    pg_fail_waiting(pool, PG_ECANCELLED, why);
    for (int i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        /* Closing the socket does not stop a statement: PostgreSQL notices only when it
         * next writes, and a slow one would run on for nobody (a worker that hit
         * shutdown_timeout). The pool stays open until the cancel has gone out. */
        if (c->state == CONN_READY && c->nsent > 0) {
            log_info("postgres: cancelling a statement still running as the pool closes");
            conn_cancel(c);
        }
        link_t sent;
        list_move(&sent, &c->sent);
        c->nsent = 0;
        pg_txn_t *txn = c->txn;
        c->txn = NULL;
        pg_conn_close(c);
        pg_fail_sent(&sent, txn, PG_ECANCELLED, NULL, why);
    }
    pool->in_close = false;
    pool_maybe_finish(pool);
}

/* ---- the public calls ---- */

static int check_query(const char *name, const char *sql, int nparams, const char *const *values)
{
    if (!sql || nparams < 0 || nparams > PARAMS_MAX || (nparams > 0 && !values))
        return -EINVAL;
    if (name && (!*name || strlen(name) > STMT_NAME_MAX))
        return -EINVAL;
    return 0;
}

static int query_start(pg_pool_t *pool, pg_txn_t *txn, const char *name, const char *sql,
                       int nparams, const char *const *values, pg_query_cb cb, void *ud,
                       pg_handle_t **handle_out, bool joins)
{
    if (handle_out)
        *handle_out = NULL;
    int rc = check_query(name, sql, nparams, values);
    if (rc < 0)
        return rc;
    if (pool->closing && !txn)
        return -ESHUTDOWN;
    pg_handle_t *req = pg_req_new(pool, REQ_QUERY, name, sql, nparams, values);
    req->cb.query = cb;
    req->ud = ud;
    req->silent = !cb;
    pg_handle_t *handle = cb ? req : NULL; /* a silent request may be freed below */
    if (!txn) {
        submit(pool, req);
    } else if (!txn->conn) {
        pg_req_fail(req, pool->closing ? PG_ECANCELLED : PG_EUNAVAILABLE, NULL,
                    "the transaction's PostgreSQL connection was lost");
    } else {
        req->txn = txn;
        req->where = AT_TXN;
        list_push(&txn->queue, &req->link);
        if (joins) { /* waits for the next statement, at the latest for the kick */
            req->joins = true;
            txn->conn->txn_kick = true;
            uv_prepare_start(&pool->kick, on_kick);
        } else {
            pg_pipeline_next(txn->conn); /* behind what is in flight (pg_pipeline.c) */
        }
    }
    if (handle_out)
        *handle_out = handle;
    return 0;
}

int pg_query(pg_pool_t *pool, const char *sql, int nparams, const char *const *values,
             pg_query_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (!pool)
        return -EINVAL;
    return query_start(pool, NULL, NULL, sql, nparams, values, cb, ud, handle_out, false);
}

int pg_query_prepared(pg_pool_t *pool, const char *name, const char *sql, int nparams,
                      const char *const *values, pg_query_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (!pool || !name)
        return -EINVAL;
    return query_start(pool, NULL, name, sql, nparams, values, cb, ud, handle_out, false);
}

int pg_txn_query(pg_txn_t *txn, const char *sql, int nparams, const char *const *values,
                 pg_query_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (!txn || txn->ended)
        return -EINVAL;
    return query_start(txn->pool, txn, NULL, sql, nparams, values, cb, ud, handle_out, false);
}

int pg_txn_query_prepared(pg_txn_t *txn, const char *name, const char *sql, int nparams,
                          const char *const *values, pg_query_cb cb, void *ud,
                          pg_handle_t **handle_out)
{
    if (!txn || txn->ended || !name)
        return -EINVAL;
    return query_start(txn->pool, txn, name, sql, nparams, values, cb, ud, handle_out, false);
}

int pg_txn_query_joined(pg_txn_t *txn, const char *name, const char *sql, int nparams,
                        const char *const *values, pg_query_cb cb, void *ud,
                        pg_handle_t **handle_out)
{
    if (!txn || txn->ended)
        return -EINVAL;
    return query_start(txn->pool, txn, name, sql, nparams, values, cb, ud, handle_out, true);
}

int pg_ping(pg_pool_t *pool, pg_done_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!pool)
        return -EINVAL;
    if (pool->closing)
        return -ESHUTDOWN;
    pg_handle_t *req = pg_req_new(pool, REQ_PING, NULL, "SELECT 1", 0, NULL);
    req->cb.done = cb;
    req->ud = ud;
    req->silent = !cb;
    pg_handle_t *handle = cb ? req : NULL;
    submit(pool, req);
    if (handle_out)
        *handle_out = handle;
    return 0;
}

int pg_txn_begin(pg_pool_t *pool, pg_txn_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!pool || !cb)
        return -EINVAL;
    if (pool->closing)
        return -ESHUTDOWN;
    pg_txn_t *txn = xcalloc(1, sizeof(*txn));
    txn->pool = pool;
    list_init(&txn->queue);
    pool->ntxn++;
    pg_handle_t *req = pg_req_new(pool, REQ_BEGIN, NULL, "BEGIN", 0, NULL);
    req->cb.txn = cb;
    req->ud = ud;
    req->txn = txn;
    txn->begin = req;
    submit(pool, req);
    if (handle_out)
        *handle_out = req;
    return 0;
}

static int txn_end(pg_txn_t *txn, enum req_kind kind, pg_done_cb cb, void *ud,
                   pg_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!txn || txn->ended)
        return -EINVAL;
    pg_pool_t *pool = txn->pool;
    txn->ended = true;
    pg_handle_t *req =
        pg_req_new(pool, kind, NULL, kind == REQ_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL);
    req->cb.done = cb;
    req->ud = ud;
    req->silent = !cb;
    req->txn = txn;
    pg_handle_t *handle = cb ? req : NULL;
    if (!txn->conn) {
        pg_req_fail(req, pool->closing ? PG_ECANCELLED : PG_EUNAVAILABLE, NULL,
                    "the transaction's PostgreSQL connection was lost");
        txn_maybe_free(txn);
    } else {
        req->where = AT_TXN;
        list_push(&txn->queue, &req->link);
        pg_pipeline_next(txn->conn); /* behind what is in flight (pg_pipeline.c) */
    }
    if (handle_out)
        *handle_out = handle;
    return 0;
}

int pg_txn_commit(pg_txn_t *txn, pg_done_cb cb, void *ud, pg_handle_t **handle_out)
{
    return txn_end(txn, REQ_COMMIT, cb, ud, handle_out);
}

int pg_txn_rollback(pg_txn_t *txn, pg_done_cb cb, void *ud, pg_handle_t **handle_out)
{
    return txn_end(txn, REQ_ROLLBACK, cb, ud, handle_out);
}

void pg_txn_abandon(pg_txn_t *txn)
{
    if (txn && !txn->ended)
        txn_abandon(txn);
}

/* ---- cancelling a running statement ----
 *
 * A request whose caller is gone (pg_cancel while it runs) has its answer thrown away,
 * but PostgreSQL would still run it to the end and keep the connection: a slow report
 * for a client that hung up. When it is alone on its connection, PostgreSQL is asked to
 * cancel it. libpq 15's PQcancel blocks (it connects to the server), so it runs on the
 * thread pool; and until it has been sent, the connection takes no new work, so that the
 * cancel can only ever hit this statement (a cancel that arrives when the backend is idle
 * is ignored). In a group the statement running could be a neighbour's: no cancel. The
 * same goes for pg_interrupt, whose caller still gets the statement's error.  */

typedef struct cancel_job {
    uv_work_t work;
    conn_t *conn;
    PGcancel *cancel;
    bool sent;
    char why[256];
} cancel_job_t;

static void cancel_send(uv_work_t *work)
{
    cancel_job_t *job = work->data;
    job->sent = PQcancel(job->cancel, job->why, (int)sizeof(job->why)) == 1;
}

static void cancel_sent(uv_work_t *work, int status)
{
    cancel_job_t *job = work->data;
    conn_t *c = job->conn;
    pg_pool_t *pool = c->pool;
    if (status == 0 && !job->sent)
        log_info("postgres: could not cancel an abandoned statement: %s", job->why);
    PQfreeCancel(job->cancel);
    free(job);
    c->cancelling = false;
    if (c->state == CONN_READY && c->nsent == 0 && !pool->closing)
        pg_pipeline_next(c);
    pg_release(pool);
}

static void conn_cancel(conn_t *c)
{
    if (c->cancelling || !c->pg)
        return;
    cancel_job_t *job = xcalloc(1, sizeof(*job));
    job->cancel = PQgetCancel(c->pg);
    if (!job->cancel) {
        free(job);
        return;
    }
    job->conn = c;
    job->work.data = job;
    if (uv_queue_work(c->pool->loop, &job->work, cancel_send, cancel_sent) != 0) {
        PQfreeCancel(job->cancel);
        free(job);
        return;
    }
    c->cancelling = true;
    c->pool->open++; /* the pool outlives the job: cancel_sent touches the connection */
}

/* Asks PostgreSQL to cancel `req` if it runs alone on its connection. */
static void cancel_if_alone(pg_pool_t *pool, const pg_handle_t *req)
{
    for (int i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        if (c->state == CONN_READY && c->nsent == 1 && pg_req_first(&c->sent) == req)
            conn_cancel(c);
    }
}

void pg_interrupt(pg_handle_t *req)
{
    if (!req)
        return;
    pg_pool_t *pool = req->pool;
    if (req->where == AT_WAITING) {
        list_unlink(&req->link);
        pool->nwaiting--;
        pg_req_fail(req, PG_ECANCELLED, "57014", "the client closed the connection");
    } else if (req->where == AT_RUNNING) {
        cancel_if_alone(pool, req);
    }
}

void pg_cancel(pg_handle_t *req)
{
    if (!req)
        return;
    pg_pool_t *pool = req->pool;
    bool ends = req->kind == REQ_COMMIT || req->kind == REQ_ROLLBACK;
    switch (req->where) {
    case AT_WAITING:
        list_unlink(&req->link);
        pool->nwaiting--;
        if (req->kind == REQ_BEGIN)
            req->txn->ended = true; /* never started: req_free frees it */
        req_free(req);
        break;
    case AT_TXN:
        txn_abandon(req->txn); /* frees req with the rest of the queue */
        break;
    case AT_RUNNING:
        req->silent = true;
        if (req->txn && !ends)
            txn_abandon(req->txn);
        cancel_if_alone(pool, req);
        break;
    case AT_DONE:
        list_unlink(&req->link);
        if (req->kind == REQ_BEGIN && !req->errkind)
            txn_abandon(req->txn); /* req_free then lets go of it */
        req_free(req);
        break;
    case AT_NONE:
    case AT_CALLBACK: break;
    }
}

pg_status_t pg_pool_status(const pg_pool_t *pool)
{
    pg_status_t st = {0};
    if (!pool)
        return st;
    st.size = pool->size;
    st.connected = pool->up;
    st.waiting = pool->nwaiting;
    for (int i = 0; i < pool->size; i++)
        if (pool->conns[i].nsent > 0 || pool->conns[i].txn)
            st.busy++;
    return st;
}

/* ---- results ---- */

int pg_result_rows(const pg_result_t *res)
{
    return res ? PQntuples(res->pg) : 0;
}

int pg_result_cols(const pg_result_t *res)
{
    return res ? PQnfields(res->pg) : 0;
}

static bool in_range(const pg_result_t *res, int row, int col)
{
    return res && row >= 0 && col >= 0 && row < PQntuples(res->pg) && col < PQnfields(res->pg);
}

const char *pg_result_value(const pg_result_t *res, int row, int col)
{
    if (!in_range(res, row, col) || PQgetisnull(res->pg, row, col))
        return NULL;
    return PQgetvalue(res->pg, row, col);
}

bool pg_result_is_null(const pg_result_t *res, int row, int col)
{
    return pg_result_value(res, row, col) == NULL;
}

int pg_result_int64(const pg_result_t *res, int row, int col, int64_t *out)
{
    const char *s = pg_result_value(res, row, col);
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = (int64_t)v;
    return 0;
}

int pg_result_bool(const pg_result_t *res, int row, int col, bool *out)
{
    const char *s = pg_result_value(res, row, col);
    if (!s || (strcmp(s, "t") && strcmp(s, "f")))
        return -EINVAL;
    *out = s[0] == 't';
    return 0;
}

int64_t pg_result_affected(const pg_result_t *res)
{
    const char *s = res ? PQcmdTuples(res->pg) : "";
    return *s ? (int64_t)strtoll(s, NULL, 10) : 0;
}

const char *pg_result_colname(const pg_result_t *res, int col)
{
    if (!res || col < 0 || col >= PQnfields(res->pg))
        return NULL;
    return PQfname(res->pg, col);
}

int pg_result_colindex(const pg_result_t *res, const char *name)
{
    return res && name ? PQfnumber(res->pg, name) : -1;
}

const char *pg_errkind_name(pg_errkind_t kind)
{
    switch (kind) {
    case PG_EUNAVAILABLE: return "unavailable";
    case PG_EQUERY: return "query";
    case PG_ECANCELLED: return "cancelled";
    }
    return "unknown";
}
