/* worker.h — one worker process: a libuv loop, the listeners it accepts on, its
 * connections and their deadline lists, its plugins and its request pool. */
#ifndef PX_WORKER_H
#define PX_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "hooks.h"
#include "pg.h"
#include "redis.h"
#include "http.h"
#include "plugin.h"

#define WORKER_READ_BUFFER (64 * 1024)

typedef struct worker_listener {
    uv_poll_t poll;
    int fd;
    bool active;
    uint8_t mode; /* enum listen_mode */
} worker_listener_t;

typedef struct worker {
    uv_loop_t *loop;
    const config_t *cfg;
    const http_limits_t *limits;
    plugin_set_t *plugins;
    const router_t *router;
    pg_pool_t *pg;          /* NULL when [postgres] has no conninfo */
    redis_client_t *redis;  /* NULL when [redis] has no address */
    hooks_t *hooks;         /* NULL when [lua] has no dir */
    struct ratelimit *ratelimit; /* NULL when [ratelimit] limits no route */
    struct tls_server *tls;      /* NULL when no listener is ssl */

    worker_listener_t *listeners;
    size_t nlisteners;
    bool accepting;

    uv_timer_t tick;
    uv_signal_t signals[4];
    size_t nsignals;

    conn_t *timer_head[CT_COUNT];
    conn_t *timer_tail[CT_COUNT];
    size_t nconns;
    struct http_admit *admit; /* per-address connection counts (http_admit.c) */

    bool draining;
    uint64_t drain_deadline;
    int exit_code;

    struct work_queue *queues; /* px_work jobs: [0] the default queue, then named (work.c) */
    size_t nqueues;
    struct task *tasks;        /* background tasks still open (tasks.c) */
    struct events_worker *events; /* event consumers of this worker (events.c), or NULL */

    struct io_loop *io; /* io_loop.c: the worker's own epoll; NULL in tests and fuzzers */
    px_req_t *finished; /* answered at once, released after the current callback */
    uv_check_t *finish_check;

    struct stream *streams;          /* stream.c: answers under way in pieces */
    struct channel_hub *channels;    /* channel.c: the Redis subscriber, NULL without Redis */

    px_req_t *free_reqs;
    size_t nfree_reqs;

    uint64_t request_counter;
    char id_prefix[16];
    char id_text[32]; /* the last id made of id_prefix and request_counter (http_response.c) */
    uint8_t id_text_len;
    char date[40];     /* "Sat, 21 Nov 2026 06:19:37 GMT" */
    char iso_time[32]; /* "2026-11-21T06:19:37" */
    int64_t date_sec;
    int64_t iso_sec; /* the second iso_time was made for */
    uint8_t date_len, iso_len; /* strlen of date and iso_time, for every response */
    /* The access log's last remote address as text (http_response.c): a keep-alive
     * client, or a proxy in front, sends many requests from one address. */
    uint8_t remote_family, remote_len;
    uint8_t remote_addr[16];
    char remote[48];

    char readbuf[WORKER_READ_BUFFER];
} worker_t;

/* Set up a worker on `loop` serving `router`, without listeners or signals (used as is
 * by tests and the fuzzer). */
worker_t *worker_new(uv_loop_t *loop, const config_t *cfg, plugin_set_t *plugins);
/* Opens what `cfg` asks the worker for: the PostgreSQL pool, the Redis client, the Lua
 * scripts, then the rate limits over the routes already registered. 0, or -1 (logged).
 * worker_main calls it; the fuzzer calls it on a worker of its own. */
int worker_services_open(worker_t *w, const config_t *cfg);
void worker_free(worker_t *w);
void worker_update_clock(worker_t *w);

/* The host's own routes (/healthz, /readyz, /metrics, /openapi.json), registered before
 * any plugin's so that a plugin claiming one of them is refused with a route clash by
 * `pantherad -t`, the migrator and the workers alike, and so that -t lists them. */
void worker_host_routes(plugin_set_t *plugins);

/* Whole life of a worker process: load plugins, accept on `fds`, tell the master it is
 * ready by writing to `ready_fd`, serve until told to stop. Returns the exit code. */
int worker_main(const config_t *cfg, const int *fds, size_t nfds, int slot, int ready_fd);

/* Connections come and go: keep accepting within max_connections. */
void worker_conn_added(worker_t *w);
void worker_conn_removed(worker_t *w);

/* A request whose response went out inside the call that sent it: release it once the
 * callback that answered has returned (its code may still read the request). */
void worker_finish_request(worker_t *w, px_req_t *req);
/* Release those requests now: io_loop.c, once its events' callbacks have returned. */
void worker_release_finished(worker_t *w);

#endif
