/*
 * pg.c — the per-worker asynchronous PostgreSQL pool.
 *
 * Why it looks like this. A worker runs every request on one libuv loop, so a single
 * blocking libpq call stalls every client of that worker. libpq can be driven without
 * blocking, but only if each of its calls is made when the socket says so: connecting is
 * PQconnectStartParams then PQconnectPoll steps, each telling us whether to wait for
 * read or write readiness; querying is PQsend* then PQflush on writable, PQconsumeInput and
 * PQgetResult (until NULL, while !PQisBusy) on readable. One uv_poll_t per connection
 * watches PQsocket(). Host names are resolved with uv_getaddrinfo and handed to libpq as
 * hostaddr, because libpq would otherwise call getaddrinfo() itself and block.
 *
 * The socket is not a constant. While connecting, libpq closes its socket and opens
 * another whenever it moves to the next address or host, and the new one often gets the
 * same descriptor number. epoll registrations belong to the open file, libuv's bookkeeping
 * to the number; if they disagree, libuv aborts. So before every PQconnectPoll step the
 * watcher is stopped (libuv removes the registration while the old socket still exists),
 * and afterwards PQsocket() is read again: same number, the same handle is restarted;
 * another number, the old handle is closed (freed in its close callback) and a new one is
 * made. Once connected the socket stays put; when libpq drops it (EOF, error) we close
 * our handle in the same callback, before anything else can reuse the number.
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
 * Failure. A connection that fails is closed and retried with exponential backoff (100 ms
 * doubling to 5 s, +-20 % jitter so workers do not knock in step, reset on success); the
 * first one that gets through wakes its siblings so the pool refills at once. Work on a
 * lost connection fails with PG_EUNAVAILABLE and is never replayed: only the caller knows
 * whether running it twice is safe. When no connection is up and the last attempt failed,
 * the server is down as far as we know: waiting requests fail at once and new ones fail
 * fast instead of holding their HTTP clients for wait_timeout_ms each. A connection is
 * only reused outside a transaction when PostgreSQL says it is idle (not inside a
 * transaction); otherwise the pool sends ROLLBACK first, which is also how abandoned
 * transactions end. A query with no answer statement_timeout_ms + ANSWER_GRACE_MS after
 * it was sent means the server or the network is gone: the connection is dropped.
 */
#include "pg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "list.h"
#include "log.h"
#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ANSWER_GRACE_MS 2000
#define STMT_NAME_MAX 63 /* NAMEDATALEN - 1 */
#define PARAMS_MAX 65535 /* the protocol's limit */
#define LOOKUP_ADDRS_MAX 8
#define GROUP_MAX 16 /* requests one connection takes from the queue at once */
#define GROUP_SPAN_NS 2000000 /* how long a group may keep its connection, see group_cap */


enum req_kind { REQ_QUERY, REQ_PING, REQ_BEGIN, REQ_COMMIT, REQ_ROLLBACK };
enum req_where { AT_NONE, AT_WAITING, AT_TXN, AT_RUNNING, AT_DONE, AT_CALLBACK };
enum conn_state { CONN_DOWN, CONN_RESOLVING, CONN_CONNECTING, CONN_READY, CONN_CLOSED };

typedef struct conn conn_t;

struct pg_result {
    PGresult *pg;
};

struct pg_handle {
    link_t link; /* in pool->waiting, txn->queue or pool->done, per `where` */
    pg_pool_t *pool;
    pg_txn_t *txn; /* the transaction it belongs to, until its callback has run */
    enum req_kind kind;
    enum req_where where;
    bool silent; /* no callback: none given, cancelled, or the pool's own ROLLBACK */
    bool reprepared;
    bool preparing; /* sent with its PREPARE in front (the first statement of its segment) */
    bool group_end; /* a sync point follows it in the pipeline */
    bool alone;     /* its group failed: it goes again in a group of its own */
    uint64_t deadline;
    union {
        pg_query_cb query;
        pg_txn_cb txn;
        pg_done_cb done;
    } cb;
    void *ud;
    const char *name; /* prepared statement, or NULL */
    const char *sql;
    int nparams;
    const char **values;
    /* The outcome. errkind 0 is success; an error is described by message and sqlstate
     * when message is set, else by the server's error result. While it runs, result holds
     * what has arrived (see answer_keep). */
    pg_result_t result;
    pg_errkind_t errkind;
    char sqlstate[6];
    char *message;
    /* values and strings follow */
};

typedef struct stmt {
    char *name;
    char *sql;
    bool pending; /* its PREPARE is in the pipeline, unanswered */
} stmt_t;

typedef struct lookup {
    uv_getaddrinfo_t req;
    conn_t *conn; /* NULL once the connection stopped waiting for it */
    pg_pool_t *pool;
} lookup_t;

struct conn {
    pg_pool_t *pool;
    enum conn_state state;
    PGconn *pg;
    uv_poll_t *poll; /* watches fd; replaced when libpq's socket changes */
    int fd;
    int events;
    uv_timer_t timer; /* by state: backoff, connect deadline, answer deadline */
    lookup_t *lookup;
    unsigned backoff_ms;
    link_t sent;        /* requests in the pipeline, in the order their answers come */
    int nsent;
    pg_handle_t *reading; /* the one of `sent` whose results arrive now */
    int phase;          /* statements of `reading` answered so far */
    bool last_null;     /* PQgetResult's last word was NULL (two in a row: lost track) */
    uint64_t head_since; /* uv_hrtime() when the first group of `sent` became first */
    bool flushing;      /* PQflush has more to send */
    pg_txn_t *txn;    /* the transaction this connection is pinned to */
    stmt_t *stmts;    /* prepared on this connection */
    size_t nstmts, capstmts;
};

struct pg_txn {
    pg_pool_t *pool;
    conn_t *conn;       /* pinned connection; NULL before BEGIN runs or once it is lost */
    link_t queue;       /* issued, waiting for the connection */
    pg_handle_t *begin; /* the BEGIN request until its callback is delivered */
    int ndone;          /* other requests of it whose callback is due */
    bool ended;         /* committed, rolled back or abandoned: no more calls */
    bool abandoned;     /* no more callbacks; the pool rolls back */
};

struct pg_pool {
    uv_loop_t *loop;
    int size, statement_timeout_ms, queue_max, wait_timeout_ms, connect_timeout_ms;
    char **keys, **vals; /* libpq connection parameters */
    size_t nkeys;
    char *lookup_host; /* a host name we resolve so that libpq does not block on it */
    conn_t *conns;
    link_t waiting;
    int nwaiting;
    link_t done;
    uv_timer_t wait_timer;
    uv_idle_t deliver;
    uv_prepare_t kick; /* hands what this iteration submitted to idle connections */
    int up;           /* connections in CONN_READY */
    bool down;        /* no connection up and the last attempt failed */
    char *last_error; /* why the last attempt failed */
    int ntxn;
    int open; /* handles and lookups whose close or callback has not run yet */
    bool closing, in_close, finishing;
    pg_close_cb close_cb;
    void *close_ud;
    uint64_t rng;
    uint64_t service_ns; /* how long one statement keeps a connection, a decaying maximum */
};

static void conn_connect(conn_t *c);
static void conn_next(conn_t *c);
static void conn_lost(conn_t *c, const char *why, const char *sqlstate);
static void on_io(uv_poll_t *poll, int status, int events);
static void on_conn_timer(uv_timer_t *timer);
static void on_deliver(uv_idle_t *idle);
static void on_kick(uv_prepare_t *kick);
static void txn_maybe_free(pg_txn_t *txn);
static void pool_maybe_finish(pg_pool_t *pool);

/* libpq messages end with a newline and may span lines; log lines and callers want one. */
static char *one_line(const char *s)
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

static pg_handle_t *req_new(pg_pool_t *pool, enum req_kind kind, const char *name, const char *sql,
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
    free(req);
    if (txn)
        txn_maybe_free(txn);
}

/* The work is over: queue the callback, or free the request if nobody wants it. A
 * transaction stays allocated while callbacks of its requests are due, so that abandoning
 * it can still silence them (see deliver). */
static void req_finish(pg_handle_t *req)
{
    pg_pool_t *pool = req->pool;
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

static void req_fail(pg_handle_t *req, pg_errkind_t kind, const char *sqlstate, const char *why)
{
    PQclear(req->result.pg);
    req->result.pg = NULL;
    free(req->message);
    req->message = one_line(why);
    req->errkind = kind;
    snprintf(req->sqlstate, sizeof(req->sqlstate), "%s", sqlstate ? sqlstate : "");
    req_finish(req);
}

static pg_handle_t *req_first(const link_t *head)
{
    return (pg_handle_t *)((char *)head->next - offsetof(pg_handle_t, link));
}

static pg_handle_t *req_pop(link_t *head)
{
    pg_handle_t *req = req_first(head);
    list_unlink(&req->link);
    return req;
}

static void error_fill(const pg_handle_t *req, pg_error_t *err)
{
    memset(err, 0, sizeof(*err));
    err->kind = req->errkind;
    const PGresult *res = req->result.pg;
    if (req->message) {
        err->message = req->message;
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
        deliver(req_pop(&batch)); /* pg_cancel may unlink other entries meanwhile */
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
        pg_handle_t *req = req_first(&pool->waiting);
        if (req->deadline > now)
            break;
        list_unlink(&req->link);
        pool->nwaiting--;
        char why[96];
        snprintf(why, sizeof(why), "no PostgreSQL connection became free within %d ms",
                 pool->wait_timeout_ms);
        req_fail(req, PG_EUNAVAILABLE, NULL, why);
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
    uint64_t deadline = req_first(&pool->waiting)->deadline, now = uv_now(pool->loop);
    uv_timer_start(&pool->wait_timer, on_wait_timer, deadline > now ? deadline - now : 0, 0);
}

static void fail_waiting(pg_pool_t *pool, pg_errkind_t kind, const char *why)
{
    while (!list_empty(&pool->waiting)) {
        pool->nwaiting--;
        req_fail(req_pop(&pool->waiting), kind, NULL, why);
    }
    uv_timer_stop(&pool->wait_timer);
}

static conn_t *idle_conn(const pg_pool_t *pool)
{
    for (int i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        if (c->state == CONN_READY && c->nsent == 0 && !c->txn)
            return c;
    }
    return NULL;
}

/* Runs just before the loop would block: everything submitted since the last time goes
 * out now, as few groups as the rules allow (see "the pipeline"), each with one send. */
static void on_kick(uv_prepare_t *kick)
{
    pg_pool_t *pool = kick->data;
    uv_prepare_stop(kick);
    conn_t *c;
    while (!list_empty(&pool->waiting) && (c = idle_conn(pool)))
        conn_next(c);
}

/* Every request that needs a connection of its own comes through here. The queue's bound
 * counts what waits for a busy connection: an idle one takes at least one at the kick. */
static void submit(pg_pool_t *pool, pg_handle_t *req)
{
    int idle = 0;
    for (int i = 0; i < pool->size; i++) {
        const conn_t *c = &pool->conns[i];
        idle += c->state == CONN_READY && c->nsent == 0 && !c->txn;
    }
    if (idle == 0 && pool->up == 0 && pool->down) {
        char *why = xasprintf("PostgreSQL is unreachable: %s",
                              pool->last_error ? pool->last_error : "not connected");
        req_fail(req, PG_EUNAVAILABLE, NULL, why);
        free(why);
        return;
    }
    if (pool->nwaiting >= pool->queue_max + idle) {
        char why[96];
        snprintf(why, sizeof(why), "%d queries already wait for a PostgreSQL connection",
                 pool->nwaiting - idle);
        req_fail(req, PG_EUNAVAILABLE, NULL, why);
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

/* ---- prepared statements, per connection ---- */

static stmt_t *stmt_find(conn_t *c, const char *name)
{
    for (size_t i = 0; i < c->nstmts; i++)
        if (!strcmp(c->stmts[i].name, name))
            return &c->stmts[i];
    return NULL;
}

static void stmt_add(conn_t *c, const char *name, const char *sql)
{
    if (c->nstmts == c->capstmts) {
        c->capstmts = c->capstmts ? c->capstmts * 2 : 8;
        c->stmts = xrealloc(c->stmts, c->capstmts * sizeof(*c->stmts));
    }
    c->stmts[c->nstmts++] = (stmt_t){xstrdup(name), xstrdup(sql), true};
}

static void stmt_forget(conn_t *c, const char *name)
{
    stmt_t *st = stmt_find(c, name);
    if (!st)
        return;
    free(st->name);
    free(st->sql);
    *st = c->stmts[--c->nstmts];
}

static void stmts_clear(conn_t *c)
{
    for (size_t i = 0; i < c->nstmts; i++) {
        free(c->stmts[i].name);
        free(c->stmts[i].sql);
    }
    free(c->stmts);
    c->stmts = NULL;
    c->nstmts = c->capstmts = 0;
}

/* ---- connections: the socket watcher ---- */

static void handle_closed(pg_pool_t *pool);

static void on_poll_closed(uv_handle_t *handle)
{
    pg_pool_t *pool = ((conn_t *)handle->data)->pool;
    free(handle);
    handle_closed(pool);
}

static void poll_close(conn_t *c)
{
    if (!c->poll)
        return;
    uv_close((uv_handle_t *)c->poll, on_poll_closed);
    c->poll = NULL;
    c->fd = -1;
    c->events = 0;
}

/* Watches libpq's current socket for `events`, replacing the handle if the socket
 * changed. Returns 0 or a libuv error. */
static int conn_watch(conn_t *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return UV_EBADF;
    if (c->poll && c->fd != fd)
        poll_close(c);
    if (!c->poll) {
        uv_poll_t *poll = xmalloc(sizeof(*poll));
        int rc = uv_poll_init(c->pool->loop, poll, fd);
        if (rc < 0) {
            free(poll);
            return rc;
        }
        poll->data = c;
        c->poll = poll;
        c->fd = fd;
        c->events = 0;
        c->pool->open++;
    }
    if (events == c->events)
        return 0; /* uv_poll_start would remove and re-add the registration for nothing */
    c->events = events;
    return uv_poll_start(c->poll, events, on_io);
}

/* Connected: always readable (the server may say goodbye), writable while sending. */
static bool conn_arm(conn_t *c)
{
    int rc = conn_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0));
    if (rc < 0) {
        conn_lost(c, uv_strerror(rc), NULL);
        return false;
    }
    return true;
}

/* Forgets the server side: handle first (libuv drops the registration while the socket
 * still exists), then libpq closes the socket. */
static void conn_drop(conn_t *c)
{
    poll_close(c);
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    if (c->lookup) {
        c->lookup->conn = NULL;
        uv_cancel((uv_req_t *)&c->lookup->req);
        c->lookup = NULL;
    }
    c->reading = NULL;
    c->flushing = c->last_null = false;
    c->phase = 0;
    uv_timer_stop(&c->timer);
    stmts_clear(c);
}

static uint64_t pool_random(pg_pool_t *pool)
{
    uint64_t x = pool->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pool->rng = x;
    return x;
}

static void conn_retry_later(conn_t *c)
{
    pg_pool_t *pool = c->pool;
    c->state = CONN_DOWN;
    if (pool->closing)
        return;
    uint64_t delay = c->backoff_ms * (80 + pool_random(pool) % 41) / 100;
    uv_timer_start(&c->timer, on_conn_timer, delay, 0);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* A connection attempt failed. `why` may be libpq's: copied before PQfinish frees it. */
static void conn_failed(conn_t *c, const char *why)
{
    pg_pool_t *pool = c->pool;
    char *line = one_line(why);
    conn_drop(c);
    free(pool->last_error);
    pool->last_error = line;
    conn_retry_later(c);
    if (pool->up > 0) {
        log_debug("postgres: connection attempt failed: %s", pool->last_error);
        return;
    }
    if (!pool->down)
        log_warn("postgres: cannot connect, retrying in the background: %s", pool->last_error);
    pool->down = true;
    char *msg = xasprintf("PostgreSQL is unreachable: %s", pool->last_error);
    fail_waiting(pool, PG_EUNAVAILABLE, msg);
    free(msg);
}

static void txn_break(pg_txn_t *txn, pg_errkind_t kind, const char *why, const char *sqlstate);

/* Keeps what a running request gets: the first error if there is one, else the last. */
static void answer_keep(pg_handle_t *req, PGresult *res)
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

/* A working connection broke: what ran on it fails, its transaction is broken. `why` is
 * copied before conn_drop, like in conn_failed. */
static void conn_lost(conn_t *c, const char *why, const char *sqlstate)
{
    pg_pool_t *pool = c->pool;
    char *msg = xasprintf("connection to PostgreSQL lost: %s", why);
    char *line = one_line(msg);
    free(msg);
    /* The server often says why (57P01 admin shutdown) just before it hangs up. On a dead
     * connection libpq is never busy, so this cannot block; bounded, because in pipeline
     * mode PQgetResult says NULL between statements rather than once at the end. */
    for (int i = 0; c->nsent > 0 && c->pg && i < 16 && !PQisBusy(c->pg); i++) {
        PGresult *res = PQgetResult(c->pg);
        if (res && PQresultStatus(res) == PGRES_FATAL_ERROR && c->reading)
            answer_keep(c->reading, res);
        else
            PQclear(res);
    }
    const PGresult *answer = c->reading ? c->reading->result.pg : NULL;
    const char *said = answer ? PQresultErrorField(answer, PG_DIAG_SQLSTATE) : NULL;
    char code[6];
    snprintf(code, sizeof(code), "%s", sqlstate ? sqlstate : said ? said : "");
    if (c->state == CONN_READY)
        pool->up--;
    if (pool->up == 0)
        log_warn("postgres: %s", line);
    else
        log_info("postgres: %s", line);
    link_t sent;
    list_move(&sent, &c->sent);
    c->nsent = 0;
    pg_txn_t *txn = c->txn;
    c->txn = NULL;
    conn_drop(c);
    conn_retry_later(c);
    while (!list_empty(&sent))
        req_fail(req_pop(&sent), PG_EUNAVAILABLE, code, line);
    if (txn)
        txn_break(txn, PG_EUNAVAILABLE, line, code);
    free(line);
}

static void conn_up(conn_t *c)
{
    pg_pool_t *pool = c->pool;
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    uv_timer_stop(&c->timer);
    c->state = CONN_READY;
    c->backoff_ms = BACKOFF_MIN_MS;
    pool->up++;
    if (pool->down)
        log_info("postgres: connected again");
    pool->down = false;
    /* The server is back: the others need not sit out the rest of their backoff. */
    for (int i = 0; i < pool->size; i++) {
        conn_t *d = &pool->conns[i];
        if (d->state == CONN_DOWN) {
            d->backoff_ms = BACKOFF_MIN_MS;
            uv_timer_start(&d->timer, on_conn_timer, 0, 0);
        }
    }
    conn_next(c);
}

/* One step of the connection handshake, when the socket is ready as libpq asked. */
static void conn_step(conn_t *c)
{
    int rc;
    if (c->poll) {
        uv_poll_stop(c->poll); /* before libpq may close this socket, see the top */
        c->events = 0;
    }
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK: conn_up(c); return;
    case PGRES_POLLING_READING: rc = conn_watch(c, UV_READABLE); break;
    case PGRES_POLLING_WRITING: rc = conn_watch(c, UV_WRITABLE); break;
    default: conn_failed(c, PQerrorMessage(c->pg)); return;
    }
    if (rc < 0)
        conn_failed(c, uv_strerror(rc));
}

static void notice_log(void *arg, const PGresult *res)
{
    UNUSED(arg);
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (severity && !strcmp(severity, "WARNING"))
        log_warn("postgres: WARNING: %s", msg ? msg : "");
    else
        log_debug("postgres: %s: %s", severity ? severity : "NOTICE", msg ? msg : "");
}

/* Starts libpq's handshake; `hosts` and `addrs` come from our own name lookup. */
static void conn_start(conn_t *c, const char *hosts, const char *addrs)
{
    pg_pool_t *pool = c->pool;
    const char **keys = xcalloc(pool->nkeys + 3, sizeof(char *));
    const char **vals = xcalloc(pool->nkeys + 3, sizeof(char *));
    size_t n = pool->nkeys;
    memcpy(keys, pool->keys, n * sizeof(char *));
    memcpy(vals, pool->vals, n * sizeof(char *));
    if (addrs) {
        /* Later keywords win: these replace a host given in the conninfo. */
        keys[n] = "host";
        vals[n++] = hosts;
        keys[n] = "hostaddr";
        vals[n++] = addrs;
    }
    c->pg = PQconnectStartParams(keys, vals, 0);
    free(keys);
    free(vals);
    if (!c->pg) {
        conn_failed(c, "out of memory");
        return;
    }
    PQsetNoticeReceiver(c->pg, notice_log, NULL);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = CONN_CONNECTING;
    int rc = conn_watch(c, UV_WRITABLE); /* as libpq asks before the first step */
    if (rc < 0)
        conn_failed(c, uv_strerror(rc));
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    lookup_t *lookup = (lookup_t *)req;
    conn_t *c = lookup->conn;
    pg_pool_t *pool = lookup->pool;
    free(lookup);
    if (!c) { /* timed out, failed or closed meanwhile */
        uv_freeaddrinfo(res);
        handle_closed(pool);
        return;
    }
    pool->open--;
    c->lookup = NULL;
    buf_t hosts = {0}, addrs = {0};
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < LOOKUP_ADDRS_MAX; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        if (ai->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip));
        else if (ai->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
        else
            continue;
        buf_printf(&hosts, "%s%s", n ? "," : "", pool->lookup_host);
        buf_printf(&addrs, "%s%s", n ? "," : "", ip);
        n++;
    }
    uv_freeaddrinfo(res);
    if (n == 0) {
        char *why = xasprintf("cannot resolve \"%s\": %s", pool->lookup_host,
                              status < 0 ? uv_strerror(status) : "no address");
        conn_failed(c, why);
        free(why);
    } else {
        conn_start(c, hosts.data, addrs.data);
    }
    buf_free(&hosts);
    buf_free(&addrs);
}

static void conn_connect(conn_t *c)
{
    pg_pool_t *pool = c->pool;
    uv_timer_start(&c->timer, on_conn_timer, (uint64_t)pool->connect_timeout_ms, 0);
    if (!pool->lookup_host) {
        conn_start(c, NULL, NULL);
        return;
    }
    lookup_t *lookup = xcalloc(1, sizeof(*lookup));
    lookup->conn = c;
    lookup->pool = pool;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(pool->loop, &lookup->req, on_lookup, pool->lookup_host, NULL, &hints);
    if (rc < 0) {
        free(lookup);
        conn_failed(c, uv_strerror(rc));
        return;
    }
    pool->open++;
    c->lookup = lookup;
    c->state = CONN_RESOLVING;
}

static void on_conn_timer(uv_timer_t *timer)
{
    conn_t *c = timer->data;
    char why[96];
    switch (c->state) {
    case CONN_DOWN: conn_connect(c); break;
    case CONN_RESOLVING:
    case CONN_CONNECTING:
        snprintf(why, sizeof(why), "no connection within %d ms", c->pool->connect_timeout_ms);
        conn_failed(c, why);
        break;
    case CONN_READY:
        snprintf(why, sizeof(why), "no answer within %d ms",
                 c->pool->statement_timeout_ms + ANSWER_GRACE_MS);
        conn_lost(c, why, NULL);
        break;
    case CONN_CLOSED: break;
    }
}

/* ---- connections: the pipeline ---- */

/*
 * Every connection is in libpq's pipeline mode. A connection with nothing in flight takes
 * work: one request of a transaction, or a group of waiting requests written with one
 * send. Requests submitted while a connection is idle are not sent at once but when the
 * loop is about to block (the kick), so that what one loop iteration read from its clients
 * goes to PostgreSQL as one group on one connection: one send, one wake-up of one backend,
 * one answer to read, where sending each at once costs one of each per request.
 *
 * A group ends with one sync point, so PostgreSQL runs it as one implicit transaction.
 * Its answers are therefore held until the sync point arrives and delivered only if every
 * statement of the group succeeded, that is, committed. If one failed, PostgreSQL rolled
 * back the ones before it and skipped the ones after it (PGRES_PIPELINE_ABORTED); none of
 * those is delivered: they go back to the head of the queue and run again, each in a group
 * of its own, where they behave exactly as they would have alone. The one that failed
 * keeps its error (it failed where it stood in a serial order), unless it is an error a
 * neighbour can cause by holding locks or by a statement it prepared (class 40, 55P03,
 * 26000): then it goes again alone too. So no request is answered from a transaction that
 * did not commit or fails for a neighbour's error; what grouping adds is only that the
 * statements of one group see each other's writes, in order, as they would one after
 * another.
 *
 * A request that needs a statement prepared carries the PREPARE in the same group, ahead
 * of its execution; a group ends before a request that would rely on a PREPARE still
 * unanswered. A 26000 of a request alone (DEALLOCATE or DISCARD behind the pool's back)
 * sends the request again, with its PREPARE, at the end of the pipeline: the one case
 * where answers can come back out of the order of the queue.
 *
 * What is never grouped: a transaction's statements (its connection is pinned, nothing
 * else goes there, and they go one at a time) and SQL that may open a transaction block
 * (BEGIN, START ...), which would swallow what follows it; these go alone, and the
 * connection is checked for an open transaction (and rolled back) before it takes more.
 *
 * Waiting. A request taken into a group no longer waits for a connection but for the
 * statements ahead of it. So that grouping does not stretch wait_timeout_ms, a request
 * joins a group only if the ones ahead of it are expected to be done before its own wait
 * deadline, going by how long a statement has kept a connection lately (a decaying
 * maximum, quick to rise when queries get slow), and a group takes at most GROUP_MAX.
 * Slow queries therefore still wait in the pool's queue for whichever connection frees
 * first.
 */

static pg_handle_t *req_of(link_t *l)
{
    return (pg_handle_t *)((char *)l - offsetof(pg_handle_t, link));
}

/* Whether `sql` may open a transaction block: its first word is BEGIN or START. */
static bool may_begin(const char *s)
{
    for (;;) {
        s += strspn(s, " \t\n\r\f\v");
        if (s[0] == '-' && s[1] == '-') {
            s += strcspn(s, "\n");
        } else if (s[0] == '/' && s[1] == '*') {
            int depth = 1; /* PostgreSQL's block comments nest */
            for (s += 2; *s && depth > 0; s++) {
                if (s[0] == '/' && s[1] == '*')
                    depth++, s++;
                else if (s[0] == '*' && s[1] == '/')
                    depth--, s++;
            }
        } else {
            break;
        }
    }
    return !strncasecmp(s, "begin", 5) || !strncasecmp(s, "start", 5);
}

/* Requests that run with nothing else in the pipeline. */
static bool req_alone(const pg_handle_t *req)
{
    return req->alone || req->kind == REQ_BEGIN || req->kind == REQ_COMMIT ||
           req->kind == REQ_ROLLBACK || req->txn || (req->kind == REQ_QUERY && may_begin(req->sql));
}

static int pipeline_sync(PGconn *pg)
{
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
    return PQsendPipelineSync(pg); /* libpq 17: no flush, conn_flush sends the batch */
#else
    return PQpipelineSync(pg);
#endif
}

static bool conn_flush(conn_t *c)
{
    int flushed = PQflush(c->pg);
    if (flushed < 0) {
        conn_lost(c, PQerrorMessage(c->pg), NULL);
        return false;
    }
    c->flushing = flushed == 1;
    return true;
}

/* The first request in the pipeline must be answered in time, see the top. */
static void conn_deadline(conn_t *c)
{
    if (c->pool->statement_timeout_ms > 0)
        uv_timer_start(&c->timer, on_conn_timer,
                       (uint64_t)c->pool->statement_timeout_ms + ANSWER_GRACE_MS, 0);
}

/* Appends the request's statements to the pipeline: PREPARE if this connection does not
 * know the statement yet, then the statement; conn_sync ends the group. False when the
 * connection was lost. */
static bool conn_queue(conn_t *c, pg_handle_t *req)
{
    req->preparing = false;
    req->group_end = false;
    if (req->name) {
        const stmt_t *st = stmt_find(c, req->name);
        if (st && strcmp(st->sql, req->sql) != 0) {
            char *why =
                xasprintf("prepared statement \"%s\" already stands for other SQL", req->name);
            req_fail(req, PG_EQUERY, "42P05", why);
            free(why);
            return true;
        }
        req->preparing = !st;
    }
    req->where = AT_RUNNING;
    list_push(&c->sent, &req->link);
    if (c->nsent++ == 0) {
        c->head_since = uv_hrtime();
        c->reading = req;
        c->phase = 0;
        c->last_null = false;
    }
    bool ok = !req->preparing || PQsendPrepare(c->pg, req->name, req->sql, req->nparams, NULL);
    if (ok && req->name)
        ok = PQsendQueryPrepared(c->pg, req->name, req->nparams, req->values, NULL, NULL, 0);
    else if (ok)
        ok = PQsendQueryParams(c->pg, req->sql, req->nparams, NULL, req->values, NULL, NULL, 0);
    if (!ok) {
        conn_lost(c, PQerrorMessage(c->pg), NULL); /* fails req with the rest */
        return false;
    }
    if (req->preparing)
        stmt_add(c, req->name, req->sql);
    return true;
}

/* Ends the group queued since the last sync point, if any. False when the connection was
 * lost. */
static bool conn_sync(conn_t *c)
{
    pg_handle_t *last = req_of(c->sent.prev);
    if (c->nsent == 0 || last->group_end)
        return true;
    if (!pipeline_sync(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg), NULL);
        return false;
    }
    last->group_end = true;
    return true;
}

static pg_handle_t *rollback_new(pg_pool_t *pool, pg_txn_t *txn)
{
    pg_handle_t *req = req_new(pool, REQ_ROLLBACK, NULL, "ROLLBACK", 0, NULL);
    req->silent = true;
    req->txn = txn;
    return req;
}

static void txn_unpin(pg_txn_t *txn)
{
    if (txn->conn)
        txn->conn->txn = NULL;
    txn->conn = NULL;
    txn_maybe_free(txn);
}

/* Only meaningful with nothing in flight: libpq says "active" while it has commands. */
static bool conn_in_txn(const conn_t *c)
{
    PGTransactionStatusType st = PQtransactionStatus(c->pg);
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR;
}

/* How many waiting requests this connection may take into its group now. Filling one
 * connection before the next saves sends and wake-ups (see the top), but the statements
 * of a group run one after another while other connections may sit idle: so a group takes
 * as many as PostgreSQL is expected to answer within GROUP_SPAN_NS, going by service_ns
 * (few when queries are slow, one until the first answer), or its share of the queue
 * among the idle connections if that is more; conn_pick keeps either within the wait
 * deadlines. */
static int group_cap(const conn_t *c)
{
    const pg_pool_t *pool = c->pool;
    int idle = 0;
    for (int i = 0; i < pool->size; i++) {
        const conn_t *d = &pool->conns[i];
        idle += d->state == CONN_READY && d->nsent == 0 && !d->txn;
    }
    if (idle < 1)
        idle = 1;
    uint64_t share = (uint64_t)(pool->nwaiting + idle - 1) / (uint64_t)idle;
    if (pool->service_ns == 0)
        return 1; /* nothing answered yet: how slow it is, nobody knows */
    uint64_t fit = GROUP_SPAN_NS / pool->service_ns;
    uint64_t cap = fit > share ? fit : share;
    return cap < 1 ? 1 : cap > GROUP_MAX ? GROUP_MAX : (int)cap;
}

/* What this connection should send next, or NULL when it has nothing (more) to send. */
static pg_handle_t *conn_pick(conn_t *c, int cap)
{
    pg_pool_t *pool = c->pool;
    pg_txn_t *txn = c->txn;
    if (c->nsent > 0 && (txn || req_alone(req_of(c->sent.prev))))
        return NULL;
    if (txn) {
        if (!txn->abandoned)
            return list_empty(&txn->queue) ? NULL : req_pop(&txn->queue);
        if (conn_in_txn(c))
            return rollback_new(pool, txn);
        txn_unpin(txn);
    }
    if (c->nsent == 0 && conn_in_txn(c))
        return rollback_new(pool, NULL); /* someone sent BEGIN through pg_query */
    if (list_empty(&pool->waiting))
        return NULL;
    pg_handle_t *req = req_first(&pool->waiting);
    if (c->nsent > 0) {
        if (c->nsent >= cap || req_alone(req))
            return NULL;
        const stmt_t *st = req->name ? stmt_find(c, req->name) : NULL;
        if (st && st->pending)
            return NULL; /* not behind a PREPARE that may fail: see the top */
        uint64_t ahead_ms = pool->service_ns * (uint64_t)c->nsent / 1000000;
        if (req->deadline && uv_now(pool->loop) + ahead_ms >= req->deadline)
            return NULL;
    }
    list_unlink(&req->link);
    pool->nwaiting--;
    if (req->kind == REQ_BEGIN) {
        c->txn = req->txn;
        req->txn->conn = c;
    }
    return req;
}

static void conn_next(conn_t *c)
{
    while (c->state == CONN_READY && c->nsent == 0) {
        int cap = group_cap(c), picked = 0;
        pg_handle_t *req;
        while ((req = conn_pick(c, cap))) {
            picked++;
            if (!conn_queue(c, req))
                return;
        }
        if (c->nsent == 0) {
            if (picked > 0)
                continue; /* all refused at once (42P05): look again */
            uv_timer_stop(&c->timer);
            conn_arm(c);
            return;
        }
        if (!conn_sync(c) || !conn_flush(c))
            return;
        conn_deadline(c);
        conn_arm(c);
    }
}

/* Errors that mean the session is over, not that the statement was wrong. */
static bool server_gone(const char *sqlstate)
{
    return sqlstate && (!strncmp(sqlstate, "57P0", 4) || !strncmp(sqlstate, "08", 2));
}

static bool result_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

/* Errors a statement can get from what a neighbour in its group did rather than from
 * what it is: a lock the group held (deadlock, serialization, NOWAIT) or a prepared
 * statement that went missing. */
static bool neighbour_caused(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state && (!strncmp(state, "40", 2) || !strcmp(state, "55P03") ||
                     !strcmp(state, "26000"));
}

/* A group of several requests reached its sync point: all succeeded and committed, or
 * `failed` (NULL if none) keeps its error and the others go again alone (see the top). */
static void group_finish(conn_t *c, int n, pg_handle_t *failed, bool all_ok)
{
    pg_pool_t *pool = c->pool;
    link_t again;
    list_init(&again);
    for (int i = 0; i < n; i++) {
        pg_handle_t *req = req_pop(&c->sent);
        c->nsent--;
        if (all_ok || req->silent) {
            req_finish(req);
            continue;
        }
        if (req == failed && !neighbour_caused(req->result.pg)) {
            req->errkind = PG_EQUERY;
            req_finish(req);
            continue;
        }
        if (req->name && req == failed)
            stmt_forget(c, req->name); /* 26000: it prepares again */
        PQclear(req->result.pg);
        req->result.pg = NULL;
        req->alone = true;
        req->where = AT_WAITING;
        list_push(&again, &req->link);
        pool->nwaiting++;
    }
    if (list_empty(&again))
        return;
    /* Ahead of everything that waits: they were taken before it, and their deadlines are
     * the earliest. */
    link_t *first = again.next, *last = again.prev;
    first->prev = &pool->waiting;
    last->next = pool->waiting.next;
    pool->waiting.next->prev = last;
    pool->waiting.next = first;
    wait_timer_arm(pool);
    uv_prepare_start(&pool->kick, on_kick);
}

/* The first group's sync point arrived: its answers are complete. False when the
 * connection is no longer usable (lost, or no longer CONN_READY). */
static bool conn_finish(conn_t *c)
{
    pg_pool_t *pool = c->pool;
    c->phase = 0;
    c->last_null = false;
    int n = 0;
    bool all_ok = true;
    pg_handle_t *req = NULL, *failed = NULL;
    for (link_t *l = c->sent.next; l != &c->sent; l = l->next) {
        req = req_of(l);
        n++;
        const PGresult *res = req->result.pg;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (server_gone(state) || PQstatus(c->pg) == CONNECTION_BAD) {
            char *why = one_line(res && !result_ok(res) ? PQresultErrorMessage(res)
                                                        : PQerrorMessage(c->pg));
            c->reading = req; /* conn_lost reports its SQLSTATE */
            conn_lost(c, why, NULL);
            free(why);
            return false;
        }
        if (!res || !result_ok(res)) {
            all_ok = false;
            if (!failed && res && PQresultStatus(res) == PGRES_FATAL_ERROR)
                failed = req;
        }
        if (req->group_end)
            break;
    }
    uint64_t now = uv_hrtime(), took = (now - c->head_since) / (uint64_t)n;
    c->head_since = now;
    pool->service_ns =
        took > pool->service_ns ? took : pool->service_ns - pool->service_ns / 8 + took / 8;
    bool ends = false;
    if (n > 1) {
        group_finish(c, n, failed, all_ok);
        c->reading = c->nsent > 0 ? req_first(&c->sent) : NULL;
    } else {
        list_unlink(&req->link);
        c->nsent--;
        c->reading = c->nsent > 0 ? req_first(&c->sent) : NULL;
        PGresult *res = req->result.pg;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (!all_ok && req->name && state && !strcmp(state, "26000")) {
            /* Someone ran DEALLOCATE or DISCARD behind our back. Nothing was executed,
             * so preparing again is safe, once, unless the error has aborted a
             * transaction. */
            stmt_forget(c, req->name);
            if (!req->reprepared && !req->txn) {
                req->reprepared = true;
                PQclear(res);
                req->result.pg = NULL;
                if (!conn_queue(c, req) || !conn_sync(c) || !conn_flush(c))
                    return false;
                if (c->nsent == 1)
                    conn_deadline(c);
                if (c->nsent > 0)
                    return true;
                conn_next(c); /* it was refused at once (42P05) */
                return c->state == CONN_READY;
            }
        }
        if (!res)
            req_fail(req, PG_EQUERY, "XX000", "no result from PostgreSQL");
        else if (!all_ok)
            req->errkind = PG_EQUERY;
        else if (req->kind == REQ_COMMIT && !strcmp(PQcmdStatus(res), "ROLLBACK")) {
            /* PostgreSQL answers COMMIT in a failed transaction with a successful ROLLBACK. */
            req->errkind = PG_EQUERY;
            memcpy(req->sqlstate, "25P02", 6);
            req->message = xstrdup("the transaction was rolled back: an earlier statement failed");
        }
        ends = req->kind == REQ_COMMIT || req->kind == REQ_ROLLBACK;
        pg_txn_t *txn = ends ? req->txn : NULL;
        if (res)
            req_finish(req);
        if (txn)
            txn_unpin(txn);
    }
    if (c->nsent > 0) {
        conn_deadline(c);
        return true;
    }
    if (ends && conn_in_txn(c)) {
        conn_lost(c, "still inside a transaction after COMMIT or ROLLBACK", NULL);
        return false;
    }
    conn_next(c);
    return c->state == CONN_READY;
}

/* Takes what libpq has parsed; false when the connection had to go. */
static bool conn_read(conn_t *c)
{
    while (c->nsent > 0 && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        pg_handle_t *req = c->reading;
        if (!res) { /* the end of one statement's results */
            if (c->last_null) {
                conn_lost(c, "lost track of the pipeline", NULL);
                return false;
            }
            c->last_null = true;
            if (++c->phase == (req->preparing ? 2 : 1) && !req->group_end) {
                if (req->link.next == &c->sent) {
                    conn_lost(c, "lost track of the pipeline", NULL);
                    return false;
                }
                c->reading = req_of(req->link.next); /* the group's next statement */
                c->phase = 0;
                conn_deadline(c);
            }
            continue;
        }
        c->last_null = false;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            if (!conn_finish(c))
                return false;
            continue;
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            list_unlink(&req->link);
            c->nsent--;
            c->reading = NULL;
            req_fail(req, PG_EQUERY, "0A000", "COPY is not supported by the pool");
            conn_lost(c, "the server started a COPY", NULL); /* no way back but a new session */
            return false;
        }
        if (req->preparing && c->phase == 0) { /* the PREPARE's answer */
            stmt_t *prepared = stmt_find(c, req->name);
            if (st == PGRES_COMMAND_OK) {
                if (prepared)
                    prepared->pending = false;
                PQclear(res);
                continue;
            }
            stmt_forget(c, req->name);
        }
        answer_keep(req, res);
    }
    return true;
}

static void on_io(uv_poll_t *poll, int status, int events)
{
    conn_t *c = poll->data;
    if (c->state == CONN_CONNECTING) {
        conn_step(c); /* PQconnectPoll reads the socket's error itself */
        return;
    }
    if (c->state != CONN_READY)
        return;
    if (status < 0) {
        PQconsumeInput(c->pg); /* for libpq's own words about what happened */
        conn_lost(c,
                  PQstatus(c->pg) == CONNECTION_BAD ? PQerrorMessage(c->pg) : uv_strerror(status),
                  NULL);
        return;
    }
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg), NULL);
        return;
    }
    PGnotify *note;
    while ((note = PQnotifies(c->pg)))
        PQfreemem(note);
    if (c->flushing && !conn_flush(c))
        return;
    if (c->nsent > 0 && !conn_read(c))
        return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, PQerrorMessage(c->pg), NULL);
        return;
    }
    conn_arm(c);
}

/* ---- transactions ---- */

static void txn_maybe_free(pg_txn_t *txn)
{
    if (!txn->ended || txn->conn || txn->begin || txn->ndone > 0)
        return;
    pg_pool_t *pool = txn->pool;
    pool->ntxn--;
    free(txn);
    pool_maybe_finish(pool);
}

/* The pinned connection is gone (lost, or the pool closes). */
static void txn_break(pg_txn_t *txn, pg_errkind_t kind, const char *why, const char *sqlstate)
{
    txn->conn = NULL;
    while (!list_empty(&txn->queue))
        req_fail(req_pop(&txn->queue), kind, sqlstate, why);
    pg_handle_t *begin = txn->begin;
    if (begin && begin->where == AT_DONE && !begin->errkind) {
        /* The caller has not seen it yet: turn the success into the failure it now is. */
        PQclear(begin->result.pg);
        begin->result.pg = NULL;
        begin->errkind = kind;
        begin->message = one_line(why);
        snprintf(begin->sqlstate, sizeof(begin->sqlstate), "%s", sqlstate ? sqlstate : "");
        txn->ended = txn->abandoned = true;
    }
    txn_maybe_free(txn);
}

/* Not a word about txn after conn_next: the connection may finish with it and free it. */
static void txn_abandon(pg_txn_t *txn)
{
    txn->ended = txn->abandoned = true;
    while (!list_empty(&txn->queue)) {
        pg_handle_t *req = req_pop(&txn->queue);
        req->txn = NULL; /* not counted in ndone: it never finished */
        req_free(req);
    }
    conn_t *c = txn->conn;
    if (!c)
        txn_maybe_free(txn);
    else if (c->nsent > 0)
        for (link_t *l = c->sent.next; l != &c->sent; l = l->next)
            req_of(l)->silent = true; /* pinned: what runs is the transaction's */
    else
        conn_next(c); /* idle: roll back now */
}

/* ---- the pool ---- */

static void pool_free(pg_pool_t *pool)
{
    pg_close_cb cb = pool->close_cb;
    void *ud = pool->close_ud;
    for (size_t i = 0; i < pool->nkeys; i++) {
        free(pool->keys[i]);
        free(pool->vals[i]);
    }
    free(pool->keys);
    free(pool->vals);
    free(pool->lookup_host);
    free(pool->last_error);
    free(pool->conns);
    free(pool);
    if (cb)
        cb(ud);
}

static void handle_closed(pg_pool_t *pool)
{
    if (--pool->open == 0 && pool->finishing)
        pool_free(pool);
}

static void on_handle_closed(uv_handle_t *handle)
{
    pg_pool_t *pool = handle->data;
    handle_closed(pool);
}

static void on_conn_timer_closed(uv_handle_t *handle)
{
    handle_closed(((conn_t *)handle->data)->pool);
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

static bool is_numeric_host(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static void param_add(pg_pool_t *pool, const char *key, const char *val)
{
    pool->keys[pool->nkeys] = xstrdup(key);
    pool->vals[pool->nkeys++] = xstrdup(val);
}

/* Turns the conninfo into libpq's keyword arrays, adds the statement timeout to
 * `options`, and decides whether we must resolve the host name ourselves. */
static int pool_params(pg_pool_t *pool, const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
    if (!opts) {
        char *why = one_line(err ? err : "out of memory");
        log_error("postgres: invalid conninfo: %s", why);
        free(why);
        PQfreemem(err);
        return -EINVAL;
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        n++;
    pool->keys = xcalloc(n + 2, sizeof(char *));
    pool->vals = xcalloc(n + 2, sizeof(char *));
    const char *options = NULL, *host = NULL, *hostaddr = NULL;
    bool appname = false;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "options")) {
            options = o->val;
            continue;
        }
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = o->val;
        else if (!strcmp(o->keyword, "fallback_application_name"))
            appname = true;
        param_add(pool, o->keyword, o->val);
    }
    if (!appname)
        param_add(pool, "fallback_application_name", "pantherad");
    if (!options)
        options = getenv("PGOPTIONS"); /* we set options, so libpq would not look */
    if (pool->statement_timeout_ms > 0) {
        char *opt = xasprintf("%s%s-c statement_timeout=%d", options ? options : "",
                              options ? " " : "", pool->statement_timeout_ms);
        param_add(pool, "options", opt);
        free(opt);
    } else if (options) {
        param_add(pool, "options", options);
    }
    if (!host)
        host = getenv("PGHOST");
    if (!hostaddr)
        hostaddr = getenv("PGHOSTADDR");
    /* A list of hosts is left to libpq (which resolves each name, blocking). */
    if (host && *host && (!hostaddr || !*hostaddr) && host[0] != '/' && host[0] != '@' &&
        !strchr(host, ',') && !is_numeric_host(host))
        pool->lookup_host = xstrdup(host);
    PQconninfoFree(opts);
    return 0;
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
    if (pool_params(pool, cfg->conninfo) < 0)
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
    for (int i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        c->pool = pool;
        c->fd = -1;
        c->backoff_ms = BACKOFF_MIN_MS;
        list_init(&c->sent);
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
    }
    for (int i = 0; i < pool->size; i++)
        conn_connect(&pool->conns[i]);
    return pool;

fail:
    for (size_t i = 0; i < pool->nkeys; i++) {
        free(pool->keys[i]);
        free(pool->vals[i]);
    }
    free(pool->keys);
    free(pool->vals);
    free(pool->lookup_host);
    free(pool);
    return NULL;
}

void pg_pool_close(pg_pool_t *pool, pg_close_cb done, void *ud)
{
    if (!pool || pool->closing)
        return;
    pool->closing = true;
    pool->in_close = true; /* no finishing halfway: what follows still queues callbacks */
    pool->close_cb = done;
    pool->close_ud = ud;
    const char *why = "the PostgreSQL pool is closing";
    fail_waiting(pool, PG_ECANCELLED, why);
    for (int i = 0; i < pool->size; i++) {
        conn_t *c = &pool->conns[i];
        link_t sent;
        list_move(&sent, &c->sent);
        c->nsent = 0;
        pg_txn_t *txn = c->txn;
        c->txn = NULL;
        if (c->state == CONN_READY)
            pool->up--;
        conn_drop(c);
        c->state = CONN_CLOSED;
        uv_close((uv_handle_t *)&c->timer, on_conn_timer_closed);
        while (!list_empty(&sent))
            req_fail(req_pop(&sent), PG_ECANCELLED, NULL, why);
        if (txn)
            txn_break(txn, PG_ECANCELLED, why, NULL);
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
                       pg_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    int rc = check_query(name, sql, nparams, values);
    if (rc < 0)
        return rc;
    if (pool->closing && !txn)
        return -ESHUTDOWN;
    pg_handle_t *req = req_new(pool, REQ_QUERY, name, sql, nparams, values);
    req->cb.query = cb;
    req->ud = ud;
    req->silent = !cb;
    pg_handle_t *handle = cb ? req : NULL; /* a silent request may be freed below */
    if (!txn) {
        submit(pool, req);
    } else if (!txn->conn) {
        req_fail(req, pool->closing ? PG_ECANCELLED : PG_EUNAVAILABLE, NULL,
                 "the transaction's PostgreSQL connection was lost");
    } else {
        req->txn = txn;
        req->where = AT_TXN;
        list_push(&txn->queue, &req->link);
        if (txn->conn->nsent == 0)
            conn_next(txn->conn);
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
    return query_start(pool, NULL, NULL, sql, nparams, values, cb, ud, handle_out);
}

int pg_query_prepared(pg_pool_t *pool, const char *name, const char *sql, int nparams,
                      const char *const *values, pg_query_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (!pool || !name)
        return -EINVAL;
    return query_start(pool, NULL, name, sql, nparams, values, cb, ud, handle_out);
}

int pg_txn_query(pg_txn_t *txn, const char *sql, int nparams, const char *const *values,
                 pg_query_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (!txn || txn->ended)
        return -EINVAL;
    return query_start(txn->pool, txn, NULL, sql, nparams, values, cb, ud, handle_out);
}

int pg_txn_query_prepared(pg_txn_t *txn, const char *name, const char *sql, int nparams,
                          const char *const *values, pg_query_cb cb, void *ud,
                          pg_handle_t **handle_out)
{
    if (!txn || txn->ended || !name)
        return -EINVAL;
    return query_start(txn->pool, txn, name, sql, nparams, values, cb, ud, handle_out);
}

int pg_ping(pg_pool_t *pool, pg_done_cb cb, void *ud, pg_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!pool)
        return -EINVAL;
    if (pool->closing)
        return -ESHUTDOWN;
    pg_handle_t *req = req_new(pool, REQ_PING, NULL, "SELECT 1", 0, NULL);
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
    pg_handle_t *req = req_new(pool, REQ_BEGIN, NULL, "BEGIN", 0, NULL);
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
        req_new(pool, kind, NULL, kind == REQ_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL);
    req->cb.done = cb;
    req->ud = ud;
    req->silent = !cb;
    req->txn = txn;
    pg_handle_t *handle = cb ? req : NULL;
    if (!txn->conn) {
        req_fail(req, pool->closing ? PG_ECANCELLED : PG_EUNAVAILABLE, NULL,
                 "the transaction's PostgreSQL connection was lost");
        txn_maybe_free(txn);
    } else {
        req->where = AT_TXN;
        list_push(&txn->queue, &req->link);
        if (txn->conn->nsent == 0)
            conn_next(txn->conn);
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
