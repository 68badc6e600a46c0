/*
 * fuzz_http.c — bytes from the fuzzer go through the real connection code: a worker on a
 * private loop adopts one end of a socketpair (as test_http.c does), the input is written
 * into the other end, and the loop runs until the server has closed the connection.
 *
 * Everything but the connection is set up once and reused, so an input costs a socketpair
 * and a few loop turns. Each input leaves nothing behind: its connection is closed (by the
 * server, or by us after a bounded number of turns) before the function returns.
 *
 * Three endings, chosen by the input's length so a given input always takes the same one:
 * a multiple of 4 — the client half-closes after its last byte (the EOF paths); 2 more —
 * it hangs up (closes) right after its last byte, without waiting for answers still being
 * worked on (the hang-up paths); odd — the client stays silent and the deadlines fire (the
 * 408 and idle paths), then it half-closes.
 *
 * Two checks of our own: whatever the server writes starts as an HTTP/1.1 response, and
 * once the client has half-closed and read every answer the server lets the connection
 * go. Crashes, leaks and undefined behaviour are for the sanitizers to catch.
 *
 * Every input is played against two workers on the same loop. "plain" has the host's
 * defaults with small limits. "full" is configured from a file the way pantherad is, with
 * [auth] (so bearer tokens are parsed), [ratelimit] with 127.0.0.1 as a trusted proxy (its
 * connections claim that peer, so X-Forwarded-For is read), [lua] with a script that reads
 * every field of the request view, and routes that answer later: from the thread pool
 * (px_work), where a client going away takes the hang-up path.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "plugin.h"
#include "router.h"
#include "work.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

PX__HIDDEN const px_api_t *px_api = &plugin_api_table;

/* Loop turns an input may take before we close its connection ourselves. */
#define MAX_TURNS 200

typedef struct target {
    config_t *cfg;
    plugin_set_t set;
    worker_t *worker;
    bool proxy_peer; /* its connections come from 127.0.0.1, a trusted proxy */
} target_t;

static struct {
    uv_loop_t loop;
    bool ready;
    target_t plain, full;
    char dir[64]; /* the full target's config and script */
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

static int h_caller(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:s?, s:s?, s:s}", "id", px_req_caller_id(req), "role",
                                 px_req_caller_role(req), "client", px_req_client(req)));
}

static void job_nothing(void *ud)
{
    (void)ud;
}

/* req is NULL when the client went away meanwhile: the hang-up path. */
static void job_done(px_req_t *req, int status, void *ud)
{
    (void)ud;
    if (!req)
        return;
    if (status) {
        px_res_error(req, 503, "unavailable", "the job did not run", NULL);
        return;
    }
    size_t len;
    px_req_body(req, &len);
    px_res_json(req, 200, json_pack("{s:I, s:s?}", "length", (json_int_t)len, "caller",
                                    px_req_caller_id(req)));
}

static int h_later(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_work(req, job_nothing, job_done, NULL);
    return rc ? rc : PX_ASYNC;
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

static void routes(target_t *t)
{
    plugin_set_init(&t->set);
    plugin_host_route(&t->set, "GET", "/v1/hello", h_hello, NULL);
    plugin_host_route(&t->set, "POST", "/v1/echo", h_echo, NULL);
    plugin_host_route(&t->set, "GET", "/v1/p/:a", h_param, NULL);
    plugin_host_route(&t->set, "GET", "/v1/stream", h_stream, NULL);
    plugin_host_route(&t->set, "GET", "/v1/live", h_live, NULL);
}

/* Adds a route whose caller comes from a bearer token: optional, or required with a role. */
static void route_auth(target_t *t, const char *method, const char *pattern, px_handler_fn fn,
                       int auth, const char *role)
{
    plugin_host_route(&t->set, method, pattern, fn, NULL);
    route_t *r = router_last(t->set.router);
    r->auth = auth;
    snprintf(r->role, sizeof(r->role), "%s", role);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) == EOF || fclose(f)) {
        perror(path);
        abort();
    }
}

static void remove_dir(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/lua/10-view.lua", fz.dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lua", fz.dir);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/pantherad.conf", fz.dir);
    unlink(path);
    rmdir(fz.dir);
}

/* Reads every field of the request view, in both hooks; X-Veto makes it refuse. */
static const char view_script[] =
    "function on_request(req)\n"
    "    local n = 0\n"
    "    for k, v in pairs(req.headers) do n = n + #k + #v end\n"
    "    local who = req.caller and (req.caller.id .. '/' .. tostring(req.caller.role)) or '-'\n"
    "    local seen = req.method .. ' ' .. req.path .. ' ' .. tostring(req.plugin) .. ' ' ..\n"
    "        req.body_size .. ' ' .. n .. ' ' .. who\n"
    "    if req.headers['X-Veto'] then return false, 403, 'vetoed: ' .. seen end\n"
    "    return {set_headers = {['X-Seen'] = tostring(#seen)}, remove_headers = {'X-Drop'}}\n"
    "end\n"
    "function on_response(req, res)\n"
    "    return {set_headers = {['X-Status'] = tostring(res.status),\n"
    "                           ['X-Agent'] = req.headers['User-Agent']}}\n"
    "end\n";

static void setup_full(void)
{
    snprintf(fz.dir, sizeof(fz.dir), "/tmp/fuzz_http.XXXXXX");
    if (!mkdtemp(fz.dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(remove_dir);
    char lua[96], conf[4096];
    snprintf(lua, sizeof(lua), "%s/lua", fz.dir);
    if (mkdir(lua, 0700)) {
        perror(lua);
        abort();
    }
    write_file(lua, "10-view.lua", view_script);
    /* The secret signs the bearer tokens of tests/fuzz/corpus/full-*. */
    snprintf(conf, sizeof(conf),
             "[server]\nworkers = 1\nerror_log = /dev/null\n"
             "[http]\nmax_header_size = 2048\nmax_headers = 24\nmax_body_size = 512\n"
             "keepalive_requests = 8\n"
             "[auth]\ntoken_secret = fuzz-secret-0123456789-abcdefghijklmnopq\n"
             "[ratelimit]\nroute = GET /v1/hello 3/1m\nroute_me = GET /v1/me 100/1m\n"
             "trusted_proxies = 127.0.0.1, 10.0.0.0/8\n"
             "[lua]\ndir = %s\ninstruction_budget = 100000\n",
             lua);
    write_file(fz.dir, "pantherad.conf", conf);
    char path[96];
    snprintf(path, sizeof(path), "%s/pantherad.conf", fz.dir);
    config_errors_t errs = {0};
    fz.full.cfg = config_load(path, &errs);
    if (!fz.full.cfg) {
        config_errors_print(&errs);
        abort();
    }
    config_errors_free(&errs);
    routes(&fz.full);
    route_auth(&fz.full, "GET", "/v1/me", h_caller, PX_AUTH_OPTIONAL, "");
    route_auth(&fz.full, "GET", "/v1/admin", h_caller, PX_AUTH_REQUIRED, "admin");
    route_auth(&fz.full, "POST", "/v1/later", h_later, PX_AUTH_OPTIONAL, "");
    plugin_host_route(&fz.full.set, "GET", "/v1/later", h_later, NULL);
    fz.full.worker = worker_new(&fz.loop, fz.full.cfg, &fz.full.set);
    work_queues_open(fz.full.worker);
    if (worker_services_open(fz.full.worker, fz.full.cfg))
        abort();
    fz.full.proxy_peer = true;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&fz.loop);
    /* Small limits, so the fuzzer reaches each of them within its input size. */
    fz.plain.cfg = config_new_defaults();
    fz.plain.cfg->http.max_header_size = 1024;
    fz.plain.cfg->http.max_headers = 16;
    fz.plain.cfg->http.max_body_size = 512;
    fz.plain.cfg->http.keepalive_requests = 8;
    routes(&fz.plain);
    fz.plain.worker = worker_new(&fz.loop, fz.plain.cfg, &fz.plain.set);
    work_queues_open(fz.plain.worker);
    setup_full();
    fz.ready = true;
}

typedef struct peer {
    int fd;
    char first[9]; /* the first bytes the server wrote */
    size_t nfirst;
} peer_t;

/* Read and drop what the server wrote, so its writes never block. FUZZ_HTTP_SHOW=1 in the
 * environment copies it to stderr: what an input got, when replaying one by hand. */
static void drain(peer_t *p)
{
    static int show = -1;
    if (show < 0)
        show = getenv("FUZZ_HTTP_SHOW") != NULL;
    char buf[16384];
    ssize_t n;
    while ((n = read(p->fd, buf, sizeof(buf))) > 0) {
        if (show)
            fwrite(buf, 1, (size_t)n, stderr);
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

/* Turn the loop until the server has let go of every connection, or `turns` pass. With
 * `wait_jobs`, a turn while a job is on the thread pool waits for something to happen (its
 * answer, at the latest), so how fast the pool's threads run never changes what an input
 * does; a client about to hang up does not wait. */
static void turn(worker_t *w, peer_t *p, int turns, bool wait_jobs)
{
    for (int i = 0; i < turns && w->nconns > 0; i++) {
        bool jobs = work_busy(w);
        uv_run(&fz.loop, wait_jobs && jobs ? UV_RUN_ONCE : UV_RUN_NOWAIT);
        drain(p);
    }
}

/* A socketpair has no address: the connection says it comes from 127.0.0.1. */
static void claim_proxy_peer(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (h->type != UV_TCP || uv_is_closing(h))
        return;
    conn_t *c = h->data;
    if (c && c->family == 0) {
        c->family = AF_INET;
        inet_pton(AF_INET, "127.0.0.1", c->addr);
    }
}

static void play(target_t *t, const uint8_t *data, size_t size)
{
    worker_t *w = t->worker;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        perror("socketpair");
        abort();
    }
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    if (http_conn_open(w, sv[0]) != 0)
        abort();
    if (t->proxy_peer)
        uv_walk(&fz.loop, claim_proxy_peer, NULL);
    peer_t peer = {.fd = sv[1]};

    bool hang_up = size % 4 == 2;
    size_t off = 0;
    for (int i = 0; off < size && i < MAX_TURNS && w->nconns > 0; i++) {
        ssize_t n = write(peer.fd, data + off, size - off);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN)
            break; /* the server closed on us: fine */
        turn(w, &peer, 1, !hang_up);
    }
    if (size % 2) {
        turn(w, &peer, 4, true);
        if (w->nconns > 0)
            http_expire(w, uv_now(&fz.loop) + 24 * 3600 * 1000ull);
    }
    if (hang_up) {
        close(peer.fd);
        peer.fd = -1; /* drain() reads nothing more */
    } else {
        shutdown(peer.fd, SHUT_WR);
    }
    turn(w, &peer, MAX_TURNS, true);

    /* The client has said all it will and read everything (or hung up): a server that
     * still holds the connection now would hold it until a timeout, or forever. */
    bool stuck = w->nconns > 0;
    if (stuck) {
        uv_walk(&fz.loop, close_connection, NULL);
        turn(w, &peer, MAX_TURNS, true);
    }
    if (peer.fd >= 0)
        close(peer.fd);
    if (stuck) {
        fprintf(stderr, "fuzz_http: the server kept the connection open after the client "
                        "%s\n", hang_up ? "hung up" : "half-closed and read every answer");
        abort();
    }

    if (peer.nfirst > 0 && (peer.nfirst < sizeof(peer.first) ||
                            memcmp(peer.first, "HTTP/1.1 ", sizeof(peer.first)) != 0)) {
        fprintf(stderr, "fuzz_http: the server wrote something that is not a response: "
                        "\"%.*s\"\n",
                (int)peer.nfirst, peer.first);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz.ready)
        setup();
    play(&fz.plain, data, size);
    play(&fz.full, data, size);
    return 0;
}
