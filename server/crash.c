/*
 * crash.c — a worker that dies leaves a record of what it was running, and a route that
 * keeps killing workers is switched off until the next reload.
 *
 * The record is written before anything can go wrong, not by a signal handler afterwards:
 * each worker owns one slot of a MAP_SHARED table the master made before forking (the
 * same index as its metrics slot, metrics.c), and fills it in whenever plugin code is
 * about to run for a request — the handler (http.c) and every callback the SDK calls
 * for it (api_async.c) — and marks it idle when that code returns. A worker killed by a
 * signal (SIGSEGV, SIGABRT, ...) therefore leaves in its slot the plugin, route, request
 * id and path that were running, with nothing to write at the moment of death, which is
 * as async-signal-safe as it gets. A worker that dies in host code leaves an idle slot.
 *
 * The master (master.c) reads the slot when it reaps the worker, logs one line, writes
 * the lost request's access log line (status 0: the client got nothing, as with nginx
 * its connection simply closes), and counts the crash against the route. The same table
 * holds the routes: their crash counters for /metrics, and a `disabled` flag the master
 * sets after [server] crash_limit crashes within crash_window. Every worker checks the
 * flag when it matches a route (one load while nothing is disabled) and answers 503
 * `unavailable`, so a poisoned route stops costing workers while every other route keeps
 * serving. A reload (SIGHUP) clears the flags.
 *
 * Only the master writes the route table and only a worker its own slot; readers of the
 * other side's data use acquire loads on the counts that publish the entries.
 */
#include "crash.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define CRASH_MAX_ROUTES 128
#define CRASH_WINDOW_MAX 64 /* crash_limit above this counts this many */
#define CRASH_JOBS 8        /* px_work jobs recorded at once per worker */

typedef struct slot {
    uint32_t active; /* plugin code is running for the request below */
    const void *req; /* which request the strings describe (worker-local identity) */
    uint64_t req_start;
    /* Which route and plugin rec's plugin, method and pattern describe (worker-local
     * identities, fixed for the worker's life): the next request on the same route
     * copies only what is its own. */
    const void *route;
    const char *plugin;
    bool route_set;
    crash_record_t rec;
    uint32_t job_state[CRASH_JOBS]; /* 0 free, 2 being written, 1 running */
    crash_record_t jobs[CRASH_JOBS];
} slot_t;

typedef struct route_entry {
    char plugin[64];
    char method[16];
    char pattern[160];
    uint64_t crashes;
    uint32_t disabled;
    uint32_t nrecent; /* master only: the latest crash times, oldest first */
    uint64_t recent[CRASH_WINDOW_MAX];
} route_entry_t;

typedef struct shared {
    uint32_t nroutes;
    uint32_t ndisabled;
    route_entry_t routes[CRASH_MAX_ROUTES];
    slot_t slots[METRICS_MAX_SLOTS];
} shared_t;

static shared_t *shm;
static slot_t *mine;

static void render(buf_t *b);

int crash_init(void)
{
    if (shm)
        return 0;
    void *p = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    shm = p;
    metrics_renderer_add(render);
    return 0;
}

/* Only crash_attach sets `mine`: a worker without a slot of its own records nothing. */
static void ensure(void)
{
    if (!shm && crash_init() != 0)
        abort();
}

/* Bounded and NUL-terminated, without printf: this runs on every request. */
static void copyn(char *dst, size_t cap, const char *src, size_t len)
{
    if (!src)
        len = 0;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
}

static void copy(char *dst, size_t cap, const char *src)
{
    copyn(dst, cap, src, src ? strnlen(src, cap) : 0);
}

/* ---- worker side ---- */

void crash_attach(int slot)
{
    ensure();
    /* Slot 0 is the overflow slot several workers may share: a record there could name
     * another worker's request, so such a worker records nothing. */
    mine = slot > 0 && slot < METRICS_MAX_SLOTS ? &shm->slots[slot] : NULL;
    /* The slot's last owner was another process: its pointers name nothing of ours,
     * though forked from the same master they may well look like ours. */
    if (mine) {
        mine->req = NULL;
        mine->route_set = false;
    }
}

/* The host's own routes (/healthz, /metrics, ...) are no plugin's code, and must never be
 * switched off: a crash there is a host bug, logged as an ordinary death. */
static bool recorded(const px_req_t *r)
{
    /* Byte by byte, not strcmp: this runs before every handler. */
    const char *p = r->plugin;
    return p && !(p[0] == 'h' && p[1] == 'o' && p[2] == 's' && p[3] == 't' && p[4] == '\0');
}

static void record_fill_route(const px_req_t *r, crash_record_t *rec)
{
    const route_t *rt = r->route;
    copy(rec->plugin, sizeof(rec->plugin), r->plugin);
    copy(rec->method, sizeof(rec->method), rt ? router_method_name(rt->method) : "-");
    copy(rec->pattern, sizeof(rec->pattern), rt ? rt->pattern : "-");
}

/* What is the request's own: its path, id, start and peer. */
static void record_fill_request(px_req_t *r, crash_record_t *rec)
{
    copyn(rec->path, sizeof(rec->path), r->path, r->path ? r->path_len : 0);
    const char *id = http_req_id(r);
    copyn(rec->request_id, sizeof(rec->request_id), id, r->id_len);
    rec->started_ns = r->start_ns;
    const conn_t *c = r->conn;
    rec->family = c ? c->family : 0;
    if (c)
        memcpy(rec->addr, c->addr, sizeof(rec->addr));
}

void crash_enter(px_req_t *r)
{
    if (!mine || !recorded(r))
        return;
    if (mine->req != r || mine->req_start != r->start_ns) {
        if (!mine->route_set || mine->route != r->route || mine->plugin != r->plugin) {
            record_fill_route(r, &mine->rec);
            mine->route = r->route;
            mine->plugin = r->plugin;
            mine->route_set = true;
        }
        record_fill_request(r, &mine->rec);
        mine->req = r;
        mine->req_start = r->start_ns;
    }
    __atomic_store_n(&mine->active, 1, __ATOMIC_RELEASE);
}

bool crash_record_of(px_req_t *r, crash_record_t *out)
{
    if (!mine || !recorded(r))
        return false;
    record_fill_route(r, out);
    record_fill_request(r, out);
    return true;
}

int crash_job_enter(const crash_record_t *rec)
{
    if (!mine)
        return -1;
    for (int i = 0; i < CRASH_JOBS; i++) {
        uint32_t free_state = 0;
        if (!__atomic_compare_exchange_n(&mine->job_state[i], &free_state, 2, false,
                                         __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            continue;
        mine->jobs[i] = *rec;
        __atomic_store_n(&mine->job_state[i], 1, __ATOMIC_RELEASE);
        return i;
    }
    return -1;
}

void crash_job_leave(int cell)
{
    if (mine && cell >= 0 && cell < CRASH_JOBS)
        __atomic_store_n(&mine->job_state[cell], 0, __ATOMIC_RELEASE);
}

void crash_leave(void)
{
    if (mine)
        __atomic_store_n(&mine->active, 0, __ATOMIC_RELEASE);
}

bool crash_route_disabled(const route_t *route)
{
    ensure();
    if (__atomic_load_n(&shm->ndisabled, __ATOMIC_ACQUIRE) == 0)
        return false;
    uint32_t n = __atomic_load_n(&shm->nroutes, __ATOMIC_ACQUIRE);
    const char *method = router_method_name(route->method);
    for (uint32_t i = 0; i < n; i++) {
        const route_entry_t *e = &shm->routes[i];
        if (__atomic_load_n(&e->disabled, __ATOMIC_ACQUIRE) && !strcmp(e->pattern, route->pattern) &&
            !strcmp(e->method, method) && !strcmp(e->plugin, route->owner ? route->owner : ""))
            return true;
    }
    return false;
}

/* ---- master side ---- */

void crash_slot_reset(int slot)
{
    ensure();
    if (slot > 0 && slot < METRICS_MAX_SLOTS)
        memset(&shm->slots[slot], 0, sizeof(slot_t));
}

bool crash_slot_read(int slot, crash_record_t *out)
{
    ensure();
    if (slot <= 0 || slot >= METRICS_MAX_SLOTS)
        return false;
    const slot_t *s = &shm->slots[slot];
    if (__atomic_load_n(&s->active, __ATOMIC_ACQUIRE)) {
        *out = s->rec;
    } else {
        int job = -1;
        for (int i = 0; i < CRASH_JOBS && job < 0; i++)
            if (__atomic_load_n(&s->job_state[i], __ATOMIC_ACQUIRE) == 1)
                job = i;
        if (job < 0)
            return false;
        *out = s->jobs[job];
    }
    out->plugin[sizeof(out->plugin) - 1] = '\0';
    out->method[sizeof(out->method) - 1] = '\0';
    out->pattern[sizeof(out->pattern) - 1] = '\0';
    out->path[sizeof(out->path) - 1] = '\0';
    out->request_id[sizeof(out->request_id) - 1] = '\0';
    return true;
}

static route_entry_t *route_entry(const crash_record_t *rec)
{
    for (uint32_t i = 0; i < shm->nroutes; i++) {
        route_entry_t *e = &shm->routes[i];
        if (!strcmp(e->plugin, rec->plugin) && !strcmp(e->method, rec->method) &&
            !strcmp(e->pattern, rec->pattern))
            return e;
    }
    if (shm->nroutes == CRASH_MAX_ROUTES)
        return NULL;
    route_entry_t *e = &shm->routes[shm->nroutes];
    memset(e, 0, sizeof(*e));
    copy(e->plugin, sizeof(e->plugin), rec->plugin);
    copy(e->method, sizeof(e->method), rec->method);
    copy(e->pattern, sizeof(e->pattern), rec->pattern);
    __atomic_store_n(&shm->nroutes, shm->nroutes + 1, __ATOMIC_RELEASE);
    return e;
}

bool crash_count(const crash_record_t *rec, uint64_t now_ms, uint64_t limit, uint64_t window_ms)
{
    ensure();
    route_entry_t *e = route_entry(rec);
    if (!e)
        return false;
    __atomic_store_n(&e->crashes, e->crashes + 1, __ATOMIC_RELAXED);
    if (limit == 0 || e->disabled)
        return false;
    uint32_t keep = limit < CRASH_WINDOW_MAX ? (uint32_t)limit : CRASH_WINDOW_MAX;
    if (e->nrecent == keep) {
        memmove(e->recent, e->recent + 1, (keep - 1) * sizeof(e->recent[0]));
        e->nrecent--;
    }
    e->recent[e->nrecent++] = now_ms;
    if (e->nrecent < keep || now_ms - e->recent[0] > window_ms)
        return false;
    __atomic_store_n(&e->disabled, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&shm->ndisabled, shm->ndisabled + 1, __ATOMIC_RELEASE);
    return true;
}

int crash_routes_enable(void)
{
    ensure();
    int n = 0;
    for (uint32_t i = 0; i < shm->nroutes; i++) {
        route_entry_t *e = &shm->routes[i];
        n += e->disabled != 0;
        __atomic_store_n(&e->disabled, 0, __ATOMIC_RELEASE);
        e->nrecent = 0;
    }
    __atomic_store_n(&shm->ndisabled, 0, __ATOMIC_RELEASE);
    return n;
}

void crash_access_log(const crash_record_t *rec)
{
    if (!access_log_enabled())
        return;
    struct timespec now, mono;
    clock_gettime(CLOCK_REALTIME, &now);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    uint64_t mono_ns = (uint64_t)mono.tv_sec * 1000000000ull + (uint64_t)mono.tv_nsec;
    uint64_t us = mono_ns > rec->started_ns ? (mono_ns - rec->started_ns) / 1000 : 0;
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char iso[32];
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S", &tm);
    buf_t line = {0};
    buf_printf(&line, "{\"time\":\"%s.%03ldZ\",\"remote\":\"", iso, now.tv_nsec / 1000000);
    char remote[INET6_ADDRSTRLEN] = "-";
    if (rec->family == AF_INET || rec->family == AF_INET6)
        uv_inet_ntop(rec->family, rec->addr, remote, sizeof(remote));
    buf_append_json_escaped(&line, remote, strlen(remote));
    buf_appends(&line, "\",\"method\":\"");
    buf_append_json_escaped(&line, rec->method, strlen(rec->method));
    buf_appends(&line, "\",\"path\":\"");
    buf_append_json_escaped(&line, rec->path, strlen(rec->path));
    buf_printf(&line, "\",\"status\":0,\"bytes\":0,\"duration_ms\":%llu.%03llu,\"request_id\":\"",
               (unsigned long long)(us / 1000), (unsigned long long)(us % 1000));
    buf_append_json_escaped(&line, rec->request_id, strlen(rec->request_id));
    buf_appends(&line, "\",\"plugin\":\"");
    buf_append_json_escaped(&line, rec->plugin, strlen(rec->plugin));
    buf_appends(&line, "\",\"crashed\":true}\n");
    access_log_append(line.data, line.len);
    access_log_flush();
    buf_free(&line);
}

/* /metrics: crashes per route, and which routes are switched off now. */
static void render(buf_t *b)
{
    uint32_t n = __atomic_load_n(&shm->nroutes, __ATOMIC_ACQUIRE);
    buf_appends(b, "# HELP panthera_route_crashes_total Workers that died while running a "
                   "route's plugin code.\n# TYPE panthera_route_crashes_total counter\n");
    for (uint32_t i = 0; i < n; i++) {
        const route_entry_t *e = &shm->routes[i];
        buf_printf(b, "panthera_route_crashes_total{plugin=\"%s\",route=\"%s %s\"} %llu\n",
                   e->plugin, e->method, e->pattern,
                   (unsigned long long)__atomic_load_n(&e->crashes, __ATOMIC_RELAXED));
    }
    buf_appends(b, "# HELP panthera_route_disabled 1 while a route is answered 503 after "
                   "repeated crashes (until the next reload).\n"
                   "# TYPE panthera_route_disabled gauge\n");
    for (uint32_t i = 0; i < n; i++) {
        const route_entry_t *e = &shm->routes[i];
        buf_printf(b, "panthera_route_disabled{plugin=\"%s\",route=\"%s %s\"} %u\n", e->plugin,
                   e->method, e->pattern, __atomic_load_n(&e->disabled, __ATOMIC_ACQUIRE));
    }
}
