/*
 * work.c — blocking jobs off the event loop, in queues.
 *
 * A job (px_work, px_work_on) runs `work` on one of libuv's pool threads and `done` back
 * on the loop. Jobs are bounded per worker and per queue: each may hold a lot of memory
 * (a scrypt hash takes ~128 MiB), and a queue of slow outgoing calls (mail, webhooks)
 * must never hold back another (password hashing at login). The default queue is sized by
 * [server] blocking_jobs / blocking_queue; plugins declare named ones during init
 * (px_work_queue) with their own bounds.
 *
 * libuv has one thread pool per process, FIFO across everyone who queues on it. If it
 * had fewer threads than the queues' concurrencies add up to, a queue full of slow jobs
 * would occupy every thread and the others would wait behind it anyway; so the pool is
 * sized to that sum (plus a few for libuv's own DNS and file work) before the first job.
 * Then each queue's running jobs always have a thread of their own.
 *
 * A job that has started cannot be stopped; when its request or task ends first, its
 * done callback still runs, with req NULL, so the plugin can free what the job owns.
 * The request-side bookkeeping (req_op_t) is api_async.c's.
 */
#include "work.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "crash.h"
#include "log.h"
#include "plugin.h"
#include "tasks.h"
#include "util.h"
#include "worker.h"

/* Threads left for libuv's own uses (getaddrinfo, fs) beside the queues. */
#define POOL_SPARE 4
/* libuv's own ceiling on UV_THREADPOOL_SIZE. */
#define POOL_MAX 1024

struct work_job {
    uv_work_t uv;
    worker_t *worker;
    work_queue_t *queue;
    req_op_t *op; /* NULL once the request ended */
    px_work_fn work;
    px_work_done_fn done;
    void *userdata;
    work_job_t *next;
    bool recorded; /* `rec` names the request, for crash.c while `work` runs */
    crash_record_t rec;
};

static bool valid_name(const char *name)
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

int work_queue_declare(plugin_set_t *set, const char *owner, const char *name, int concurrency,
                       int max_waiting)
{
    if (!valid_name(name) || concurrency < 1 || concurrency > 64 || max_waiting < 0 ||
        max_waiting > 100000)
        return PX_EINVAL;
    tasks_registry_t *reg = tasks_registry(set);
    for (size_t i = 0; i < reg->nqueues; i++)
        if (!strcmp(reg->queues[i].name, name))
            return PX_EEXIST;
    reg->queues = xrealloc(reg->queues, (reg->nqueues + 1) * sizeof(*reg->queues));
    work_queue_decl_t *d = &reg->queues[reg->nqueues++];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    snprintf(d->owner, sizeof(d->owner), "%s", owner);
    d->concurrency = concurrency;
    d->max_waiting = max_waiting;
    return 0;
}

void work_queues_open(worker_t *w)
{
    const tasks_registry_t *reg = w->plugins->tasks;
    size_t n = 1 + (reg ? reg->nqueues : 0);
    w->queues = xcalloc(n, sizeof(work_queue_t));
    w->nqueues = n;
    w->queues[0].concurrency = w->cfg->blocking_jobs ? w->cfg->blocking_jobs : 1;
    w->queues[0].max_waiting = w->cfg->blocking_queue;
    size_t threads = w->queues[0].concurrency;
    for (size_t i = 1; i < n; i++) {
        const work_queue_decl_t *d = &reg->queues[i - 1];
        snprintf(w->queues[i].name, sizeof(w->queues[i].name), "%s", d->name);
        w->queues[i].concurrency = (size_t)d->concurrency;
        w->queues[i].max_waiting = (size_t)d->max_waiting;
        threads += (size_t)d->concurrency;
    }
    threads += POOL_SPARE;
    if (threads > POOL_MAX)
        threads = POOL_MAX;
    /* An operator's explicit setting wins (they may know about other pool users). */
    if (!getenv("UV_THREADPOOL_SIZE")) {
        char text[16];
        snprintf(text, sizeof(text), "%zu", threads);
        setenv("UV_THREADPOOL_SIZE", text, 1);
    }
}

bool work_busy(const worker_t *w)
{
    for (size_t i = 0; i < w->nqueues; i++)
        if (w->queues[i].running || w->queues[i].waiting)
            return true;
    return false;
}

void work_queues_free(worker_t *w)
{
    free(w->queues);
    w->queues = NULL;
    w->nqueues = 0;
}

static void job_start(work_job_t *job);

static void job_run(uv_work_t *uv)
{
    work_job_t *job = (work_job_t *)uv;
    int cell = job->recorded ? crash_job_enter(&job->rec) : -1;
    job->work(job->userdata);
    crash_job_leave(cell);
}

static void job_finish(work_job_t *job, int status)
{
    px_req_t *r = NULL;
    if (job->op) {
        r = job->op->req;
        api_op_finish(job->op);
    }
    if (r)
        crash_enter(r);
    job->done(r, status, job->userdata);
    crash_leave();
    free(job);
}

static void job_after(uv_work_t *uv, int status)
{
    work_job_t *job = (work_job_t *)uv;
    work_queue_t *q = job->queue;
    q->running--;
    job_finish(job, status == 0 ? 0 : PX_EUNAVAIL);
    /* Room for the next waiting job of the same queue. */
    while (q->head && q->running < q->concurrency) {
        work_job_t *next = q->head;
        q->head = next->next;
        if (!q->head)
            q->tail = NULL;
        q->waiting--;
        job_start(next);
    }
}

static void job_start(work_job_t *job)
{
    work_queue_t *q = job->queue;
    q->running++;
    if (uv_queue_work(job->worker->loop, &job->uv, job_run, job_after) != 0) {
        /* Cannot happen with valid arguments; answer like a stopped worker. */
        q->running--;
        job_finish(job, PX_EUNAVAIL);
    }
}

void work_detach(req_op_t *op)
{
    work_job_t *job = op->handle;
    job->op = NULL;
}

static work_queue_t *find_queue(worker_t *w, const char *name)
{
    if (!w->queues)
        work_queues_open(w); /* a worker made by tests, without worker_main */
    if (!name)
        return &w->queues[0];
    for (size_t i = 1; i < w->nqueues; i++)
        if (!strcmp(w->queues[i].name, name))
            return &w->queues[i];
    return NULL;
}

int work_submit(px_req_t *r, const char *queue, px_work_fn work, px_work_done_fn done, void *ud)
{
    worker_t *w = r->worker;
    if (!work || !done)
        return PX_EINVAL;
    work_queue_t *q = find_queue(w, queue);
    if (!q)
        return PX_ENOENT;
    if (q->running >= q->concurrency && q->waiting >= q->max_waiting)
        return PX_EUNAVAIL;
    work_job_t *job = xcalloc(1, sizeof(*job));
    job->worker = w;
    job->queue = q;
    job->work = work;
    job->done = done;
    job->userdata = ud;
    job->recorded = crash_record_of(r, &job->rec);
    job->op = api_op_new(r, API_OP_WORK);
    job->op->handle = job;
    if (q->running < q->concurrency) {
        job_start(job);
    } else {
        if (q->tail)
            q->tail->next = job;
        else
            q->head = job;
        q->tail = job;
        q->waiting++;
    }
    return 0;
}
