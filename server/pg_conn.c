/*
 * pg_conn.c — one connection of the PostgreSQL pool, from the name lookup to its loss.
 *
 * Connecting without blocking. libpq's handshake is PQconnectStartParams then
 * PQconnectPoll steps, each telling us whether to wait for read or write readiness; one
 * uv_poll_t per connection watches PQsocket() and calls the next step. Host names are
 * resolved with uv_getaddrinfo and handed to libpq as hostaddr, because libpq would
 * otherwise call getaddrinfo() itself and block.
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
 * Failure. A connection that fails is closed and retried with exponential backoff (100 ms
 * doubling to 5 s, +-20 % jitter so workers do not knock in step, reset on success); the
 * first one that gets through wakes its siblings so the pool refills at once. While all are
 * down, traffic may cut a backoff short (pg_conn_probe): an outage ends for clients when the
 * server is back, not when the longest backoff runs out. Work on a
 * lost connection fails with PG_EUNAVAILABLE and is never replayed: only the caller knows
 * whether running it twice is safe. A query with no answer statement_timeout_ms +
 * ANSWER_GRACE_MS after it was sent means the server or the network is gone: the
 * connection is dropped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg_internal.h"
#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ANSWER_GRACE_MS 2000
#define LOOKUP_ADDRS_MAX 8
/* While every connection is down, a request may start an attempt ahead of the backoff, at
 * most this often per pool, so an outage cannot turn traffic into a connection storm. */
#define PROBE_MIN_MS 100
/* A request waits for that attempt only when attempts have been failing this fast (the
 * server refuses rather than being unreachable), so waiting costs it almost nothing. */
#define PROBE_QUICK_MS 50

struct lookup {
    uv_getaddrinfo_t req;
    conn_t *conn; /* NULL once the connection stopped waiting for it */
    pg_pool_t *pool;
};

static void on_conn_timer(uv_timer_t *timer);

/* ---- the socket watcher ---- */

static void on_poll_closed(uv_handle_t *handle)
{
    pg_pool_t *pool = ((conn_t *)handle->data)->pool;
    free(handle);
    pg_release(pool);
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
    return uv_poll_start(c->poll, events, pg_on_io);
}

/* Connected: always readable (the server may say goodbye), writable while sending. */
bool pg_conn_arm(conn_t *c)
{
    int rc = conn_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0));
    if (rc < 0) {
        pg_conn_lost(c, uv_strerror(rc), NULL);
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
    pg_stmts_clear(c);
}

/* ---- failing and coming back ---- */

static void conn_retry_later(conn_t *c)
{
    pg_pool_t *pool = c->pool;
    c->state = CONN_DOWN;
    if (pool->closing)
        return;
    uv_timer_start(&c->timer, on_conn_timer,
                   backoff_next(&c->backoff_ms, BACKOFF_MAX_MS, &pool->rng), 0);
}

/* A connection attempt failed. `why` may be libpq's: copied before PQfinish frees it. */
static void conn_failed(conn_t *c, const char *why)
{
    pg_pool_t *pool = c->pool;
    char *line = pg_one_line(why);
    pool->last_attempt_ms = uv_now(pool->loop) - c->attempt_at;
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
    pg_fail_waiting(pool, PG_EUNAVAILABLE, msg);
    free(msg);
}

/* A working connection broke: what ran on it fails, its transaction is broken. `why` is
 * copied before conn_drop, like in conn_failed. */
void pg_conn_lost(conn_t *c, const char *why, const char *sqlstate)
{
    pg_pool_t *pool = c->pool;
    char *msg = xasprintf("connection to PostgreSQL lost: %s", why);
    char *line = pg_one_line(msg);
    free(msg);
    /* The server often says why (57P01 admin shutdown) just before it hangs up. On a dead
     * connection libpq is never busy, so this cannot block; bounded, because in pipeline
     * mode PQgetResult says NULL between statements rather than once at the end. */
    for (int i = 0; c->nsent > 0 && c->pg && i < 16 && !PQisBusy(c->pg); i++) {
        PGresult *res = PQgetResult(c->pg);
        if (res && PQresultStatus(res) == PGRES_FATAL_ERROR && c->reading)
            pg_answer_keep(c->reading, res);
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
    pg_fail_sent(&sent, txn, PG_EUNAVAILABLE, code, line);
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
    pg_pipeline_next(c);
}

/* ---- connecting ---- */

/* One step of the connection handshake, when the socket is ready as libpq asked. */
void pg_conn_step(conn_t *c)
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
        pg_release(pool);
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

void pg_conn_connect(conn_t *c)
{
    pg_pool_t *pool = c->pool;
    c->attempt_at = uv_now(pool->loop);
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

static bool conn_attempting(const conn_t *c)
{
    return c->state == CONN_RESOLVING || c->state == CONN_CONNECTING;
}

bool pg_conn_probe(pg_pool_t *pool)
{
    bool quick = pool->last_attempt_ms <= PROBE_QUICK_MS;
    conn_t *down = NULL;
    for (int i = 0; i < pool->size; i++) {
        if (conn_attempting(&pool->conns[i]))
            return quick;
        if (!down && pool->conns[i].state == CONN_DOWN)
            down = &pool->conns[i];
    }
    uint64_t now = uv_now(pool->loop);
    if (!down || pool->closing || (pool->probe_at && now - pool->probe_at < PROBE_MIN_MS))
        return false;
    pool->probe_at = now;
    uv_timer_stop(&down->timer);
    pg_conn_connect(down); /* may fail before it returns: then the pool is still down */
    return quick && conn_attempting(down);
}

static void on_conn_timer(uv_timer_t *timer)
{
    conn_t *c = timer->data;
    char why[96];
    switch (c->state) {
    case CONN_DOWN: pg_conn_connect(c); break;
    case CONN_RESOLVING:
    case CONN_CONNECTING:
        snprintf(why, sizeof(why), "no connection within %d ms", c->pool->connect_timeout_ms);
        conn_failed(c, why);
        break;
    case CONN_READY:
        snprintf(why, sizeof(why), "no answer within %d ms",
                 c->pool->statement_timeout_ms + ANSWER_GRACE_MS);
        pg_conn_lost(c, why, NULL);
        break;
    case CONN_CLOSED: break;
    }
}

/* The first request in the pipeline must be answered in time, see the top. */
void pg_conn_deadline(conn_t *c)
{
    if (c->pool->statement_timeout_ms > 0)
        uv_timer_start(&c->timer, on_conn_timer,
                       (uint64_t)c->pool->statement_timeout_ms + ANSWER_GRACE_MS, 0);
}

/* ---- setting up and closing ---- */

void pg_conn_init(conn_t *c, pg_pool_t *pool)
{
    c->pool = pool;
    c->fd = -1;
    c->backoff_ms = BACKOFF_MIN_MS;
    list_init(&c->sent);
    uv_timer_init(pool->loop, &c->timer);
    c->timer.data = c;
}

static void on_conn_timer_closed(uv_handle_t *handle)
{
    pg_release(((conn_t *)handle->data)->pool);
}

void pg_conn_close(conn_t *c)
{
    if (c->state == CONN_READY)
        c->pool->up--;
    conn_drop(c);
    c->state = CONN_CLOSED;
    uv_close((uv_handle_t *)&c->timer, on_conn_timer_closed);
}

/* ---- connection parameters ---- */

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
int pg_conn_params(pg_pool_t *pool, const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
    if (!opts) {
        char *why = pg_one_line(err ? err : "out of memory");
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

void pg_conn_params_free(pg_pool_t *pool)
{
    for (size_t i = 0; i < pool->nkeys; i++) {
        free(pool->keys[i]);
        free(pool->vals[i]);
    }
    free(pool->keys);
    free(pool->vals);
    free(pool->lookup_host);
}
