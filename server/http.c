/*
 * http.c — one connection, from accept to close. The request is parsed in http_parse.c
 * and its answer built in http_response.c; this file owns the socket, the deadlines and
 * the order in which requests run.
 *
 * Reading. Every connection of a worker reads into the worker's one read buffer, and
 * llhttp parses straight out of it; what a request keeps is copied out as it arrives, so
 * an idle keep-alive connection holds no buffer at all.
 *
 * Pipelining. on_message_complete pauses the parser, so requests leave llhttp one at a
 * time and are dispatched outside its callbacks. A handler that answers at once lets the
 * loop go on with the next request in the same buffer; while one that answers later
 * (PX_ASYNC) works, what arrives is appended to `pending` and parsed once it has
 * answered. Responses therefore leave in request order without a queue of their own.
 *
 * Hang-ups. Reading goes on while a request is in flight (up to PENDING_MAX stashed
 * bytes, then it stops until the answer is out), so a client that closes or resets its
 * connection is noticed at once, not when the answer is written: the socket is closed,
 * the request's PostgreSQL work is asked to end (a waiting query fails, a running one is
 * cancelled on the server), and its answer, which the handler still gives, is logged as
 * 499, as nginx does for a proxied request.
 *
 * Closing. After a request that cannot be parsed or breaks a limit, nothing more on that
 * connection is executed: its error goes out with Connection: close, the socket is then
 * half-closed and what the client still sends is read and dropped for a short while
 * (lingering close), so the client sees the answer rather than a reset.
 *
 * Deadlines. A connection sits in at most one of the worker's deadline lists (fresh,
 * idle, header, body, write, linger); each list has one timeout, so appending keeps it
 * sorted and the worker's tick only ever looks at list heads. The heads of the fresh
 * (nothing sent yet) and idle lists are also who makes room when the worker is full
 * (http_admit.c, which also caps connections per client address).
 */
#include "http_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "crash.h"
#include "gateway.h"
#include "http_admit.h"
#include "io_loop.h"
#include "log.h"
#include "ratelimit.h"
#include "route_spec.h"
#include "spool.h"
#include "stream.h"
#include "tls.h"
#include "worker.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define LINGER_MS 2000
#define DRAIN_IDLE_MS 1000
/* Stop parsing pipelined requests while this much response is still queued. */
#define WRITE_BACKLOG_MAX (256 * 1024)
#define PENDING_MAX (64 * 1024) /* bytes read ahead while a request is in flight */
#define READS_PER_TURN 32

static void conn_linger(conn_t *c);
static void start_reading(conn_t *c);
static void stop_reading(conn_t *c);

/* ---- deadline lists ---- */

static uint64_t timer_timeout(const worker_t *w, int which)
{
    switch (which) {
    case CT_IDLE: return w->draining ? DRAIN_IDLE_MS : w->limits->keepalive_timeout_ms;
    case CT_HEADER: return w->limits->header_timeout_ms;
    case CT_BODY: return w->limits->body_timeout_ms;
    case CT_WRITE: return w->limits->send_timeout_ms;
    case CT_FRESH:
        return w->limits->first_byte_timeout_ms < w->limits->header_timeout_ms
                   ? w->limits->first_byte_timeout_ms
                   : w->limits->header_timeout_ms;
    default: return LINGER_MS;
    }
}

uint64_t http_timer_started(const conn_t *c)
{
    return c->deadline - timer_timeout(c->worker, c->timer);
}

static void timer_unlink(conn_t *c)
{
    if (c->timer == CT_NONE)
        return;
    worker_t *w = c->worker;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        w->timer_head[c->timer] = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        w->timer_tail[c->timer] = c->tprev;
    c->tprev = c->tnext = NULL;
    c->timer = CT_NONE;
}

/* (Re)start deadline `which` from now. */
void http_timer_arm(conn_t *c, int which)
{
    timer_unlink(c);
    if (which == CT_NONE)
        return;
    worker_t *w = c->worker;
    c->timer = (int8_t)which;
    c->deadline = uv_now(w->loop) + timer_timeout(w, which);
    c->tprev = w->timer_tail[which];
    if (c->tprev)
        c->tprev->tnext = c;
    else
        w->timer_head[which] = c;
    w->timer_tail[which] = c;
}

static int desired_timer(const conn_t *c)
{
    if (c->lingering)
        return CT_LINGER;
    if (c->tcp.write_queue_size > 0)
        return CT_WRITE;
    if (c->in_flight || c->close_after)
        return CT_NONE;
    if (c->req)
        return c->req->in_body ? CT_BODY : CT_HEADER;
    return c->requests ? CT_IDLE : CT_FRESH;
}

/* Move to the list the connection's state calls for; a deadline already running for
 * that state keeps running (a slow header stays bound to its first byte's deadline). */
static void conn_update_timer(conn_t *c)
{
    int which = desired_timer(c);
    if (which != c->timer)
        http_timer_arm(c, which);
}

/* ---- dispatch ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode into the arena. `plus_is_space` for query strings. NULL on a bad escape
 * or an encoded NUL, which no handler should ever have to think about. */
char *http_decode(px_req_t *r, const char *s, size_t len, bool plus_is_space)
{
    char *out = arena_alloc(&r->arena, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return NULL;
            int hi = hexval(s[i + 1]);
            int lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return NULL;
            out[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            out[n++] = ' ';
        } else {
            out[n++] = ch;
        }
    }
    out[n] = '\0';
    return out;
}

static void dispatch_route(px_req_t *r, const router_match_t *m);
static void dispatch_resume(px_req_t *r);
static void dispatch_admitted(px_req_t *r);

static void dispatch(conn_t *c)
{
    px_req_t *r = c->req;
    worker_t *w = c->worker;
    c->req = NULL;
    c->in_flight = true;
    c->active = r;
    c->requests++;
    conn_update_timer(c);
    if (c->listen_mode != LISTEN_PLAIN && tls_request_policy(c, r))
        return;

    router_match_t m;
    router_match(w->router, r->method, r->path, r->path_len, &m);
    if (m.status == 404) {
        char msg[160];
        snprintf(msg, sizeof(msg), "no route for %s %.100s", r->method_name ? r->method_name : "?",
                 r->path);
        http_respond_error(r, 404, "not_found", msg, NULL);
        return;
    }
    if (m.status == 405) {
        char allow[96], msg[200];
        router_allow_string(m.allow_mask, allow, sizeof(allow));
        http_add_header(r, "Allow", allow);
        snprintf(msg, sizeof(msg), "method %s is not allowed here; allowed: %s",
                 r->method_name ? r->method_name : "?", allow);
        http_respond_error(r, 405, NULL, msg, NULL);
        return;
    }
    r->route = m.route;
    r->plugin = m.route->owner;
    r->plugin_metrics_id = m.route->owner_id;
    if (crash_route_disabled(m.route)) {
        http_respond_error(r, 503, "unavailable",
                           "this route is switched off after repeated crashes until the next "
                           "reload",
                           NULL);
        return;
    }
    if (gateway_check_caller(r, m.route, dispatch_admitted))
        return;
    if (w->ratelimit && ratelimit_check(w->ratelimit, r, dispatch_resume))
        return;
    dispatch_route(r, &m);
}

/* The limiter asked Redis and let the request through: the route is matched again (the
 * router never changes under a worker) rather than kept across the wait. */
static void dispatch_resume(px_req_t *r)
{
    router_match_t m;
    router_match(r->worker->router, r->method, r->path, r->path_len, &m);
    dispatch_route(r, &m);
}

/* The gateway let the request in after a wait (a stream ticket checked in Redis). */
static void dispatch_admitted(px_req_t *r)
{
    worker_t *w = r->worker;
    if (w->ratelimit && ratelimit_check(w->ratelimit, r, dispatch_resume))
        return;
    dispatch_resume(r);
}

/* Every '%' starts two hex digits, and none encodes NUL. */
static bool query_well_formed(const char *q)
{
    for (const char *p = strchr(q, '%'); p; p = strchr(p + 1, '%')) {
        int hi = hexval(p[1]);
        int lo = hi < 0 ? -1 : hexval(p[2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return false;
    }
    return true;
}

/* The rest of dispatch, once the route matched and the gateway and the limiter let the
 * request through. */
static void dispatch_route(px_req_t *r, const router_match_t *m)
{
    worker_t *w = r->worker;
    if (w->hooks && hooks_has_for(w->hooks, "on_request", r->path, r->path_len) &&
        gateway_on_request(r))
        return;
    if (r->query && !query_well_formed(r->query)) {
        /* A value a handler would silently miss must not look like an absent one. */
        http_respond_error(r, 400, "bad_request", "malformed percent-encoding in the query", NULL);
        return;
    }
    size_t nparams = m->nparams > m->route->nparams ? m->nparams : m->route->nparams;
    if (nparams) {
        r->param_values = arena_alloc(&r->arena, nparams * sizeof(*r->param_values));
        memset(r->param_values, 0, nparams * sizeof(*r->param_values));
    }
    for (size_t i = 0; i < m->nparams; i++) {
        r->param_values[i] = http_decode(r, m->params[i].value, m->params[i].len, false);
        if (!r->param_values[i]) {
            http_respond_error(r, 400, "bad_request", "malformed percent-encoding in the path",
                               NULL);
            return;
        }
    }
    if (m->route->checks && route_spec_check(r))
        return;
    crash_enter(r);
    int rc = m->route->handler(r, m->route->userdata);
    crash_leave();
    if (r->responded || rc == PX_ASYNC)
        return;
    if (rc < 0) {
        const char *code;
        int status = http_error_status(rc, &code);
        const char *msg = r->json_error ? r->json_error : NULL;
        http_respond_error(r, status, code, msg, NULL);
        return;
    }
    log_error("plugin \"%s\": the handler of %s %s returned without answering", r->plugin,
              router_method_name(m->route->method), m->route->pattern);
    http_respond_error(r, 500, "internal", "the handler did not answer", NULL);
}

/* ---- pipelining ---- */

/* conn_feed held a request back until its spooled body was on disk (spool.c). */
static void dispatch_spooled(void *arg)
{
    conn_t *c = arg;
    c->in_flight = false;
    if (spool_status(c->req->spool)) {
        c->err_status = 503;
        c->err_message = "cannot store the request body";
        http_parse_fail(c, HPE_USER);
        return;
    }
    dispatch(c);
}

/* spool.c stops reading while the disk catches up with a body, and starts it again. */
void http_conn_hold_reading(conn_t *c, bool hold)
{
    if (hold && c->reading) {
        stop_reading(c);
    } else if (!hold && !c->reading && !c->closing && !c->lingering) {
        start_reading(c);
    }
}

static void stash(conn_t *c, const char *data, size_t len)
{
    c->pending = xrealloc(c->pending, c->pending_len + len);
    memcpy(c->pending + c->pending_len, data, len);
    c->pending_len += len;
    if (c->reading && c->pending_len >= PENDING_MAX)
        stop_reading(c);
}

static void conn_feed(conn_t *c, const char *data, size_t len)
{
    c->feeding = true;
    while (len > 0 && !c->closing && !c->close_after) {
        if (c->in_flight || c->tcp.write_queue_size >= WRITE_BACKLOG_MAX) {
            stash(c, data, len);
            break;
        }
        c->feed_start = data;
        c->feed_end = data + len;
        llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
        if (err == HPE_OK) {
            http_parse_feed_done(c);
            break;
        }
        if (err == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            len -= (size_t)(pos - data);
            data = pos;
            llhttp_resume(&c->parser);
            if (spool_body_wait(c, dispatch_spooled)) {
                /* Held until the body is on disk; what follows waits in the stash. */
                c->in_flight = true;
                if (len)
                    stash(c, data, len);
                break;
            }
            dispatch(c);
            continue;
        }
        http_parse_fail(c, err);
        break;
    }
    c->feeding = false;
    if (!c->closing)
        conn_update_timer(c);
}

/* A response went out: go on with stashed bytes, or read again. */
static void conn_resume(conn_t *c)
{
    if (c->closing || c->close_after || c->in_flight)
        return;
    if (c->pending) {
        char *data = c->pending;
        size_t len = c->pending_len;
        c->pending = NULL;
        c->pending_len = 0;
        conn_feed(c, data, len);
        free(data);
        if (c->pending || c->closing || c->close_after || c->in_flight)
            return;
    }
    if (c->peer_eof) {
        if (c->writes == 0)
            http_conn_close(c);
        else
            c->close_after = true;
        return;
    }
    if (!c->reading && !c->closing)
        start_reading(c);
}

/* ---- writing ---- */

/* A response the kernel did not take at once: libuv's request for the rest. Allocated
 * only then, so that a request does not carry 192 bytes of uv_write_t it rarely uses
 * (every pooled request, every open stream had them). */
typedef struct resp_write {
    uv_write_t wr;
    px_req_t *req;
} resp_write_t;

static void on_write(uv_write_t *wr, int status)
{
    resp_write_t *w = container_of(wr, resp_write_t, wr);
    px_req_t *r = w->req;
    free(w);
    conn_t *c = r->conn;
    req_release(r);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0) {
        http_conn_close(c);
        return;
    }
    if (c->close_after) {
        if (c->writes == 0 && !c->in_flight)
            conn_linger(c);
        return;
    }
    conn_update_timer(c);
    if (!c->feeding && c->pending && c->tcp.write_queue_size < WRITE_BACKLOG_MAX)
        conn_resume(c);
}

/* uv_try_write's contract (bytes the kernel took, UV_EAGAIN, or a negative uv error)
 * with send(2)/sendmsg(2) in place of its write(2)/writev(2): a socket call skips the
 * VFS layer (fdget_pos, rw_verify_area, fsnotify) that every response paid for. As
 * uv_try_write, it refuses while libuv has a write of ours queued (tls.c's, a 100
 * Continue), so bytes never overtake it. */
static int try_send(conn_t *c, const uv_buf_t *bufs, unsigned nbufs)
{
    int fd = c->fd; /* io_loop.c's copy of the socket's fd saves asking libuv */
    if (c->tcp.write_queue_size != 0 ||
        (!c->io_owned && uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0))
        return UV_EAGAIN;
    ssize_t n;
    do {
        if (nbufs == 1) {
            n = send(fd, bufs[0].base, bufs[0].len, MSG_NOSIGNAL);
        } else {
            /* libuv lays uv_buf_t out as struct iovec on Unix. */
            struct msghdr mh = {.msg_iov = (struct iovec *)bufs, .msg_iovlen = nbufs};
            n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        }
    } while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (int)n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : uv_translate_sys_error(errno);
}

/* The handler is done with the connection from here on: in_flight is cleared before the
 * write, so a write the kernel takes at once goes straight on to the next pipelined
 * request. */
void http_conn_write(conn_t *c, px_req_t *r, uv_buf_t *bufs, unsigned nbufs, bool keep)
{
    c->in_flight = false;
    c->active = NULL;
    if (!keep)
        c->close_after = true;
    if (c->tls && tls_conn_encrypt(c, r, bufs, &nbufs)) {
        /* The session is over (the peer closed it): released once the handler's callback
         * has returned, as a response that went out at once, since it still reads `r`. */
        worker_finish_request(r->worker, r);
        http_conn_close(c);
        return;
    }

    /* Try the socket first. libuv 1.44's uv_write re-arms epoll after every write that
     * completed at once (one epoll_ctl per response, a third of our syscalls); a write
     * the kernel takes whole needs no request at all. Only when nothing is queued, so
     * responses stay in order. */
    size_t total = bufs[0].len + (nbufs > 1 ? bufs[1].len : 0);
    int sent = c->writes == 0 ? try_send(c, bufs, nbufs) : UV_EAGAIN;
    if (sent > 0 && (size_t)sent == total) {
        worker_finish_request(r->worker, r);
        if (c->close_after) {
            free(c->pending);
            c->pending = NULL;
            c->pending_len = 0;
            conn_linger(c);
            return;
        }
        conn_update_timer(c);
        if (!c->feeding)
            conn_resume(c);
        return;
    }
    if (sent > 0) {
        size_t skip = (size_t)sent;
        for (unsigned i = 0; i < nbufs; i++) {
            size_t n = skip < bufs[i].len ? skip : bufs[i].len;
            bufs[i].base += n;
            bufs[i].len -= n;
            skip -= n;
        }
        if (bufs[0].len == 0 && nbufs == 2) {
            bufs[0] = bufs[1];
            nbufs = 1;
        }
    } else if (sent < 0 && sent != UV_EAGAIN) {
        /* Released once the handler's callback has returned: it may still read `r`. */
        worker_finish_request(r->worker, r);
        http_conn_close(c);
        return;
    }
    resp_write_t *w = xmalloc(sizeof(*w));
    w->req = r;
    int rc = uv_write(&w->wr, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rc < 0) {
        free(w);
        worker_finish_request(r->worker, r);
        http_conn_close(c);
        return;
    }
    c->writes++;
    if (c->close_after) {
        free(c->pending);
        c->pending = NULL;
        c->pending_len = 0;
        if (c->reading)
            stop_reading(c);
    }
    conn_update_timer(c);
    if (!c->feeding && !c->close_after)
        conn_resume(c);
}

/* ---- the socket ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    UNUSED(suggested);
    conn_t *c = h->data;
    b->base = c->worker->readbuf;
    b->len = sizeof(c->worker->readbuf);
}

/* The client closed or reset its connection while a request was in flight. The handler
 * still holds the request (the SDK lets it answer from any callback), so the request is
 * not ended here: its PostgreSQL work is asked to stop (api_req_interrupt_work), and its
 * answer, when it comes, goes nowhere and is logged as 499. */
static void conn_abandon(conn_t *c)
{
    px_req_t *r = c->active;
    http_conn_close(c); /* r->conn is NULL from here */
    if (r) {
        r->client_gone = true;
        api_req_interrupt_work(r);
    }
}

void http_conn_input(conn_t *c, const char *data, size_t len)
{
    if (c->pending) { /* behind what is already waiting */
        stash(c, data, len);
        if (!c->in_flight && !c->feeding && c->tcp.write_queue_size < WRITE_BACKLOG_MAX)
            conn_resume(c);
        return;
    }
    conn_feed(c, data, len);
}

/* What a read brought: `n` bytes at `base`, or a negative uv error (UV_EOF). */
static void conn_read(conn_t *c, ssize_t n, const char *base)
{
    if (n > 0) {
        if (c->lingering)
            return;
        if (c->tls)
            tls_conn_input(c, base, (size_t)n);
        else
            http_conn_input(c, base, (size_t)n);
        return;
    }
    if (n == 0)
        return;
    if (c->in_flight && c->active && !c->lingering) {
        conn_abandon(c);
        return;
    }
    if (n != UV_EOF || c->lingering) {
        http_conn_close(c);
        return;
    }
    c->peer_eof = true;
    stop_reading(c);
    if (c->in_flight || c->writes) {
        c->close_after = true;
        return;
    }
    http_conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_read(s->data, n, b->base);
}

/* recv(2), not libuv's read(2): a socket call skips the file layer (fdget_pos,
 * rw_verify_area, fsnotify). A read shorter than the buffer emptied the socket's queue,
 * so the next edge will be reported; after a hang-up or a pause only EAGAIN or the end of
 * the stream says so (io_loop.c). conn_read may stop reading or close the connection;
 * the conn itself stays allocated until its close callback, which runs inside uv_run. */
void http_conn_readable(conn_t *c, bool drain)
{
    char *buf = c->worker->readbuf;
    size_t size = sizeof(c->worker->readbuf);
    for (int i = 0; c->reading && !c->closing; i++) {
        if (i == READS_PER_TURN) {
            /* A client that keeps the socket full (an upload) waits for the others' turn,
             * as libuv's 32 reads per callback had it; no edge will come for what is
             * already there, so the loop reads it again. */
            io_conn_read_again(c);
            return;
        }
        ssize_t n = recv(c->fd, buf, size, 0);
        if (n > 0) {
            conn_read(c, n, buf);
            if ((size_t)n < size && !drain)
                return;
        } else if (n == 0) {
            conn_read(c, UV_EOF, NULL);
            return;
        } else if (errno != EINTR) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_read(c, uv_translate_sys_error(errno), NULL);
            return;
        }
    }
}

static void start_reading(conn_t *c)
{
    c->reading = true;
    if (c->io_owned)
        io_conn_read_again(c);
    else
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* An edge-triggered connection just ignores its events until start_reading. */
static void stop_reading(conn_t *c)
{
    c->reading = false;
    if (!c->io_owned)
        uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    worker_t *w = c->worker;
    http_admit_release(c);
    free(c->pending);
    tls_conn_free(c);
    free(c);
    worker_conn_removed(w);
}

void http_conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    timer_unlink(c);
    if (c->req) {
        req_release(c->req);
        c->req = NULL;
    }
    if (c->in_flight && c->active) {
        /* The handler still holds its request and will answer into the void; a stream
         * has nothing left to answer and ends now (stream.c). */
        c->active->conn = NULL;
        if (c->active->stream)
            stream_conn_lost(c->active);
    }
    c->active = NULL;
    c->in_flight = false;
    io_conn_remove(c);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Everything is written: half-close, then drop what the client still sends for a
 * while so it reads our answer instead of a reset. */
static void conn_linger(conn_t *c)
{
    if (c->closing)
        return;
    if (c->peer_eof) {
        http_conn_close(c);
        return;
    }
    int fd;
    if (c->tls)
        tls_conn_shutdown(c);
    else if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        shutdown(fd, SHUT_WR);
    c->lingering = true;
    free(c->pending);
    c->pending = NULL;
    c->pending_len = 0;
    if (!c->reading)
        start_reading(c);
    conn_update_timer(c);
}

int http_conn_open(worker_t *w, int fd)
{
    return http_conn_open_listener(w, fd, LISTEN_PLAIN);
}

int http_conn_open_listener(worker_t *w, int fd, uint8_t listen_mode)
{
    conn_t *c = xcalloc(1, sizeof(*c));
    c->worker = w;
    c->timer = CT_NONE;
    c->listen_mode = listen_mode;
    int rc = listen_mode == LISTEN_SSL && tls_conn_start(c, w->tls) ? UV_ENOMEM : 0;
    if (rc == 0)
        rc = uv_tcp_init(w->loop, &c->tcp);
    if (rc == 0)
        rc = uv_tcp_open(&c->tcp, fd);
    if (rc < 0) {
        close(fd);
        tls_conn_free(c);
        free(c);
        return rc;
    }
    c->tcp.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    /* Plain connections are read through the worker's own epoll (io_loop.c); TLS ones
     * through libuv, which feeds tls.c. Without it (tests, fuzzers) libuv reads all. */
    if (!c->tls && w->io && io_conn_add(c, fd) < 0)
        log_warn("epoll_ctl(ADD) of a connection failed: it is read through libuv");
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET) {
            c->family = AF_INET;
            memcpy(c->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        } else if (ss.ss_family == AF_INET6) {
            c->family = AF_INET6;
            memcpy(c->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        }
    }
    http_parse_init(c);
    worker_conn_added(w);
    if (http_admit_conn(c)) {
        http_conn_close(c);
        return 0;
    }
    start_reading(c);
    http_timer_arm(c, CT_FRESH);
    return 0;
}

void http_expire(worker_t *w, uint64_t now)
{
    for (int which = 0; which < CT_COUNT; which++) {
        conn_t *c;
        while ((c = w->timer_head[which]) && c->deadline <= now) {
            timer_unlink(c);
            if ((which == CT_HEADER && c->req) || which == CT_BODY) {
                /* A request that started but stalled gets told why. */
                c->err_status = 408;
                c->err_message =
                    which == CT_BODY ? "request body timed out" : "request header timed out";
                http_parse_fail(c, HPE_USER);
                if (c->timer == CT_NONE && !c->closing && c->writes == 0)
                    http_conn_close(c);
            } else {
                http_conn_close(c);
            }
        }
    }
}

void http_drain(worker_t *w)
{
    /* Idle connections get a short grace instead of their keep-alive timeout: a client
     * that sends now is answered with Connection: close rather than a reset. */
    uint64_t now = uv_now(w->loop);
    for (conn_t *c = w->timer_head[CT_IDLE]; c; c = c->tnext)
        if (c->deadline > now + DRAIN_IDLE_MS)
            c->deadline = now + DRAIN_IDLE_MS;
}
