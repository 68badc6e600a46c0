/*
 * worker.c — a worker process: one libuv loop that accepts, serves and times out
 * connections, and drains gracefully when told to stop.
 *
 * Accepting. The master owns the listening sockets and every worker polls the same ones.
 * We accept ourselves (a poll handle and accept4) instead of uv_listen so that a worker
 * takes a bounded batch per wake-up and leaves the rest to its siblings, and so that
 * old workers can stop accepting during a reload while the socket, and the connections
 * waiting in its backlog, stay open for the new ones.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "http_admit.h"
#include "io_loop.h"
#include "blob.h"
#include "events.h"
#include "log.h"
#include "revocation.h"
#include "crash.h"
#include "metrics.h"
#include "metrics_plugin.h"
#include "openapi.h"
#include "ratelimit.h"
#include "stream.h"
#include "channel.h"
#include "tasks.h"
#include "work.h"
#include "tls.h"

/* One accept per wake-up, as nginx without multi_accept: every worker is woken for a new
 * connection and the least busy one gets there first, which spreads connections. */
#define ACCEPT_BATCH 1
#define TICK_MS 250

void worker_update_clock(worker_t *w)
{
    time_t now = time(NULL);
    if (now == w->date_sec)
        return;
    w->date_sec = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    w->date_len = (uint8_t)strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    w->iso_len = (uint8_t)strftime(w->iso_time, sizeof(w->iso_time), "%Y-%m-%dT%H:%M:%S", &tm);
    w->iso_sec = now;
}

worker_t *worker_new(uv_loop_t *loop, const config_t *cfg, plugin_set_t *plugins)
{
    worker_t *w = xcalloc(1, sizeof(*w));
    w->loop = loop;
    w->cfg = cfg;
    w->limits = &cfg->http;
    w->plugins = plugins;
    w->router = plugins->router;
    w->accepting = true;
    w->date_sec = -1;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
        rnd = (uint32_t)getpid() ^ (uint32_t)time(NULL);
    snprintf(w->id_prefix, sizeof(w->id_prefix), "%08x", rnd);
    worker_update_clock(w);
    return w;
}

static void release_finished(worker_t *w)
{
    while (w->finished) {
        px_req_t *r = w->finished;
        w->finished = r->next_free;
        r->next_free = NULL;
        req_release(r);
    }
}

void worker_release_finished(worker_t *w)
{
    if (!w->finished)
        return;
    release_finished(w);
    /* Stopped here, or io_loop.c would owe libuv a turn for a check with nothing to do. */
    uv_check_stop(w->finish_check);
}

static void on_finish_check(uv_check_t *check)
{
    worker_t *w = check->data;
    release_finished(w);
    uv_check_stop(check);
}

void worker_finish_request(worker_t *w, px_req_t *r)
{
    if (!w->finish_check) {
        w->finish_check = xmalloc(sizeof(uv_check_t));
        uv_check_init(w->loop, w->finish_check);
        w->finish_check->data = w;
    }
    /* The check is running already while the list holds a request. */
    if (!w->finished)
        uv_check_start(w->finish_check, on_finish_check);
    r->next_free = w->finished;
    w->finished = r;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void worker_free(worker_t *w)
{
    if (!w)
        return;
    release_finished(w);
    if (w->finish_check) {
        /* Its own allocation: the close callback runs after w is gone. */
        uv_close((uv_handle_t *)w->finish_check, free_handle);
        w->finish_check = NULL;
    }
    while (w->free_reqs) {
        px_req_t *r = w->free_reqs;
        w->free_reqs = r->next_free;
        http_req_destroy(r);
    }
    ratelimit_free(w->ratelimit);
    work_queues_free(w);
    tls_server_free(w->tls);
    http_admit_free(w);
    io_loop_free(w);
    free(w->listeners);
    free(w);
}

static void listeners_set(worker_t *w, bool on);

void worker_conn_added(worker_t *w)
{
    w->nconns++;
    metrics_connection_opened();
    /* At the cap, go on accepting while an idle connection can make room (on_accept). */
    if (w->nconns >= w->limits->max_connections && !http_admit_can_make_room(w))
        listeners_set(w, false);
}

void worker_conn_removed(worker_t *w)
{
    w->nconns--;
    metrics_connection_closed();
    if (!w->draining && w->nconns < w->limits->max_connections)
        listeners_set(w, true);
}

static void on_accept(uv_poll_t *poll, int status, int events)
{
    UNUSED(events);
    worker_t *w = poll->data;
    worker_listener_t *l = (worker_listener_t *)poll;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPT_BATCH && w->accepting; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                static time_t last;
                if (time(NULL) != last) {
                    last = time(NULL);
                    log_errno(LOG_ERROR, "accept");
                }
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                       errno != ECONNABORTED) {
                log_errno(LOG_WARN, "accept");
            }
            return;
        }
        /* At the cap the listener is on only while an idle connection can make room;
         * made here, after the accept, since every worker is woken for each connection
         * and only one gets it. */
        if (w->nconns >= w->limits->max_connections)
            http_admit_make_room(w);
        int rc = http_conn_open_listener(w, fd, l->mode);
        if (rc < 0)
            log_warn("cannot adopt a connection: %s", uv_strerror(rc));
    }
}

static void listeners_set(worker_t *w, bool on)
{
    if (w->accepting == on)
        return;
    w->accepting = on;
    for (size_t i = 0; i < w->nlisteners; i++) {
        worker_listener_t *l = &w->listeners[i];
        if (!l->active)
            continue;
        if (on)
            uv_poll_start(&l->poll, UV_READABLE, on_accept);
        else
            uv_poll_stop(&l->poll);
    }
}

/* Only our own handles: the pools close theirs themselves (closing them from here would
 * close them twice). Connections are the only TCP handles we own. */
static void close_walk(uv_handle_t *h, void *arg)
{
    worker_t *w = arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h->data) {
        http_conn_close(h->data);
        return;
    }
    if (h == (uv_handle_t *)&w->tick)
        uv_close(h, NULL);
    if (w->finish_check && h == (uv_handle_t *)w->finish_check) {
        release_finished(w);
        uv_close(h, free_handle);
        w->finish_check = NULL;
    }
    for (size_t i = 0; i < w->nsignals; i++)
        if (h == (uv_handle_t *)&w->signals[i])
            uv_close(h, NULL);
    for (size_t i = 0; i < w->nlisteners; i++)
        if (h == (uv_handle_t *)&w->listeners[i].poll)
            uv_close(h, NULL);
}

static void worker_finish(worker_t *w)
{
    access_log_flush();
    /* Before the pools close: their cancelled work must not call into ended tasks. */
    events_worker_stop(w);
    revocation_worker_stop();
    tasks_worker_finish(w);
    /* The pools close their own handles; their callbacks run before uv_run returns. */
    if (w->pg) {
        pg_pool_close(w->pg, NULL, NULL);
        w->pg = NULL;
    }
    if (w->redis) {
        redis_close(w->redis, NULL, NULL);
        w->redis = NULL;
    }
    channel_hub_close(w->channels);
    w->channels = NULL;
    uv_walk(w->loop, close_walk, w);
}

/* ---- /readyz: PostgreSQL and Redis answer, each when configured ---- */

typedef struct readiness {
    px_req_t *req;
    int pending;
    const char *pg;    /* "ok", "down" or "not configured" */
    const char *redis;
} readiness_t;

static void readiness_answer(readiness_t *rd)
{
    if (--rd->pending > 0)
        return;
    bool ok = strcmp(rd->pg, "down") != 0 && strcmp(rd->redis, "down") != 0;
    json_t *body = json_pack("{s:s, s:{s:s, s:s}}", "status", ok ? "ready" : "unavailable",
                             "checks", "postgres", rd->pg, "redis", rd->redis);
    if (!ok) {
        http_add_header(rd->req, "Retry-After", "1");
        json_t *err = json_pack("{s:s, s:s}", "code", "unavailable", "message",
                                !strcmp(rd->pg, "down") && !strcmp(rd->redis, "down")
                                    ? "postgres and redis are down"
                                : !strcmp(rd->pg, "down") ? "postgres is down"
                                                          : "redis is down");
        json_object_set_new(body, "error", err);
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    http_respond(rd->req, ok ? 200 : 503, "application/json; charset=utf-8", text,
                 text ? strlen(text) : 0, true);
    free(rd);
}

static void readiness_pg(const pg_error_t *err, void *ud)
{
    readiness_t *rd = ud;
    rd->pg = err ? "down" : "ok";
    readiness_answer(rd);
}

static void readiness_redis(const redis_error_t *err, void *ud)
{
    readiness_t *rd = ud;
    rd->redis = err ? "down" : "ok";
    readiness_answer(rd);
}

static int handle_readyz(px_req_t *req, void *ud)
{
    (void)ud;
    worker_t *w = req->worker;
    readiness_t *rd = xcalloc(1, sizeof(*rd));
    rd->req = req;
    rd->pending = 1; /* released below, so an answer cannot come before both are asked */
    rd->pg = rd->redis = "not configured";
    if (w->pg) {
        rd->pending++;
        if (pg_ping(w->pg, readiness_pg, rd, NULL)) {
            rd->pending--;
            rd->pg = "down";
        }
    }
    if (w->redis) {
        rd->pending++;
        if (!redis_is_connected(w->redis) || redis_ping(w->redis, readiness_redis, rd, NULL)) {
            rd->pending--;
            rd->redis = "down";
        }
    }
    readiness_answer(rd);
    return PX_ASYNC;
}

void worker_host_routes(plugin_set_t *plugins)
{
    metrics_register_routes(plugins);
    plugin_host_route(plugins, "GET", "/readyz", handle_readyz, NULL);
    openapi_register(plugins);
}

/* Pools and scripts, from the worker's own config. Returns 0 or -1 (logged). */
int worker_services_open(worker_t *w, const config_t *cfg)
{
    if (cfg->pg.conninfo && *cfg->pg.conninfo) {
        pg_config_t pc = {.conninfo = cfg->pg.conninfo,
                          .size = (int)cfg->pg.pool_size,
                          .statement_timeout_ms = (int)cfg->pg.statement_timeout_ms,
                          .queue_max = (int)cfg->pg.queue_max,
                          .wait_timeout_ms = (int)cfg->pg.wait_timeout_ms,
                          .connect_timeout_ms = (int)cfg->pg.connect_timeout_ms};
        w->pg = pg_pool_new(w->loop, &pc);
        if (!w->pg) {
            log_error("[postgres]: cannot create the pool (check conninfo)");
            return -1;
        }
    }
    if (cfg->redis.address && *cfg->redis.address) {
        redis_config_t rc = {.address = cfg->redis.address,
                             .command_timeout_ms = (int)cfg->redis.command_timeout_ms,
                             .connect_timeout_ms = (int)cfg->redis.connect_timeout_ms,
                             .username = cfg->redis.username,
                             .password = cfg->redis.password,
                             .database = (int)cfg->redis.database};
        w->redis = redis_new(w->loop, &rc);
        if (!w->redis) {
            log_error("[redis]: cannot create the client (check address \"%s\")",
                      cfg->redis.address);
            return -1;
        }
        w->channels = channel_hub_new(w);
    }
    if (cfg->lua.dir && *cfg->lua.dir) {
        hooks_limits_t limits = {.instruction_budget = cfg->lua.instruction_budget,
                                 .memory_cap = cfg->lua.memory_limit};
        w->hooks = hooks_new(&limits);
        char err[512];
        int n = hooks_load_dir(w->hooks, cfg->lua.dir, err, sizeof(err));
        if (n < 0) {
            log_error("[lua]: %s", err);
            return -1;
        }
        log_debug("[lua]: %d scripts from %s", n, cfg->lua.dir);
    }
    /* After the pools, and after every route (/readyz included) is registered. */
    w->ratelimit = ratelimit_new(w);
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    worker_update_clock(w);
    uint64_t now = uv_now(w->loop);
    http_expire(w, now);
    stream_tick(w, now);
    access_log_flush();
    /* Stopped at the cap with every connection busy; some may have gone idle since. */
    if (!w->accepting && !w->draining && http_admit_can_make_room(w))
        listeners_set(w, true);
    if (w->draining && (w->nconns == 0 || now >= w->drain_deadline)) {
        if (w->nconns)
            log_warn("shutdown timeout: closing %zu connections that are still busy", w->nconns);
        worker_finish(w);
    }
}

static void worker_drain(worker_t *w)
{
    if (w->draining)
        return;
    w->draining = true;
    w->drain_deadline = uv_now(w->loop) + w->cfg->shutdown_timeout_ms;
    listeners_set(w, false);
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i].active) {
            uv_close((uv_handle_t *)&w->listeners[i].poll, NULL);
            w->listeners[i].active = false;
        }
    }
    http_drain(w);
    stream_drain(w);
    events_worker_stop(w); /* another worker takes the groups over now */
    revocation_worker_stop(); /* what it heard stays in force for the requests still here */
    tasks_worker_draining(w);
    log_debug("draining %zu connections", w->nconns);
}

static void on_signal(uv_signal_t *s, int signum)
{
    worker_t *w = s->data;
    switch (signum) {
    case SIGTERM:
    case SIGINT:
        worker_drain(w);
        break;
    case SIGUSR1:
        log_reopen();
        access_log_reopen();
        /* Written into the new file: what logrotate (and a test) can wait for. */
        log_info("log files reopened");
        break;
    default:
        break;
    }
}

int worker_main(const config_t *cfg, const int *fds, size_t nfds, int slot, int ready_fd)
{
    log_set_role("worker");
    /* Each worker opens its own logs from its own config: a worker of a new generation
     * (or a replacement after SIGUSR1 rotated the files) must not inherit a stale fd. */
    int rc = log_open(cfg->error_log, cfg->log_level);
    if (rc)
        log_error("cannot open error_log %s: %s", cfg->error_log, strerror(-rc));
    rc = access_log_open(cfg->access_log ? cfg->access_log : "off");
    if (rc) {
        log_error("cannot open access_log %s: %s", cfg->access_log, strerror(-rc));
        return 78;
    }
    metrics_attach(slot);
    crash_attach(slot);
    metrics_plugin_attach(slot);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    plugin_set_t plugins;
    plugin_set_init(&plugins);
    worker_host_routes(&plugins);
    config_errors_t errs = {0};
    if (plugin_set_load(&plugins, cfg, &errs)) {
        config_errors_print(&errs);
        config_errors_free(&errs);
        plugin_set_unload(&plugins);
        return 78; /* EX_CONFIG: the master reads this as "do not retry" */
    }

    tls_server_t *tls = NULL;
    for (size_t i = 0; i < nfds && !tls; i++) {
        if (cfg->listen_mode[i] != LISTEN_SSL)
            continue;
        char err[1024];
        tls = tls_server_new(cfg, err, sizeof(err));
        if (!tls) {
            log_error("tls: %s", err);
            plugin_set_unload(&plugins);
            return 78;
        }
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    worker_t *w = worker_new(&loop, cfg, &plugins);
    /* Sizes libuv's thread pool, which must happen before anything first uses it. */
    work_queues_open(w);
    w->tls = tls;
    if (worker_services_open(w, cfg)) {
        /* Close what did open, so the process ends clean (a sanitizer build would
         * otherwise report the loop as a leak and turn "bad config" into a crash). */
        if (w->pg)
            pg_pool_close(w->pg, NULL, NULL);
        if (w->redis)
            redis_close(w->redis, NULL, NULL);
        channel_hub_close(w->channels);
        w->channels = NULL;
        w->pg = NULL;
        w->redis = NULL;
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        hooks_free(w->hooks);
        worker_free(w);
        plugin_set_unload(&plugins);
        return 78;
    }
    w->listeners = xcalloc(nfds ? nfds : 1, sizeof(worker_listener_t));
    w->nlisteners = 0;
    for (size_t i = 0; i < nfds; i++) {
        if (fds[i] < 0)
            continue;
        worker_listener_t *l = &w->listeners[w->nlisteners++];
        l->mode = cfg->listen_mode[i];
        l->fd = fds[i];
        uv_poll_init_socket(&loop, &l->poll, fds[i]);
        l->poll.data = w;
        l->active = true;
        uv_poll_start(&l->poll, UV_READABLE, on_accept);
    }
    uv_timer_init(&loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    blob_worker_start(w);
    static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
        uv_signal_init(&loop, &w->signals[i]);
        w->signals[i].data = w;
        uv_signal_start(&w->signals[i], on_signal, sigs[i]);
    }
    w->nsignals = ARRAY_SIZE(sigs);
    tasks_worker_started(w);
    events_worker_start(w);
    revocation_worker_start(w);

    if (ready_fd >= 0) {
        char ready = 'R';
        if (write(ready_fd, &ready, 1) != 1)
            log_errno(LOG_WARN, "telling the master we are ready");
        close(ready_fd);
    }
    rc = io_loop_open(w);
    if (rc == 0) {
        io_loop_run(w);
    } else {
        log_warn("epoll: %s; connections are read through libuv", strerror(-rc));
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    blob_worker_stop();
    uv_run(&loop, UV_RUN_NOWAIT);
    int code = w->exit_code;
    access_log_flush();
    hooks_free(w->hooks);
    plugin_set_unload(&plugins);
    worker_free(w);
    uv_loop_close(&loop);
    return code;
}
