/* delivery.c — the delivery half's configuration, consumer and worker lifecycle.
 *
 * delivery_init is the one call the plugin's init makes: it reads the delivery keys of
 * [plugin:notification], declares the two blocking queues, subscribes the consumer
 * group "notification-delivery" to notification.created, and registers the
 * unsubscribe and webhook routes. The consumer turns each recipient of a created
 * notification into ledger rows (an instant mail, a digest item, one delivery per
 * webhook of theirs) in the consumer's own transaction, one statement per delivery
 * batch (its batch hook): those rows exist exactly when the event is marked done, so a
 * notification is neither mailed twice by a redelivered event nor lost to a crash. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <panthera/panthera.h>

#include "delivery.h"

delivery_conf_t delivery_conf;
px_plugin_t *delivery_plugin;

static unsigned char unsub_key[256];
static size_t unsub_key_len;
static px_req_t *key_task;
static outbox_t *mail_outbox, *webhook_outbox;

const unsigned char *delivery_unsub_key(size_t *len)
{
    *len = unsub_key_len;
    return unsub_key_len ? unsub_key : NULL;
}

static const struct {
    const char *key, *dflt;
} keys[] = {
    {"smtp_host", ""},          /* empty: no email at all */
    {"smtp_port", "25"},
    {"smtp_tls", "starttls"},   /* starttls (required), tls (implicit, smtps), none */
    {"smtp_user", ""},
    {"smtp_password", ""},
    {"smtp_ca_file", ""},
    {"smtp_timeout", "30s"},
    {"mail_from", "panthera@localhost"},
    {"mail_from_name", "Panthera"},
    {"public_base_url", "https://localhost"},
    {"unsubscribe_secret", ""}, /* empty: a random key kept in the database */
    {"unsubscribe_ttl", "60d"},
    {"mail_dead_after", "1d"},
    {"mail_concurrency", "4"},
    {"delivery_retry_min", "30s"},
    {"delivery_retry_max", "1h"},
    {"delivery_poll", "1s"},
    {"delivery_lease", "5m"},
    {"digest_hour", "7"},
    {"digest_every", "1d"},
    {"digest_check", "1m"},
    {"webhook_allow_loopback", "false"}, /* TEST ONLY */
    {"webhook_dead_after", "1d"},
    {"webhook_timeout", "10s"},
    {"webhook_concurrency", "4"},
};

static int bad(px_plugin_t *self, const char *key, const char *rule)
{
    px_log(self, PX_LOG_ERROR, "[plugin:notification] %s = %s: %s", key,
           px_config_get(self, key), rule);
    return PX_EINVAL;
}

static int duration_s(px_plugin_t *self, const char *key, int64_t min_s, int64_t *out)
{
    int64_t ms;
    int rc = px_config_duration_ms(self, key, &ms);
    if (rc)
        return rc;
    if (ms / 1000 < min_s)
        return bad(self, key, "too short");
    *out = ms / 1000;
    return 0;
}

static int int_range(px_plugin_t *self, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    int rc = px_config_int(self, key, out);
    if (rc)
        return rc;
    if (*out < lo || *out > hi) {
        char rule[64];
        snprintf(rule, sizeof rule, "must be %" PRId64 " to %" PRId64, lo, hi);
        return bad(self, key, rule);
    }
    return 0;
}

static int settings(px_plugin_t *self)
{
    delivery_conf_t *c = &delivery_conf;
    int64_t port, ms;
    int rc;
    if ((rc = int_range(self, "smtp_port", 1, 65535, &port)) ||
        (rc = px_config_duration_ms(self, "smtp_timeout", &ms)) ||
        (rc = duration_s(self, "unsubscribe_ttl", 3600, &c->unsubscribe_ttl_s)) ||
        (rc = duration_s(self, "mail_dead_after", 1, &c->mail_dead_after_s)) ||
        (rc = duration_s(self, "webhook_dead_after", 1, &c->webhook_dead_after_s)) ||
        (rc = int_range(self, "mail_concurrency", 1, 64, &c->mail_concurrency)) ||
        (rc = int_range(self, "webhook_concurrency", 1, 64, &c->webhook_concurrency)) ||
        (rc = px_config_duration_ms(self, "delivery_retry_min", &c->retry_min_ms)) ||
        (rc = px_config_duration_ms(self, "delivery_retry_max", &c->retry_max_ms)) ||
        (rc = px_config_duration_ms(self, "delivery_poll", &c->poll_ms)) ||
        (rc = duration_s(self, "delivery_lease", 10, &c->lease_s)) ||
        (rc = int_range(self, "digest_hour", 0, 23, &c->digest_hour)) ||
        (rc = duration_s(self, "digest_every", 1, &c->digest_every_s)) ||
        (rc = px_config_duration_ms(self, "digest_check", &c->digest_check_ms)) ||
        (rc = px_config_duration_ms(self, "webhook_timeout", &c->webhook_timeout_ms)) ||
        (rc = px_config_bool(self, "webhook_allow_loopback", &c->webhook_allow_loopback)))
        return rc;
    if (c->retry_min_ms < 100 || c->retry_max_ms < c->retry_min_ms)
        return bad(self, "delivery_retry_min", "must be at least 100ms and at most delivery_retry_max");
    if (c->poll_ms < 50)
        return bad(self, "delivery_poll", "must be at least 50ms");
    if (c->digest_check_ms < 100)
        return bad(self, "digest_check", "must be at least 100ms");
    /* A lease shorter than a send would let a second sender take a row whose first send
     * is still running: two mails. */
    if (c->lease_s * 1000 <= 2 * (ms > c->webhook_timeout_ms ? ms : c->webhook_timeout_ms))
        return bad(self, "delivery_lease", "must be more than twice smtp_timeout and webhook_timeout");
    if (c->digest_every_s > 86400 * 7)
        return bad(self, "digest_every", "must be at most 7d");
    const char *host = px_config_get(self, "smtp_host"), *tls = px_config_get(self, "smtp_tls");
    c->mail_enabled = host && *host;
    int implicit = !strcmp(tls, "tls");
    if (!implicit && strcmp(tls, "starttls") && strcmp(tls, "none"))
        return bad(self, "smtp_tls", "must be starttls, tls or none");
    c->smtp.starttls = !strcmp(tls, "starttls");
    if (c->mail_enabled && (strlen(host) > 255 || strpbrk(host, "/@ ")))
        return bad(self, "smtp_host", "must be a host name or address");
    snprintf(c->smtp.url, sizeof c->smtp.url, strchr(host, ':') ? "%s://[%s]:%" PRId64
                                                                 : "%s://%s:%" PRId64,
             implicit ? "smtps" : "smtp", host, port);
    snprintf(c->smtp.user, sizeof c->smtp.user, "%s", px_config_get(self, "smtp_user"));
    snprintf(c->smtp.pass, sizeof c->smtp.pass, "%s", px_config_get(self, "smtp_password"));
    snprintf(c->smtp.ca_file, sizeof c->smtp.ca_file, "%s", px_config_get(self, "smtp_ca_file"));
    c->smtp.timeout_ms = (long)ms;
    c->mail_from = px_config_get(self, "mail_from");
    c->mail_from_name = px_config_get(self, "mail_from_name");
    const char *at = strrchr(c->mail_from, '@');
    snprintf(c->smtp.helo, sizeof c->smtp.helo, "%s", at ? at + 1 : "localhost");
    if (!mail_address_ok(c->mail_from))
        return bad(self, "mail_from", "must be a plain address (local@domain)");
    c->public_base_url = px_config_get(self, "public_base_url");
    size_t bl = strlen(c->public_base_url);
    if (strncmp(c->public_base_url, "https://", 8) && strncmp(c->public_base_url, "http://", 7))
        return bad(self, "public_base_url", "must be an https:// URL");
    if (bl > 400 || (bl && c->public_base_url[bl - 1] == '/'))
        return bad(self, "public_base_url", "must be at most 400 bytes, without a trailing /");
    if (c->mail_enabled && strncmp(c->public_base_url, "https://", 8))
        px_log(self, PX_LOG_WARN, "[plugin:notification] public_base_url is not https: mail "
               "clients ignore a one-click unsubscribe link over http (RFC 8058)");
    const char *secret = px_config_get(self, "unsubscribe_secret");
    if (*secret) {
        if (strlen(secret) < 32 || strlen(secret) >= sizeof unsub_key)
            return bad(self, "unsubscribe_secret", "must be 32 to 255 characters");
        unsub_key_len = strlen(secret);
        memcpy(unsub_key, secret, unsub_key_len);
    }
    if (c->webhook_allow_loopback)
        px_log(self, PX_LOG_WARN, "[plugin:notification] webhook_allow_loopback is on: "
               "webhooks may reach this machine's loopback services. This is for tests "
               "only; never set it in production");
    return 0;
}

/* ---- the consumer ---- */

/* The ledger rows of a whole delivery batch, one statement for all its events (the
 * group's batch hook, px_event_prepare): $1 [{userId, notificationId, email, type}], $2
 * whether mail is on. Every row is keyed by its notification (ON CONFLICT DO NOTHING), so
 * the statement is its own "effect once": outside the events' savepoints, it needs none,
 * and a delivery that comes again adds nothing. */
static const char created_sql[] =
    "WITH r AS ("
    "  SELECT x.\"userId\" AS user_id, x.\"notificationId\" AS notification_id, x.email,"
    "  x.type FROM jsonb_to_recordset($1::jsonb) AS x(\"userId\" uuid,"
    "  \"notificationId\" uuid, email text, type text)"
    "  WHERE x.\"userId\" IS NOT NULL AND x.\"notificationId\" IS NOT NULL"
    "  AND x.type IS NOT NULL),"
    " m AS (INSERT INTO notification_mail (kind, notification_id, user_id, type)"
    "  SELECT 'instant', notification_id, user_id, type FROM r"
    "  WHERE email = 'instant' AND $2::boolean"
    "  ON CONFLICT (notification_id) DO NOTHING),"
    " d AS (INSERT INTO notification_digest_item (notification_id, user_id, type)"
    "  SELECT notification_id, user_id, type FROM r"
    "  WHERE email = 'daily' AND $2::boolean"
    "  ON CONFLICT (notification_id) DO NOTHING)"
    " INSERT INTO notification_webhook_delivery (webhook_id, notification_id)"
    " SELECT w.id, r.notification_id FROM r JOIN notification_webhook w ON w.user_id = r.user_id"
    " ON CONFLICT (webhook_id, notification_id) DO NOTHING";

/* The ledger rows of one item of notification.created ({type, recipients}) added to
 * `rows`. */
static int add_item(json_t *rows, json_t *item)
{
    json_t *type = json_object_get(item, "type"), *r;
    size_t k;
    if (!json_is_string(type))
        return 0;
    json_array_foreach(json_object_get(item, "recipients"), k, r)
    {
        json_t *row = json_is_object(r) ? json_copy(r) : NULL;
        if (!row)
            continue;
        if (json_object_set(row, "type", type) || json_array_append_new(rows, row))
            return PX_EINTERNAL;
    }
    return 0;
}

/* Queued without a callback: if it fails, the batch's COMMIT does, and each of its events
 * comes again alone (counted, retried, dead-lettered like any failed delivery). An event
 * carries the items of a whole consumer batch ({"created": [...]}); one emitted before
 * that is a single item itself, and may still be in the log after an upgrade. */
static int on_created_batch(px_req_t *task, px_pg_txn_t *txn, const px_event_t *const *events,
                            size_t n, void *ud)
{
    (void)task, (void)ud;
    json_t *rows = json_array();
    int rc = rows ? 0 : PX_EINTERNAL;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *p = px_event_payload(events[i]), *item;
        json_t *created = json_object_get(p, "created");
        size_t k;
        if (!json_is_array(created)) {
            rc = add_item(rows, p);
            continue;
        }
        json_array_foreach(created, k, item)
        {
            if (!rc)
                rc = add_item(rows, item);
        }
    }
    if (!rc && json_array_size(rows)) {
        char *text = json_dumps(rows, JSON_COMPACT);
        const char *v[] = {text, delivery_conf.mail_enabled ? "true" : "false"};
        rc = text ? px_pg_txn_query(txn, "delivery_created", created_sql, 2, v, NULL, NULL)
                  : PX_EINTERNAL;
        free(text);
    }
    json_decref(rows);
    return rc;
}

/* The batch hook made the rows: the event is done. */
static void on_created(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)task, (void)txn, (void)ud;
    px_event_ack(ev);
}

/* ---- worker lifecycle ---- */

static void key_loaded(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud);

static void key_load(px_req_t *task, int64_t id, void *ud)
{
    (void)id, (void)ud;
    if (px_pg_query(task, NULL, "SELECT key FROM notification_delivery_key WHERE id = 1", 0,
                    NULL, key_loaded, NULL) != 0)
        px_timer_start(task, 2000, 0, key_load, NULL);
}

static void key_loaded(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    (void)ud;
    const char *k = !err && px_pg_rows(res) == 1 ? px_pg_value(res, 0, 0) : NULL;
    if (!k || strlen(k) < UNSUB_KEY_MIN || strlen(k) >= sizeof unsub_key) {
        /* PostgreSQL may still be coming up: try again; routes answer 503 meanwhile. */
        px_timer_start(task, 2000, 0, key_load, NULL);
        return;
    }
    unsub_key_len = strlen(k);
    memcpy(unsub_key, k, unsub_key_len);
    key_task = NULL;
    px_task_end(task, 0);
}

static void worker_start(px_plugin_t *self, void *ud)
{
    (void)ud;
    if (!unsub_key_len && (key_task = px_task_begin(self, "notification.key")))
        key_load(key_task, 0, NULL);
    if (delivery_conf.mail_enabled) {
        mail_outbox = outbox_start(self, &mail_outbox_ops);
        digest_worker_start(self);
    }
    webhook_outbox = outbox_start(self, &webhook_outbox_ops);
}

static void worker_stop(px_plugin_t *self, void *ud)
{
    (void)self, (void)ud;
    if (key_task)
        px_task_end(key_task, 0);
    key_task = NULL;
    outbox_stop(mail_outbox);
    outbox_stop(webhook_outbox);
    mail_outbox = webhook_outbox = NULL;
    digest_worker_stop();
}

int delivery_init(px_plugin_t *self)
{
    delivery_plugin = self;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        px_config_declare(self, keys[i].key, keys[i].dflt);
    int rc = settings(self);
    if (!rc && delivery_curl_init() != 0)
        rc = PX_EINTERNAL;
    if (!rc)
        rc = px_work_queue(self, DELIVERY_MAIL_QUEUE, (int)delivery_conf.mail_concurrency, 10000);
    if (!rc)
        rc = px_work_queue(self, DELIVERY_WEBHOOK_QUEUE, (int)delivery_conf.webhook_concurrency,
                           10000);
    if (!rc)
        rc = px_event_subscribe(self, "notification-delivery", "notification.created",
                                on_created, NULL);
    if (!rc)
        rc = px_event_prepare(self, "notification-delivery", on_created_batch, NULL);
    if (!rc)
        rc = px_on_worker_start(self, worker_start, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, worker_stop, NULL);
    if (!rc)
        rc = unsubscribe_routes(self);
    if (!rc)
        rc = webhook_routes(self);
    return rc;
}
