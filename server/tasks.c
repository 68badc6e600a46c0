/*
 * tasks.c — work with no client waiting: functions run at a worker's start and drain,
 * background tasks, and timers owned by a request or a task.
 *
 * A task is a px_req_t with no connection and `task` set. Everything api_async.c does for
 * a request — recording each pool operation on it, cancelling what is pending when it
 * ends, rolling back its open transactions, detaching its blocking jobs — therefore works
 * for a task unchanged, and a plugin's PostgreSQL, Redis and job code takes either. What a
 * task cannot do is answer: http_respond and http_add_header refuse it (PX_ESTATE). The
 * explicit marker keeps "a task" apart from "a request whose client hung up" (conn NULL
 * as well), which must still run to its end and be logged as 499.
 *
 * A task lives until px_task_end; the worker keeps the open ones in a list so that those
 * a plugin forgets are ended (and counted as failures) when the worker exits, instead of
 * keeping the loop alive with their timers. Ending is deferred like a finished request
 * (worker_finish_request) because it is often called from the task's own callback.
 *
 * Timers belong to a request or a task and die with it: a repeating timer must never
 * outlive the request its userdata points into. The id (not a pointer) is what a plugin
 * keeps, so stopping a timer that already fired is a clean PX_ENOENT, not a use after
 * free. A request that has answered refuses new timers, and a timer that fires after its
 * owner answered (the write may still be in flight) is dropped without running.
 *
 * Singleton jobs ride on a transaction-scoped advisory lock (pg_try_advisory_xact_lock):
 * it needs no table and no clean-up, and it is released by PostgreSQL itself when the
 * transaction ends or the worker's connection dies, so a crashed holder never blocks the
 * cluster. Its guarantee is mutual exclusion while the transaction is open; "once per
 * period" is the job's own row, read and written in that same transaction.
 */
#include "tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "util.h"
#include "worker.h"

struct task {
    px_req_t *req;
    struct task *next;
    struct task *prev;
    int metrics_id;
    char name[64];
    char plugin[64];
};

typedef struct req_timer {
    uv_timer_t uv;
    px_req_t *owner;
    int64_t id;
    uint64_t repeat_ms;
    px_timer_fn fn;
    void *userdata;
    struct req_timer *next;
} req_timer_t;

/* One worker per process: the one whose pools are up, NULL before (init, -t, master). */
static worker_t *running;
static int64_t timer_ids;
static uint64_t task_ids;

/* ---- registration during init ---- */

tasks_registry_t *tasks_registry(plugin_set_t *set)
{
    if (!set->tasks)
        set->tasks = xcalloc(1, sizeof(tasks_registry_t));
    return set->tasks;
}

void tasks_registry_free(plugin_set_t *set)
{
    tasks_registry_t *reg = set->tasks;
    if (!reg)
        return;
    free(reg->start);
    free(reg->stop);
    free(reg->queues);
    free(reg);
    set->tasks = NULL;
}

static int add_hook(px_plugin_t *p, bool start, px_worker_fn fn, void *ud)
{
    if (p->set->registering != p)
        return PX_ESTATE;
    if (!fn)
        return PX_EINVAL;
    tasks_registry_t *reg = tasks_registry(p->set);
    tasks_hook_t **list = start ? &reg->start : &reg->stop;
    size_t *n = start ? &reg->nstart : &reg->nstop;
    *list = xrealloc(*list, (*n + 1) * sizeof(tasks_hook_t));
    (*list)[(*n)++] = (tasks_hook_t){.plugin = p, .fn = fn, .userdata = ud};
    return 0;
}

int api_on_worker_start(px_plugin_t *p, px_worker_fn fn, void *ud)
{
    return add_hook(p, true, fn, ud);
}

int api_on_worker_stop(px_plugin_t *p, px_worker_fn fn, void *ud)
{
    return add_hook(p, false, fn, ud);
}

int api_work_queue(px_plugin_t *p, const char *name, int concurrency, int max_waiting)
{
    if (p->set->registering != p)
        return PX_ESTATE;
    return work_queue_declare(p->set, p->name, name, concurrency, max_waiting);
}

int api_work_on(px_req_t *r, const char *queue, px_work_fn work, px_work_done_fn done, void *ud)
{
    return work_submit(r, queue, work, done, ud);
}

/* ---- the worker's life ---- */

void tasks_worker_started(worker_t *w)
{
    running = w;
    const tasks_registry_t *reg = w->plugins->tasks;
    for (size_t i = 0; reg && i < reg->nstart; i++)
        reg->start[i].fn(reg->start[i].plugin, reg->start[i].userdata);
}

void tasks_worker_draining(worker_t *w)
{
    const tasks_registry_t *reg = w->plugins->tasks;
    for (size_t i = 0; reg && i < reg->nstop; i++)
        reg->stop[i].fn(reg->stop[i].plugin, reg->stop[i].userdata);
}

void tasks_worker_finish(worker_t *w)
{
    while (w->tasks) {
        log_warn("task \"%s\" of plugin \"%s\" was still open when the worker stopped",
                 w->tasks->name, w->tasks->plugin);
        api_task_end(w->tasks->req, PX_EUNAVAIL);
    }
    if (running == w)
        running = NULL;
}

/* ---- tasks ---- */

static bool valid_task_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == ':'))
            return false;
    }
    return true;
}

px_req_t *tasks_begin(worker_t *w, const char *plugin, const char *name)
{
    if (!w || w->draining || !valid_task_name(name))
        return NULL;
    struct task *t = xcalloc(1, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(t->plugin, sizeof(t->plugin), "%s", plugin);
    t->metrics_id = metrics_task_id(plugin, name);
    px_req_t *r = req_acquire(w, NULL);
    t->req = r;
    r->task = t;
    r->plugin = t->plugin;
    r->plugin_metrics_id = metrics_plugin_id(plugin);
    snprintf(r->id, sizeof(r->id), "task-%s-%llu", w->id_prefix, (unsigned long long)++task_ids);
    t->next = w->tasks;
    if (w->tasks)
        w->tasks->prev = t;
    w->tasks = t;
    return r;
}

px_req_t *api_task_begin(px_plugin_t *p, const char *name)
{
    if (!running) {
        log_error("plugin \"%s\": px_task_begin(\"%s\") before the worker runs (use "
                  "px_on_worker_start)",
                  p->name, name ? name : "?");
        return NULL;
    }
    if (!valid_task_name(name)) {
        log_error("plugin \"%s\": px_task_begin: invalid task name \"%s\"", p->name,
                  name ? name : "(null)");
        return NULL;
    }
    return tasks_begin(running, p->name, name);
}

int api_task_end(px_req_t *r, int status)
{
    if (!r || !r->task)
        return PX_ESTATE;
    struct task *t = r->task;
    worker_t *w = r->worker;
    metrics_task(t->metrics_id, status >= 0, uv_hrtime() - r->start_ns);
    if (t->prev)
        t->prev->next = t->next;
    else
        w->tasks = t->next;
    if (t->next)
        t->next->prev = t->prev;
    api_req_cancel_work(r);
    /* Kept apart from a client's request until released, and answering stays refused. */
    r->responded = true;
    r->plugin = "host";
    free(t);
    r->task = NULL;
    worker_finish_request(w, r);
    return 0;
}

int api_req_is_task(px_req_t *r)
{
    return r && r->task ? 1 : 0;
}

/* ---- timers ---- */

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void timer_unlink(req_timer_t *t)
{
    for (req_timer_t **pp = &t->owner->timers; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            return;
        }
    }
}

static void timer_fire(uv_timer_t *uv)
{
    req_timer_t *t = uv->data;
    px_req_t *owner = t->owner;
    if (owner->responded) {
        timer_unlink(t);
        uv_close((uv_handle_t *)uv, timer_closed);
        return;
    }
    if (!t->repeat_ms) {
        /* Gone once it runs: the callback may end the owner, which then will not find
         * it, and may not stop it either (PX_ENOENT). Closed after, freed later. */
        timer_unlink(t);
        t->fn(owner, t->id, t->userdata);
        uv_close((uv_handle_t *)uv, timer_closed);
        return;
    }
    t->fn(owner, t->id, t->userdata);
}

int64_t api_timer_start(px_req_t *r, uint64_t delay_ms, uint64_t repeat_ms, px_timer_fn fn,
                        void *ud)
{
    if (!r || !fn)
        return PX_EINVAL;
    if (r->responded)
        return PX_ESTATE;
    req_timer_t *t = xcalloc(1, sizeof(*t));
    t->owner = r;
    t->id = ++timer_ids;
    t->repeat_ms = repeat_ms;
    t->fn = fn;
    t->userdata = ud;
    uv_timer_init(r->worker->loop, &t->uv);
    t->uv.data = t;
    uv_timer_start(&t->uv, timer_fire, delay_ms, repeat_ms);
    t->next = r->timers;
    r->timers = t;
    return t->id;
}

int api_timer_stop(px_req_t *r, int64_t id)
{
    if (!r)
        return PX_EINVAL;
    for (req_timer_t *t = r->timers; t; t = t->next) {
        if (t->id == id) {
            timer_unlink(t);
            uv_timer_stop(&t->uv);
            uv_close((uv_handle_t *)&t->uv, timer_closed);
            return 0;
        }
    }
    return PX_ENOENT;
}

void tasks_req_ending(px_req_t *r)
{
    while (r->timers) {
        req_timer_t *t = r->timers;
        r->timers = t->next;
        uv_timer_stop(&t->uv);
        uv_close((uv_handle_t *)&t->uv, timer_closed);
    }
}

/* ---- singleton jobs ---- */

typedef struct singleton {
    px_pg_txn_fn cb;
    void *userdata;
    px_pg_txn_t *txn;
} singleton_t;

static void singleton_locked(px_req_t *r, const px_pg_result_t *res, const px_pg_error_t *err,
                             void *ud)
{
    singleton_t *s = ud;
    if (err) {
        api_pg_rollback(s->txn, NULL, NULL);
        s->cb(r, NULL, err, s->userdata);
        return;
    }
    const char *got = api_pg_value(res, 0, 0);
    if (got && !strcmp(got, "t")) {
        s->cb(r, s->txn, NULL, s->userdata);
        return;
    }
    api_pg_rollback(s->txn, NULL, NULL);
    s->cb(r, NULL, NULL, s->userdata);
}

static void singleton_begun(px_req_t *r, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    singleton_t *s = ud;
    if (err) {
        s->cb(r, NULL, err, s->userdata);
        return;
    }
    s->txn = txn;
    /* One key per plugin and task name, in its own namespace ("px-singleton"). */
    const char *params[] = {r->task->plugin, r->task->name};
    int rc = api_pg_txn_query(txn, "px_task_singleton",
                              "SELECT pg_try_advisory_xact_lock(hashtextextended("
                              "'px-singleton' || chr(10) || $1 || chr(10) || $2, 0))",
                              2, params, singleton_locked, s);
    if (rc) {
        api_pg_rollback(txn, NULL, NULL);
        log_error("task \"%s\": cannot ask for its singleton lock (%d)", r->task->name, rc);
    }
}

int api_task_singleton(px_req_t *r, px_pg_txn_fn cb, void *ud)
{
    if (!r || !r->task || !cb)
        return PX_EINVAL;
    if (!r->worker->pg)
        return PX_EUNAVAIL;
    singleton_t *s = arena_alloc(&r->arena, sizeof(*s));
    s->cb = cb;
    s->userdata = ud;
    s->txn = NULL;
    return api_pg_begin(r, singleton_begun, s);
}
