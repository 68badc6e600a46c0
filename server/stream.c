/*
 * stream.c — answers that leave in pieces: px_res_stream_begin/write/end, Server-Sent
 * Events on top of them, and px_req_on_close, which tells a handler its request is over.
 * The head of the answer is built by http_response.c, and the connection (its deadlines,
 * keep-alive, what happens after the last byte) stays http.c's: a stream is, to http.c,
 * a request whose handler has not answered yet, and its end is an ordinary last write.
 *
 * The request lives as long as the stream. It stays the connection's active request
 * (so a hang-up is noticed at once, as for any request in flight), and ends the ordinary
 * way, through req_release, when the last piece is written, when the connection closes
 * under it (the client left, or stopped reading), or when the worker drains. Everything
 * bound to the request (its PostgreSQL work, channel subscriptions, close callbacks)
 * therefore ends with the stream without a path of its own.
 *
 * Pieces are copied, and written at once when nothing is queued before them: an idle SSE
 * stream holds no buffer at all. What the kernel does not take waits in libuv's queue,
 * counted per stream; past [http] stream_backlog a write is refused with PX_EBUSY, so a
 * client that does not read costs at most that much memory. The same queue drives the
 * deadline: on a PX_ROUTE_STREAM route the write deadline ([http] send_timeout) restarts
 * whenever a piece has gone out, so a stream may be open for hours but a client that
 * takes nothing for send_timeout is closed.
 *
 * When the connection closes under a stream (from inside http.c, maybe inside a
 * plugin's own write), the request is not released there and then: it is handed to the
 * worker's end-of-iteration release (worker_finish_request), so no caller ever finds its
 * request freed under it. Until then writes answer PX_ESTATE.
 *
 * Reload and shutdown. A draining worker ends every stream: an SSE stream first gets a
 * "retry:" of [http] stream_retry, so EventSource reconnects, with Last-Event-ID, to the
 * new workers, which already accept on the same sockets (master.c's reload dance).
 */
#include "stream.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http_internal.h"
#include "log.h"
#include "tls.h"
#include "worker.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define CLOSERS_MAX 8

typedef struct req_closer {
    struct req_closer *next;
    px_close_fn fn;
    void *userdata;
} req_closer_t;

typedef struct stream {
    px_req_t *req;
    struct stream *prev;
    struct stream *next;
    uint64_t bytes;        /* on the wire or queued for it, head included */
    size_t queued;         /* in libuv's queue, not yet taken by the kernel */
    uint64_t last_write;   /* loop time, for heartbeats */
    uint64_t heartbeat_ms; /* SSE only; 0: none */
    bool chunked;
    bool sse;
    bool ended;
    bool lost;    /* the connection closed under it; released at the end of the iteration */
    bool drained; /* ended by the worker's drain */
    uint8_t family; /* the peer, for the access log line written at the end */
    uint8_t addr[16];
} stream_t;

typedef struct chunk {
    uv_write_t wr;
    conn_t *conn;
    stream_t *stream;
    size_t len;
    char data[];
} chunk_t;

/* ---- Server-Sent Events, as text ---- */

static bool clean_field(const char *s)
{
    return !s || !strpbrk(s, "\r\n");
}

int sse_format(buf_t *out, const px_sse_event_t *ev)
{
    if (!ev || ev->size < offsetof(px_sse_event_t, retry_ms) + sizeof(int64_t))
        return PX_EINVAL;
    if (!clean_field(ev->id) || !clean_field(ev->event) ||
        (!ev->id && !ev->event && !ev->data && ev->retry_ms <= 0))
        return PX_EINVAL;
    if (ev->id) {
        buf_appends(out, "id: ");
        buf_appends(out, ev->id);
        buf_append(out, "\n", 1);
    }
    if (ev->event) {
        buf_appends(out, "event: ");
        buf_appends(out, ev->event);
        buf_append(out, "\n", 1);
    }
    if (ev->retry_ms > 0)
        buf_printf(out, "retry: %lld\n", (long long)ev->retry_ms);
    if (ev->data) {
        /* Every line of the data its own data: line; CR, LF and CRLF all end a line, as
         * the client's parser reads them, so the client gets back what was sent with
         * its line ends as LF. */
        const char *p = ev->data, *end = ev->data + ev->data_len;
        for (;;) {
            const char *eol = p;
            while (eol < end && *eol != '\r' && *eol != '\n')
                eol++;
            buf_appends(out, "data: ");
            buf_append(out, p, (size_t)(eol - p));
            buf_append(out, "\n", 1);
            if (eol == end)
                break;
            p = eol + (*eol == '\r' && eol + 1 < end && eol[1] == '\n' ? 2 : 1);
        }
    }
    buf_append(out, "\n", 1);
    return 0;
}

int sse_format_comment(buf_t *out, const char *text)
{
    if (!clean_field(text))
        return PX_EINVAL;
    buf_append(out, ":", 1);
    if (text && *text) {
        buf_append(out, " ", 1);
        buf_appends(out, text);
    }
    buf_append(out, "\n\n", 2);
    return 0;
}

/* ---- writing ---- */

static void stream_unlink(stream_t *s)
{
    worker_t *w = s->req->worker;
    if (s->prev)
        s->prev->next = s->next;
    else if (w->streams == s)
        w->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static bool stream_route(const px_req_t *r)
{
    return r->route && (r->route->flags & PX_ROUTE_STREAM);
}

static void on_chunk_written(uv_write_t *wr, int status)
{
    chunk_t *ch = container_of(wr, chunk_t, wr);
    conn_t *c = ch->conn;
    c->writes--;
    /* While the connection is open its stream is alive: the request is released only
     * after its last write (http.c) or once the connection is closing. */
    if (!c->closing) {
        stream_t *s = ch->stream;
        s->queued -= ch->len;
        if (status < 0) {
            http_conn_close(c);
        } else if (!s->ended) {
            /* Progress: a stream route's deadline starts again; an empty queue has none. */
            if (c->tcp.write_queue_size == 0)
                http_timer_arm(c, CT_NONE);
            else if (stream_route(s->req) || c->timer != CT_WRITE)
                http_timer_arm(c, CT_WRITE);
        }
    }
    free(ch);
}

/* Put `bufs` on the socket, or queue (one copy) what the kernel does not take. `force`
 * skips the backlog check (the head, the last words of a draining stream). */
static int put_bufs(stream_t *s, uv_buf_t *bufs, unsigned nbufs, bool force)
{
    px_req_t *r = s->req;
    conn_t *c = r->conn;
    if (!c || s->lost || s->ended)
        return PX_ESTATE;
    size_t len = 0;
    for (unsigned i = 0; i < nbufs; i++)
        len += bufs[i].len;
    if (len == 0)
        return 0;
    if (!force && s->queued > 0 && s->queued + len > r->worker->limits->stream_backlog)
        return PX_EBUSY;
    s->bytes += len;
    /* On HTTPS the pieces go out as records: sealed here, in order, then written (and
     * queued) like plaintext. */
    buf_t sealed = {0};
    uv_buf_t record;
    if (c->tls) {
        if (tls_conn_seal_pending(c, bufs, nbufs, &sealed)) {
            buf_free(&sealed);
            http_conn_close(c);
            return PX_ESTATE;
        }
        record = uv_buf_init(sealed.data, (unsigned)sealed.len);
        bufs = &record;
        nbufs = 1;
        len = sealed.len;
    }
    size_t done = 0;
    if (c->writes == 0) {
        int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
        if (n < 0 && n != UV_EAGAIN) {
            buf_free(&sealed);
            http_conn_close(c);
            return PX_ESTATE;
        }
        done = n > 0 ? (size_t)n : 0;
    }
    s->last_write = uv_now(r->worker->loop);
    if (done == len) {
        buf_free(&sealed);
        return 0;
    }
    size_t rest = len - done;
    chunk_t *ch = xmalloc(sizeof(*ch) + rest);
    ch->conn = c;
    ch->stream = s;
    ch->len = rest;
    char *p = ch->data;
    for (unsigned i = 0; i < nbufs; i++) {
        size_t skip = done < bufs[i].len ? done : bufs[i].len;
        done -= skip;
        memcpy(p, bufs[i].base + skip, bufs[i].len - skip);
        p += bufs[i].len - skip;
    }
    buf_free(&sealed);
    uv_buf_t b = uv_buf_init(ch->data, (unsigned)rest);
    if (uv_write(&ch->wr, (uv_stream_t *)&c->tcp, &b, 1, on_chunk_written) < 0) {
        free(ch);
        http_conn_close(c);
        return PX_ESTATE;
    }
    c->writes++;
    s->queued += rest;
    if (c->timer != CT_WRITE)
        http_timer_arm(c, CT_WRITE);
    return 0;
}

/* One piece of the body, framed as a chunk when the stream is chunked; the piece itself
 * is copied only if the kernel does not take it at once. */
static int put_piece(stream_t *s, const void *data, size_t len, bool force)
{
    char size_line[24];
    uv_buf_t bufs[3];
    unsigned n = 0;
    if (len == 0)
        return s->req->conn && !s->lost && !s->ended ? 0 : PX_ESTATE;
    if (s->chunked) {
        int k = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
        bufs[n++] = uv_buf_init(size_line, (unsigned)k);
    }
    bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    if (s->chunked)
        bufs[n++] = uv_buf_init((char *)"\r\n", 2);
    return put_bufs(s, bufs, n, force);
}

/* ---- the SDK calls ---- */

static int stream_begin(px_req_t *r, int status, const char *content_type, bool sse,
                        int64_t heartbeat_ms)
{
    if (r->responded || r->stream)
        return PX_ESTATE;
    if (status < 200 || status > 999 || status == 204 || status == 304)
        return PX_EINVAL;
    worker_t *w = r->worker;
    if (!r->conn && !r->client_gone)
        return PX_ESTATE; /* no client at all: a background task */
    if (!r->conn || r->is_head) {
        /* Nobody to stream to (logged as 499), or a HEAD: the head alone is the answer. */
        http_respond(r, status, content_type, NULL, 0, false);
        return PX_ESTATE;
    }
    if (w->draining) {
        http_respond_error(r, 503, "unavailable", "the server is restarting; reconnect", NULL);
        return PX_ESTATE;
    }
    bool chunked;
    int rc = http_respond_stream_head(r, status, content_type, &chunked);
    if (rc)
        return rc;
    stream_t *s = xcalloc(1, sizeof(*s));
    s->req = r;
    s->chunked = chunked;
    s->sse = sse;
    s->heartbeat_ms = heartbeat_ms > 0 ? (uint64_t)heartbeat_ms : 0;
    s->family = r->conn->family;
    memcpy(s->addr, r->conn->addr, sizeof(s->addr));
    s->next = w->streams;
    if (w->streams)
        w->streams->prev = s;
    w->streams = s;
    r->stream = s;
    uv_buf_t head = uv_buf_init(r->out.data, (unsigned)r->out.len);
    rc = put_bufs(s, &head, 1, true);
    /* Written or copied: a stream may be open for hours, its head buffers need not be
     * (no header can be added from here on). */
    buf_free(&r->out);
    buf_free(&r->extra_headers);
    req_trim_for_long_life(r);
    return rc == 0 ? 0 : PX_ESTATE;
}

int api_res_stream_begin(px_req_t *r, int status, const char *content_type)
{
    return stream_begin(r, status, content_type, false, 0);
}

int api_res_sse_begin(px_req_t *r, int64_t heartbeat_ms)
{
    if (heartbeat_ms < 0)
        return PX_EINVAL;
    if (!r->responded && r->conn) {
        http_add_header(r, "Cache-Control", "no-cache");
        http_add_header(r, "X-Accel-Buffering", "no"); /* nginx would hold events back */
    }
    return stream_begin(r, 200, "text/event-stream; charset=utf-8", true, heartbeat_ms);
}

int api_res_stream_write(px_req_t *r, const void *data, size_t len)
{
    if (!r->stream || (!data && len))
        return !r->stream ? PX_ESTATE : PX_EINVAL;
    return put_piece(r->stream, data, len, false);
}

static int sse_write(px_req_t *r, int (*format)(buf_t *, const void *), const void *arg)
{
    stream_t *s = r->stream;
    if (!s || !s->sse)
        return PX_ESTATE;
    buf_t text = {0};
    int rc = format(&text, arg);
    if (rc == 0)
        rc = put_piece(s, text.data, text.len, false);
    buf_free(&text);
    return rc;
}

static int format_event(buf_t *out, const void *ev)
{
    return sse_format(out, ev);
}

static int format_comment(buf_t *out, const void *text)
{
    return sse_format_comment(out, text);
}

int api_res_sse_send(px_req_t *r, const px_sse_event_t *ev)
{
    return sse_write(r, format_event, ev);
}

int api_res_sse_comment(px_req_t *r, const char *text)
{
    return sse_write(r, format_comment, text);
}

/* The last bytes, then http.c ends the request as after any answer. */
static void stream_finish(stream_t *s)
{
    px_req_t *r = s->req;
    conn_t *c = r->conn;
    static char last_chunk[] = "0\r\n\r\n";
    s->ended = true;
    uv_buf_t b = uv_buf_init(last_chunk, s->chunked ? 5 : 0);
    s->bytes += b.len;
    http_conn_write(c, r, &b, 1, s->chunked && http_stream_keeps(r));
}

int api_res_stream_end(px_req_t *r)
{
    stream_t *s = r->stream;
    if (!s || s->ended)
        return PX_ESTATE;
    if (s->lost || !r->conn) {
        s->ended = true; /* released at the end of this iteration already */
        return 0;
    }
    stream_finish(s);
    return 0;
}

int api_req_on_close(px_req_t *r, px_close_fn fn, void *userdata)
{
    if (!fn)
        return PX_EINVAL;
    int n = 0;
    for (req_closer_t *c = r->closers; c; c = c->next)
        n++;
    if (n >= CLOSERS_MAX || (r->stream && (r->stream->ended || r->stream->lost)))
        return PX_ESTATE;
    req_closer_t *c = arena_alloc(&r->arena, sizeof(*c));
    c->fn = fn;
    c->userdata = userdata;
    c->next = r->closers;
    r->closers = c;
    return 0;
}

/* ---- the request's end ---- */

static void run_closers(px_req_t *r, int reason)
{
    /* Taken off first: a callback may register another, which then never runs. */
    while (r->closers) {
        req_closer_t *c = r->closers;
        r->closers = c->next;
        c->fn(r, reason, c->userdata);
    }
}

void stream_conn_lost(px_req_t *r)
{
    stream_t *s = r->stream;
    if (s->lost || s->ended)
        return;
    s->lost = true;
    r->client_gone = true;
    worker_finish_request(r->worker, r);
}

void stream_req_interrupted(px_req_t *r)
{
    run_closers(r, PX_CLOSE_CLIENT);
}

void stream_req_end(px_req_t *r)
{
    stream_t *s = r->stream;
    int reason = s && s->drained ? PX_CLOSE_DRAIN
                 : r->client_gone ? PX_CLOSE_CLIENT
                                  : PX_CLOSE_END;
    run_closers(r, reason);
    if (!s)
        return;
    r->stream = NULL;
    http_stream_finished(r, s->bytes, s->family, s->addr);
    stream_unlink(s);
    free(s);
}

/* ---- the worker's calls ---- */

void stream_tick(worker_t *w, uint64_t now)
{
    static buf_t beat;
    if (!beat.len)
        sse_format_comment(&beat, NULL);
    for (stream_t *s = w->streams, *next; s; s = next) {
        next = s->next;
        if (s->heartbeat_ms && !s->ended && !s->lost && now - s->last_write >= s->heartbeat_ms)
            put_piece(s, beat.data, beat.len, false); /* PX_EBUSY: the client has enough */
    }
}

/* The host ends a stream: an SSE client gets `retry` (its last words) and reconnects.
 * Returns whether it was still open. */
static bool stream_end_by_host(stream_t *s, const buf_t *retry)
{
    if (s->ended || s->lost)
        return false;
    s->drained = true;
    if (s->sse && put_piece(s, retry->data, retry->len, true) != 0)
        return false; /* the connection closed under it */
    stream_finish(s);
    return true;
}

static void retry_text(worker_t *w, buf_t *text)
{
    px_sse_event_t retry = PX_SSE_INIT;
    retry.retry_ms = (int64_t)w->limits->stream_retry_ms;
    sse_format(text, &retry);
}

void stream_drain(worker_t *w)
{
    buf_t text = {0};
    retry_text(w, &text);
    size_t n = 0;
    for (stream_t *s = w->streams, *next; s; s = next) {
        next = s->next;
        n += stream_end_by_host(s, &text);
    }
    buf_free(&text);
    if (n)
        log_debug("drain: ended %zu streams", n);
}

size_t stream_end_revoked(worker_t *w, const char *sub, int64_t revoked_at_ms)
{
    buf_t text = {0};
    size_t n = 0;
    for (stream_t *s = w->streams, *next; s; s = next) {
        next = s->next;
        const px_req_t *r = s->req;
        if (!r->has_caller || r->caller_issued_ms > revoked_at_ms || strcmp(r->caller_id, sub))
            continue;
        if (!text.len)
            retry_text(w, &text);
        n += stream_end_by_host(s, &text);
    }
    buf_free(&text);
    return n;
}
