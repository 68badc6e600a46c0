/*
 * events_listen.c — a worker's own PostgreSQL session for the event consumers.
 *
 * The pool's connections (pg*.c) are shared and pipelined: a LISTEN there would hand a
 * notification to whichever statement reads next, and a session advisory lock would be
 * held by a connection that serves everyone and may be recycled. So the consumers get
 * one plain libpq session per worker, only for what is session-scoped: LISTEN
 * panthera_events, and pg_try_advisory_lock for each group this worker leads. Its loss
 * is news in itself — every lock it held is gone, so events.c steps down from every
 * group at once (the `down` event) — and it reconnects by itself with a backoff.
 *
 * Statements go one at a time, in order (a handful at start, one per group to lead):
 * simplicity wins over pipelining here. Connecting follows PQconnectPoll's steps with
 * the watcher re-made whenever libpq changes its socket, as pg_conn.c explains. Unlike
 * the pool it leaves name lookup to libpq: hosts are normally a socket directory or an
 * address, and one lookup per reconnect of one session per worker is not worth a
 * resolver of our own.
 */
#include "events_listen.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 10000

typedef struct lq {
    struct lq *next;
    char *sql;
    char *param;
    bool sent;
    ev_listen_cb cb;
    void *ud;
} lq_t;

struct ev_listen {
    uv_loop_t *loop;
    char *conninfo;
    ev_listen_events_t ev;
    void *ud;
    PGconn *pg;
    uv_poll_t *poll;
    int fd;
    bool up;
    bool closing;
    uv_timer_t retry;
    uint64_t backoff_ms;
    lq_t *head;
    lq_t *tail;
};

static void on_io(uv_poll_t *p, int status, int events);
static void lost(ev_listen_t *l, const char *why);

static void poll_closed(uv_handle_t *h)
{
    free(h);
}

static void watch_stop(ev_listen_t *l)
{
    if (!l->poll)
        return;
    uv_close((uv_handle_t *)l->poll, poll_closed);
    l->poll = NULL;
    l->fd = -1;
}

static int watch(ev_listen_t *l, int events)
{
    int fd = PQsocket(l->pg);
    if (fd < 0)
        return UV_EBADF;
    if (l->poll && l->fd != fd)
        watch_stop(l);
    if (!l->poll) {
        l->poll = xmalloc(sizeof(uv_poll_t));
        int rc = uv_poll_init(l->loop, l->poll, fd);
        if (rc < 0) {
            free(l->poll);
            l->poll = NULL;
            return rc;
        }
        l->poll->data = l;
        l->fd = fd;
    }
    return uv_poll_start(l->poll, events, on_io);
}

static void fail_queue(ev_listen_t *l)
{
    while (l->head) {
        lq_t *q = l->head;
        l->head = q->next;
        if (q->cb)
            q->cb(NULL, q->ud);
        free(q->sql);
        free(q->param);
        free(q);
    }
    l->tail = NULL;
}

static void send_next(ev_listen_t *l)
{
    lq_t *q = l->head;
    if (!q || q->sent || !l->up)
        return;
    const char *vals[1] = {q->param};
    if (!PQsendQueryParams(l->pg, q->sql, q->param ? 1 : 0, NULL, vals, NULL, NULL, 0)) {
        lost(l, PQerrorMessage(l->pg));
        return;
    }
    q->sent = true;
    /* Small statements on a fresh socket leave at once; a short write waits for POLLOUT. */
    int f = PQflush(l->pg);
    if (f < 0)
        lost(l, PQerrorMessage(l->pg));
    else if (watch(l, UV_READABLE | (f ? UV_WRITABLE : 0)) < 0)
        lost(l, "cannot watch the socket");
}

static void connect_now(ev_listen_t *l);

static void on_retry(uv_timer_t *t)
{
    connect_now(t->data);
}

static void schedule_retry(ev_listen_t *l)
{
    if (l->closing)
        return;
    uv_timer_start(&l->retry, on_retry, l->backoff_ms, 0);
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

static void lost(ev_listen_t *l, const char *why)
{
    bool was_up = l->up;
    if (was_up)
        log_warn("events: lost the listening session: %s", why ? why : "?");
    l->up = false;
    watch_stop(l);
    if (l->pg) {
        PQfinish(l->pg);
        l->pg = NULL;
    }
    fail_queue(l);
    if (was_up && l->ev.down)
        l->ev.down(l->ud);
    schedule_retry(l);
}

static void read_results(ev_listen_t *l)
{
    if (!PQconsumeInput(l->pg)) {
        lost(l, PQerrorMessage(l->pg));
        return;
    }
    bool notified = false;
    for (PGnotify *n = PQnotifies(l->pg); n; n = PQnotifies(l->pg)) {
        notified = true;
        PQfreemem(n);
    }
    while (l->head && l->head->sent && !PQisBusy(l->pg)) {
        PGresult *res = PQgetResult(l->pg);
        if (!res) { /* the statement's results are complete */
            lq_t *q = l->head;
            l->head = q->next;
            if (!l->head)
                l->tail = NULL;
            free(q->sql);
            free(q->param);
            free(q);
            send_next(l);
            if (!l->pg)
                return;
            continue;
        }
        lq_t *q = l->head;
        if (q->cb) {
            q->cb(res, q->ud);
            q->cb = NULL; /* one answer per statement */
        }
        PQclear(res);
        if (!l->pg)
            return; /* the callback closed us */
    }
    if (notified && l->ev.notify)
        l->ev.notify(l->ud);
    if (l->pg && PQstatus(l->pg) == CONNECTION_BAD)
        lost(l, PQerrorMessage(l->pg));
}

static void step_connect(ev_listen_t *l)
{
    if (l->poll)
        uv_poll_stop(l->poll); /* before libpq may swap the socket (pg_conn.c) */
    int rc = 0;
    switch (PQconnectPoll(l->pg)) {
    case PGRES_POLLING_OK:
        PQsetnonblocking(l->pg, 1);
        l->up = true;
        l->backoff_ms = BACKOFF_MIN_MS;
        if (watch(l, UV_READABLE) < 0) {
            lost(l, "cannot watch the socket");
            return;
        }
        log_debug("events: listening session up");
        if (l->ev.up)
            l->ev.up(l->ud);
        return;
    case PGRES_POLLING_READING: rc = watch(l, UV_READABLE); break;
    case PGRES_POLLING_WRITING: rc = watch(l, UV_WRITABLE); break;
    default: lost(l, PQerrorMessage(l->pg)); return;
    }
    if (rc < 0)
        lost(l, "cannot watch the socket");
}

static void on_io(uv_poll_t *p, int status, int events)
{
    ev_listen_t *l = p->data;
    if (!l->up) {
        step_connect(l);
        return;
    }
    if (status < 0) {
        lost(l, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        int f = PQflush(l->pg);
        if (f < 0) {
            lost(l, PQerrorMessage(l->pg));
            return;
        }
        if (!f && watch(l, UV_READABLE) < 0) {
            lost(l, "cannot watch the socket");
            return;
        }
    }
    if (events & UV_READABLE)
        read_results(l);
}

static void connect_now(ev_listen_t *l)
{
    l->pg = PQconnectStart(l->conninfo);
    if (!l->pg || PQstatus(l->pg) == CONNECTION_BAD) {
        log_debug("events: cannot connect the listening session: %s",
                  l->pg ? PQerrorMessage(l->pg) : "out of memory");
        if (l->pg)
            PQfinish(l->pg);
        l->pg = NULL;
        schedule_retry(l);
        return;
    }
    if (watch(l, UV_WRITABLE) < 0)
        lost(l, "cannot watch the socket");
}

ev_listen_t *ev_listen_new(uv_loop_t *loop, const char *conninfo, const ev_listen_events_t *ev,
                           void *ud)
{
    ev_listen_t *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->conninfo = xstrdup(conninfo);
    l->ev = *ev;
    l->ud = ud;
    l->fd = -1;
    l->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &l->retry);
    l->retry.data = l;
    connect_now(l);
    return l;
}

int ev_listen_query(ev_listen_t *l, const char *sql, const char *param, ev_listen_cb cb, void *ud)
{
    if (!l->up)
        return -1;
    lq_t *q = xcalloc(1, sizeof(*q));
    q->sql = xstrdup(sql);
    q->param = param ? xstrdup(param) : NULL;
    q->cb = cb;
    q->ud = ud;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    send_next(l);
    return 0;
}

static void retry_closed(uv_handle_t *h)
{
    ev_listen_t *l = h->data;
    free(l->conninfo);
    free(l);
}

void ev_listen_close(ev_listen_t *l)
{
    if (!l)
        return;
    l->closing = true;
    l->up = false;
    watch_stop(l);
    if (l->pg)
        PQfinish(l->pg);
    l->pg = NULL;
    fail_queue(l);
    uv_timer_stop(&l->retry);
    uv_close((uv_handle_t *)&l->retry, retry_closed);
}
