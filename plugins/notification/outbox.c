/* outbox.c — claim, send off the loop, record: the loop both senders share.
 *
 * Every worker of every host runs one sender per outbox. Each tick it claims up to
 * `concurrency` due rows in one statement (FOR UPDATE SKIP LOCKED, then
 * next_attempt_at pushed a lease ahead, attempts + 1), so two senders never hold the
 * same row; runs each on the outbox's named blocking queue (a slow relay occupies only
 * the mail queue's threads); then records the outcome. The delivery guarantee follows
 * from the order: the row is marked done only AFTER the send returned, so a crash in
 * between leaves it leased, and once the lease ends another sender sends it again —
 * at least once, and more than once only across such a crash. A transient failure
 * comes back after a backoff (doubling from retry_min to retry_max); a permanent one,
 * or any failure once the row is older than dead_after, is recorded dead. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <panthera/panthera.h>

#include "delivery.h"

struct outbox {
    px_plugin_t *self;
    const outbox_ops_t *ops;
    px_req_t *task;
    int inflight; /* claimed rows not yet recorded: no new claim until 0 */
    int stopping;
};

static void claim(outbox_t *ob);

/* Retry delay for the n-th failed attempt: retry_min doubled per attempt up to
 * retry_max, with a quarter of jitter so a crowd of rows that failed together (the
 * relay went down) does not come back in one burst. */
static int64_t backoff_ms(int attempts)
{
    int64_t d = delivery_conf.retry_min_ms;
    for (int i = 1; i < attempts && d < delivery_conf.retry_max_ms; i++)
        d *= 2;
    if (d > delivery_conf.retry_max_ms)
        d = delivery_conf.retry_max_ms;
    return d - d / 4 + (int64_t)(rand() % (int)(d / 4 + 1));
}

static void recorded(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    outbox_t *ob = ud;
    (void)task, (void)res;
    if (err)
        px_log(ob->self, PX_LOG_WARN, "%s: could not record an outcome: %s (the lease ends "
               "and the row is tried again)", ob->ops->task_name, px_pg_error_message(err));
    if (--ob->inflight == 0 && !ob->stopping)
        claim(ob);
}

static void record(outbox_t *ob, const char *id, const char *outcome, int64_t delay_ms,
                   const char *error, long status)
{
    char delay[32], st[24], dead[32];
    snprintf(delay, sizeof delay, "%" PRId64, delay_ms);
    snprintf(st, sizeof st, "%ld", status);
    snprintf(dead, sizeof dead, "%" PRId64, *ob->ops->dead_after_s);
    const char *v[] = {id, outcome, delay, error, status > 0 ? st : NULL, dead};
    if (px_pg_query(ob->task, NULL, ob->ops->finish_sql, 6, v, recorded, ob) != 0)
        recorded(ob->task, NULL, NULL, ob);
}

static void worked(px_req_t *task, int status, void *ud)
{
    outbox_job_t *job = ud;
    outbox_t *ob = job->ob;
    if (!task) {
        /* The task ended (the worker drains): the lease brings the row back. */
        ob->ops->release(job);
        return;
    }
    if (status != 0) {
        job->outcome = SMTP_TRANSIENT;
        snprintf(job->err, sizeof job->err, "the job did not run");
    }
    if (job->outcome == SMTP_OK) {
        record(ob, job->id, "ok", 0, NULL, job->status);
    } else {
        px_log(ob->self, PX_LOG_WARN, "%s: %s attempt %d failed: %s", ob->ops->task_name,
               job->id, job->attempts, job->err);
        record(ob, job->id, job->outcome == SMTP_PERMANENT ? "dead" : "retry",
               backoff_ms(job->attempts), job->err, job->status);
    }
    ob->ops->release(job);
}

static void claimed(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                    void *ud)
{
    outbox_t *ob = ud;
    ob->inflight--; /* the claim itself */
    if (err) {
        px_log(ob->self, PX_LOG_DEBUG, "%s: claim failed: %s", ob->ops->task_name,
               px_pg_error_message(err));
        return;
    }
    int n = px_pg_rows(res);
    for (int i = 0; i < n; i++) {
        const char *why = "could not prepare";
        outbox_job_t *job = ob->ops->prepare(res, i, &why);
        ob->inflight++;
        if (!job) {
            record(ob, px_pg_value(res, i, 0), "dead", 0, why, 0);
            continue;
        }
        job->ob = ob;
        if (px_work_on(task, ob->ops->queue, ob->ops->work, worked, job) != 0) {
            /* The queue is full: leave the row to its lease. */
            ob->ops->release(job);
            ob->inflight--;
        }
    }
}

static void claim(outbox_t *ob)
{
    if (ob->inflight || ob->stopping || (ob->ops->ready && !ob->ops->ready()))
        return;
    char limit[24], lease[24];
    snprintf(limit, sizeof limit, "%" PRId64, *ob->ops->concurrency);
    snprintf(lease, sizeof lease, "%" PRId64, delivery_conf.lease_s);
    const char *v[] = {limit, lease};
    ob->inflight = 1;
    if (px_pg_query(ob->task, NULL, ob->ops->claim_sql, 2, v, claimed, ob) != 0)
        ob->inflight = 0;
}

static void tick(px_req_t *task, int64_t id, void *ud)
{
    (void)task, (void)id;
    claim(ud);
}

outbox_t *outbox_start(px_plugin_t *self, const outbox_ops_t *ops)
{
    outbox_t *ob = calloc(1, sizeof *ob);
    if (!ob)
        return NULL;
    ob->self = self;
    ob->ops = ops;
    ob->task = px_task_begin(self, ops->task_name);
    if (!ob->task || px_timer_start(ob->task, (uint64_t)delivery_conf.poll_ms,
                                    (uint64_t)delivery_conf.poll_ms, tick, ob) < 0) {
        if (ob->task)
            px_task_end(ob->task, PX_EINTERNAL);
        free(ob);
        return NULL;
    }
    return ob;
}

void outbox_stop(outbox_t *ob)
{
    if (!ob)
        return;
    ob->stopping = 1;
    /* Ending the task cancels pending queries; blocking jobs still get `worked` with
     * task NULL, which frees them and leaves their rows to the lease. The outbox
     * itself must outlive those callbacks, so it is left allocated (once per worker
     * lifetime, at drain). */
    px_task_end(ob->task, 0);
}
