/*
 * http.c — one connection, from accept to close.
 *
 * Reading. Every connection of a worker reads into the worker's one read buffer, and
 * llhttp parses straight out of it; the request line and headers are copied into the
 * request as they arrive, so an idle keep-alive connection holds no buffer at all.
 * llhttp is used strictly (no lenient flags; built with LLHTTP_STRICT_MODE) and checks
 * syntax only: sizes, counts and deadlines are ours.
 *
 * Pipelining. on_message_complete pauses the parser, so requests leave llhttp one at a
 * time and are dispatched outside its callbacks. A handler that answers at once lets the
 * loop go on with the next request in the same buffer; one that answers later (PX_ASYNC)
 * leaves the rest of the bytes stashed in `pending` and reading stopped until it has
 * answered. Responses therefore leave in request order without a queue of their own.
 *
 * Errors. A request llhttp rejects, or that breaks a limit, gets its status (400, 413,
 * 414, 417, 431, 505) in the API's JSON error shape with Connection: close; nothing
 * after it on that connection is executed. The socket is then half-closed and what the
 * client still sends is read and dropped for a short while (lingering close), so the
 * client sees the answer rather than a reset.
 *
 * Deadlines. A connection sits in at most one of the worker's deadline lists (idle,
 * header, body, write, linger); each list has one timeout, so appending keeps it sorted
 * and the worker's tick only ever looks at list heads.
 */
#include "http.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "gateway.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "worker.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define LINGER_MS 2000
#define DRAIN_IDLE_MS 1000
/* Stop parsing pipelined requests while this much response is still queued. */
#define WRITE_BACKLOG_MAX (256 * 1024)
/* Small bodies travel in the same buffer as the headers: one iovec, one copy. */
#define INLINE_BODY_MAX 4096

static void conn_feed(conn_t *c, const char *data, size_t len);
static void conn_resume(conn_t *c);
static void conn_update_timer(conn_t *c);
static void conn_linger(conn_t *c);
static void start_reading(conn_t *c);
static bool name_is(const px_req_t *r, const header_t *h, const char *name, size_t len);

/* ---- deadline lists ---- */

static uint64_t timer_timeout(const worker_t *w, int which)
{
    switch (which) {
    case CT_IDLE:
        return w->draining ? DRAIN_IDLE_MS : w->limits->keepalive_timeout_ms;
    case CT_HEADER:
        return w->limits->header_timeout_ms;
    case CT_BODY:
        return w->limits->body_timeout_ms;
    case CT_WRITE:
        return w->limits->send_timeout_ms;
    default:
        return LINGER_MS;
    }
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
static void timer_arm(conn_t *c, int which)
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
    return CT_IDLE;
}

/* Move to the list the connection's state calls for; a deadline already running for
 * that state keeps running (a slow header stays bound to its first byte's deadline). */
static void conn_update_timer(conn_t *c)
{
    int which = desired_timer(c);
    if (which != c->timer)
        timer_arm(c, which);
}

/* ---- small formatting helpers ---- */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Exactly three digits, zero-padded: the fraction after a decimal point. */
static char *put_fixed3(char *p, uint64_t v)
{
    p[0] = (char)('0' + v / 100 % 10);
    p[1] = (char)('0' + v / 10 % 10);
    p[2] = (char)('0' + v % 10);
    return p + 3;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int http_error_status(int px_error, const char **code)
{
    static const struct {
        int err;
        int status;
        const char *code;
    } map[] = {
        {PX_EINVAL, 400, "bad_request"},       {PX_ENOTJSON, 415, "bad_request"},
        {PX_EAUTH, 401, "unauthorized"},       {PX_EPERM, 403, "forbidden"},
        {PX_ENOENT, 404, "not_found"},         {PX_ECONFLICT, 409, "conflict"},
        {PX_ETOOBIG, 413, "payload_too_large"}, {PX_EUNAVAIL, 503, "unavailable"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
        if (map[i].err == px_error) {
            *code = map[i].code;
            return map[i].status;
        }
    }
    *code = "internal";
    return 500;
}

static const char *default_error_code(int status)
{
    switch (status) {
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 429: return "rate_limited";
    case 503: return "unavailable";
    default: return status >= 500 && status != 505 ? "internal" : "bad_request";
    }
}

/* ---- request id ---- */

static bool sane_request_id(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

static void ensure_request_id(px_req_t *r)
{
    if (r->id[0])
        return;
    static const char hex[] = "0123456789abcdef";
    worker_t *w = r->worker;
    uint64_t n = ++w->request_counter;
    char *p = r->id;
    p = put(p, w->id_prefix, strlen(w->id_prefix));
    for (int shift = 44; shift >= 0; shift -= 4)
        *p++ = hex[(n >> shift) & 15];
    *p = '\0';
}

const char *http_req_id(px_req_t *r)
{
    ensure_request_id(r);
    return r->id;
}

/* ---- access log ---- */

static void access_log_request(px_req_t *r, uint64_t bytes, uint64_t duration_ns)
{
    /* Every request pays for this line: integers only, no printf (which showed up as
     * a third of the worker's own CPU in profiles). */
    worker_t *w = r->worker;
    static buf_t line; /* reused: a worker is one thread */
    line.len = 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec != w->iso_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(w->iso_time, sizeof(w->iso_time), "%Y-%m-%dT%H:%M:%S", &tm);
        w->iso_sec = now.tv_sec;
    }
    buf_reserve(&line, 320 + r->path_len * 6);
    char *p = line.data;
    p = PUTS(p, "{\"time\":\"");
    p = put(p, w->iso_time, strlen(w->iso_time));
    *p++ = '.';
    p = put_fixed3(p, (uint64_t)(now.tv_nsec / 1000000));
    p = PUTS(p, "Z\",\"remote\":\"");
    line.len = (size_t)(p - line.data);
    conn_t *c = r->conn;
    if (c && c->family == AF_INET) {
        for (int i = 0; i < 4; i++) {
            if (i)
                *p++ = '.';
            p = put_u64(p, c->addr[i]);
        }
        line.len = (size_t)(p - line.data);
    } else if (c && c->family == AF_INET6) {
        char a[INET6_ADDRSTRLEN];
        uv_inet_ntop(AF_INET6, c->addr, a, sizeof(a));
        buf_appends(&line, a);
    } else {
        buf_appends(&line, "-");
    }
    buf_appends(&line, "\",\"method\":\"");
    const char *m = r->method_name ? r->method_name : "-";
    buf_append_json_escaped(&line, m, strlen(m));
    buf_appends(&line, "\",\"path\":\"");
    /* The path only: a query string may carry an access token. */
    if (r->path)
        buf_append_json_escaped(&line, r->path, r->path_len);
    else
        buf_appends(&line, "-");
    buf_reserve(&line, 96);
    p = line.data + line.len;
    p = PUTS(p, "\",\"status\":");
    p = put_u64(p, (uint64_t)r->status);
    p = PUTS(p, ",\"bytes\":");
    p = put_u64(p, bytes);
    p = PUTS(p, ",\"duration_ms\":");
    uint64_t us = duration_ns / 1000;
    p = put_u64(p, us / 1000);
    *p++ = '.';
    p = put_fixed3(p, us % 1000);
    p = PUTS(p, ",\"request_id\":\"");
    line.len = (size_t)(p - line.data);
    buf_append_json_escaped(&line, r->id, strlen(r->id));
    buf_appends(&line, "\",\"plugin\":\"");
    buf_appends(&line, r->plugin ? r->plugin : "host");
    buf_appends(&line, "\"}\n");
    access_log_append(line.data, line.len);
}

/* ---- responses ---- */

static void on_write(uv_write_t *wr, int status)
{
    px_req_t *r = container_of(wr, px_req_t, write);
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

int http_add_header(px_req_t *r, const char *name, const char *value)
{
    if (r->responded)
        return PX_ESTATE;
    /* A header name or value with CR or LF would let a plugin (or a client echo) split
     * the response. */
    if (!name || !*name || !value || strpbrk(name, "\r\n: ") || strpbrk(value, "\r\n"))
        return PX_EINVAL;
    buf_appends(&r->extra_headers, name);
    buf_append(&r->extra_headers, ": ", 2);
    buf_appends(&r->extra_headers, value);
    buf_append(&r->extra_headers, "\r\n", 2);
    return 0;
}

int http_respond(px_req_t *r, int status, const char *content_type, char *body, size_t len,
                 bool take)
{
    if (r->responded) {
        if (take)
            free(body);
        return PX_ESTATE;
    }
    worker_t *hw = r->worker;
    if (hw->hooks && !r->in_on_response && hooks_has(hw->hooks, "on_response")) {
        r->in_on_response = true;
        if (gateway_on_response(r, status)) {
            if (take)
                free(body);
            r->extra_headers.len = 0;
            return http_respond_error(r, 500, "internal", "a server hook failed", NULL);
        }
    }
    if (status < 100 || status > 999)
        status = 500;
    r->responded = true;
    r->status = status;
    ensure_request_id(r);
    conn_t *c = r->conn;
    worker_t *w = r->worker;
    uint64_t duration = uv_hrtime() - r->start_ns;
    metrics_request(r->plugin_metrics_id, status, duration);

    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    bool keep = r->keepalive && !w->draining && c && !c->close_after &&
                c->requests < w->limits->keepalive_requests;
    bool send_body = !r->is_head && !no_body;

    buf_t *o = &r->out;
    o->len = 0;
    const char *reason = http_status_reason(status);
    size_t ctype_len = content_type ? strlen(content_type) : 0;
    bool inline_body = send_body && !take && len <= INLINE_BODY_MAX;
    /* 192 covers every fixed part of the head, the Date and a 20-digit length. */
    buf_reserve(o, 192 + strlen(reason) + ctype_len + strlen(r->id) + r->extra_headers.len +
                       (inline_body ? len : 0));
    char *p = o->data;
    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = PUTS(p, "\r\nServer: panthera\r\nDate: ");
    p = put(p, w->date, strlen(w->date));
    if (content_type && !no_body) {
        p = PUTS(p, "\r\nContent-Type: ");
        p = put(p, content_type, ctype_len);
    }
    if (!no_body) {
        p = PUTS(p, "\r\nContent-Length: ");
        p = put_u64(p, len);
    }
    p = PUTS(p, "\r\nX-Request-Id: ");
    p = put(p, r->id, strlen(r->id));
    p = PUTS(p, "\r\n");
    if (r->extra_headers.len)
        p = put(p, r->extra_headers.data, r->extra_headers.len);
    if (!keep)
        p = PUTS(p, "Connection: close\r\n");
    else if (r->http10)
        p = PUTS(p, "Connection: keep-alive\r\n");
    p = PUTS(p, "\r\n");
    size_t head_len = (size_t)(p - o->data);
    o->len = head_len;

    uint64_t bytes = head_len + (send_body ? len : 0);
    if (access_log_enabled())
        access_log_request(r, bytes, duration);

    if (!c) {
        /* The client went away while the handler worked: nothing to write to. */
        if (take)
            free(body);
        req_release(r);
        return 0;
    }

    uv_buf_t bufs[2];
    unsigned nbufs = 1;
    if (inline_body) {
        memcpy(o->data + o->len, body, len);
        o->len += len;
    } else if (send_body && len) {
        r->res_body = take ? body : memcpy(xmalloc(len), body, len);
        r->res_len = len;
        r->res_body_owned = true;
        bufs[1] = uv_buf_init(r->res_body, (unsigned)len);
        nbufs = 2;
        body = NULL;
    }
    if (take && body)
        free(body);
    bufs[0] = uv_buf_init(o->data, (unsigned)o->len);

    c->in_flight = false;
    c->active = NULL;
    if (!keep)
        c->close_after = true;

    /* Try the socket first. libuv 1.44's uv_write re-arms epoll after every write that
     * completed at once (one epoll_ctl per response, a third of our syscalls); a write
     * the kernel takes whole needs no request at all. Only when nothing is queued, so
     * responses stay in order. */
    size_t total = bufs[0].len + (nbufs > 1 ? bufs[1].len : 0);
    int sent = c->writes == 0 ? uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs) : UV_EAGAIN;
    if (sent > 0 && (size_t)sent == total) {
        worker_finish_request(w, r);
        if (c->close_after) {
            free(c->pending);
            c->pending = NULL;
            c->pending_len = 0;
            conn_linger(c);
            return 0;
        }
        conn_update_timer(c);
        if (!c->feeding)
            conn_resume(c);
        return 0;
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
        req_release(r);
        http_conn_close(c);
        return 0;
    }
    int rc = uv_write(&r->write, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rc < 0) {
        req_release(r);
        http_conn_close(c);
        return 0;
    }
    c->writes++;
    if (c->close_after) {
        free(c->pending);
        c->pending = NULL;
        c->pending_len = 0;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
    }
    conn_update_timer(c);
    if (!c->feeding && !c->close_after)
        conn_resume(c);
    return 0;
}

int http_respond_error(px_req_t *r, int status, const char *code, const char *message,
                       json_t *fields)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code ? code : default_error_code(status),
                            "message", message ? message : http_status_reason(status));
    if (!err) {
        json_decref(fields);
        return http_respond(r, 500, "application/json; charset=utf-8",
                            "{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode\"}}",
                            56, false);
    }
    if (fields)
        json_object_set_new(err, "fields", fields);
    /* The contract promises these with their statuses; a handler may have set its own. */
    if (status == 401 && !strstr(r->extra_headers.data ? r->extra_headers.data : "",
                                 "WWW-Authenticate:"))
        http_add_header(r, "WWW-Authenticate", "Bearer");
    if ((status == 503 || status == 429) &&
        !strstr(r->extra_headers.data ? r->extra_headers.data : "", "Retry-After:"))
        http_add_header(r, "Retry-After", "1");
    json_t *doc = json_pack("{s:o}", "error", err);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        return http_respond(r, 500, NULL, NULL, 0, false);
    return http_respond(r, status, "application/json; charset=utf-8", text, strlen(text), true);
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

static void dispatch(conn_t *c)
{
    px_req_t *r = c->req;
    worker_t *w = c->worker;
    c->req = NULL;
    c->in_flight = true;
    c->active = r;
    c->requests++;
    conn_update_timer(c);

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
        http_respond_error(r, 405, "bad_request", msg, NULL);
        return;
    }
    r->route = m.route;
    r->plugin = m.route->owner;
    r->plugin_metrics_id = m.route->owner_id;
    if (m.route->auth != PX_AUTH_NONE && gateway_check_caller(r, m.route))
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
    if (w->hooks && hooks_has(w->hooks, "on_request") && gateway_on_request(r))
        return;
    if (r->query && !query_well_formed(r->query)) {
        /* A value a handler would silently miss must not look like an absent one. */
        http_respond_error(r, 400, "bad_request", "malformed percent-encoding in the query",
                           NULL);
        return;
    }
    for (size_t i = 0; i < m->nparams; i++) {
        r->param_values[i] = http_decode(r, m->params[i].value, m->params[i].len, false);
        if (!r->param_values[i]) {
            http_respond_error(r, 400, "bad_request", "malformed percent-encoding in the path",
                               NULL);
            return;
        }
    }
    int rc = m->route->handler(r, m->route->userdata);
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

/* ---- parsing ---- */

static int fail_with(conn_t *c, int status, const char *message)
{
    c->err_status = (uint16_t)status;
    c->err_message = message;
    return HPE_USER;
}

static int head_append(conn_t *c, const char *at, size_t len)
{
    px_req_t *r = c->req;
    if (r->head.len + len > c->worker->limits->max_header_size)
        return fail_with(c, 431, "request header block too large");
    buf_append(&r->head, at, len);
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    conn_t *c = p->data;
    if (!c->req)
        c->req = req_acquire(c->worker, c);
    if (c->timer == CT_IDLE)
        timer_arm(c, CT_HEADER);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    if (r->url_len == 0)
        r->url_off = (uint32_t)r->head.len;
    if (r->head.len + len > c->worker->limits->max_header_size)
        return fail_with(c, 414, "request target too long");
    buf_append(&r->head, at, len);
    r->url_len += (uint32_t)len;
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    return head_append(c, "", 1);
}

/* Give the previous header its NUL terminator; llhttp calls no value callback at all
 * for an empty value, so this is done when the next header (or the end) arrives. */
static int finish_header(conn_t *c)
{
    px_req_t *r = c->req;
    if (r->header_state != HS_NAME_DONE && r->header_state != HS_VALUE &&
        r->header_state != HS_VALUE_DONE)
        return 0;
    if (r->header_state == HS_NAME_DONE) {
        header_t *h = &r->headers[r->nheaders - 1];
        h->value_off = (uint32_t)r->head.len;
        h->value_len = 0;
    }
    r->header_state = HS_NONE;
    return head_append(c, "", 1);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    if (r->header_state != HS_FIELD) {
        int rc = finish_header(c);
        if (rc)
            return rc;
        if (r->nheaders >= c->worker->limits->max_headers)
            return fail_with(c, 431, "too many request headers");
        if (r->nheaders == r->cap_headers) {
            r->cap_headers = r->cap_headers ? r->cap_headers * 2 : 16;
            r->headers = xrealloc(r->headers, r->cap_headers * sizeof(header_t));
        }
        header_t *h = &r->headers[r->nheaders++];
        *h = (header_t){.name_off = (uint32_t)r->head.len};
        r->header_state = HS_FIELD;
    }
    r->headers[r->nheaders - 1].name_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    if (r->header_state != HS_FIELD || r->headers[r->nheaders - 1].name_len == 0)
        return fail_with(c, 400, "empty header name");
    int rc = head_append(c, "", 1);
    if (rc == 0)
        c->req->header_state = HS_NAME_DONE;
    return rc;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    /* llhttp hands an obs-fold continuation (RFC 9112 5.2) over as a second piece of the
     * same value. A value legitimately comes in pieces only when a read ended inside it;
     * a piece that did not end at the end of the input was followed by CRLF and a fold.
     * A server must reject or replace folding; rejecting is the safe one. */
    if (r->header_state == HS_VALUE_DONE || (r->header_state == HS_VALUE && !c->value_cut))
        return fail_with(c, 400, "obsolete line folding in a header value");
    if (r->header_state != HS_NAME_DONE && r->header_state != HS_VALUE)
        return fail_with(c, 400, "header value without a name");
    c->value_cut = at + len == c->feed_end;
    if (r->header_state != HS_VALUE) {
        r->headers[r->nheaders - 1].value_off = (uint32_t)r->head.len;
        r->header_state = HS_VALUE;
    }
    r->headers[r->nheaders - 1].value_len += (uint32_t)len;
    return head_append(c, at, len);
}

/* A value that goes on after this is an obs-fold continuation. */
static int on_header_value_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    if (c->req->header_state == HS_VALUE)
        c->req->header_state = HS_VALUE_DONE;
    return 0;
}

static bool name_is(const px_req_t *r, const header_t *h, const char *name, size_t len)
{
    return h->name_len == len && !strncasecmp(r->head.data + h->name_off, name, len);
}

static int parse_target(px_req_t *r)
{
    char *target = r->head.data + r->url_off;
    size_t len = r->url_len;
    size_t scheme = !strncasecmp(target, "http://", 7)    ? 7
                    : !strncasecmp(target, "https://", 8) ? 8
                                                          : 0;
    if (scheme) {
        /* absolute-form (RFC 9112 3.2.2): the path starts after the authority. */
        char *slash = len > scheme ? memchr(target + scheme, '/', len - scheme) : NULL;
        if (!slash)
            return -1;
        len -= (size_t)(slash - target);
        target = slash;
    }
    if (len == 0 || (target[0] != '/' && !(len == 1 && target[0] == '*')))
        return -1;
    char *q = memchr(target, '?', len);
    size_t path_len = q ? (size_t)(q - target) : len;
    r->path = arena_strndup(&r->arena, target, path_len);
    r->path_len = path_len;
    r->query = q ? arena_strndup(&r->arena, q + 1, len - path_len - 1) : NULL;
    return 0;
}

static void on_continue_written(uv_write_t *wr, int status)
{
    UNUSED(status);
    conn_t *c = wr->data;
    c->writes--;
    free(wr);
}

/* Its own allocation: the request may be gone (an error, a close) before it is written. */
static void send_continue(conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_write_t *wr = xmalloc(sizeof(*wr));
    wr->data = c;
    uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
    if (uv_write(wr, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) < 0) {
        free(wr);
        return;
    }
    c->writes++;
}

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    const http_limits_t *lim = c->worker->limits;
    int rc = finish_header(c);
    if (rc)
        return rc;
    if (p->http_major != 1 || p->http_minor > 1)
        return fail_with(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r->http10 = p->http_minor == 0;
    r->method_name = llhttp_method_name((llhttp_method_t)p->method);
    r->method = router_method_parse(r->method_name);
    r->is_head = r->method == METHOD_HEAD;
    if (parse_target(r))
        return fail_with(c, 400, "malformed request target");

    int hosts = 0;
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const header_t *h = &r->headers[i];
        const char *value = r->head.data + h->value_off;
        if (name_is(r, h, "host", 4)) {
            hosts++;
        } else if (name_is(r, h, "expect", 6)) {
            if (strcasecmp(value, "100-continue") != 0)
                return fail_with(c, 417, "only \"Expect: 100-continue\" is supported");
            r->expect_continue = !r->http10;
        } else if (name_is(r, h, "x-request-id", 12)) {
            if (sane_request_id(value, h->value_len) && !r->id[0])
                memcpy(r->id, value, h->value_len + 1);
        }
    }
    if (hosts > 1 || (hosts == 0 && !r->http10))
        return fail_with(c, 400, hosts ? "more than one Host header" : "missing Host header");

    bool has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > lim->max_body_size)
        return fail_with(c, 413, "request body is larger than max_body_size");
    if (has_body) {
        r->in_body = true;
        c->body_started = uv_now(c->worker->loop);
        c->body_bytes = 0;
        timer_arm(c, CT_BODY);
        if (r->expect_continue)
            send_continue(c);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    worker_t *w = c->worker;
    if (r->body.len + len > w->limits->max_body_size)
        return fail_with(c, 413, "request body is larger than max_body_size");
    buf_append(&r->body, at, len);
    c->body_bytes += len;
    uint64_t now = uv_now(w->loop);
    uint64_t elapsed = now - c->body_started;
    if (elapsed > w->limits->body_timeout_ms &&
        c->body_bytes * 1000 / elapsed < w->limits->min_body_rate)
        return fail_with(c, 408, "request body arrives too slowly");
    timer_arm(c, CT_BODY);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    r->in_body = false;
    r->keepalive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static llhttp_settings_t parser_settings;

static void settings_init(void)
{
    if (parser_settings.on_message_complete)
        return;
    llhttp_settings_init(&parser_settings);
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_url_complete = on_url_complete;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_field_complete = on_header_field_complete;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_header_value_complete = on_header_value_complete;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
}

/* Answer a request that cannot be parsed or breaks a limit, then close. */
static void fail_request(conn_t *c, llhttp_errno_t err)
{
    int status = 400;
    const char *message = llhttp_get_error_reason(&c->parser);
    if (c->err_status) {
        /* Ours, from a callback (llhttp reports it as that callback's error code). */
        status = c->err_status;
        message = c->err_message;
    } else if (err == HPE_INVALID_VERSION) {
        status = 505;
    }
    px_req_t *r = c->req ? c->req : req_acquire(c->worker, c);
    c->req = NULL;
    r->keepalive = false;
    c->close_after = true;
    c->in_flight = true;
    log_debug("bad request (%d): %s", status, message ? message : "?");
    http_respond_error(r, status, NULL, message, NULL);
}

static void stash(conn_t *c, const char *data, size_t len)
{
    char *copy = xmalloc(len);
    memcpy(copy, data, len);
    free(c->pending);
    c->pending = copy;
    c->pending_len = len;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void conn_feed(conn_t *c, const char *data, size_t len)
{
    c->feeding = true;
    while (len > 0 && !c->closing && !c->close_after) {
        if (c->in_flight || c->tcp.write_queue_size >= WRITE_BACKLOG_MAX) {
            stash(c, data, len);
            break;
        }
        c->feed_end = data + len;
        llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
        if (err == HPE_OK)
            break;
        if (err == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            len -= (size_t)(pos - data);
            data = pos;
            llhttp_resume(&c->parser);
            dispatch(c);
            continue;
        }
        fail_request(c, err);
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
    if (!c->reading && !c->closing) {
        c->reading = true;
        start_reading(c);
    }
}

/* ---- the socket ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    UNUSED(suggested);
    conn_t *c = h->data;
    b->base = c->worker->readbuf;
    b->len = sizeof(c->worker->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n > 0) {
        if (c->lingering)
            return;
        conn_feed(c, b->base, (size_t)n);
        return;
    }
    if (n == 0)
        return;
    if (n != UV_EOF || c->lingering) {
        http_conn_close(c);
        return;
    }
    c->peer_eof = true;
    uv_read_stop(s);
    c->reading = false;
    if (c->in_flight || c->writes) {
        c->close_after = true;
        return;
    }
    http_conn_close(c);
}

static void start_reading(conn_t *c)
{
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    worker_t *w = c->worker;
    free(c->pending);
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
        /* The handler still holds its request and will answer into the void. */
        c->active->conn = NULL;
    }
    c->active = NULL;
    c->in_flight = false;
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
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
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
    settings_init();
    conn_t *c = xcalloc(1, sizeof(*c));
    c->worker = w;
    c->timer = CT_NONE;
    int rc = uv_tcp_init(w->loop, &c->tcp);
    if (rc == 0)
        rc = uv_tcp_open(&c->tcp, fd);
    if (rc < 0) {
        close(fd);
        free(c);
        return rc;
    }
    c->tcp.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
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
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    worker_conn_added(w);
    start_reading(c);
    timer_arm(c, CT_HEADER);
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
                c->err_message = which == CT_BODY ? "request body timed out"
                                                  : "request header timed out";
                fail_request(c, HPE_USER);
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
