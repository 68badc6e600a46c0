/*
 * metrics.c — Prometheus counters across processes.
 *
 * Each worker owns one slot of a MAP_SHARED mapping the master made before forking, and
 * is its only writer, so an increment is a plain load and store (relaxed atomics keep
 * the compiler honest; no locked instruction on the request path). A reader adds up the
 * slots. A slot outlives its worker: a replacement takes a free slot and the dead
 * worker's counts stay in the sums, so counters never go backwards. Plugin names live in
 * the same mapping, appended by the master only, so every worker agrees on label ids.
 */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "http.h"
#include "util.h"

static const int status_codes[] = {100, 200, 201, 202, 204, 301, 302, 304, 400, 401, 403,
                                   404, 405, 406, 408, 409, 411, 412, 413, 414, 415, 417,
                                   422, 429, 431, 499, 500, 501, 502, 503, 504, 505};
#define NSTATUS (ARRAY_SIZE(status_codes) + 1) /* + "other" */

/* The histogram's upper bounds in nanoseconds, as requests are counted (no division by
 * 1e9 on each); /metrics shows them in seconds, ns / 1e9 being the same double as the
 * decimal literal would be. */
static const uint64_t latency_bounds_ns[] = {
    500000,    1000000,    2500000,    5000000,    10000000,   25000000,   50000000,
    100000000, 250000000,  500000000,  1000000000, 2500000000, 5000000000, 10000000000,
};
#define NBUCKETS (ARRAY_SIZE(latency_bounds_ns) + 1) /* + +Inf */

typedef struct slot {
    int64_t pid; /* 0: free */
    uint64_t requests[METRICS_MAX_PLUGINS][NSTATUS];
    uint64_t latency[NBUCKETS];
    uint64_t latency_sum_ns;
    uint64_t latency_count;
    int64_t open_connections;
    uint64_t connections_total;
    uint64_t task_runs[METRICS_MAX_TASKS];
    uint64_t task_failures[METRICS_MAX_TASKS];
    uint64_t task_duration_ns[METRICS_MAX_TASKS];
    uint64_t events[METRICS_MAX_TASKS][METRICS_EVENT_KINDS];
    uint64_t connections_shed[METRICS_SHED_COUNT];
    uint64_t channel_held[METRICS_HELD_COUNT];
    uint64_t revoked_refused[METRICS_REVOKED_COUNT];
} slot_t;

/* Task labels are added by workers, not the master (a task's name is known only when it
 * begins), so appending takes a spin lock in the mapping: rare, short, and never on the
 * path of a request. */
typedef struct task_label {
    char plugin[64];
    char name[64];
    int64_t dead_now; /* events: dead letters last counted, -1 unknown */
} task_label_t;

typedef struct shared {
    uint64_t worker_restarts;
    uint32_t nplugins;
    char plugin_names[METRICS_MAX_PLUGINS][64];
    int task_lock;
    uint32_t ntasks;
    task_label_t tasks[METRICS_MAX_TASKS];
    slot_t slots[METRICS_MAX_SLOTS];
} shared_t;

static shared_t *shm;
static slot_t *mine;
static void (*renderers[8])(buf_t *out);
static size_t nrenderers;
static uint8_t status_index[1000];

static void add(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

int metrics_init(void)
{
    if (shm)
        return 0;
    void *p = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    shm = p;
    snprintf(shm->plugin_names[0], sizeof(shm->plugin_names[0]), "host");
    shm->nplugins = 1;
    memset(status_index, NSTATUS - 1, sizeof(status_index));
    for (size_t i = 0; i < ARRAY_SIZE(status_codes); i++)
        status_index[status_codes[i]] = (uint8_t)i;
    return 0;
}

static void ensure(void)
{
    if (!shm && metrics_init() != 0)
        abort();
    if (!mine)
        mine = &shm->slots[0];
}

int metrics_plugin_id(const char *name)
{
    ensure();
    for (uint32_t i = 0; i < shm->nplugins; i++)
        if (!strcmp(shm->plugin_names[i], name))
            return (int)i;
    if (shm->nplugins == METRICS_MAX_PLUGINS)
        return 0;
    snprintf(shm->plugin_names[shm->nplugins], sizeof(shm->plugin_names[0]), "%s", name);
    __atomic_store_n(&shm->nplugins, shm->nplugins + 1, __ATOMIC_RELEASE);
    return (int)shm->nplugins - 1;
}

int metrics_task_id(const char *plugin, const char *name)
{
    ensure();
    int id = -1;
    /* Bounded: a worker killed while holding it must not stop the others for good; past
     * the bound the task simply goes uncounted. */
    long spins = 0;
    while (__atomic_exchange_n(&shm->task_lock, 1, __ATOMIC_ACQUIRE))
        if (++spins > 100000000L)
            return -1;
    for (uint32_t i = 0; i < shm->ntasks && id < 0; i++)
        if (!strcmp(shm->tasks[i].plugin, plugin) && !strcmp(shm->tasks[i].name, name))
            id = (int)i;
    if (id < 0 && shm->ntasks < METRICS_MAX_TASKS) {
        task_label_t *t = &shm->tasks[shm->ntasks];
        snprintf(t->plugin, sizeof(t->plugin), "%s", plugin);
        snprintf(t->name, sizeof(t->name), "%s", name);
        t->dead_now = -1;
        id = (int)shm->ntasks;
        __atomic_store_n(&shm->ntasks, shm->ntasks + 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&shm->task_lock, 0, __ATOMIC_RELEASE);
    return id;
}

void metrics_task(int id, int ok, uint64_t duration_ns)
{
    ensure();
    if (id < 0 || id >= METRICS_MAX_TASKS)
        return;
    add(&mine->task_runs[id], 1);
    if (!ok)
        add(&mine->task_failures[id], 1);
    add(&mine->task_duration_ns[id], duration_ns);
}

void metrics_event(int id, enum metrics_event kind, uint64_t n)
{
    ensure();
    if (id < 0 || id >= METRICS_MAX_TASKS || kind >= METRICS_EVENT_KINDS)
        return;
    add(&mine->events[id][kind], n);
}

void metrics_events_dead_now(int id, int64_t n)
{
    ensure();
    if (id >= 0 && id < METRICS_MAX_TASKS)
        __atomic_store_n(&shm->tasks[id].dead_now, n, __ATOMIC_RELAXED);
}

static void render_tasks(buf_t *b)
{
    static const char *const event_names[METRICS_EVENT_KINDS] = {
        "panthera_events_delivered_total", "panthera_events_retried_total",
        "panthera_events_dead_lettered_total"};
    uint32_t n = __atomic_load_n(&shm->ntasks, __ATOMIC_ACQUIRE);
    buf_appends(b, "# HELP panthera_task_runs_total Background tasks ended, by plugin and task.\n"
                   "# TYPE panthera_task_runs_total counter\n"
                   "# HELP panthera_task_failures_total Background tasks ended with an error.\n"
                   "# TYPE panthera_task_failures_total counter\n"
                   "# HELP panthera_task_duration_seconds_total Time background tasks ran.\n"
                   "# TYPE panthera_task_duration_seconds_total counter\n");
    for (uint32_t t = 0; t < n; t++) {
        uint64_t runs = 0, fails = 0, ns = 0;
        uint64_t ev[METRICS_EVENT_KINDS] = {0};
        for (int i = 0; i < METRICS_MAX_SLOTS; i++) {
            runs += get(&shm->slots[i].task_runs[t]);
            fails += get(&shm->slots[i].task_failures[t]);
            ns += get(&shm->slots[i].task_duration_ns[t]);
            for (int k = 0; k < METRICS_EVENT_KINDS; k++)
                ev[k] += get(&shm->slots[i].events[t][k]);
        }
        const char *pl = shm->tasks[t].plugin, *nm = shm->tasks[t].name;
        buf_printf(b, "panthera_task_runs_total{plugin=\"%s\",task=\"%s\"} %llu\n", pl, nm,
                   (unsigned long long)runs);
        buf_printf(b, "panthera_task_failures_total{plugin=\"%s\",task=\"%s\"} %llu\n", pl, nm,
                   (unsigned long long)fails);
        buf_printf(b, "panthera_task_duration_seconds_total{plugin=\"%s\",task=\"%s\"} %.6f\n",
                   pl, nm, (double)ns / 1e9);
        /* Event groups are counted under their consumer's label ("group:NAME"). */
        if (strncmp(nm, "group:", 6) != 0)
            continue;
        for (int k = 0; k < METRICS_EVENT_KINDS; k++)
            buf_printf(b, "%s{group=\"%s\"} %llu\n", event_names[k], nm + 6,
                           (unsigned long long)ev[k]);
        int64_t dead = __atomic_load_n(&shm->tasks[t].dead_now, __ATOMIC_RELAXED);
        if (dead >= 0)
            buf_printf(b, "panthera_events_dead_letters{group=\"%s\"} %lld\n", nm + 6,
                       (long long)dead);
    }
}

int metrics_slot_acquire(pid_t pid)
{
    ensure();
    for (int i = 1; i < METRICS_MAX_SLOTS; i++) {
        if (shm->slots[i].pid == 0) {
            shm->slots[i].pid = pid;
            return i;
        }
    }
    return 0; /* shared overflow slot: counts stay right, gauges get approximate */
}

void metrics_slot_release(int slot)
{
    ensure();
    if (slot <= 0 || slot >= METRICS_MAX_SLOTS)
        return;
    __atomic_store_n(&shm->slots[slot].open_connections, 0, __ATOMIC_RELAXED);
    shm->slots[slot].pid = 0;
}

void metrics_worker_restarted(void)
{
    ensure();
    add(&shm->worker_restarts, 1);
}

void metrics_attach(int slot)
{
    ensure();
    mine = &shm->slots[slot >= 0 && slot < METRICS_MAX_SLOTS ? slot : 0];
}

void metrics_request(int plugin_id, int status, uint64_t duration_ns)
{
    ensure();
    if (plugin_id < 0 || plugin_id >= METRICS_MAX_PLUGINS)
        plugin_id = 0;
    unsigned si = status >= 0 && status < 1000 ? status_index[status] : NSTATUS - 1;
    add(&mine->requests[plugin_id][si], 1);
    /* In nanoseconds: no division by 1e9 on every request. */
    size_t b = 0;
    while (b < ARRAY_SIZE(latency_bounds_ns) && duration_ns > latency_bounds_ns[b])
        b++;
    add(&mine->latency[b], 1);
    add(&mine->latency_sum_ns, duration_ns);
    add(&mine->latency_count, 1);
}

void metrics_connection_opened(void)
{
    ensure();
    add((uint64_t *)&mine->open_connections, 1);
    add(&mine->connections_total, 1);
}

void metrics_connection_closed(void)
{
    ensure();
    add((uint64_t *)&mine->open_connections, (uint64_t)-1);
}

void metrics_renderer_add(void (*fn)(buf_t *out))
{
    for (size_t i = 0; i < nrenderers; i++)
        if (renderers[i] == fn)
            return;
    if (nrenderers == ARRAY_SIZE(renderers))
        abort(); /* a fixed set of host files; more means this array must grow */
    renderers[nrenderers++] = fn;
}

void metrics_connection_shed(enum metrics_shed reason)
{
    ensure();
    add(&mine->connections_shed[reason], 1);
}

void metrics_channel_held(enum metrics_held outcome, uint64_t n)
{
    ensure();
    add(&mine->channel_held[outcome], n);
}

void metrics_revoked_refused(enum metrics_revoked credential)
{
    ensure();
    add(&mine->revoked_refused[credential], 1);
}

/* A counter with one label whose values are fixed at build time: the slots' array at
 * `field` holds one count per value. */
static void render_labelled(buf_t *b, const char *name, const char *help, const char *label,
                            const char *const *values, size_t nvalues, size_t field)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (size_t k = 0; k < nvalues; k++) {
        uint64_t sum = 0;
        for (int i = 0; i < METRICS_MAX_SLOTS; i++)
            sum += get((const uint64_t *)((const char *)&shm->slots[i] + field) + k);
        buf_printf(b, "%s{%s=\"%s\"} %llu\n", name, label, values[k], (unsigned long long)sum);
    }
}

char *metrics_render(size_t *len)
{
    ensure();
    buf_t b = {0};
    uint32_t nplugins = __atomic_load_n(&shm->nplugins, __ATOMIC_ACQUIRE);
    buf_appends(&b, "# HELP panthera_http_requests_total HTTP requests answered, by plugin and "
                    "status.\n# TYPE panthera_http_requests_total counter\n");
    for (uint32_t p = 0; p < nplugins; p++) {
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t sum = 0;
            for (int i = 0; i < METRICS_MAX_SLOTS; i++)
                sum += get(&shm->slots[i].requests[p][s]);
            if (!sum)
                continue;
            if (s < ARRAY_SIZE(status_codes))
                buf_printf(&b, "panthera_http_requests_total{plugin=\"%s\",status=\"%d\"} %llu\n",
                           shm->plugin_names[p], status_codes[s], (unsigned long long)sum);
            else
                buf_printf(&b,
                           "panthera_http_requests_total{plugin=\"%s\",status=\"other\"} %llu\n",
                           shm->plugin_names[p], (unsigned long long)sum);
        }
    }
    buf_appends(&b, "# HELP panthera_http_request_duration_seconds Time from the first byte of "
                    "a request to its response.\n"
                    "# TYPE panthera_http_request_duration_seconds histogram\n");
    uint64_t cumulative = 0, count = 0, sum_ns = 0;
    for (size_t k = 0; k < NBUCKETS; k++) {
        for (int i = 0; i < METRICS_MAX_SLOTS; i++)
            cumulative += get(&shm->slots[i].latency[k]);
        if (k < ARRAY_SIZE(latency_bounds_ns))
            buf_printf(&b, "panthera_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       (double)latency_bounds_ns[k] / 1e9, (unsigned long long)cumulative);
        else
            buf_printf(&b, "panthera_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                       (unsigned long long)cumulative);
    }
    int64_t open = 0;
    uint64_t conns = 0;
    for (int i = 0; i < METRICS_MAX_SLOTS; i++) {
        count += get(&shm->slots[i].latency_count);
        sum_ns += get(&shm->slots[i].latency_sum_ns);
        open += (int64_t)get((const uint64_t *)&shm->slots[i].open_connections);
        conns += get(&shm->slots[i].connections_total);
    }
    buf_printf(&b, "panthera_http_request_duration_seconds_sum %.6f\n", (double)sum_ns / 1e9);
    buf_printf(&b, "panthera_http_request_duration_seconds_count %llu\n",
               (unsigned long long)count);
    buf_printf(&b,
               "# HELP panthera_connections_open Client connections open now.\n"
               "# TYPE panthera_connections_open gauge\npanthera_connections_open %lld\n"
               "# HELP panthera_connections_total Client connections accepted.\n"
               "# TYPE panthera_connections_total counter\npanthera_connections_total %llu\n"
               "# HELP panthera_worker_restarts_total Workers replaced after dying.\n"
               "# TYPE panthera_worker_restarts_total counter\n"
               "panthera_worker_restarts_total %llu\n",
               (long long)open, (unsigned long long)conns,
               (unsigned long long)get(&shm->worker_restarts));
    for (size_t i = 0; i < nrenderers; i++)
        renderers[i](&b);
    render_tasks(&b);
    static const char *const shed_reasons[METRICS_SHED_COUNT] = {"idle_evicted", "per_client"};
    render_labelled(&b, "panthera_connections_shed_total",
                    "Connections closed to protect the others: idle ones at max_connections, "
                    "and over max_connections_per_client.",
                    "reason", shed_reasons, METRICS_SHED_COUNT,
                    offsetof(slot_t, connections_shed));
    static const char *const held_outcomes[METRICS_HELD_COUNT] = {"sent", "dropped"};
    render_labelled(&b, "panthera_channel_held_publishes_total",
                    "Publishes after a commit that found Redis away: held and sent once it was "
                    "back, or dropped (too many held, or the worker ended first).",
                    "outcome", held_outcomes, METRICS_HELD_COUNT, offsetof(slot_t, channel_held));
    static const char *const revoked_kinds[METRICS_REVOKED_COUNT] = {"token", "ticket"};
    render_labelled(&b, "panthera_revoked_refused_total",
                    "Requests refused with 401 because their access token or stream ticket was "
                    "revoked (px_token_revoke).",
                    "credential", revoked_kinds, METRICS_REVOKED_COUNT,
                    offsetof(slot_t, revoked_refused));
    *len = b.len;
    return b.data;
}

static int handle_metrics(px_req_t *req, void *ud)
{
    UNUSED(ud);
    size_t len;
    char *text = metrics_render(&len);
    return http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, true);
}

static int handle_healthz(px_req_t *req, void *ud)
{
    UNUSED(ud);
    static const char ok[] = "{\"status\":\"ok\"}";
    return http_respond(req, 200, "application/json; charset=utf-8", (char *)ok, sizeof(ok) - 1,
                        false);
}

void metrics_register_routes(plugin_set_t *set)
{
    plugin_host_route(set, "GET", "/metrics", handle_metrics, NULL);
    plugin_host_route(set, "GET", "/healthz", handle_healthz, NULL);
}
