/* mail_queue.c — the mail outbox: claim due ledger rows, compose, send through SMTP.
 *
 * The claim statement also gathers what the mail says: the recipient (the user
 * plugin's users table: this plugin depends on it), and the notification (instant) or
 * the period's items (digest). Composition happens on the loop (cheap, and it needs
 * the unsubscribe key); only the SMTP transaction goes to the "notification.mail"
 * queue. The Message-ID is made from the ledger row, so the rare repeat after a crash
 * (outbox.c) carries the same Message-ID and a receiving system may drop it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <panthera/panthera.h>

#include "delivery.h"

typedef struct mail_job {
    outbox_job_t base;
    char to[256];
    char *msg;
    size_t len;
} mail_job_t;

/* Columns: 0 id, 1 attempts, 2 kind, 3 user_id, 4 types, 5 email, 6 username, 7 items,
 * 8 period. */
static const char claim_sql[] =
    "WITH due AS ("
    "  SELECT id FROM notification_mail"
    "  WHERE state = 'pending' AND next_attempt_at <= now()"
    "  ORDER BY next_attempt_at, id LIMIT $1::int FOR UPDATE SKIP LOCKED),"
    " c AS ("
    "  UPDATE notification_mail m"
    "  SET next_attempt_at = now() + make_interval(secs => $2::int), attempts = m.attempts + 1"
    "  FROM due WHERE m.id = due.id"
    "  RETURNING m.id, m.kind, m.notification_id, m.user_id, m.type, m.period, m.attempts)"
    " SELECT c.id, c.attempts, c.kind, c.user_id,"
    "  CASE WHEN c.kind = 'instant' THEN c.type ELSE"
    "   (SELECT string_agg(DISTINCT i.type, ',') FROM notification_digest_item i"
    "    WHERE i.user_id = c.user_id AND i.period = c.period) END,"
    "  u.email, u.username,"
    "  CASE WHEN c.kind = 'instant' THEN"
    "   (SELECT json_agg(json_build_object('type', n.type, 'payload', n.payload,"
    "      'createdAt', to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')))"
    "    FROM notification n WHERE n.id = c.notification_id)"
    "  ELSE"
    "   (SELECT json_agg(json_build_object('type', n.type, 'payload', n.payload,"
    "      'createdAt', to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
    "      ORDER BY n.seq)"
    "    FROM notification_digest_item i JOIN notification n ON n.id = i.notification_id"
    "    WHERE i.user_id = c.user_id AND i.period = c.period) END,"
    "  to_char(c.period AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " FROM c LEFT JOIN users u ON u.id = c.user_id";

static const char finish_sql[] =
    "UPDATE notification_mail SET"
    " state = CASE WHEN $2 = 'ok' THEN 'sent'"
    "   WHEN $2 = 'dead' OR created_at < now() - make_interval(secs => $6::bigint) THEN 'dead'"
    "   ELSE 'pending' END,"
    " next_attempt_at = now() + make_interval(secs => $3::bigint / 1000.0),"
    " last_error = $4 || coalesce(' (reply ' || $5::int || ')', ''),"
    " sent_at = CASE WHEN $2 = 'ok' THEN now() END"
    " WHERE id = $1::bigint";

static outbox_job_t *prepare(const px_pg_result_t *res, int row, const char **why)
{
    const char *id = px_pg_value(res, row, 0), *kind = px_pg_value(res, row, 2),
               *user = px_pg_value(res, row, 3), *types = px_pg_value(res, row, 4),
               *email = px_pg_value(res, row, 5), *username = px_pg_value(res, row, 6),
               *items_text = px_pg_value(res, row, 7), *period = px_pg_value(res, row, 8);
    int digest = kind && !strcmp(kind, "digest");
    if (!email) {
        *why = "the user no longer exists";
        return NULL;
    }
    if (!items_text || !types) {
        *why = "the notification no longer exists";
        return NULL;
    }
    size_t key_len = 0;
    const unsigned char *key = delivery_unsub_key(&key_len);
    json_t *items = json_loads(items_text, 0, NULL);
    char *subject = NULL, *text = NULL, *token = NULL, *url = NULL, *msg = NULL;
    mail_job_t *job = NULL;
    size_t len = 0;
    if (!items || mail_render(username, items, digest, &subject, &text) != 0)
        goto done;
    token = unsub_token_make(key, key_len, user, types,
                             (int64_t)time(NULL) + delivery_conf.unsubscribe_ttl_s);
    if (!token) {
        *why = "could not sign the unsubscribe token";
        goto done;
    }
    size_t ul = strlen(delivery_conf.public_base_url) + strlen(token) + 64;
    url = malloc(ul);
    if (!url)
        goto done;
    snprintf(url, ul, "%s/v1/notifications/unsubscribe?token=%s", delivery_conf.public_base_url,
             token);
    const char *at = strrchr(delivery_conf.mail_from, '@');
    char mid[128];
    /* The user's uuid makes it unique across databases sharing a from domain. */
    snprintf(mid, sizeof mid, "notification.%s.%s.%s", kind, id, user);
    const char *extra[] = {"X-Panthera-Notification-Types", types,
                           "X-Panthera-Mail-Id", id,
                           digest ? "X-Panthera-Digest-Period" : NULL, period, NULL};
    mail_msg_t m = {.from_name = delivery_conf.mail_from_name,
                    .from_addr = delivery_conf.mail_from,
                    .to_name = username,
                    .to_addr = email,
                    .subject = subject,
                    .text = text,
                    .unsubscribe_url = url,
                    .message_id_local = mid,
                    .message_id_domain = at ? at + 1 : "localhost",
                    .date = (int64_t)time(NULL),
                    .extra_headers = extra};
    msg = mail_compose(&m, &len, why);
    if (!msg)
        goto done;
    job = calloc(1, sizeof *job);
    if (!job)
        goto done;
    snprintf(job->base.id, sizeof job->base.id, "%s", id);
    job->base.attempts = atoi(px_pg_value(res, row, 1));
    snprintf(job->to, sizeof job->to, "%s", email);
    job->msg = msg;
    job->len = len;
    msg = NULL;
done:
    json_decref(items);
    free(subject);
    free(text);
    free(token);
    free(url);
    free(msg);
    return job ? &job->base : NULL;
}

static int ready(void)
{
    size_t n;
    return delivery_unsub_key(&n) != NULL;
}

static void work(void *ud)
{
    mail_job_t *job = ud;
    job->base.outcome = smtp_send(&delivery_conf.smtp, delivery_conf.mail_from, job->to,
                                  job->msg, job->len, job->base.err, sizeof job->base.err);
}

static void release(outbox_job_t *j)
{
    mail_job_t *job = (mail_job_t *)j;
    free(job->msg);
    free(job);
}

const outbox_ops_t mail_outbox_ops = {
    .task_name = "notification.mail",
    .queue = DELIVERY_MAIL_QUEUE,
    .claim_sql = claim_sql,
    .finish_sql = finish_sql,
    .concurrency = &delivery_conf.mail_concurrency,
    .dead_after_s = &delivery_conf.mail_dead_after_s,
    .ready = ready,
    .prepare = prepare,
    .work = work,
    .release = release,
};
