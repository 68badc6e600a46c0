/*
 * consumer.c — the history. One consumer group ("reporting") takes every event and hands
 * those of the task, content and user plugins to reporting_apply (001_log.sql) in the
 * consumer's transaction: the host records there that the group is done with the event,
 * so the transition, the day's counts and the cache generation are written exactly once
 * per event, whatever the redeliveries. The transition's time is the event's own time
 * (when the change committed), never the moment the consumer got to it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reporting.h"

static void applied(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                    void *ud)
{
    const px_event_t *ev = ud;
    (void)task;
    (void)res;
    if (err) {
        px_log(reporting_plugin, PX_LOG_WARN, "event %lld (%s) not recorded: %s",
               (long long)px_event_id(ev), px_event_type(ev), px_pg_error_message(err));
        px_event_retry(ev, 1000, px_pg_error_message(err));
        return;
    }
    px_event_ack(ev);
}

static bool wanted(const char *type)
{
    return !strncmp(type, "task.", 5) || !strncmp(type, "project.", 8) ||
           !strcmp(type, "user.registered") || !strcmp(type, "post.published") ||
           !strcmp(type, "post.commented");
}

static void on_event(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)ud;
    const char *type = px_event_type(ev);
    if (!wanted(type)) {
        px_event_ack(ev);
        return;
    }
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)px_event_id(ev));
    char *payload = json_dumps(px_event_payload(ev), JSON_COMPACT);
    const char *values[] = {id, type, px_event_time(ev), payload ? payload : "{}"};
    int rc = px_pg_txn_query(txn, "apply", sql_apply, 4, values, applied, (void *)ev);
    free(payload);
    (void)task;
    if (rc)
        px_event_retry(ev, 1000, "could not queue the statement");
}

int consumer_init(px_plugin_t *self)
{
    int rc = px_event_subscribe(self, "reporting", "*", on_event, NULL);
    /* A transaction per event: reporting_apply updates the project's row and the day's
     * counts in the order events come, and under a batch those row locks would be held
     * until the batch commits, so two batches with events of the same projects in another
     * order would deadlock. */
    return rc ? rc : px_event_batch(self, "reporting", 1);
}
