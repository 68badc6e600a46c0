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

#include "log.h"
#include "metrics.h"

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
    strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    strftime(w->iso_time, sizeof(w->iso_time), "%Y-%m-%dT%H:%M:%S", &tm);
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

void worker_free(worker_t *w)
{
    if (!w)
        return;
    while (w->free_reqs) {
        px_req_t *r = w->free_reqs;
        w->free_reqs = r->next_free;
        http_req_destroy(r);
    }
    free(w->listeners);
    free(w);
}

static void listeners_set(worker_t *w, bool on);

void worker_conn_added(worker_t *w)
{
    w->nconns++;
    metrics_connection_opened();
    if (w->nconns >= w->limits->max_connections)
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
        int rc = http_conn_open(w, fd);
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

static void close_walk(uv_handle_t *h, void *arg)
{
    UNUSED(arg);
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP)
        http_conn_close(h->data);
    else
        uv_close(h, NULL);
}

static void worker_finish(worker_t *w)
{
    access_log_flush();
    uv_walk(w->loop, close_walk, NULL);
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    worker_update_clock(w);
    uint64_t now = uv_now(w->loop);
    http_expire(w, now);
    access_log_flush();
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
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    plugin_set_t plugins;
    plugin_set_init(&plugins);
    metrics_register_routes(&plugins);
    config_errors_t errs = {0};
    if (plugin_set_load(&plugins, cfg, &errs)) {
        config_errors_print(&errs);
        config_errors_free(&errs);
        plugin_set_unload(&plugins);
        return 78; /* EX_CONFIG: the master reads this as "do not retry" */
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    worker_t *w = worker_new(&loop, cfg, &plugins);
    w->listeners = xcalloc(nfds ? nfds : 1, sizeof(worker_listener_t));
    w->nlisteners = nfds;
    for (size_t i = 0; i < nfds; i++) {
        worker_listener_t *l = &w->listeners[i];
        l->fd = fds[i];
        uv_poll_init_socket(&loop, &l->poll, fds[i]);
        l->poll.data = w;
        l->active = true;
        uv_poll_start(&l->poll, UV_READABLE, on_accept);
    }
    uv_timer_init(&loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
        uv_signal_init(&loop, &w->signals[i]);
        w->signals[i].data = w;
        uv_signal_start(&w->signals[i], on_signal, sigs[i]);
    }
    w->nsignals = ARRAY_SIZE(sigs);

    if (ready_fd >= 0) {
        char ready = 'R';
        if (write(ready_fd, &ready, 1) != 1)
            log_errno(LOG_WARN, "telling the master we are ready");
        close(ready_fd);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int code = w->exit_code;
    access_log_flush();
    plugin_set_unload(&plugins);
    worker_free(w);
    uv_loop_close(&loop);
    return code;
}
