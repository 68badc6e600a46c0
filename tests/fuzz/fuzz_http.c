/*
 * fuzz_http.c — bytes from the fuzzer go through the real connection code: a worker on a
 * private loop adopts one end of a socketpair (as test_http.c does), the input is written
 * into the other end, and the loop runs until the server has closed the connection.
 *
 * Everything but the connection is set up once and reused, so an input costs a socketpair
 * and a few loop turns. Each input leaves nothing behind: its connection is closed (by the
 * server, or by us after a bounded number of turns) before the function returns.
 *
 * Two endings, chosen by the input's length so a given input always takes the same one:
 * even — the client half-closes after its last byte (the EOF paths); odd — the client
 * stays silent and the deadlines fire (the 408 and idle paths), then it half-closes.
 *
 * Two checks of our own: whatever the server writes starts as an HTTP/1.1 response, and
 * once the client has half-closed and read every answer the server lets the connection
 * go. Crashes, leaks and undefined behaviour are for the sanitizers to catch.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "plugin.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

PX__HIDDEN const px_api_t *px_api = &plugin_api_table;

/* Loop turns an input may take before we close its connection ourselves. */
#define MAX_TURNS 200

static struct {
    uv_loop_t loop;
    config_t *cfg;
    plugin_set_t set;
    worker_t *worker;
} fz;

static int h_hello(px_req_t *req, void *ud)
{
    (void)ud;
    const char *name = px_req_query(req, "name");
    const char *agent = px_req_header(req, "User-Agent");
    json_t *body = json_pack("{s:s, s:s?, s:s?, s:s}", "hello", "world", "name", name, "agent",
                             agent, "id", px_req_id(req));
    return px_res_json(req, 200, body);
}

static int h_echo(px_req_t *req, void *ud)
{
    (void)ud;
    const char *ctype = px_req_header(req, "Content-Type");
    if (ctype && strstr(ctype, "json")) {
        json_t *doc;
        int rc = px_req_json(req, &doc);
        if (rc)
            return rc;
        return px_res_json(req, 200, json_incref(doc));
    }
    size_t len;
    const void *body = px_req_body(req, &len);
    px_res_header(req, "X-Echo-Length", len > 10 ? "long" : "short");
    return px_res_send(req, 201, ctype ? ctype : "application/octet-stream", body, len);
}

static int h_param(px_req_t *req, void *ud)
{
    (void)ud;
    const char *a = px_req_param(req, "a");
    if (!strcmp(a, "error"))
        return px_res_error(req, 422, "invalid", "the parameter says error",
                            json_pack("{s:s}", "a", "no errors please"));
    if (!strcmp(a, "missing"))
        return PX_ENOENT;
    return px_res_send(req, 200, "text/plain; charset=utf-8", a, strlen(a));
}

/* A stream that ends at once: pieces of the query, then its end (HTTP/1.0: a body
 * delimited by the close). */
static int h_stream(px_req_t *req, void *ud)
{
    (void)ud;
    const char *name = px_req_query(req, "name");
    int rc = px_res_stream_begin(req, 200, "text/plain");
    if (rc)
        return rc;
    for (int i = 0; i < 3; i++)
        px_res_stream_write(req, name ? name : "-", name ? strlen(name) : 1);
    return px_res_stream_end(req) ? PX_EINTERNAL : PX_ASYNC;
}

/* An SSE stream left open: the query's q as an event (any line ends), and whatever ends
 * the connection ends it. */
static int h_live(px_req_t *req, void *ud)
{
    (void)ud;
    const char *q = px_req_query(req, "q");
    int rc = px_res_sse_begin(req, 1);
    if (rc)
        return rc;
    px_sse_event_t ev = PX_SSE_INIT;
    ev.id = px_req_query(req, "id");
    ev.event = "q";
    ev.data = q;
    ev.data_len = q ? strlen(q) : 0;
    px_res_sse_send(req, &ev);
    px_res_sse_comment(req, px_req_query(req, "c"));
    return PX_ASYNC;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&fz.loop);
    /* Small limits, so the fuzzer reaches each of them within its input size. */
    fz.cfg = config_new_defaults();
    fz.cfg->http.max_header_size = 1024;
    fz.cfg->http.max_headers = 16;
    fz.cfg->http.max_body_size = 512;
    fz.cfg->http.keepalive_requests = 8;
    plugin_set_init(&fz.set);
    plugin_host_route(&fz.set, "GET", "/v1/hello", h_hello, NULL);
    plugin_host_route(&fz.set, "POST", "/v1/echo", h_echo, NULL);
    plugin_host_route(&fz.set, "GET", "/v1/p/:a", h_param, NULL);
    plugin_host_route(&fz.set, "GET", "/v1/stream", h_stream, NULL);
    plugin_host_route(&fz.set, "GET", "/v1/live", h_live, NULL);
    fz.worker = worker_new(&fz.loop, fz.cfg, &fz.set);
}

typedef struct peer {
    int fd;
    char first[9]; /* the first bytes the server wrote */
    size_t nfirst;
} peer_t;

/* Read and drop what the server wrote, so its writes never block. */
static void drain(peer_t *p)
{
    char buf[16384];
    ssize_t n;
    while ((n = read(p->fd, buf, sizeof(buf))) > 0) {
        size_t take = sizeof(p->first) - p->nfirst;
        if (take > (size_t)n)
            take = (size_t)n;
        memcpy(p->first + p->nfirst, buf, take);
        p->nfirst += take;
    }
}

static void close_connection(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (h->type == UV_TCP && !uv_is_closing(h))
        http_conn_close(h->data);
}

/* Turn the loop until the server has let go of every connection, or `turns` pass. */
static void turn(peer_t *p, int turns)
{
    for (int i = 0; i < turns && fz.worker->nconns > 0; i++) {
        uv_run(&fz.loop, UV_RUN_NOWAIT);
        drain(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz.worker)
        setup();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        perror("socketpair");
        abort();
    }
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    if (http_conn_open(fz.worker, sv[0]) != 0)
        abort();
    peer_t peer = {.fd = sv[1]};

    size_t off = 0;
    for (int i = 0; off < size && i < MAX_TURNS && fz.worker->nconns > 0; i++) {
        ssize_t n = write(peer.fd, data + off, size - off);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN)
            break; /* the server closed on us: fine */
        turn(&peer, 1);
    }
    if (size % 2) {
        turn(&peer, 4);
        if (fz.worker->nconns > 0)
            http_expire(fz.worker, uv_now(&fz.loop) + 24 * 3600 * 1000ull);
    }
    shutdown(peer.fd, SHUT_WR);
    turn(&peer, MAX_TURNS);

    /* The client has said all it will and read everything: a server that still holds
     * the connection now would hold it until a timeout, or forever. */
    bool stuck = fz.worker->nconns > 0;
    if (stuck) {
        uv_walk(&fz.loop, close_connection, NULL);
        turn(&peer, MAX_TURNS);
    }
    close(peer.fd);
    if (stuck) {
        fprintf(stderr, "fuzz_http: the server kept the connection open after the client "
                        "half-closed and read every answer\n");
        abort();
    }

    if (peer.nfirst > 0 && (peer.nfirst < sizeof(peer.first) ||
                            memcmp(peer.first, "HTTP/1.1 ", sizeof(peer.first)) != 0)) {
        fprintf(stderr, "fuzz_http: the server wrote something that is not a response: "
                        "\"%.*s\"\n",
                (int)peer.nfirst, peer.first);
        abort();
    }
    return 0;
}
