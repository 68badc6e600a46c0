/*
 * http_parse.c — bytes into a request: the llhttp callbacks and the host's own limits.
 *
 * llhttp is used strictly (no lenient flags; built with LLHTTP_STRICT_MODE) and checks
 * syntax only: sizes, counts and deadlines are ours. The request line and headers are
 * copied into the request as they arrive, because the bytes they come from are the
 * worker's one read buffer, which the next read on any connection overwrites.
 *
 * Errors. A request llhttp rejects, or that breaks a limit, gets its status (400, 408,
 * 413, 414, 417, 431, 505) in the API's JSON error shape with Connection: close. A
 * callback cannot answer from inside llhttp: it records the status in the connection
 * and stops the parser, and http_parse_fail answers once llhttp has returned.
 *
 * What llhttp lets through and we refuse, because a proxy in front of us may read it
 * otherwise (request smuggling): every obs-fold (see scan_gap), Transfer-Encoding in an
 * HTTP/1.0 request (RFC 9112 6.1), a second Authorization, and framing, routing or
 * credentials in a chunked trailer. Trailer fields are never headers: llhttp reports them
 * through the header callbacks, and they are counted against max_header_size, checked
 * against that list and dropped.
 */
#include "http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "spool.h"
#include "worker.h"

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

/* The NUL that ends a piece: buf_append keeps one behind the data already, so it is
 * taken into the head, and a new one put behind it. */
static int head_terminate(conn_t *c)
{
    px_req_t *r = c->req;
    if (r->head.len + 1 > c->worker->limits->max_header_size)
        return fail_with(c, 431, "request header block too large");
    buf_reserve(&r->head, 1);
    r->head.data[r->head.len++] = '\0';
    r->head.data[r->head.len] = '\0';
    return 0;
}

/* ---- obs-fold ----
 * llhttp 8 takes an obs-fold (RFC 9112 5.2) without telling: after an empty first line
 * ("Transfer-Encoding:\r\n chunked") it is skipped as whitespace and the value reads
 * "chunked"; after text it comes as a second piece of the value. So the bytes between
 * the pieces llhttp hands to the callbacks are scanned: there only separators lie (the
 * rest of the request line, ":", OWS, CRLF), and in a header section an LF followed by
 * SP or HT is always a fold, while an LF followed by CR starts the blank line that ends
 * the section. The scan follows the pieces through a feed, and http_parse_feed_done
 * scans what is left of a feed before the read buffer is reused; scan_lf carries an LF
 * at the very end of one read over to the next. */

static void scan_gap(conn_t *c, const char *end)
{
    const char *p = c->scan_from ? c->scan_from : c->feed_start;
    c->scan_from = end;
    if (!c->scanning)
        return;
    /* In locals: the bytes read are chars, which may alias the connection's flags, so
     * the compiler would otherwise load and store those on every byte. */
    bool lf = c->scan_lf, fold = false;
    while (p < end) {
        if (lf) {
            if (*p == ' ' || *p == '\t') {
                fold = true;
            } else if (*p == '\r') {
                c->scanning = false;
                lf = false;
                break;
            }
        }
        /* Only what follows an LF matters: the bytes before the next one are skipped. */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        lf = nl != NULL;
        p = lf ? nl + 1 : end;
    }
    c->scan_lf = lf;
    if (fold)
        c->fold_seen = true;
}

/* A callback's piece [at, at + len): check the separators before it, skip the piece. */
static int scan_piece(conn_t *c, const char *at, size_t len)
{
    if (!c->scanning)
        return 0;
    scan_gap(c, at);
    /* llhttp starts a fold's second piece at its first SP or HT. */
    if (c->scanning && c->scan_lf && len && (*at == ' ' || *at == '\t'))
        c->fold_seen = true;
    if (c->fold_seen)
        return fail_with(c, 400, "obsolete line folding in a header");
    c->scan_from = at + len;
    if (len)
        c->scan_lf = false;
    return 0;
}

void http_parse_feed_done(conn_t *c)
{
    if (c->scanning)
        scan_gap(c, c->feed_end);
    c->scan_from = NULL;
}

/* ---- trailers ----
 * RFC 9110 6.5.1: a trailer must not carry what frames, routes, authenticates or
 * modifies the request, since a recipient that merged it would act on what the sender
 * never put in the header; nor what this host reads about the client. */
static const char *const trailer_forbidden[] = {
    "transfer-encoding", "content-length", "host", "authorization", "proxy-authorization",
    "cookie", "content-type", "content-encoding", "content-range", "range", "expect", "te",
    "trailer", "connection", "keep-alive", "upgrade", "max-forwards", "cache-control",
    "pragma", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
    "if-range", "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    "x-real-ip", "x-request-id", "idempotency-key",
};

static bool in_trailer(const conn_t *c)
{
    return c->parser.flags & F_TRAILING;
}

static int trailer_field(conn_t *c, const char *at, size_t len)
{
    if (!c->scanning && !c->trailer_name) {
        c->scanning = true;
        c->scan_lf = false;
        c->scan_from = at;
    }
    int rc = scan_piece(c, at, len);
    if (rc)
        return rc;
    if (!c->trailer_name) {
        c->trailer_name = true;
        c->trailer_off = (uint32_t)c->req->head.len;
        c->trailer_len = 0;
    }
    c->trailer_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int trailer_field_complete(conn_t *c)
{
    const char *name = c->req->head.data + c->trailer_off;
    c->trailer_name = false;
    for (size_t i = 0; i < ARRAY_SIZE(trailer_forbidden); i++) {
        if (strlen(trailer_forbidden[i]) == c->trailer_len &&
            !strncasecmp(name, trailer_forbidden[i], c->trailer_len))
            return fail_with(c, 400, "a field that must not be a trailer is in the trailer");
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    conn_t *c = p->data;
    if (!c->req)
        c->req = req_acquire(c->worker, c);
    c->scanning = c->fold_seen = c->trailer_name = false;
    /* No header deadline yet: conn_feed starts it when this feed ends, in the same turn
     * of the loop and so from the same time, if the request is not whole by then. One that
     * arrives whole (nearly all) never enters the header list. */
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    if (r->url_len == 0) {
        r->url_off = (uint32_t)r->head.len;
        c->scanning = true;
        c->scan_lf = false;
    }
    c->scan_from = at + len;
    if (r->head.len + len > c->worker->limits->max_header_size)
        return fail_with(c, 414, "request target too long");
    buf_append(&r->head, at, len);
    r->url_len += (uint32_t)len;
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    return head_terminate(c);
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
    return head_terminate(c);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    if (in_trailer(c))
        return trailer_field(c, at, len);
    int rc = scan_piece(c, at, len);
    if (rc)
        return rc;
    if (r->header_state != HS_FIELD) {
        rc = finish_header(c);
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
    if (in_trailer(c))
        return trailer_field_complete(c);
    if (r->header_state != HS_FIELD || r->headers[r->nheaders - 1].name_len == 0)
        return fail_with(c, 400, "empty header name");
    int rc = head_terminate(c);
    if (rc == 0)
        c->req->header_state = HS_NAME_DONE;
    return rc;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    int rc = scan_piece(c, at, len);
    if (rc)
        return rc;
    if (in_trailer(c))
        return head_append(c, at, len); /* counted against the limit, then dropped */
    /* A fold after text is a second piece, which scan_piece has refused already;
     * this is the same fold should llhttp ever end the value before it. */
    if (r->header_state == HS_VALUE_DONE)
        return fail_with(c, 400, "obsolete line folding in a header");
    if (r->header_state != HS_NAME_DONE && r->header_state != HS_VALUE)
        return fail_with(c, 400, "header value without a name");
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

/* `name` in lower case. ASCII only, as header names are: no strncasecmp call, which asks
 * the locale for every byte. */
static bool name_is(const px_req_t *r, const header_t *h, const char *name, size_t len)
{
    if (h->name_len != len)
        return false;
    const char *s = r->head.data + h->name_off;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch + ('a' - 'A'));
        if (ch != (unsigned char)name[i])
            return false;
    }
    return true;
}

static int parse_target(px_req_t *r)
{
    char *target = r->head.data + r->url_off;
    size_t len = r->url_len;
    /* Nearly every request is in origin-form: only another first byte can be a scheme. */
    size_t scheme = len == 0 || target[0] == '/'          ? 0
                    : !strncasecmp(target, "http://", 7)  ? 7
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

/* A client's id is echoed into our response headers and log lines: only a short token of
 * plain characters is taken, anything else gets one of ours. */
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

/* Name the limit that was hit: the route's own, or the host's. */
/* The limit in the message, so a client (or the person behind it) can act on it. */
static const char *too_large(px_req_t *r, uint64_t limit)
{
    char text[128];
    int n = snprintf(text, sizeof(text), "request body is larger than %llu bytes (%s)",
                     (unsigned long long)limit,
                     r->body_route && r->body_route->max_body ? "this route's max_body"
                                                              : "max_body_size");
    return arena_strndup(&r->arena, text, n > 0 ? (size_t)n : 0);
}

/* llhttp_method_name's table with the lengths beside the names: the access log writes
 * the name of every request, and would otherwise measure it each time. */
#define METHOD_NAME(num, name, string) [num] = {#string, sizeof(#string) - 1},
static const struct {
    const char *name;
    uint8_t len;
} method_names[256] = {HTTP_ALL_METHOD_MAP(METHOD_NAME)};
#undef METHOD_NAME

/* llhttp's method number as the router's, without comparing its name to each of theirs. */
static int method_of(uint8_t method)
{
    switch (method) {
    case HTTP_GET: return METHOD_GET;
    case HTTP_HEAD: return METHOD_HEAD;
    case HTTP_POST: return METHOD_POST;
    case HTTP_PUT: return METHOD_PUT;
    case HTTP_PATCH: return METHOD_PATCH;
    case HTTP_DELETE: return METHOD_DELETE;
    case HTTP_OPTIONS: return METHOD_OPTIONS;
    default: return METHOD_UNKNOWN;
    }
}

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    const http_limits_t *lim = c->worker->limits;
    int rc = finish_header(c);
    if (rc)
        return rc;
    if (c->scanning)
        scan_gap(c, c->feed_end); /* up to the blank line, which is in this feed */
    c->scanning = false;
    if (c->fold_seen)
        return fail_with(c, 400, "obsolete line folding in a header");
    if (p->http_major != 1 || p->http_minor > 1)
        return fail_with(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r->http10 = p->http_minor == 0;
    /* An HTTP/1.0 recipient may not know chunked: a proxy before us could have framed
     * this body by the connection's end instead (RFC 9112 6.1). */
    if (r->http10 && (p->flags & F_TRANSFER_ENCODING))
        return fail_with(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
    r->method_name = method_names[p->method].name;
    r->method_name_len = method_names[p->method].len;
    r->method = method_of(p->method);
    r->is_head = r->method == METHOD_HEAD;
    if (parse_target(r))
        return fail_with(c, 400, "malformed request target");

    int hosts = 0, auths = 0;
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const header_t *h = &r->headers[i];
        const char *value = r->head.data + h->value_off;
        if (name_is(r, h, "host", 4)) {
            hosts++;
        } else if (name_is(r, h, "authorization", 13)) {
            auths++;
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
    /* Which one a proxy checked and which one we would read is anybody's guess. */
    if (auths > 1)
        return fail_with(c, 400, "more than one Authorization header");

    bool has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    /* Routed now, not at dispatch: the route's own body limit applies before the body. */
    uint64_t max_body = lim->max_body_size;
    int refused = has_body ? spool_body_begin(c, r, &max_body) : 0;
    if (refused)
        return fail_with(c, refused, c->err_message);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > max_body)
        return fail_with(c, 413, too_large(r, max_body));
    if (has_body) {
        r->in_body = true;
        c->body_started = uv_now(c->worker->loop);
        c->body_bytes = 0;
        http_timer_arm(c, CT_BODY);
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
    int status = spool_body_append(c, r, at, len);
    if (status)
        return fail_with(c, status, status == 413 ? too_large(r, r->body_limit)
                                                  : "cannot store the request body");
    c->body_bytes += len;
    uint64_t now = uv_now(w->loop);
    uint64_t elapsed = now - c->body_started;
    if (elapsed > w->limits->body_timeout_ms &&
        c->body_bytes * 1000 / elapsed < w->limits->min_body_rate)
        return fail_with(c, 408, "request body arrives too slowly");
    http_timer_arm(c, CT_BODY);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    px_req_t *r = c->req;
    if (c->scanning)
        scan_gap(c, c->feed_end); /* after the trailer's last field */
    c->scanning = false;
    if (c->fold_seen)
        return fail_with(c, 400, "obsolete line folding in a trailer");
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

void http_parse_init(conn_t *c)
{
    settings_init();
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
}

void http_parse_fail(conn_t *c, llhttp_errno_t err)
{
    int status = 400;
    const char *message = llhttp_get_error_reason(&c->parser);
    if (c->err_status) {
        /* Ours, from a callback (llhttp reports it as that callback's error code). */
        status = c->err_status;
        message = c->err_message;
    } else if (err == HPE_INVALID_VERSION &&
               !(c->parser.http_major == 1 && c->parser.http_minor <= 1)) {
        /* A version we do not speak; a supported one followed by anything but CRLF (a
         * bare CR as the line end) is a malformed request. */
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
