/* webhook_queue.c — the webhook outbox: claim due deliveries, check, sign, POST.
 *
 * The body is built by PostgreSQL in the claim (the notification as the inbox shows
 * it) and signed as those exact bytes. On the "notification.webhook" queue each send
 * resolves the endpoint's host again and checks every address (webhook_addr.c), then
 * connects to the checked one only (webhook_http.c): an endpoint whose name now points
 * inside the network is refused at that send, and the delivery is dead with the
 * reason in its log. Any answer but 2xx, or no answer, is retried with backoff until
 * webhook_dead_after (outbox.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <panthera/panthera.h>

#include "delivery.h"

typedef struct webhook_job {
    outbox_job_t base;
    char *url;
    char *secret;
    char *body;
    int allow_loopback;
    long timeout_ms;
} webhook_job_t;

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Columns: 0 id, 1 attempts, 2 url, 3 secret, 4 body, 5 the notification exists. */
static const char claim_sql[] =
    "WITH due AS ("
    "  SELECT id FROM notification_webhook_delivery"
    "  WHERE state = 'pending' AND next_attempt_at <= now()"
    "  ORDER BY next_attempt_at, id LIMIT $1::int FOR UPDATE SKIP LOCKED),"
    " c AS ("
    "  UPDATE notification_webhook_delivery d"
    "  SET next_attempt_at = now() + make_interval(secs => $2::int), attempts = d.attempts + 1"
    "  FROM due WHERE d.id = due.id"
    "  RETURNING d.id, d.webhook_id, d.notification_id, d.attempts)"
    " SELECT c.id, c.attempts, w.url, w.secret,"
    "  json_build_object('id', c.id, 'type', 'notification', 'webhookId', w.id,"
    "   'notification', (SELECT json_build_object('id', n.id, 'type', n.type,"
    "     'projectId', n.project_id, 'payload', n.payload, 'createdAt', " TS("n.created_at") ")"
    "    FROM notification n WHERE n.id = c.notification_id))::text,"
    "  EXISTS (SELECT 1 FROM notification n WHERE n.id = c.notification_id)"
    " FROM c JOIN notification_webhook w ON w.id = c.webhook_id";

static const char finish_sql[] =
    "UPDATE notification_webhook_delivery SET"
    " state = CASE WHEN $2 = 'ok' THEN 'delivered'"
    "   WHEN $2 = 'dead' OR created_at < now() - make_interval(secs => $6::bigint) THEN 'dead'"
    "   ELSE 'pending' END,"
    " next_attempt_at = now() + make_interval(secs => $3::bigint / 1000.0),"
    " last_error = $4, last_status = $5::int,"
    " delivered_at = CASE WHEN $2 = 'ok' THEN now() END"
    " WHERE id = $1::uuid";

static char *dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void release(outbox_job_t *j)
{
    webhook_job_t *job = (webhook_job_t *)j;
    free(job->url);
    free(job->secret);
    free(job->body);
    free(job);
}

static outbox_job_t *prepare(const px_pg_result_t *res, int row, const char **why)
{
    int exists = 0;
    if (px_pg_bool(res, row, 5, &exists) != 0 || !exists) {
        *why = "the notification no longer exists";
        return NULL;
    }
    webhook_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    snprintf(job->base.id, sizeof job->base.id, "%s", px_pg_value(res, row, 0));
    job->base.attempts = atoi(px_pg_value(res, row, 1));
    job->url = dup(px_pg_value(res, row, 2));
    job->secret = dup(px_pg_value(res, row, 3));
    job->body = dup(px_pg_value(res, row, 4));
    job->allow_loopback = delivery_conf.webhook_allow_loopback;
    job->timeout_ms = (long)delivery_conf.webhook_timeout_ms;
    if (!job->url || !job->secret || !job->body) {
        release(&job->base);
        return NULL;
    }
    return &job->base;
}

static void work(void *ud)
{
    webhook_job_t *job = ud;
    outbox_job_t *b = &job->base;
    webhook_url_t u;
    const char *why = NULL;
    char addr[64], sig[WEBHOOK_SIG_MAX];
    if (webhook_url_parse(job->url, &u, &why) != 0 ||
        webhook_resolve_checked(&u, job->allow_loopback, addr, &why) != 0) {
        snprintf(b->err, sizeof b->err, "refused: %s", why);
        b->outcome = SMTP_PERMANENT;
        return;
    }
    if (webhook_signature(job->secret, (int64_t)time(NULL), job->body, strlen(job->body), sig)) {
        snprintf(b->err, sizeof b->err, "could not sign");
        b->outcome = SMTP_TRANSIENT;
        return;
    }
    long status = webhook_post(job->url, &u, addr, sig, b->id, job->body, job->timeout_ms,
                               b->err, sizeof b->err);
    b->status = status > 0 ? status : 0;
    if (status >= 200 && status < 300) {
        b->outcome = SMTP_OK;
    } else {
        if (status > 0)
            snprintf(b->err, sizeof b->err, "answered %ld", status);
        b->outcome = SMTP_TRANSIENT;
    }
}

const outbox_ops_t webhook_outbox_ops = {
    .task_name = "notification.webhook",
    .queue = DELIVERY_WEBHOOK_QUEUE,
    .claim_sql = claim_sql,
    .finish_sql = finish_sql,
    .concurrency = &delivery_conf.webhook_concurrency,
    .dead_after_s = &delivery_conf.webhook_dead_after_s,
    .prepare = prepare,
    .work = work,
    .release = release,
};
