/*
 * streamkit — streams, Server-Sent Events, channels and stream tickets, for the host's
 * own tests (tests/api/test_streams.py, test_channels.py) and tests/bench/sse.sh. Never
 * enabled in production. Everything it sees is logged at info ("..."), which
 * the tests read back.
 *
 *   GET  /v1/streamkit/sse?channel=C&pattern=1&hb=MS&unsub=1 (PX_ROUTE_STREAM | PX_ROUTE_TICKET,
 *        caller optional) an SSE stream: "resume" (data: the Last-Event-ID header or
 *        ?lastEventId) when resuming, "hello" (id: <pid>.0, data: {"pid","caller"}), then
 *        "status" (data: up|down) and "message" (id: <pid>.<n>, data: the payload, event
 *        name: the channel) for channel C (default "news"); with unsub=1 it leaves the
 *        channel (px_channel_unsubscribe) on the first message and says "left"
 *   GET  /v1/streamkit/chunks?n=N&size=S   a plain stream of N pieces "piece<i>\n" padded to
 *        S bytes, then its end
 *   GET  /v1/streamkit/flood?kb=K  (PX_ROUTE_STREAM) writes K-KiB pieces until the host
 *        answers PX_EBUSY, logs how much it got out, then waits for channel "flood"
 *   GET  /v1/streamkit/misuse     a stream whose body is the return codes of calls that
 *        must fail, as JSON
 *   GET  /v1/streamkit/slow?ms=N  on_close on an ordinary request answered after a
 *        PostgreSQL pg_sleep (the close callback runs when the client leaves)
 *   POST /v1/streamkit/publish?channel=C&data=D         px_channel_publish -> 204 / 503
 *   POST /v1/streamkit/publish-txn?channel=C&data=D&rollback=1  published on commit;
 *        with hook=first (or last) a px_pg_on_commit hook publishing "hook" on C is added
 *        before (or after) the message: the hook is heard first either way
 *   POST /v1/streamkit/ticket   (caller required) {"ticket", "expiresIn"}
 *   GET  /v1/streamkit/whoami   (PX_ROUTE_TICKET, caller required) {"id", "role"}
 */
#include <panthera/panthera.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static px_plugin_t *self;

typedef struct sk_stream {
    px_req_t *req;
    px_channel_sub_t *sub;
    bool unsub_after_one; /* ?unsub=1: leave the channel after the first message */
    long n;
    bool plain;
    size_t written;
    int busy; /* PX_EBUSY answers seen */
} sk_stream_t;

static void on_close(px_req_t *req, int reason, void *ud)
{
    sk_stream_t *st = ud;
    /* Misuse on purpose: the stream is over, so a write must be refused, not crash. */
    int write_rc = px_res_stream_write(req, "late", 4);
    px_log(self, PX_LOG_INFO, "close %s reason=%d write=%d messages=%ld busy=%d",
           px_req_id(req), reason, write_rc, st ? st->n : -1L, st ? st->busy : 0);
}

static void send_event(sk_stream_t *st, const char *event, const char *data, size_t len, bool id)
{
    char idbuf[48];
    px_sse_event_t ev = PX_SSE_INIT;
    if (id) {
        snprintf(idbuf, sizeof(idbuf), "%d.%ld", (int)getpid(), st->n);
        ev.id = idbuf;
    }
    ev.event = event;
    ev.data = data;
    ev.data_len = len;
    int rc = px_res_sse_send(st->req, &ev);
    if (rc == PX_EBUSY)
        st->busy++;
}

static void on_message(px_req_t *req, const char *channel, const void *data, size_t len, void *ud)
{
    (void)req;
    sk_stream_t *st = ud;
    st->n++;
    if (st->unsub_after_one) {
        /* From inside the delivery: the host must cope. NULL is accepted too. */
        px_channel_unsubscribe(st->sub);
        px_channel_unsubscribe(NULL);
        st->sub = NULL;
        st->unsub_after_one = false;
        send_event(st, "left", channel, strlen(channel), false);
    }
    if (st->plain) {
        if (px_res_stream_write(st->req, data, len) == PX_EBUSY)
            st->busy++;
        return;
    }
    send_event(st, channel, data, len, true);
}

static void on_status(px_req_t *req, int status, void *ud)
{
    sk_stream_t *st = ud;
    const char *s = status == PX_CHANNEL_UP ? "up" : status == PX_CHANNEL_DOWN ? "down" : "?";
    px_log(self, PX_LOG_INFO, "status %s %s", px_req_id(req), s);
    if (!st->plain)
        send_event(st, "status", s, strlen(s), false);
}

static int subscribe(px_req_t *req, sk_stream_t *st, const char *fallback)
{
    const char *channel = px_req_query(req, "channel");
    const char *pattern = px_req_query(req, "pattern");
    const char *unsub = px_req_query(req, "unsub");
    st->unsub_after_one = unsub && !strcmp(unsub, "1");
    return px_channel_subscribe(req, channel ? channel : fallback,
                                pattern && !strcmp(pattern, "1") ? PX_CHANNEL_PATTERN : 0,
                                on_message, on_status, st, &st->sub);
}

static int sse(px_req_t *req, void *ud)
{
    (void)ud;
    sk_stream_t *st = px_req_alloc(req, sizeof(*st));
    memset(st, 0, sizeof(*st));
    st->req = req;
    const char *hb = px_req_query(req, "hb");
    int rc = px_res_sse_begin(req, hb ? atoll(hb) : 0);
    if (rc)
        return rc == PX_ESTATE ? PX_ASYNC : rc;
    px_req_on_close(req, on_close, st);
    const char *last = px_req_header(req, "Last-Event-ID");
    if (!last)
        last = px_req_query(req, "lastEventId");
    if (last)
        send_event(st, "resume", last, strlen(last), false);
    const char *caller = px_req_caller_id(req);
    json_t *hello = json_pack("{s:i, s:s?}", "pid", (int)getpid(), "caller", caller);
    char *text = json_dumps(hello, JSON_COMPACT);
    json_decref(hello);
    send_event(st, "hello", text, strlen(text), true);
    free(text);
    rc = subscribe(req, st, "news");
    if (rc) {
        char msg[32];
        snprintf(msg, sizeof(msg), "%d", rc);
        send_event(st, "nochannel", msg, strlen(msg), false);
    }
    px_log(self, PX_LOG_INFO, "open %s", px_req_id(req));
    return PX_ASYNC;
}

static int chunks(px_req_t *req, void *ud)
{
    (void)ud;
    const char *n_s = px_req_query(req, "n"), *size_s = px_req_query(req, "size");
    long n = n_s ? atol(n_s) : 3, size = size_s ? atol(size_s) : 0;
    int rc = px_res_stream_begin(req, 200, "text/plain");
    if (rc)
        return rc == PX_ESTATE ? PX_ASYNC : rc;
    px_req_on_close(req, on_close, NULL);
    for (long i = 1; i <= n; i++) {
        char head[32];
        int len = snprintf(head, sizeof(head), "piece%ld\n", i);
        size_t total = size > len ? (size_t)size : (size_t)len;
        char *piece = malloc(total);
        memset(piece, '.', total);
        memcpy(piece, head, (size_t)len);
        piece[total - 1] = '\n';
        px_res_stream_write(req, piece, total);
        free(piece);
    }
    px_res_stream_end(req);
    return PX_ASYNC;
}

static int flood(px_req_t *req, void *ud)
{
    (void)ud;
    const char *kb = px_req_query(req, "kb");
    size_t piece = (size_t)(kb ? atol(kb) : 16) * 1024;
    sk_stream_t *st = px_req_alloc(req, sizeof(*st));
    memset(st, 0, sizeof(*st));
    st->req = req;
    st->plain = true;
    int rc = px_res_stream_begin(req, 200, "application/octet-stream");
    if (rc)
        return rc == PX_ESTATE ? PX_ASYNC : rc;
    px_req_on_close(req, on_close, st);
    char *buf = malloc(piece);
    memset(buf, 'x', piece);
    /* Bounded: a host without back-pressure would otherwise take everything. */
    for (int i = 0; i < 100000; i++) {
        rc = px_res_stream_write(req, buf, piece);
        if (rc)
            break;
        st->written += piece;
    }
    free(buf);
    px_log(self, PX_LOG_INFO, "flood %s wrote=%zu then=%d", px_req_id(req),
           st->written, rc);
    subscribe(req, st, "flood");
    return PX_ASYNC;
}

static int misuse(px_req_t *req, void *ud)
{
    (void)ud;
    px_sse_event_t ev = PX_SSE_INIT;
    ev.data = "x";
    ev.data_len = 1;
    int before_write = px_res_stream_write(req, "x", 1);
    int before_end = px_res_stream_end(req);
    int before_sse = px_res_sse_send(req, &ev);
    int bad_status = px_res_stream_begin(req, 204, "text/plain");
    int no_fn = px_req_on_close(req, NULL, NULL);
    int bad_sub = px_channel_subscribe(req, "", 0, on_message, NULL, NULL, NULL);
    int bad_flag = px_channel_subscribe(req, "x", 0x80, on_message, NULL, NULL, NULL);
    int bad_pub = px_channel_publish(req, "", "x", 1);
    int begin = px_res_stream_begin(req, 200, "application/json");
    int again = px_res_stream_begin(req, 200, "application/json");
    int sse_again = px_res_sse_begin(req, 0);
    int json_after = px_res_json(req, 200, json_object());
    int send_after = px_res_send(req, 200, "text/plain", "x", 1);
    int error_after = px_res_error(req, 500, "internal", "x", NULL);
    int header_after = px_res_header(req, "X-Late", "1");
    int sse_on_plain = px_res_sse_send(req, &ev);
    int empty_write = px_res_stream_write(req, NULL, 0);
    int null_write = px_res_stream_write(req, NULL, 5);
    json_t *codes = json_pack(
        "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
        "s:i}",
        "before_write", before_write, "before_end", before_end, "before_sse", before_sse,
        "bad_status", bad_status, "no_fn", no_fn, "bad_sub", bad_sub, "bad_flag", bad_flag,
        "bad_pub", bad_pub, "begin", begin, "again", again, "sse_again", sse_again,
        "json_after", json_after, "send_after", send_after, "error_after", error_after,
        "header_after", header_after, "sse_on_plain", sse_on_plain, "empty_write", empty_write,
        "null_write", null_write);
    char *text = json_dumps(codes, JSON_COMPACT);
    json_decref(codes);
    px_res_stream_write(req, text, strlen(text));
    free(text);
    px_req_on_close(req, on_close, NULL);
    px_res_stream_end(req);
    return PX_ASYNC;
}

static void slept(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)res;
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_json(req, 200, json_pack("{s:b}", "slept", 1));
}

static int slow(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ms = px_req_query(req, "ms");
    char secs[32];
    snprintf(secs, sizeof(secs), "%.3f", (ms ? atof(ms) : 1000) / 1000.0);
    const char *params[] = {secs};
    px_req_on_close(req, on_close, NULL);
    int rc = px_pg_query(req, NULL, "SELECT pg_sleep($1::float8)", 1, params, slept, NULL);
    return rc ? rc : PX_ASYNC;
}

static int publish(px_req_t *req, void *ud)
{
    (void)ud;
    const char *channel = px_req_query(req, "channel"), *data = px_req_query(req, "data");
    if (!data)
        data = "";
    int rc = px_channel_publish(req, channel ? channel : "news", data, strlen(data));
    if (rc)
        return rc;
    return px_res_send(req, 204, NULL, NULL, 0);
}

static void txn_done(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_send(req, 204, NULL, NULL, 0);
}

static void hook_publish(px_req_t *req, void *ud)
{
    px_channel_publish(req, ud, "hook", 4);
}

static void txn_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    const char *channel = px_req_query(req, "channel"), *data = px_req_query(req, "data");
    const char *rollback = px_req_query(req, "rollback");
    const char *hook = px_req_query(req, "hook");
    if (!data)
        data = "";
    if (!channel)
        channel = "news";
    int rc = 0;
    if (hook && !strcmp(hook, "first"))
        rc = px_pg_on_commit(txn, hook_publish, (void *)channel);
    if (!rc)
        rc = px_channel_publish_on_commit(txn, channel, data, strlen(data));
    if (!rc && hook && !strcmp(hook, "last"))
        rc = px_pg_on_commit(txn, hook_publish, (void *)channel);
    if (rc) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_error(req, 400, "bad_request", "publish_on_commit refused", NULL);
        return;
    }
    if (rollback && !strcmp(rollback, "1"))
        px_pg_rollback(txn, txn_done, NULL);
    else
        px_pg_commit(txn, txn_done, NULL);
}

static int publish_txn(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_pg_begin(req, txn_begun, NULL);
    return rc ? rc : PX_ASYNC;
}

static int ticket(px_req_t *req, void *ud)
{
    (void)ud;
    int64_t expires = 0;
    const char *t = px_ticket_issue(req, &expires);
    if (!t)
        return px_res_error(req, 503, "unavailable", "no ticket", NULL);
    return px_res_json(req, 200, json_pack("{s:s, s:I}", "ticket", t, "expiresIn",
                                           (json_int_t)expires));
}

static int whoami(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200, json_pack("{s:s?, s:s?}", "id", px_req_caller_id(req), "role",
                                           px_req_caller_role(req)));
}

static int add(px_plugin_t *p, const char *method, const char *pattern, px_handler_fn fn,
               int auth, unsigned flags)
{
    px_route_spec_t spec = PX_ROUTE_SPEC_INIT;
    spec.method = method;
    spec.pattern = pattern;
    spec.handler = fn;
    spec.auth = auth;
    spec.flags = flags;
    return px_route_add(p, &spec);
}

static int init(px_plugin_t *p)
{
    self = p;
    const unsigned stream = PX_ROUTE_STREAM, ticketed = PX_ROUTE_TICKET;
    int rc = add(p, "GET", "/v1/streamkit/sse", sse, PX_AUTH_OPTIONAL, stream | ticketed);
    rc = rc ? rc : add(p, "GET", "/v1/streamkit/chunks", chunks, PX_AUTH_NONE, stream);
    rc = rc ? rc : add(p, "GET", "/v1/streamkit/flood", flood, PX_AUTH_NONE, stream);
    rc = rc ? rc : add(p, "GET", "/v1/streamkit/misuse", misuse, PX_AUTH_NONE, 0);
    rc = rc ? rc : add(p, "GET", "/v1/streamkit/slow", slow, PX_AUTH_NONE, 0);
    rc = rc ? rc : add(p, "POST", "/v1/streamkit/publish", publish, PX_AUTH_NONE, 0);
    rc = rc ? rc : add(p, "POST", "/v1/streamkit/publish-txn", publish_txn, PX_AUTH_NONE, 0);
    rc = rc ? rc : add(p, "POST", "/v1/streamkit/ticket", ticket, PX_AUTH_REQUIRED, 0);
    rc = rc ? rc : add(p, "GET", "/v1/streamkit/whoami", whoami, PX_AUTH_REQUIRED, ticketed);
    return rc;
}

PX_PLUGIN("streamkit", "1.0.0", init, NULL, NULL);
