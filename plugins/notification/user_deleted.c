/*
 * user_deleted.c — a deleted user's notification rows go: the consumer of user.deleted
 * (group "notification-users"; README.md, "Deleted users").
 *
 * The tables name users without a foreign key (the plugin is written against the SDK
 * alone), so PostgreSQL cannot cascade a user's deletion into them; the user plugin's
 * event says when one committed. The handler removes, in the delivery's transaction (so a
 * redelivery finds nothing left and does nothing twice), every row the user is the owner
 * or recipient of: their inbox, their queued and sent mail with its digest items, their
 * webhooks with their deliveries, the tasks they watch, their preferences and inbox state.
 * A pending mail or webhook delivery is a row of those tables, so once this commits no
 * sender can claim it. Other users' notifications that name the deleted user as the actor
 * stay: they are the recipients' history. Each kind is one statement of at most
 * USER_GONE_BATCH rows, run again while a batch comes back full. After the commit a
 * "gone" hint on the user's channel ends their open streams (stream.c).
 */
#include <stdlib.h>
#include <string.h>

#include "notification.h"

#define USER_GONE_BATCH 500
#define USER_GONE_BATCH_TEXT "500"

/* $1 the user, $2 (batched kinds) the batch size. Webhook deliveries go before their webhooks, in
 * batches, rather than by the webhook's cascade: an endpoint's log may be long. */
static const struct {
    const char *name;
    const char *sql;
    bool one_row; /* keyed by the user alone: no batch */
} kinds[] = {
    {"user_gone_inbox",
     "DELETE FROM notification WHERE seq IN (SELECT seq FROM notification "
     "WHERE user_id = $1::uuid AND in_app ORDER BY seq LIMIT $2::int) RETURNING 1", false},
    {"user_gone_mail_only",
     "DELETE FROM notification WHERE seq IN (SELECT seq FROM notification "
     "WHERE user_id = $1::uuid AND NOT in_app ORDER BY seq LIMIT $2::int) RETURNING 1", false},
    {"user_gone_mail",
     "DELETE FROM notification_mail WHERE id IN (SELECT id FROM notification_mail "
     "WHERE user_id = $1::uuid ORDER BY id LIMIT $2::int) RETURNING 1", false},
    {"user_gone_digest_items",
     "DELETE FROM notification_digest_item WHERE notification_id IN (SELECT notification_id "
     "FROM notification_digest_item WHERE user_id = $1::uuid LIMIT $2::int) RETURNING 1", false},
    {"user_gone_webhook_deliveries",
     "DELETE FROM notification_webhook_delivery WHERE id IN (SELECT d.id "
     "FROM notification_webhook w JOIN notification_webhook_delivery d ON d.webhook_id = w.id "
     "WHERE w.user_id = $1::uuid LIMIT $2::int) RETURNING 1", false},
    {"user_gone_webhooks",
     "DELETE FROM notification_webhook WHERE id IN (SELECT id FROM notification_webhook "
     "WHERE user_id = $1::uuid LIMIT $2::int) RETURNING 1", false},
    {"user_gone_watches",
     "DELETE FROM notification_task_watch WHERE user_id = $1::uuid AND (task_id, reason) IN "
     "(SELECT task_id, reason FROM notification_task_watch WHERE user_id = $1::uuid "
     "LIMIT $2::int) RETURNING 1", false},
    {"user_gone_preferences",
     "DELETE FROM notification_preference WHERE user_id = $1::uuid AND type IN "
     "(SELECT type FROM notification_preference WHERE user_id = $1::uuid LIMIT $2::int) "
     "RETURNING 1", false},
    {"user_gone_inbox_state",
     "DELETE FROM notification_inbox_state WHERE user_id = $1::uuid", true},
};
#define KINDS (sizeof(kinds) / sizeof(kinds[0]))

/* What one delivery carries from statement to statement; freed when the event is ended. */
typedef struct gone {
    const px_event_t *ev;
    px_pg_txn_t *txn;
    char user_id[37];
    size_t kind; /* index into kinds[] */
} gone_t;

static void retry(gone_t *g, const char *reason)
{
    px_event_retry(g->ev, 1000, reason);
    free(g);
}

static void next_batch(gone_t *g);

static void removed(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                    void *ud)
{
    (void)task;
    gone_t *g = ud;
    if (err) {
        retry(g, px_pg_error_message(err));
        return;
    }
    if (kinds[g->kind].one_row || px_pg_rows(res) < USER_GONE_BATCH)
        g->kind++;
    next_batch(g);
}

static void next_batch(gone_t *g)
{
    if (g->kind < KINDS) {
        const char *v[] = {g->user_id, USER_GONE_BATCH_TEXT};
        if (px_pg_txn_query(g->txn, kinds[g->kind].name, kinds[g->kind].sql,
                            kinds[g->kind].one_row ? 1 : 2, v, removed, g))
            retry(g, "could not queue a statement");
        return;
    }
    char channel[40];
    notif_user_channel(g->user_id, channel);
    static const char gone_hint[] = "{\"gone\":true}";
    if (px_channel_publish_on_commit(g->txn, channel, gone_hint, sizeof(gone_hint) - 1)) {
        retry(g, "could not queue the stream hint");
        return;
    }
    px_event_ack(g->ev);
    free(g);
}

static void on_user_deleted(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)task, (void)ud;
    char user[37];
    if (px_uuid_parse(json_string_value(json_object_get(px_event_payload(ev), "userId")), user)) {
        /* Not the user plugin's event: nothing here names such a user, and a retry would
         * not change that. */
        px_log(notif_plugin, PX_LOG_WARN, "user.deleted event %lld without a userId",
               (long long)px_event_id(ev));
        px_event_ack(ev);
        return;
    }
    gone_t *g = calloc(1, sizeof(*g));
    if (!g)
        abort();
    g->ev = ev;
    g->txn = txn;
    memcpy(g->user_id, user, sizeof(g->user_id));
    next_batch(g);
}

int user_deleted_init(px_plugin_t *self)
{
    return px_event_subscribe(self, "notification-users", "user.deleted", on_user_deleted, NULL);
}
