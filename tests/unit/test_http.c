/*
 * test_http.c — server/http.c, the connection code, driven without a master: a worker on
 * a private loop adopts one end of a socketpair (http_conn_open), the test writes request
 * bytes into the other end and runs the loop until the answer, or the close, arrives.
 *
 * Limits are small (headers 1024 bytes, 10 headers, bodies 100 bytes) so every limit is
 * reached with a few bytes. Handlers go through the SDK table, as a plugin's would.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "http.h"
#include "log.h"
#include "plugin.h"
#include "worker.h"

PX__HIDDEN const px_api_t *px_api = &plugin_api_table;

static uv_loop_t loop;
static config_t *cfg;
static plugin_set_t set;
static worker_t *worker;

/* ---- handlers ---- */

static int count_calls;
static px_req_t *async_req;
static uv_timer_t async_timer;

static int h_hello(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_send(req, 200, "text/plain", "hello", 5);
}

static int h_param(px_req_t *req, void *ud)
{
    (void)ud;
    const char *n = px_req_param(req, "n");
    return px_res_send(req, 200, "text/plain", n, strlen(n));
}

static int h_echo(px_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    const void *body = px_req_body(req, &len);
    return px_res_send(req, 200, "application/octet-stream", body, len);
}

static int h_json(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *doc;
    int rc = px_req_json(req, &doc);
    if (rc)
        return rc;
    return px_res_json(req, 200, json_incref(doc));
}

static int h_query(px_req_t *req, void *ud)
{
    (void)ud;
    const char *q = px_req_query(req, "q");
    const char *h = px_req_header(req, "x-test");
    char out[256];
    snprintf(out, sizeof(out), "q=%s h=%s", q ? q : "(none)", h ? h : "(none)");
    return px_res_send(req, 200, "text/plain", out, strlen(out));
}

static int h_count(px_req_t *req, void *ud)
{
    (void)ud;
    count_calls++;
    return px_res_send(req, 204, NULL, NULL, 0);
}

static int h_notfound(px_req_t *req, void *ud)
{
    (void)req;
    (void)ud;
    return PX_ENOENT;
}

static int h_noanswer(px_req_t *req, void *ud)
{
    (void)req;
    (void)ud;
    return PX_OK;
}

/* GET /size/:n — n bytes of body (at most 4096). */
static int h_size(px_req_t *req, void *ud)
{
    (void)ud;
    static char filler[4096];
    size_t n = strtoul(px_req_param(req, "n"), NULL, 10);
    if (n > sizeof(filler))
        return PX_EINVAL;
    memset(filler, 'z', n);
    return px_res_send(req, 200, "text/plain", filler, n);
}

static void on_async_timer(uv_timer_t *t)
{
    (void)t;
    px_req_t *req = async_req;
    async_req = NULL;
    px_res_header(req, "X-Async", "yes");
    px_res_send(req, 200, "text/plain", "late", 4);
}

static int h_async(px_req_t *req, void *ud)
{
    (void)ud;
    async_req = req;
    uv_timer_start(&async_timer, on_async_timer, 20, 0);
    return PX_ASYNC;
}

/* ---- the client side ---- */

typedef struct client {
    int fd;
    buf_t in;        /* everything the server sent */
    size_t consumed; /* of `in`, by take_response */
    bool eof;
} client_t;

typedef struct response {
    int status;
    char head[4096]; /* status line and headers, NUL-terminated */
    char body[8192]; /* room for the largest inline body and more */
    size_t body_len;
    char value[512]; /* the last header() result */
} response_t;

static void client_open(client_t *cl)
{
    memset(cl, 0, sizeof(*cl));
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        perror("socketpair");
        exit(2);
    }
    size_t before = worker->nconns;
    int rc = http_conn_open(worker, sv[0]);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(worker->nconns, before + 1);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    cl->fd = sv[1];
}

/* Read whatever the server has sent so far. */
static void client_drain(client_t *cl)
{
    char tmp[8192];
    while (cl->fd >= 0 && !cl->eof) {
        ssize_t n = read(cl->fd, tmp, sizeof(tmp));
        if (n > 0)
            buf_append(&cl->in, tmp, (size_t)n);
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            cl->eof = true; /* a reset counts as the end too */
        else
            break;
    }
}

/* Run the loop, reading the client side, until `done` says so or two seconds pass. */
static bool pump_until(client_t *cl, bool (*done)(client_t *cl, void *arg), void *arg)
{
    uint64_t deadline = now_ms_monotonic() + 2000;
    for (;;) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (cl)
            client_drain(cl);
        if (done(cl, arg))
            return true;
        if (now_ms_monotonic() > deadline)
            return false;
        poll(NULL, 0, 1);
    }
}

/* Let the server work for `ms` milliseconds. */
static void pump_for(client_t *cl, int ms)
{
    uint64_t end = now_ms_monotonic() + (uint64_t)ms;
    while (now_ms_monotonic() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (cl)
            client_drain(cl);
        poll(NULL, 0, 1);
    }
}

static void client_send(client_t *cl, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(cl->fd, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            uv_run(&loop, UV_RUN_NOWAIT);
            client_drain(cl);
        } else {
            perror("client write");
            return;
        }
    }
}

static void client_sends(client_t *cl, const char *s)
{
    client_send(cl, s, strlen(s));
}

static const char *find_header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line && line[2] != '\0' && line[2] != '\r') {
        line += 2;
        const char *end = strstr(line, "\r\n");
        if (!end)
            break;
        if (!strncasecmp(line, name, nlen) && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)(end - v), v);
            return out;
        }
        line = end;
    }
    return NULL;
}

/* The value of a response header, or NULL. */
static const char *header(response_t *res, const char *name)
{
    return find_header(res->head, name, res->value, sizeof(res->value));
}

/* Take one complete response off what was read; HEAD answers carry no body. */
static bool take_response(client_t *cl, response_t *res, bool head)
{
    const char *start = cl->in.data ? cl->in.data + cl->consumed : "";
    size_t avail = cl->in.len - cl->consumed;
    const char *end = memmem(start, avail, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t head_len = (size_t)(end - start) + 4;
    if (head_len >= sizeof(res->head))
        return false;
    memset(res, 0, sizeof(*res));
    memcpy(res->head, start, head_len);
    if (sscanf(res->head, "HTTP/1.1 %d ", &res->status) != 1)
        res->status = -1;
    size_t body_len = 0;
    char cl_value[32];
    if (!head && res->status >= 200 && res->status != 204 && res->status != 304 &&
        find_header(res->head, "Content-Length", cl_value, sizeof(cl_value)))
        body_len = strtoul(cl_value, NULL, 10);
    if (avail < head_len + body_len || body_len >= sizeof(res->body))
        return false;
    memcpy(res->body, start + head_len, body_len);
    res->body_len = body_len;
    cl->consumed += head_len + body_len;
    return true;
}

typedef struct want {
    response_t *res;
    bool head;
} want_t;

static bool got_response(client_t *cl, void *arg)
{
    want_t *w = arg;
    return take_response(cl, w->res, w->head);
}

/* Wait for the next response; false when none came (closed, or two seconds). */
static bool read_response_head(client_t *cl, response_t *res, bool head)
{
    want_t want = {res, head};
    if (pump_until(cl, got_response, &want))
        return true;
    memset(res, 0, sizeof(*res));
    fprintf(stderr, "    no response; the server sent %zu bytes (%zu unread), eof=%d\n",
            cl->in.len, cl->in.len - cl->consumed, cl->eof);
    return false;
}

static bool read_response(client_t *cl, response_t *res)
{
    return read_response_head(cl, res, false);
}

static bool got_eof(client_t *cl, void *arg)
{
    (void)arg;
    return cl->eof;
}

/* The server closed (or half-closed) its side, and sent nothing more. */
static bool closed_by_server(client_t *cl)
{
    return pump_until(cl, got_eof, NULL) && cl->consumed == cl->in.len;
}

static bool no_connections(client_t *cl, void *arg)
{
    (void)cl;
    (void)arg;
    return worker->nconns == 0;
}

static void close_connection(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (h->type == UV_TCP && !uv_is_closing(h))
        http_conn_close(h->data);
}

/* Close our end and wait for the server to let go of the connection. One it keeps is a
 * failure, and is then closed from here so the next test starts clean. */
static void client_close(client_t *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
    if (!check_report(pump_until(NULL, no_connections, NULL), __FILE__, __LINE__)) {
        fprintf(stderr, "the server kept the connection after the client closed it\n");
        uv_walk(&loop, close_connection, NULL);
        pump_until(NULL, no_connections, NULL);
    }
    buf_free(&cl->in);
}

/* One request on a fresh connection, one response. */
static void exchange(const char *request, response_t *res)
{
    client_t cl;
    client_open(&cl);
    client_sends(&cl, request);
    read_response(&cl, res);
    client_close(&cl);
}

#define CHECK_BODY(res, text)                                                                \
    do {                                                                                     \
        char check_body_[4097];                                                              \
        snprintf(check_body_, sizeof(check_body_), "%.*s", (int)(res).body_len, (res).body); \
        CHECK_STR(check_body_, (text));                                                      \
    } while (0)

/* An error answer: the status, the JSON error shape, Connection: close, then the close. */
static void check_error_and_close(client_t *cl, int status, const char *message, int line)
{
    response_t res;
    bool got = read_response(cl, &res);
    if (!check_report(got && res.status == status, __FILE__, line))
        fprintf(stderr, "expected a %d, got %d:\n%s\n", status, res.status, res.head);
    if (!got)
        return;
    if (!check_report(strstr(res.body, "{\"error\":{") == res.body, __FILE__, line))
        fprintf(stderr, "not the JSON error shape: %.*s\n", (int)res.body_len, res.body);
    if (message && !check_report(strstr(res.body, message) != NULL, __FILE__, line))
        fprintf(stderr, "body %.*s does not say \"%s\"\n", (int)res.body_len, res.body,
                message);
    const char *conn = header(&res, "Connection");
    if (!check_report(conn && !strcasecmp(conn, "close"), __FILE__, line))
        fprintf(stderr, "no Connection: close in\n%s\n", res.head);
    if (!check_report(closed_by_server(cl), __FILE__, line))
        fprintf(stderr, "the connection stayed open (or more bytes followed) after a %d\n",
                status);
}

#define CHECK_ERROR_AND_CLOSE(cl, status, message)                                           \
    check_error_and_close((cl), (status), (message), __LINE__)

/* ---- tests ---- */

static void test_good_request(void)
{
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /hello HTTP/1.1\r\nHost: test\r\n\r\n");
    response_t res;
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "hello");
    CHECK_STR(header(&res, "Content-Length"), "5");
    CHECK_STR(header(&res, "Content-Type"), "text/plain");
    CHECK(header(&res, "Date") != NULL);
    const char *id = header(&res, "X-Request-Id");
    CHECK(id != NULL && strlen(id) >= 8);
    CHECK(header(&res, "Connection") == NULL); /* HTTP/1.1: keep-alive is implied */

    /* Kept alive: a second request on the same connection, with its own id. */
    char first_id[64];
    snprintf(first_id, sizeof(first_id), "%s", id ? id : "");
    client_sends(&cl, "GET /hello HTTP/1.1\r\nHost: test\r\nX-Request-Id: abc-123.x:y\r\n\r\n");
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_STR(header(&res, "X-Request-Id"), "abc-123.x:y");

    /* An unusable client id is replaced by one of ours. */
    client_sends(&cl, "GET /hello HTTP/1.1\r\nHost: test\r\nX-Request-Id: a b\r\n\r\n");
    CHECK_OR_RETURN(read_response(&cl, &res));
    id = header(&res, "X-Request-Id");
    CHECK(id != NULL && strcmp(id, "a b") != 0 && strcmp(id, first_id) != 0);
    CHECK(!cl.eof);
    client_close(&cl);
}

static void test_request_id_lengths(void)
{
    /* A client id of up to 64 characters comes back exactly as sent, a longer one is
     * replaced by one of ours, and the request is otherwise untouched: a plain 200 with its
     * body, on a live connection. */
    for (size_t len = 40; len <= 70; len++) {
        char id[80], req[256];
        for (size_t i = 0; i < len; i++)
            id[i] = (char)('a' + i % 26);
        id[len] = '\0';
        snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: test\r\nX-Request-Id: %s\r\n\r\n",
                 id);
        client_t cl;
        client_open(&cl);
        client_sends(&cl, req);
        response_t res;
        bool got = read_response(&cl, &res);
        if (!check_report(got && res.status == 200 && res.body_len == 5, __FILE__, __LINE__)) {
            fprintf(stderr, "X-Request-Id of %zu characters: %s\n", len,
                    got ? "a broken response" : "no response at all");
            if (got)
                fprintf(stderr, "%s%.*s\n", res.head, (int)res.body_len, res.body);
        }
        const char *echoed = got ? header(&res, "X-Request-Id") : NULL;
        CHECK(echoed != NULL);
        if (echoed && len <= 64)
            CHECK_STR(echoed, id);
        else if (echoed)
            CHECK(strstr(id, echoed) == NULL && strstr(echoed, "abcdefgh") == NULL);
        client_close(&cl);
    }
}

static void test_longest_response_head(void)
{
    /* Everything that makes a response head long at once: the longest client id, an
     * HTTP/1.0 keep-alive answer, and bodies whose size puts the response buffer right
     * at a power of two. The answer must be intact (and, under ASan, written in bounds). */
    char id[65];
    for (size_t i = 0; i < 64; i++)
        id[i] = (char)('A' + i % 26);
    id[64] = '\0';
    static const size_t sizes[] = {0, 1, 43, 44, 45, 299, 300, 811, 1835, 3883, 3884, 4096};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int http10 = 0; http10 <= 1; http10++) {
            char req[256];
            snprintf(req, sizeof(req), "GET /size/%zu HTTP/1.%d\r\nHost: t\r\n%sX-Request-Id: %s\r\n\r\n",
                     sizes[i], http10 ? 0 : 1, http10 ? "Connection: keep-alive\r\n" : "", id);
            response_t res;
            exchange(req, &res);
            if (!check_report(res.status == 200 && res.body_len == sizes[i], __FILE__, __LINE__))
                fprintf(stderr, "GET /size/%zu (HTTP/1.%d): %d with %zu bytes\n", sizes[i],
                        http10 ? 0 : 1, res.status, res.body_len);
            CHECK_STR(header(&res, "X-Request-Id"), id);
        }
    }
}

static void test_split_reads(void)
{
    /* Every byte in its own read: names, values and the body cut anywhere. */
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: test\r\nX-Test: some value\r\n"
                              "Content-Length: 11\r\n\r\nhello world";
    client_t cl;
    client_open(&cl);
    for (size_t i = 0; i < sizeof(req) - 1; i++) {
        client_send(&cl, req + i, 1);
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    response_t res;
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "hello world");

    /* The same for a chunked body: sizes, extensions and the trailer cut anywhere. */
    static const char chunked[] = "POST /echo HTTP/1.1\r\nHost: test\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n"
                                  "6;ext=1\r\nhello \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n";
    for (size_t i = 0; i < sizeof(chunked) - 1; i++) {
        client_send(&cl, chunked + i, 1);
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "hello world");

    /* A header value cut by the read is not an obs-fold. */
    client_sends(&cl, "GET /query?q=1 HTTP/1.1\r\nHost: test\r\nX-Test: exa");
    pump_for(&cl, 10);
    client_sends(&cl, "mple\r\n\r\n");
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "q=1 h=example");
    client_close(&cl);
}

static void test_obs_fold_any_split(void)
{
    /* An obs-fold is refused wherever the reads happen to cut the request: the answer
     * may not depend on packet boundaries. */
    static const char req[] = "GET /query HTTP/1.1\r\nHost: test\r\nX-Test: a\r\n  b\r\n\r\n";
    size_t fold_at = strlen("GET /query HTTP/1.1\r\nHost: test\r\nX-Test: a");
    for (size_t split = fold_at - 2; split <= fold_at + 4; split++) {
        client_t cl;
        client_open(&cl);
        client_send(&cl, req, split);
        pump_for(&cl, 3);
        client_send(&cl, req + split, sizeof(req) - 1 - split);
        response_t res;
        bool got = read_response(&cl, &res);
        if (!check_report(got && res.status == 400, __FILE__, __LINE__))
            fprintf(stderr, "split after %zu bytes (\"...%.*s|%.*s...\"): got %d, body %.*s\n",
                    split, 3, req + split - 3, 3, req + split, res.status,
                    (int)res.body_len, res.body);
        client_close(&cl);
    }
}

static void test_header_block_too_large(void)
{
    char req[2048];
    char big[1101];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: test\r\nX-Big: %s\r\n\r\n", big);
    client_t cl;
    client_open(&cl);
    client_sends(&cl, req);
    CHECK_ERROR_AND_CLOSE(&cl, 431, "header");
    client_close(&cl);

    /* Many small headers add up the same way. */
    client_open(&cl);
    client_sends(&cl, "GET /hello HTTP/1.1\r\nHost: test\r\n");
    for (int i = 0; i < 6; i++) {
        snprintf(req, sizeof(req), "X-H%d: %.*s\r\n", i, 200, big);
        client_sends(&cl, req);
    }
    client_sends(&cl, "\r\n");
    CHECK_ERROR_AND_CLOSE(&cl, 431, NULL);
    client_close(&cl);

    /* A request target alone over the limit. */
    client_open(&cl);
    snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: test\r\n\r\n", big);
    client_sends(&cl, req);
    response_t res;
    CHECK(read_response(&cl, &res));
    CHECK(res.status == 414 || res.status == 431);
    CHECK(closed_by_server(&cl));
    client_close(&cl);
}

static void test_too_many_headers(void)
{
    char req[1024];
    size_t used = (size_t)snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: test\r\n");
    for (int i = 1; i < 10; i++)
        used += (size_t)snprintf(req + used, sizeof(req) - used, "X-H%d: %d\r\n", i, i);
    snprintf(req + used, sizeof(req) - used, "\r\n");

    /* Exactly max_headers (10) is fine... */
    response_t res;
    exchange(req, &res);
    CHECK_EQ_INT(res.status, 200);

    /* ...one more is a 431. */
    snprintf(req + used, sizeof(req) - used, "X-H10: 10\r\n\r\n");
    client_t cl;
    client_open(&cl);
    client_sends(&cl, req);
    CHECK_ERROR_AND_CLOSE(&cl, 431, "too many");
    client_close(&cl);
}

static void test_content_length_too_large(void)
{
    /* Refused from the headers alone: the body is never sent. */
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 101\r\n\r\n");
    CHECK_ERROR_AND_CLOSE(&cl, 413, "max_body_size");
    client_close(&cl);

    /* A huge one too (no overflow on the way). */
    client_open(&cl);
    client_sends(&cl, "POST /echo HTTP/1.1\r\nHost: test\r\n"
                      "Content-Length: 18446744073709551615\r\n\r\n");
    response_t res;
    CHECK(read_response(&cl, &res));
    CHECK(res.status == 413 || res.status == 400);
    CHECK(closed_by_server(&cl));
    client_close(&cl);

    /* The limit itself is fine. */
    char req[512], body[101];
    memset(body, 'b', 100);
    body[100] = '\0';
    snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n%s",
             body);
    exchange(req, &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK_EQ_INT(res.body_len, 100);
}

static void test_chunked_too_large(void)
{
    char chunk[65];
    memset(chunk, 'c', 64);
    chunk[64] = '\0';
    char req[1024];
    snprintf(req, sizeof(req),
             "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
             "40\r\n%s\r\n40\r\n%s\r\n0\r\n\r\n",
             chunk, chunk);
    client_t cl;
    client_open(&cl);
    client_sends(&cl, req);
    CHECK_ERROR_AND_CLOSE(&cl, 413, "max_body_size");
    client_close(&cl);

    /* Within the limit, chunks are joined. */
    response_t res;
    exchange("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
             &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "hello world");
}

static void test_pipelined_in_order(void)
{
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /n/1 HTTP/1.1\r\nHost: test\r\n\r\n"
                      "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\ntwo"
                      "HEAD /hello HTTP/1.1\r\nHost: test\r\n\r\n"
                      "GET /n/4 HTTP/1.1\r\nHost: test\r\n\r\n");
    response_t res;
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_BODY(res, "1");
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_BODY(res, "two");
    CHECK_OR_RETURN(read_response_head(&cl, &res, true));
    CHECK_EQ_INT(res.status, 200);
    CHECK_STR(header(&res, "Content-Length"), "5"); /* as GET would say, without the body */
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "4");
    CHECK(!cl.eof);
    client_close(&cl);
}

static void test_pipelined_behind_async(void)
{
    /* The first answer comes later from a timer; the second request waits its turn. */
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /async HTTP/1.1\r\nHost: test\r\n\r\n"
                      "GET /n/2 HTTP/1.1\r\nHost: test\r\n\r\n");
    response_t res;
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "late");
    CHECK_STR(header(&res, "X-Async"), "yes");
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_BODY(res, "2");
    client_close(&cl);
}

static void test_client_gone_during_async(void)
{
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /async HTTP/1.1\r\nHost: test\r\n\r\n");
    pump_for(&cl, 5);
    CHECK(async_req != NULL);
    close(cl.fd);
    cl.fd = -1;
    /* The handler answers into the void; nothing leaks or crashes (ASan/LSan tell). */
    pump_for(NULL, 60);
    CHECK(async_req == NULL);
    client_close(&cl);
}

static void test_error_closes_connection(void)
{
    /* Nothing after a refused request on the same connection is executed. */
    int before = count_calls;
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 101\r\n\r\n"
                      "GET /count HTTP/1.1\r\nHost: test\r\n\r\n");
    CHECK_ERROR_AND_CLOSE(&cl, 413, NULL);
    CHECK_EQ_INT(count_calls, before);
    client_close(&cl);

    /* Same for a malformed one, and the request before it is answered first. */
    client_open(&cl);
    client_sends(&cl, "GET /count HTTP/1.1\r\nHost: test\r\n\r\n"
                      "BROKEN\r\n\r\n"
                      "GET /count HTTP/1.1\r\nHost: test\r\n\r\n");
    response_t res;
    CHECK(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 204);
    CHECK_ERROR_AND_CLOSE(&cl, 400, NULL);
    CHECK_EQ_INT(count_calls, before + 1);
    client_close(&cl);
}

static void test_404_and_405(void)
{
    response_t res;
    exchange("GET /nope HTTP/1.1\r\nHost: test\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 404);
    CHECK_CONTAINS(res.body, "\"code\":\"not_found\"");
    CHECK(header(&res, "Connection") == NULL); /* not a protocol error: keep-alive */

    exchange("DELETE /hello HTTP/1.1\r\nHost: test\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 405);
    CHECK_STR(header(&res, "Allow"), "GET, HEAD");

    exchange("POST /n/7 HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 405);
    CHECK_STR(header(&res, "Allow"), "GET, HEAD");

    /* A method the router has no slot for. */
    exchange("PROPFIND /hello HTTP/1.1\r\nHost: test\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 405);
}

static void test_bad_requests(void)
{
    static const struct {
        const char *request;
        int status;
    } cases[] = {
        {"BROKEN\r\n\r\n", 400},
        {"GET /hello HTTP/1.1\r\n\r\n", 400},                                  /* no Host */
        {"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},             /* two */
        {"GET /hello HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n  b\r\n\r\n", 400},    /* obs-fold */
        {"GET /hello HTTP/1.1\r\nHost a\r\n\r\n", 400},                         /* no colon */
        {"GET hello HTTP/1.1\r\nHost: a\r\n\r\n", 400},                         /* target */
        {"GET http://a HTTP/1.1\r\nHost: a\r\n\r\n", 400},                      /* no path */
        {"GET /hello HTTP/1.1\r\nHost: a\r\nExpect: gzip\r\n\r\n", 417},
        {"GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         400},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         400}, /* smuggling shape */
        {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"GET /hello HTTP/3.0\r\nHost: a\r\n\r\n", 505},
        {"GET /hello HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        {"GET /n/%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET /n/%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        client_t cl;
        client_open(&cl);
        client_sends(&cl, cases[i].request);
        response_t res;
        bool got = read_response(&cl, &res);
        if (!check_report(got && res.status == cases[i].status, __FILE__, __LINE__))
            fprintf(stderr, "case %zu: expected %d, got %d for %s\n", i, cases[i].status,
                    res.status, cases[i].request);
        client_close(&cl);
    }
}

static void test_expect_continue(void)
{
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
                      "Content-Length: 5\r\n\r\n");
    response_t res;
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 100);
    client_sends(&cl, "hello");
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "hello");
    client_close(&cl);
}

static void test_http10(void)
{
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /hello HTTP/1.0\r\n\r\n");
    response_t res;
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_STR(header(&res, "Connection"), "close");
    CHECK(closed_by_server(&cl));
    client_close(&cl);

    client_open(&cl);
    client_sends(&cl, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_EQ_INT(res.status, 200);
    CHECK_STR(header(&res, "Connection"), "keep-alive");
    client_sends(&cl, "GET /n/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK_OR_RETURN(read_response(&cl, &res));
    CHECK_BODY(res, "x");
    client_close(&cl);
}

static void test_handler_results(void)
{
    response_t res;
    exchange("GET /missing-thing HTTP/1.1\r\nHost: test\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 404);
    CHECK_CONTAINS(res.body, "not_found");

    exchange("GET /noanswer HTTP/1.1\r\nHost: test\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 500);
    CHECK_CONTAINS(res.body, "\"code\":\"internal\"");

    exchange("POST /json HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
             "Content-Length: 13\r\n\r\n{\"a\": [1, 2]}",
             &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "{\"a\":[1,2]}");

    exchange("POST /json HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
             "Content-Length: 5\r\n\r\n{\"a\":",
             &res);
    CHECK_EQ_INT(res.status, 400);
    CHECK_CONTAINS(res.body, "malformed JSON");

    exchange("POST /json HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
             "Content-Length: 2\r\n\r\n{}",
             &res);
    CHECK_EQ_INT(res.status, 415);

    exchange("GET /query?x=1&q=a%20b+c HTTP/1.1\r\nHost: test\r\nX-TEST: t\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "q=a b c h=t");

    exchange("GET /n/a%20b%2Fc HTTP/1.1\r\nHost: test\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "a b/c");

    exchange("GET http://test/n/abs?q=1 HTTP/1.1\r\nHost: test\r\n\r\n", &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK_BODY(res, "abs");
}

static void test_keepalive_requests(void)
{
    uint64_t saved = cfg->http.keepalive_requests;
    cfg->http.keepalive_requests = 2;
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /n/1 HTTP/1.1\r\nHost: test\r\n\r\n");
    response_t res;
    CHECK(read_response(&cl, &res));
    CHECK(header(&res, "Connection") == NULL);
    client_sends(&cl, "GET /n/2 HTTP/1.1\r\nHost: test\r\n\r\n");
    CHECK(read_response(&cl, &res));
    CHECK_BODY(res, "2");
    CHECK_STR(header(&res, "Connection"), "close");
    CHECK(closed_by_server(&cl));
    client_close(&cl);
    cfg->http.keepalive_requests = saved;
}

static void test_timeouts(void)
{
    /* A request that stalls in its headers is told so. */
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /hello HTTP/1.1\r\nHo");
    pump_for(&cl, 5);
    http_expire(worker, uv_now(&loop) + cfg->http.header_timeout_ms + 1);
    CHECK_ERROR_AND_CLOSE(&cl, 408, "header");
    client_close(&cl);

    /* So is one whose body stalls. */
    client_open(&cl);
    client_sends(&cl, "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc");
    pump_for(&cl, 5);
    http_expire(worker, uv_now(&loop) + cfg->http.body_timeout_ms + 1);
    CHECK_ERROR_AND_CLOSE(&cl, 408, "body");
    client_close(&cl);

    /* A connection that never sent a byte, or sits idle after a response, is just
     * closed. */
    client_open(&cl);
    pump_for(&cl, 5);
    http_expire(worker, uv_now(&loop) + cfg->http.header_timeout_ms + 1);
    CHECK(closed_by_server(&cl));
    CHECK_EQ_INT(cl.in.len, 0);
    client_close(&cl);

    client_open(&cl);
    client_sends(&cl, "GET /hello HTTP/1.1\r\nHost: test\r\n\r\n");
    response_t res;
    CHECK(read_response(&cl, &res));
    http_expire(worker, uv_now(&loop) + cfg->http.keepalive_timeout_ms + 1);
    CHECK(closed_by_server(&cl));
    client_close(&cl);
}

static void test_peer_half_close(void)
{
    /* The client sends its requests and shuts its side: every one is still answered. */
    client_t cl;
    client_open(&cl);
    client_sends(&cl, "GET /n/1 HTTP/1.1\r\nHost: test\r\n\r\n"
                      "GET /n/2 HTTP/1.1\r\nHost: test\r\n\r\n");
    shutdown(cl.fd, SHUT_WR);
    response_t res;
    CHECK(read_response(&cl, &res));
    CHECK_BODY(res, "1");
    CHECK(read_response(&cl, &res));
    CHECK_BODY(res, "2");
    CHECK(closed_by_server(&cl));
    client_close(&cl);
}

static void test_helpers(void)
{
    const char *code = NULL;
    CHECK_EQ_INT(http_error_status(PX_ENOENT, &code), 404);
    CHECK_STR(code, "not_found");
    CHECK_EQ_INT(http_error_status(PX_ETOOBIG, &code), 413);
    CHECK_STR(code, "payload_too_large");
    CHECK_EQ_INT(http_error_status(PX_ENOTJSON, &code), 415);
    CHECK_EQ_INT(http_error_status(PX_ESTATE, &code), 500);
    CHECK_STR(code, "internal");
    CHECK_EQ_INT(http_error_status(12345, &code), 500);
    CHECK_STR(http_status_reason(431), "Request Header Fields Too Large");
    CHECK_STR(http_status_reason(299), "Unknown");

    px_req_t *r = req_acquire(worker, NULL);
    static const struct {
        const char *in;
        bool plus;
        const char *out; /* NULL: refused */
    } cases[] = {
        {"plain", false, "plain"},   {"a%20b", false, "a b"},    {"%41%42", false, "AB"},
        {"%2f%2F", false, "//"},     {"a+b", false, "a+b"},      {"a+b", true, "a b"},
        {"%2B", true, "+"},          {"", false, ""},            {"%", false, NULL},
        {"%4", false, NULL},         {"a%4", false, NULL},       {"%zz", false, NULL},
        {"%g1", false, NULL},        {"%00", false, NULL},       {"x%00y", true, NULL},
        {"%ff", false, "\xff"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = http_decode(r, cases[i].in, strlen(cases[i].in), cases[i].plus);
        if (!check_report(cases[i].out ? out && !strcmp(out, cases[i].out) : out == NULL,
                          __FILE__, __LINE__))
            fprintf(stderr, "http_decode(\"%s\") == %s%s%s\n", cases[i].in, out ? "\"" : "",
                    out ? out : "NULL", out ? "\"" : "");
    }
    req_release(r);
}


/* ---- the access log ----
 * Its format is what log shippers parse: pinned byte for byte here, with the time and the
 * duration (which differ every run) checked for their shape and cut out. */

/* `line` with the time's and the duration's values replaced by T and D; false when either
 * is missing or not of its shape ("2026-11-21T06:19:37.123Z", "0.042"). */
static bool log_line_shape(const char *line, char *out, size_t cap)
{
    static const char tkey[] = "{\"time\":\"", dkey[] = ",\"duration_ms\":";
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ\"";
    if (strncmp(line, tkey, sizeof(tkey) - 1) != 0)
        return false;
    const char *t = line + sizeof(tkey) - 1;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? !(t[i] >= '0' && t[i] <= '9') : t[i] != shape[i])
            return false;
    const char *d = strstr(t, dkey);
    if (!d)
        return false;
    const char *v = d + sizeof(dkey) - 1, *e = v;
    while (*e >= '0' && *e <= '9')
        e++;
    if (e == v || e[0] != '.' || !(e[1] >= '0' && e[1] <= '9') || !(e[2] >= '0' && e[2] <= '9') ||
        !(e[3] >= '0' && e[3] <= '9') || e[4] != ',')
        return false;
    snprintf(out, cap, "%sT\"%.*sD%s", tkey, (int)(v - (t + 25)), t + 25, e + 4);
    return true;
}

static void test_access_log_format(void)
{
    char path[] = "/tmp/px-test-access.XXXXXX";
    int fd = mkstemp(path);
    CHECK_OR_RETURN(fd >= 0);
    CHECK_OR_RETURN(access_log_open(path) == 0);
    client_t cl;
    client_open(&cl);
    response_t res;
    static const char *const requests[] = {
        "GET /hello HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-1\r\n\r\n",
        /* the query never reaches the log; '"' and '\' are escaped */
        "GET /n/a\\b\"c?token=secret HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-2\r\n\r\n",
        "HEAD /hello HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-3\r\n\r\n",
        "GET /n/%C3%A9%00 HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-4\r\n\r\n",
        /* refused by llhttp (as any byte that is not ASCII would be): no method, no path,
         * an id of ours, and the connection closed */
        "GET /nowhere/\x7f HTTP/1.1\r\nHost: t\r\nX-Request-Id: log-5\r\n\r\n",
    };
    static const char *const want[] = {
        "{\"time\":\"T\",\"remote\":\"-\",\"method\":\"GET\",\"path\":\"/hello\",\"status\":200,"
        "\"bytes\":145,\"duration_ms\":D,\"request_id\":\"log-1\",\"plugin\":\"host\"}",
        "{\"time\":\"T\",\"remote\":\"-\",\"method\":\"GET\",\"path\":\"/n/a\\\\b\\\"c\","
        "\"status\":200,\"bytes\":145,\"duration_ms\":D,\"request_id\":\"log-2\","
        "\"plugin\":\"host\"}",
        "{\"time\":\"T\",\"remote\":\"-\",\"method\":\"HEAD\",\"path\":\"/hello\",\"status\":200,"
        "\"bytes\":140,\"duration_ms\":D,\"request_id\":\"log-3\",\"plugin\":\"host\"}",
        "{\"time\":\"T\",\"remote\":\"-\",\"method\":\"GET\",\"path\":\"/n/%%C3%%A9%%00\","
        "\"status\":400,\"bytes\":254,\"duration_ms\":D,\"request_id\":\"log-4\","
        "\"plugin\":\"host\"}",
        "{\"time\":\"T\",\"remote\":\"-\",\"method\":\"-\",\"path\":\"-\",\"status\":400,"
        "\"bytes\":274,\"duration_ms\":D,\"request_id\":\"%s\",\"plugin\":\"host\"}",
    };
    /* want[] are formats: the last takes the id of ours */
    char last_id[80] = "";
    for (size_t i = 0; i < ARRAY_SIZE(requests); i++) {
        client_sends(&cl, requests[i]);
        if (i == 2)
            CHECK_OR_RETURN(read_response_head(&cl, &res, true));
        else
            CHECK_OR_RETURN(read_response(&cl, &res));
        const char *id = header(&res, "X-Request-Id");
        snprintf(last_id, sizeof(last_id), "%s", id ? id : "");
    }
    CHECK_EQ_INT(strlen(last_id), 20); /* ours: 8 hex digits of the worker's, 12 of a count */
    client_close(&cl);
    access_log_flush();
    access_log_open("off");
    char text[8192];
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    unlink(path);
    CHECK_OR_RETURN(n > 0);
    text[n] = '\0';
    char *save = NULL;
    size_t i = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
        char shape[1024], expected[1024];
        CHECK(log_line_shape(line, shape, sizeof(shape)));
        if (i >= ARRAY_SIZE(want))
            continue;
        snprintf(expected, sizeof(expected), want[i], last_id);
        CHECK_STR(shape, expected);
    }
    CHECK_EQ_INT(i, ARRAY_SIZE(requests));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &async_timer);

    cfg = config_new_defaults();
    cfg->http.max_header_size = 1024;
    cfg->http.max_headers = 10;
    cfg->http.max_body_size = 100;

    plugin_set_init(&set);
    plugin_host_route(&set, "GET", "/hello", h_hello, NULL);
    plugin_host_route(&set, "GET", "/n/:n", h_param, NULL);
    plugin_host_route(&set, "POST", "/echo", h_echo, NULL);
    plugin_host_route(&set, "POST", "/json", h_json, NULL);
    plugin_host_route(&set, "GET", "/query", h_query, NULL);
    plugin_host_route(&set, "GET", "/count", h_count, NULL);
    plugin_host_route(&set, "GET", "/missing-thing", h_notfound, NULL);
    plugin_host_route(&set, "GET", "/noanswer", h_noanswer, NULL);
    plugin_host_route(&set, "GET", "/async", h_async, NULL);
    plugin_host_route(&set, "GET", "/size/:n", h_size, NULL);
    worker = worker_new(&loop, cfg, &set);

    RUN(test_helpers);
    RUN(test_good_request);
    RUN(test_split_reads);
    RUN(test_obs_fold_any_split);
    RUN(test_header_block_too_large);
    RUN(test_too_many_headers);
    RUN(test_content_length_too_large);
    RUN(test_chunked_too_large);
    RUN(test_pipelined_in_order);
    RUN(test_pipelined_behind_async);
    RUN(test_client_gone_during_async);
    RUN(test_error_closes_connection);
    RUN(test_404_and_405);
    RUN(test_bad_requests);
    RUN(test_expect_continue);
    RUN(test_http10);
    RUN(test_handler_results);
    RUN(test_keepalive_requests);
    RUN(test_timeouts);
    RUN(test_peer_half_close);
    RUN(test_access_log_format);
    /* Last: when these fail they corrupt memory (UBSan, ASan or glibc then abort). */
    RUN(test_request_id_lengths);
    RUN(test_longest_response_head);

    CHECK_EQ_INT(worker->nconns, 0);
    worker_free(worker);
    plugin_set_unload(&set);
    config_free(cfg);
    uv_close((uv_handle_t *)&async_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    return check_finish();
}
