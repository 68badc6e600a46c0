/*
 * release.c — drops the blob references of deleted attachments.
 *
 * A blob reference lives in the host's blob store, not in PostgreSQL, so it cannot go in
 * the transaction that deletes its row. Instead that transaction leaves a row in
 * task_blob_releases (a trigger of migrations/004 does, for every deleted attachment:
 * by DELETE /v1/attachments/{id}, or with its task or project through ON DELETE
 * CASCADE), and this loop, a background task in every worker, drops the references
 * those rows name and then the rows. Once no reference is left the host's sweep removes
 * the blob. Dropping a reference twice is harmless, so a crash between the two steps only
 * repeats work; FOR UPDATE SKIP LOCKED keeps two workers (or hosts) off the same rows.
 *
 * It runs every [plugin:task] release_interval, and at once after a request that deleted
 * attachments committed (task_release_kick), so a deletion's blobs go within moments.
 */
#include <stdio.h>
#include <string.h>

#include "task.h"

#define BATCH 64

static struct {
    px_req_t *task;   /* this worker's release task, NULL when there is none */
    bool running;     /* a run is under way ... */
    bool again;       /* ... and another was asked for meanwhile */
    px_pg_txn_t *txn;
    int rows, next;   /* the batch and the row being released */
    char ids[BATCH][24], blobs[BATCH][65], refs[BATCH][48];
} rel;

uint64_t task_release_interval_ms;

static void run(px_req_t *task, int64_t timer, void *ud);

static void finished(bool full)
{
    rel.running = false;
    rel.txn = NULL;
    if ((full || rel.again) && rel.task) {
        rel.again = false;
        px_timer_start(rel.task, 0, 0, run, NULL);
    }
}

static void failed(const char *what)
{
    px_log(task_plugin, PX_LOG_WARN, "attachment release: %s; it runs again later", what);
    if (rel.txn)
        px_pg_rollback(rel.txn, NULL, NULL);
    rel.again = false;
    finished(false);
}

static void committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (!req)
        return;
    rel.txn = NULL;
    if (err) {
        failed("the commit failed");
        return;
    }
    finished(rel.rows == BATCH);
}

static void done_deleted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                         void *ud)
{
    (void)res;
    (void)ud;
    if (!req)
        return;
    if (err) {
        failed("deleting released rows failed");
        return;
    }
    if (px_pg_commit(rel.txn, committed, NULL))
        failed("the commit could not be queued");
}

static void release_next(void);

static void unreffed(px_req_t *req, const px_blob_t *blob, int status, void *ud)
{
    (void)blob;
    (void)ud;
    if (!req)
        return;
    if (status) {
        failed("the blob store refused to drop a reference");
        return;
    }
    rel.next++;
    release_next();
}

static void release_next(void)
{
    if (rel.next < rel.rows) {
        if (px_blob_unref(rel.task, rel.blobs[rel.next], rel.refs[rel.next], unreffed, NULL))
            failed("the blob store is busy");
        return;
    }
    /* "{1,2,3}": the ids are digits only. */
    char list[BATCH * 24 + 3];
    size_t n = 0;
    list[n++] = '{';
    for (int i = 0; i < rel.rows; i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? "," : "", rel.ids[i]);
    snprintf(list + n, sizeof(list) - n, "}");
    const char *values[] = {list};
    if (px_pg_txn_query(rel.txn, "release_done", sql_release_done, 1, values, done_deleted,
                        NULL))
        failed("a query could not be queued");
}

static void batch(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (!req)
        return;
    if (err) {
        failed("reading the rows to release failed");
        return;
    }
    rel.rows = px_pg_rows(res);
    rel.next = 0;
    for (int i = 0; i < rel.rows; i++) {
        snprintf(rel.ids[i], sizeof(rel.ids[i]), "%s", px_pg_value(res, i, 0));
        snprintf(rel.blobs[i], sizeof(rel.blobs[i]), "%s", px_pg_value(res, i, 1));
        snprintf(rel.refs[i], sizeof(rel.refs[i]), "%s", px_pg_value(res, i, 2));
    }
    if (!rel.rows) {
        px_pg_rollback(rel.txn, NULL, NULL);
        finished(false);
        return;
    }
    release_next();
}

static void began(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (!req)
        return;
    if (err) {
        failed("PostgreSQL is unavailable");
        return;
    }
    rel.txn = txn;
    if (px_pg_txn_query(txn, "release_batch", sql_release_batch, 0, NULL, batch, NULL))
        failed("a query could not be queued");
}

static void run(px_req_t *task, int64_t timer, void *ud)
{
    (void)timer;
    (void)ud;
    if (rel.running) {
        rel.again = true;
        return;
    }
    rel.running = true;
    if (px_pg_begin(task, began, NULL)) {
        rel.running = false;
        px_log(task_plugin, PX_LOG_WARN, "attachment release: no transaction; later");
    }
}

void task_release_kick(void)
{
    if (!rel.task)
        return;
    if (rel.running)
        rel.again = true;
    else
        px_timer_start(rel.task, 0, 0, run, NULL);
}

void task_release_start(px_plugin_t *plugin, void *ud)
{
    (void)ud;
    memset(&rel, 0, sizeof(rel));
    rel.task = px_task_begin(plugin, "task.attachment_release");
    if (!rel.task) {
        px_log(plugin, PX_LOG_ERROR, "attachment release: the background task did not start");
        return;
    }
    /* A first run soon after start picks up what a crash or a stop left behind. */
    px_timer_start(rel.task, 1000, task_release_interval_ms, run, NULL);
}

void task_release_stop(px_plugin_t *plugin, void *ud)
{
    (void)plugin;
    (void)ud;
    if (rel.task)
        px_task_end(rel.task, 0);
    rel.task = NULL;
}
