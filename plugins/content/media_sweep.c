/*
 * media_sweep.c — uploads no post took, removed after [plugin:content] media_unattached_ttl.
 *
 * A media belongs to the post that links it (posts.c); one that no post ever took (an
 * abandoned draft upload) would otherwise keep its blob forever. Each worker runs a
 * background task whose timer (media_sweep_interval) asks for the cluster-wide job
 * (px_task_singleton): one worker of all hosts deletes up to SWEEP_BATCH such rows older
 * than the TTL, commits, then drops their blob references one after the other, as a post
 * delete does (a blob too many on a crash, never a row without its blob). The store's own
 * sweep removes the bytes later. Rows a post is taking at that moment are locked by its
 * transaction and skipped (SKIP LOCKED); the next round sees them attached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"

#define SWEEP_BATCH "100" /* rows per round */

static px_req_t *sweep_task;
static int64_t ttl_ms, interval_ms;
static bool sweeping;

typedef struct sweep {
    int count, next;
    char (*ids)[37];
    char (*blobs)[65];
} sweep_t;

static void sweep_done(sweep_t *s)
{
    if (s) {
        free(s->ids);
        free(s->blobs);
        free(s);
    }
    sweeping = false;
}

static void unref_next(px_req_t *task, sweep_t *s);

static void unreffed(px_req_t *task, const px_blob_t *blob, int status, void *ud)
{
    sweep_t *s = ud;
    (void)blob;
    if (!task) { /* the task ended (draining): the refs left go at a later round */
        sweep_done(s);
        return;
    }
    if (status)
        px_log(content_plugin, PX_LOG_WARN, "media %s keeps its blob %s (%d)",
               s->ids[s->next - 1], s->blobs[s->next - 1], status);
    unref_next(task, s);
}

static void unref_next(px_req_t *task, sweep_t *s)
{
    while (s->next < s->count) {
        int i = s->next++;
        char ref[48];
        snprintf(ref, sizeof(ref), "media:%s", s->ids[i]);
        int rc = px_blob_unref(task, s->blobs[i], ref, unreffed, s);
        if (!rc)
            return;
        px_log(content_plugin, PX_LOG_WARN, "media %s keeps its blob %s (%d)", s->ids[i],
               s->blobs[i], rc);
    }
    if (s->count)
        px_log(content_plugin, PX_LOG_INFO, "removed %d media no post took", s->count);
    sweep_done(s);
}

static void committed(px_req_t *task, const px_pg_error_t *err, void *ud)
{
    sweep_t *s = ud;
    if (err) {
        sweep_done(s);
        return;
    }
    unref_next(task, s);
}

static void deleted(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                    void *ud)
{
    px_pg_txn_t *txn = ud;
    if (err) {
        px_log(content_plugin, PX_LOG_WARN, "media sweep: %s", px_pg_error_message(err));
        px_pg_rollback(txn, NULL, NULL);
        sweep_done(NULL);
        return;
    }
    sweep_t *s = calloc(1, sizeof(*s));
    int rows = px_pg_rows(res);
    if (!s || !(s->ids = calloc((size_t)rows + 1, sizeof(*s->ids))) ||
        !(s->blobs = calloc((size_t)rows + 1, sizeof(*s->blobs))))
        abort();
    s->count = rows;
    for (int i = 0; i < rows; i++) {
        snprintf(s->ids[i], sizeof(s->ids[i]), "%s", px_pg_value(res, i, 0));
        snprintf(s->blobs[i], sizeof(s->blobs[i]), "%s", px_pg_value(res, i, 1));
    }
    if (px_pg_commit(txn, committed, s))
        sweep_done(s);
    (void)task;
}

static void locked(px_req_t *task, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    (void)ud, (void)err;
    if (!txn) { /* another worker runs it, or PostgreSQL failed: the next tick retries */
        sweeping = false;
        return;
    }
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
    const char *v[] = {ttl};
    int rc = px_pg_txn_query(
        txn, "media_sweep",
        "DELETE FROM content_media WHERE id IN (SELECT id FROM content_media WHERE post_id "
        "IS NULL AND created_at < now() - $1::bigint * interval '1 millisecond' "
        "ORDER BY created_at LIMIT " SWEEP_BATCH " FOR UPDATE SKIP LOCKED) "
        "AND post_id IS NULL RETURNING id::text, blob_id",
        1, v, deleted, txn);
    if (rc) {
        px_pg_rollback(txn, NULL, NULL);
        sweeping = false;
    }
    (void)task;
}

static void tick(px_req_t *task, int64_t timer_id, void *ud)
{
    (void)timer_id, (void)ud;
    if (sweeping)
        return;
    sweeping = true;
    if (px_task_singleton(task, locked, NULL))
        sweeping = false;
}

static void worker_started(px_plugin_t *self, void *ud)
{
    (void)ud;
    sweep_task = px_task_begin(self, "media-sweep");
    if (sweep_task)
        px_timer_start(sweep_task, (uint64_t)interval_ms, (uint64_t)interval_ms, tick, NULL);
}

static void worker_draining(px_plugin_t *self, void *ud)
{
    (void)self, (void)ud;
    if (sweep_task)
        px_task_end(sweep_task, 0);
    sweep_task = NULL;
}

int media_sweep_init(px_plugin_t *self)
{
    px_config_declare(self, "media_unattached_ttl", "24h");
    px_config_declare(self, "media_sweep_interval", "10m");
    int rc = px_config_duration_ms(self, "media_unattached_ttl", &ttl_ms);
    if (!rc)
        rc = px_config_duration_ms(self, "media_sweep_interval", &interval_ms);
    if (!rc && (ttl_ms < 1000 || interval_ms < 1000)) {
        px_log(self, PX_LOG_ERROR, "[plugin:content] media_unattached_ttl and "
                                   "media_sweep_interval must be at least 1s");
        rc = PX_EINVAL;
    }
    if (!rc)
        rc = px_on_worker_start(self, worker_started, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, worker_draining, NULL);
    return rc;
}
