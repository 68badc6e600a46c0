/*
 * http_response.c — answers: the status line and headers, the request id, the access log
 * line. Every request pays for these, so they are written byte by byte into one buffer
 * rather than through printf, and a small body is copied in behind the head so most
 * responses leave as one iovec. Putting them on the socket is http.c's.
 */
#include "http_internal.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "file_response.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

/* Small bodies travel in the same buffer as the headers: one iovec, one copy. */
#define INLINE_BODY_MAX 4096

/* ---- small formatting helpers ---- */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

/* The first `n` bytes of `array` at `p`, by copying `copied` of them: a copy of a size known
 * at compile time is a few moves, where one of `n` bytes is a call to memcpy. The caller's
 * buffer has room for the bytes past `n`, which what is written next overwrites. */
static inline char *put_overcopy(char *p, const char *array, size_t copied, size_t n)
{
    memcpy(p, array, copied);
    return p + n;
}

/* The access log's line copies these whole, and reserves room for the excess. */
#define LOG_OVERCOPY_MAX 64

/* "00" to "99": two digits at a time, so a small number costs one division. */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

static char *put_u64(char *p, uint64_t v)
{
    /* Statuses, small lengths and milliseconds: most numbers here have three digits or
     * fewer, written straight into place. */
    if (v < 10) {
        *p = (char)('0' + v);
        return p + 1;
    }
    if (v < 100) {
        memcpy(p, digit_pairs + 2 * v, 2);
        return p + 2;
    }
    if (v < 1000) {
        uint64_t hi = v / 100;
        *p = (char)('0' + hi);
        memcpy(p + 1, digit_pairs + 2 * (v - hi * 100), 2);
        return p + 3;
    }
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
    uint64_t hi = v / 100 % 10;
    p[0] = (char)('0' + hi);
    memcpy(p + 1, digit_pairs + 2 * (v % 100), 2);
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
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
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
        {PX_EINVAL, 400, "bad_request"},        {PX_ENOTJSON, 415, "unsupported_media_type"},
        {PX_EAUTH, 401, "unauthorized"},        {PX_EPERM, 403, "forbidden"},
        {PX_ENOENT, 404, "not_found"},          {PX_ECONFLICT, 409, "conflict"},
        {PX_ETOOBIG, 413, "payload_too_large"}, {PX_EUNAVAIL, 503, "unavailable"},
        {PX_ERANGE, 416, "range_not_satisfiable"}, {PX_EOVERFLOW, 400, "bad_request"},
        {PX_EPRECONDITION, 412, "precondition_failed"}, {PX_ENOTACCEPTABLE, 406, "not_acceptable"},
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

/* The code in an error body when the one who answers names none: a client tells its
 * errors apart by code, so each status the host itself answers with has its own. */
static const char *default_error_code(int status)
{
    switch (status) {
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 406: return "not_acceptable";
    case 408: return "request_timeout";
    case 409: return "conflict";
    case 412: return "precondition_failed";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 416: return "range_not_satisfiable";
    case 417: return "expectation_failed";
    case 429: return "rate_limited";
    case 431: return "header_fields_too_large";
    case 499: return "client_closed_request";
    case 503: return "unavailable";
    case 505: return "http_version_not_supported";
    default: return status >= 500 ? "internal" : "bad_request";
    }
}

/* ---- request id ---- */

/* Ours, or the client's (http_parse.c) or a task's (tasks.c) as they left it: its length is
 * kept, for the head, the log line and the crash record each need it. */
static void ensure_request_id(px_req_t *r)
{
    if (r->id[0]) {
        if (!r->id_len)
            r->id_len = (uint8_t)strlen(r->id);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    worker_t *w = r->worker;
    uint64_t n = ++w->request_counter;
    /* The 12 hex digits of the count, from the last id: only its last three change
     * unless the count has just passed a multiple of 4096. */
    if ((n & 0xfff) == 0 || !w->id_text_len) {
        char *p = put(w->id_text, w->id_prefix, strlen(w->id_prefix));
        for (int shift = 44; shift >= 0; shift -= 4)
            *p++ = hex[(n >> shift) & 15];
        *p = '\0';
        w->id_text_len = (uint8_t)(p - w->id_text);
    } else {
        char *p = w->id_text + w->id_text_len - 3;
        p[0] = hex[(n >> 8) & 15];
        p[1] = hex[(n >> 4) & 15];
        p[2] = hex[n & 15];
    }
    memcpy(r->id, w->id_text, sizeof(w->id_text));
    r->id_len = w->id_text_len;
}

const char *http_req_id(px_req_t *r)
{
    ensure_request_id(r);
    return r->id;
}

/* ---- access log ---- */

/* Bytes a JSON string cannot carry as they are: controls, '"', '\\', and every non-ASCII
 * byte (bytes from the wire are not promised to be UTF-8; escaping them keeps each log
 * line valid JSON whatever a client sent). */
#define X16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const bool json_unsafe_byte[256] = {
    X16(1), X16(1),                                       /* 0x00-0x1f */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       /* '"' */
    X16(0), X16(0),                                       /* 0x30-0x4f */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,       /* '\\' */
    X16(0),                                               /* 0x60-0x6f */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,       /* 0x7f */
    X16(1), X16(1), X16(1), X16(1), X16(1), X16(1), X16(1), X16(1),
};
#undef X16

static inline bool json_unsafe(unsigned char c)
{
    return json_unsafe_byte[c];
}

/* From the first byte that needs escaping on. */
static char *put_json_escaped(char *p, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && !json_unsafe((unsigned char)s[run]))
            run++;
        p = put(p, s + i, run - i);
        if (run == len)
            break;
        unsigned char c = (unsigned char)s[run];
        i = run + 1;
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else {
            p = PUTS(p, "\\u00");
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    return p;
}

/* `s` escaped for a JSON string at `p`, which has room for 6 bytes per input byte. Paths
 * and plugin names are short and nearly always plain: copied as they are scanned, byte
 * by byte, with no call for a run. */
static inline char *put_json(char *p, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (json_unsafe(c))
            return put_json_escaped(p + i, s + i, len - i);
        p[i] = (char)c;
    }
    return p + len;
}

/* The peer's address as text, formatted again only when it is not the last one. */
static char *put_remote(char *p, worker_t *w, int family, const uint8_t *addr)
{
    size_t alen = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    if (!alen) {
        *p++ = '-';
        return p;
    }
    if (family != w->remote_family || memcmp(addr, w->remote_addr, alen) != 0) {
        if (family == AF_INET) {
            char *q = w->remote;
            for (int i = 0; i < 4; i++) {
                if (i)
                    *q++ = '.';
                q = put_u64(q, addr[i]);
            }
            w->remote_len = (uint8_t)(q - w->remote);
        } else {
            uv_inet_ntop(AF_INET6, addr, w->remote, sizeof(w->remote));
            w->remote_len = (uint8_t)strlen(w->remote);
        }
        w->remote_family = (uint8_t)family;
        memcpy(w->remote_addr, addr, alen);
    }
    _Static_assert(sizeof(w->remote) <= LOG_OVERCOPY_MAX, "the line has room for it whole");
    return put_overcopy(p, w->remote, sizeof(w->remote), w->remote_len);
}

/* `family` and `addr` are the peer's (AF_INET, AF_INET6, or 0 when unknown). */
static void access_log_request(px_req_t *r, uint64_t bytes, uint64_t duration_ns, int family,
                               const uint8_t *addr)
{
    /* Every request pays for this line: integers only, no printf (which showed up as
     * a third of the worker's own CPU in profiles), written in place into the log's
     * pending buffer. The method (llhttp's table) and the request id (ours in hex, or a
     * client's X-Request-Id that http_parse.c let through only when made of letters,
     * digits and "-_.:") need no escaping; the path and the plugin's name go through
     * put_json. */
    worker_t *w = r->worker;
    const char *m = r->method_name ? r->method_name : "-";
    size_t mlen = r->method_name ? r->method_name_len : 1;
    const char *plugin = r->plugin ? r->plugin : "host";
    size_t plen = strlen(plugin);
    size_t idlen = r->id_len ? r->id_len : strlen(r->id);
    char *line = access_log_reserve(256 + LOG_OVERCOPY_MAX + INET6_ADDRSTRLEN + mlen + idlen +
                                    (r->path_len + plen) * 6);
    if (!line)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec != w->iso_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        w->iso_len = (uint8_t)strftime(w->iso_time, sizeof(w->iso_time), "%Y-%m-%dT%H:%M:%S", &tm);
        w->iso_sec = now.tv_sec;
    }
    char *p = line;
    p = PUTS(p, "{\"time\":\"");
    _Static_assert(sizeof(w->iso_time) <= LOG_OVERCOPY_MAX, "the line has room for it whole");
    p = put_overcopy(p, w->iso_time, sizeof(w->iso_time), w->iso_len);
    *p++ = '.';
    p = put_fixed3(p, (uint64_t)(now.tv_nsec / 1000000));
    p = PUTS(p, "Z\",\"remote\":\"");
    p = put_remote(p, w, family, addr);
    p = PUTS(p, "\",\"method\":\"");
    p = put(p, m, mlen);
    p = PUTS(p, "\",\"path\":\"");
    /* The path only: a query string may carry an access token. */
    if (r->path)
        p = put_json(p, r->path, r->path_len);
    else
        *p++ = '-';
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
    /* Every id is shorter (ours 31 at most, a client's 64, a task's 41), but r->id could
     * hold more. */
    _Static_assert(sizeof(r->id) >= LOG_OVERCOPY_MAX, "r->id has LOG_OVERCOPY_MAX bytes to copy");
    if (idlen <= LOG_OVERCOPY_MAX)
        p = put_overcopy(p, r->id, LOG_OVERCOPY_MAX, idlen);
    else
        p = put(p, r->id, idlen);
    p = PUTS(p, "\",\"plugin\":\"");
    p = put_json(p, plugin, plen);
    p = PUTS(p, "\"}\n");
    access_log_commit((size_t)(p - line));
}

/* ---- responses ---- */

int http_add_header(px_req_t *r, const char *name, const char *value)
{
    if (r->responded || r->task) /* a task (tasks.c) has nobody to answer */
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

/* How the body's end is told: a Content-Length, chunked encoding, or closing the
 * connection (a streamed answer to an HTTP/1.0 client). */
enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE };

/* The admins' on_response hook, once per answer. Non-zero when it failed and the answer
 * has become a 500 (sent already). */
static int run_on_response(px_req_t *r, int status)
{
    worker_t *w = r->worker;
    if (!w->hooks || r->in_on_response)
        return 0;
    r->in_on_response = true;
    if (!gateway_on_response(r, status))
        return 0;
    r->extra_headers.len = 0;
    http_respond_error(r, 500, "internal", "a server hook failed", NULL);
    return 1;
}

/* "HTTP/1.1 200 OK\r\nServer: panthera\r\nDate: " for the last status answered: nearly every
 * answer has the status of the one before, and the status line costs a lookup, a strlen
 * and a number's digits to make. Only the loop's thread answers. */
static struct {
    int status;
    uint8_t len;
    char text[96];
} status_head = {.status = -1};

static void status_head_make(int status)
{
    const char *reason = http_status_reason(status);
    char *p = status_head.text;
    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = put(p, reason, strlen(reason)); /* the longest is 31 bytes */
    p = PUTS(p, "\r\nServer: panthera\r\nDate: ");
    status_head.len = (uint8_t)(p - status_head.text);
    status_head.status = status;
}

/* Status line and headers into r->out, with room behind them for `reserve` more bytes. */
static void build_head(px_req_t *r, const char *content_type, size_t len, int framing,
                       bool keep, bool no_body, size_t reserve)
{
    worker_t *w = r->worker;
    buf_t *o = &r->out;
    o->len = 0;
    if (r->status != status_head.status)
        status_head_make(r->status);
    size_t id_len = r->id_len ? r->id_len : strlen(r->id);
    size_t ctype_len = content_type ? strlen(content_type) : 0;
    /* 192 covers every fixed part of the head past the status line, the Date and a
     * 20-digit length. */
    buf_reserve(o, 192 + status_head.len + ctype_len + id_len + r->extra_headers.len + reserve);
    char *p = o->data;
    p = put(p, status_head.text, status_head.len);
    p = put(p, w->date, w->date_len);
    if (content_type && !no_body) {
        p = PUTS(p, "\r\nContent-Type: ");
        p = put(p, content_type, ctype_len);
    }
    if (!no_body && framing == FRAME_LENGTH) {
        p = PUTS(p, "\r\nContent-Length: ");
        p = put_u64(p, len);
    } else if (framing == FRAME_CHUNKED) {
        p = PUTS(p, "\r\nTransfer-Encoding: chunked");
    }
    p = PUTS(p, "\r\nX-Request-Id: ");
    p = put(p, r->id, id_len);
    p = PUTS(p, "\r\n");
    if (r->extra_headers.len)
        p = put(p, r->extra_headers.data, r->extra_headers.len);
    if (!keep)
        p = PUTS(p, "Connection: close\r\n");
    else if (r->http10)
        p = PUTS(p, "Connection: keep-alive\r\n");
    p = PUTS(p, "\r\n");
    o->len = (size_t)(p - o->data);
}

/* Whether the connection may carry another request after this answer. */
static bool answer_keeps(const px_req_t *r)
{
    const conn_t *c = r->conn;
    const worker_t *w = r->worker;
    return r->keepalive && !w->draining && c && !c->close_after &&
           c->requests < w->limits->keepalive_requests;
}

int http_respond(px_req_t *r, int status, const char *content_type, char *body, size_t len,
                 bool take)
{
    if (r->responded || r->task) {
        if (take)
            free(body);
        return PX_ESTATE;
    }
    if (run_on_response(r, status)) {
        if (take)
            free(body);
        return 0;
    }
    if (status < 100 || status > 999)
        status = 500;
    if (r->client_gone)
        status = 499; /* what is logged and counted: nobody is there to receive it */
    r->responded = true;
    r->status = status;
    ensure_request_id(r);
    conn_t *c = r->conn;
    uint64_t duration = uv_hrtime() - r->start_ns;
    metrics_request(r->plugin_metrics_id, status, duration);

    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    bool keep = answer_keeps(r);
    bool send_body = !r->is_head && !no_body;
    bool file_body = r->file != NULL; /* the body is a file: file_response.c sends it */
    bool inline_body = send_body && !take && len <= INLINE_BODY_MAX && !file_body;
    build_head(r, content_type, len, FRAME_LENGTH, keep, no_body, inline_body ? len : 0);
    buf_t *o = &r->out;
    size_t head_len = o->len;

    uint64_t bytes = head_len + (send_body ? len : 0);
    if (access_log_enabled())
        access_log_request(r, bytes, duration, c ? c->family : 0, c ? c->addr : NULL);

    if (!c) {
        /* The client went away while the handler worked: nothing to write to. Released
         * at the end of the loop's iteration, not here: whoever answered may still hold
         * the request (a handler run after a wait for Redis answers and then returns to
         * dispatch), and a request freed under it was answered a second time, released
         * twice into the pool and handed to two connections at once -- one of which
         * then never answered. */
        if (take)
            free(body);
        worker_finish_request(r->worker, r);
        return 0;
    }

    uv_buf_t bufs[2];
    unsigned nbufs = 1;
    if (inline_body) {
        memcpy(o->data + o->len, body, len);
        o->len += len;
    } else if (send_body && len && !file_body) {
        r->res_body = take ? body : memcpy(xmalloc(len), body, len);
        r->res_len = len;
        r->res_body_owned = true;
        bufs[1] = (uv_buf_t){.base = r->res_body, .len = len};
        nbufs = 2;
        body = NULL;
    }
    if (take && body)
        free(body);
    /* Not uv_buf_init: a call into libuv for two stores, on every answer. */
    bufs[0] = (uv_buf_t){.base = o->data, .len = o->len};

    if (file_body && send_body && len) {
        file_send_start(c, r, bufs[0], keep);
        return 0;
    }
    http_conn_write(c, r, bufs, nbufs, keep);
    return 0;
}

int http_respond_stream_head(px_req_t *r, int status, const char *content_type, bool *chunked)
{
    if (r->responded || !r->conn)
        return PX_ESTATE;
    if (run_on_response(r, status))
        return PX_EINTERNAL;
    r->responded = true;
    r->status = status;
    ensure_request_id(r);
    /* HTTP/1.0 has no chunks: the body ends where the connection does. */
    *chunked = !r->http10;
    build_head(r, content_type, 0, *chunked ? FRAME_CHUNKED : FRAME_CLOSE,
               *chunked && answer_keeps(r), false, 0);
    return 0;
}

void http_stream_finished(px_req_t *r, uint64_t bytes, int family, const uint8_t *addr)
{
    uint64_t duration = uv_hrtime() - r->start_ns;
    metrics_request(r->plugin_metrics_id, r->status, duration);
    if (access_log_enabled())
        access_log_request(r, bytes, duration, family, addr);
}

bool http_stream_keeps(const px_req_t *r)
{
    return !r->http10 && answer_keeps(r);
}

int http_respond_error(px_req_t *r, int status, const char *code, const char *message,
                       json_t *fields)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code ? code : default_error_code(status),
                            "message", message ? message : http_status_reason(status));
    if (!err) {
        json_decref(fields);
        return http_respond(r, 500, "application/json; charset=utf-8",
                            "{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode\"}}", 56,
                            false);
    }
    if (fields)
        json_object_set_new(err, "fields", fields);
    /* The contract promises these with their statuses; a handler may have set its own. */
    if (status == 401 &&
        !strstr(r->extra_headers.data ? r->extra_headers.data : "", "WWW-Authenticate:"))
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
