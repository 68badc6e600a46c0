/*
 * consumer.c — the event consumers: the task, content and project events become inbox
 * rows, once per event, in the delivery's own transaction (px_event_subscribe), together
 * with the `notification.created` event the delivery side (mail, webhooks) consumes and
 * the live hints for the streams.
 *
 * Per event, in one transaction: take the recipients' inbox locks, insert one row per
 * recipient (recipients.c decides the candidates, SQL adds the task's watchers, keeps the
 * members, drops the actor, reads each recipient's effective preferences), emit
 * notification.created with the rows' ids and preferences, queue one channel message per
 * in-app recipient for after the commit, update the task's watchers, ack.
 *
 * Why the locks: groups deliver different aggregates concurrently, so without them two
 * transactions could commit one user's rows out of seq order, and a stream that resumed
 * "after seq N" could skip a row committed later with a smaller seq. Each transaction
 * holds its candidates' inbox locks (store.c: each user's own for a few candidates, their
 * stripes' for a fan-out) from before the insert to the commit: per user, seq order is
 * commit order, which is all a stream (one user's rows) needs. The host delivers events in
 * batches, one transaction for many events, so the locks are held until the batch
 * commits: events for other users must not wait for them, which is why a single
 * recipient locks only its own user. A thousand recipients are one INSERT ... SELECT.
 *
 * Effect once: the unique (source_event, user_id, type) makes a second delivery of the
 * same event (events:replay) insert nothing; then nothing is emitted or published either.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notification.h"

typedef struct delivery {
    const px_event_t *ev;
    px_pg_txn_t *txn;
    notif_plan_t plan;
    int type_index;
    char event_id[24];
} delivery_t;

static int created_metric = -1;

#define MENTION_BATCH 4 /* see consumer_init */

static void done(delivery_t *d, const char *failure)
{
    const px_event_t *ev = d->ev;
    notif_plan_free(&d->plan);
    free(d);
    if (failure)
        px_event_retry(ev, 1000, failure);
    else
        px_event_ack(ev);
}

/* The watch table's changes come after the recipients were read from it: a commenter
 * is not told of their own comment, and is told of the next one. Queued without a
 * callback; a failure fails the commit and the event comes again. */
static int queue_watch(delivery_t *d)
{
    notif_plan_t *p = &d->plan;
    if (!p->task_id)
        return 0;
    int rc = 0;
    if (p->watch_forget) {
        const char *v[] = {p->task_id};
        return px_pg_txn_query(d->txn, "watch_forget", sql_watch_forget, 1, v, NULL, NULL);
    }
    if (p->watch_replace) {
        const char *v[] = {p->task_id, p->watch_add_reason};
        rc = px_pg_txn_query(d->txn, "watch_clear", sql_watch_clear, 2, v, NULL, NULL);
    }
    if (!rc && p->watch_add_reason && p->watch_add_user) {
        const char *v[] = {p->task_id, p->watch_add_user, p->watch_add_reason};
        rc = px_pg_txn_query(d->txn, "watch_add", sql_watch_add, 3, v, NULL, NULL);
    }
    return rc;
}

static void inserted(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    (void)task;
    delivery_t *d = ud;
    if (err) {
        done(d, px_pg_error_message(err));
        return;
    }
    int rows = px_pg_rows(res);
    if (rows == 0) { /* nobody, or a repeat whose rows exist */
        done(d, queue_watch(d) ? "could not queue the watchers' update" : NULL);
        return;
    }
    json_t *recipients = json_array();
    int rc = 0;
    for (int i = 0; i < rows && !rc; i++) {
        const char *user = px_pg_value(res, i, 1), *id = px_pg_value(res, i, 2);
        int in_app = 0;
        px_pg_bool(res, i, 3, &in_app);
        json_array_append_new(recipients,
                              json_pack("{s:s, s:s, s:s, s:b}", "userId", user, "notificationId",
                                        id, "email", px_pg_value(res, i, 4), "inApp", in_app));
        if (!in_app)
            continue;
        /* The hint a stream sends as it is, when it is live and this row is next. */
        char channel[40], head[96];
        notif_user_channel(user, channel);
        const char *json = px_pg_value(res, i, 5);
        int n = snprintf(head, sizeof(head), "{\"seq\":%s,\"prev\":%s,\"notification\":",
                         px_pg_value(res, i, 0), px_pg_value(res, i, 6));
        size_t len = (size_t)n + strlen(json) + 1;
        char *msg = malloc(len + 1);
        if (!msg) {
            rc = PX_EINTERNAL;
            break;
        }
        memcpy(msg, head, (size_t)n);
        memcpy(msg + n, json, strlen(json));
        msg[len - 1] = '}';
        msg[len] = '\0';
        rc = px_channel_publish_on_commit(d->txn, channel, msg, len);
        free(msg);
    }
    int64_t source = px_event_id(d->ev);
    json_t *project = d->plan.project_id ? json_string(d->plan.project_id) : json_null();
    if (!rc)
        rc = px_event_emit(d->txn, "notification.created", d->event_id,
                           json_pack("{s:s, s:I, s:o, s:o}", "type", d->plan.type,
                                     "sourceEventId", (json_int_t)source, "projectId", project,
                                     "recipients", recipients));
    else {
        json_decref(project);
        json_decref(recipients);
    }
    if (!rc)
        rc = queue_watch(d);
    if (rc) {
        done(d, "could not record notification.created");
        return;
    }
    px_metric_add(notif_plugin, created_metric, (uint64_t)rows);
    done(d, NULL);
}

static void on_event(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)task, (void)ud;
    delivery_t *d = calloc(1, sizeof(*d));
    if (!d) {
        px_event_retry(ev, 1000, "out of memory");
        return;
    }
    d->ev = ev;
    d->txn = txn;
    snprintf(d->event_id, sizeof(d->event_id), "%" PRId64, px_event_id(ev));
    if (notif_plan(px_event_type(ev), px_event_payload(ev), &d->plan)) {
        done(d, NULL); /* nobody to notify, nothing to remember */
        return;
    }
    if (!d->plan.type) { /* task.created, task.deleted: the watchers only */
        done(d, queue_watch(d) ? "could not queue the watchers' update" : NULL);
        return;
    }
    int ti = notif_type_index(d->plan.type);
    char *cand = json_dumps(d->plan.candidates, JSON_COMPACT);
    char *members = d->plan.members ? json_dumps(d->plan.members, JSON_COMPACT) : NULL;
    char *payload = json_dumps(d->plan.payload, JSON_COMPACT);
    const char *values[] = {cand,
                            d->plan.type,
                            payload,
                            d->plan.project_id,
                            d->event_id,
                            notif_cfg.in_app[ti] ? "t" : "f",
                            d->plan.watch_reasons ? d->plan.task_id : NULL,
                            d->plan.watch_reasons,
                            d->plan.actor,
                            members,
                            notif_cfg.email[ti]};
    int rc = cand && payload && (!d->plan.members || members) ? 0 : PX_EINTERNAL;
    if (!rc)
        rc = px_pg_txn_query(txn, "inbox_lock", sql_inbox_lock, 3,
                             (const char *const[]){cand, values[6], values[7]}, NULL, NULL);
    if (!rc)
        rc = px_pg_txn_query(txn, "inbox_insert", sql_inbox_insert, 11, values, inserted, d);
    free(cand);
    free(members);
    free(payload);
    if (rc)
        done(d, "could not queue the inbox insert");
}

int consumer_init(px_plugin_t *self)
{
    created_metric = px_metric_counter(self, "notification_created_total",
                                       "Inbox rows the consumer created");
    /* One group per source plugin's family: a slow one never holds the others back. Not
     * "*": the plugin's own notification.created must not come back to it. */
    static const char *const groups[][2] = {{"notification-task", "task.*"},
                                            {"notification-mention", "comment.mentioned"},
                                            {"notification-post", "post.*"},
                                            {"notification-project", "project.member_added"}};
    int rc = created_metric < 0 ? created_metric : 0;
    for (size_t i = 0; !rc && i < sizeof(groups) / sizeof(groups[0]); i++)
        rc = px_event_subscribe(self, groups[i][0], groups[i][1], on_event, NULL);
    /* Mentions come in bursts on one task (its aggregate, so one batch) and often name
     * many: each such event touches the same inbox rows again, and inside one transaction
     * every touch lengthens their chain of row versions the next one walks. Small batches
     * (tests/bench/notification.sh, 1,000 recipients per event). */
    if (!rc)
        rc = px_event_batch(self, "notification-mention", MENTION_BATCH);
    return rc;
}
