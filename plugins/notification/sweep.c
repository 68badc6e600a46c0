/*
 * sweep.c — the retention: rows older than [plugin:notification] retention are deleted,
 * in batches, by a background task in every worker every sweep_interval. Workers may
 * sweep at once: each DELETE takes the rows it finds, a row deleted by another is simply
 * not there any more. A stream resuming from a swept id gets `event: reset` (stream.c).
 */
#include <inttypes.h>
#include <stdio.h>

#include "notification.h"

#define SWEEP_BATCH "5000"

static px_req_t *sweeper;
static char retention_s[24];

static void tick(px_req_t *task, int64_t timer_id, void *ud);

static void swept(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    int64_t n = 0;
    if (err) {
        px_log(notif_plugin, PX_LOG_WARN, "retention sweep: %s", px_pg_error_message(err));
        return;
    }
    if (!px_pg_int64(res, 0, 0, &n) && n >= 5000)
        tick(task, 0, NULL); /* more than one batch was due */
}

static void tick(px_req_t *task, int64_t timer_id, void *ud)
{
    (void)timer_id, (void)ud;
    const char *values[] = {retention_s, SWEEP_BATCH};
    px_pg_query(task, "sweep", sql_sweep, 2, values, swept, NULL);
}

void sweep_start(px_plugin_t *p, void *ud)
{
    (void)ud;
    snprintf(retention_s, sizeof(retention_s), "%" PRId64, notif_cfg.retention_ms / 1000);
    sweeper = px_task_begin(p, "retention");
    if (sweeper)
        px_timer_start(sweeper, (uint64_t)notif_cfg.sweep_interval_ms,
                       (uint64_t)notif_cfg.sweep_interval_ms, tick, NULL);
}

void sweep_stop(px_plugin_t *p, void *ud)
{
    (void)p, (void)ud;
    if (sweeper)
        px_task_end(sweeper, 0);
    sweeper = NULL;
}
