/* digest.c — one digest mail per user per period, however many hosts run.
 *
 * Every worker checks every digest_check whether the current period (digest_every
 * long, aligned to digest_hour:00 UTC; a day by default) has been opened; the check
 * runs as a cluster-wide singleton (px_task_singleton), and in its transaction:
 *  1. moves notification_digest_run.period forward to the current period, only if it
 *     is behind (no row back: this period is open already, nothing to do);
 *  2. claims every waiting digest item for that period and inserts one mail ledger row
 *     per user who has any, ON CONFLICT of the (user_id, period) unique index doing
 *     nothing.
 * Both happen or neither, and the singleton's lock plus the unique index make a second
 * digest for the same user and period impossible, even if two hosts' clocks disagree
 * on when the period began. The mail outbox (mail_queue.c) sends the rows. Items that
 * arrive after the period opened wait for the next one. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <panthera/panthera.h>

#include "delivery.h"

static px_req_t *digest_task;

/* $1 period length (s), $2 digest hour. date_bin aligns now() to digest_hour:00 UTC. */
static const char open_sql[] =
    "INSERT INTO notification_digest_run (id, period)"
    " VALUES (1, date_bin(make_interval(secs => $1::int), now(),"
    "   timestamptz '2000-01-01 00:00:00+00' + make_interval(hours => $2::int)))"
    " ON CONFLICT (id) DO UPDATE SET period = excluded.period"
    "   WHERE notification_digest_run.period < excluded.period"
    " RETURNING period";

static const char claim_sql[] =
    "WITH items AS ("
    "  UPDATE notification_digest_item SET period = $1::timestamptz"
    "  WHERE period IS NULL RETURNING user_id)"
    " INSERT INTO notification_mail (kind, user_id, period)"
    " SELECT DISTINCT 'digest', user_id, $1::timestamptz FROM items"
    " ON CONFLICT (user_id, period) WHERE kind = 'digest' DO NOTHING";

static void committed(px_req_t *task, const px_pg_error_t *err, void *ud)
{
    (void)task, (void)ud;
    if (err)
        px_log(delivery_plugin, PX_LOG_WARN, "digest: could not open the period: %s",
               px_pg_error_message(err));
}

static void opened(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                   void *ud)
{
    px_pg_txn_t *txn = ud;
    (void)task;
    if (err || px_pg_rows(res) != 1) {
        /* An error, or the period is open already: end the transaction (and the lock). */
        px_pg_rollback(txn, NULL, NULL);
        return;
    }
    const char *v[] = {px_pg_value(res, 0, 0)};
    px_log(delivery_plugin, PX_LOG_INFO, "digest: opening the period of %s", v[0]);
    if (px_pg_txn_query(txn, NULL, claim_sql, 1, v, NULL, NULL) != 0 ||
        px_pg_commit(txn, committed, NULL) != 0)
        px_pg_rollback(txn, NULL, NULL);
}

static void locked(px_req_t *task, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    (void)ud, (void)err;
    if (!txn)
        return; /* another worker holds it, or PostgreSQL failed: next check */
    char every[24], hour[8];
    snprintf(every, sizeof every, "%" PRId64, delivery_conf.digest_every_s);
    snprintf(hour, sizeof hour, "%" PRId64, delivery_conf.digest_hour);
    const char *v[] = {every, hour};
    (void)task;
    if (px_pg_txn_query(txn, NULL, open_sql, 2, v, opened, txn) != 0)
        px_pg_rollback(txn, NULL, NULL);
}

static void check(px_req_t *task, int64_t id, void *ud)
{
    (void)id, (void)ud;
    px_task_singleton(task, locked, NULL);
}

int digest_worker_start(px_plugin_t *self)
{
    digest_task = px_task_begin(self, "notification.digest");
    if (!digest_task)
        return PX_EINTERNAL;
    if (px_timer_start(digest_task, (uint64_t)delivery_conf.digest_check_ms,
                       (uint64_t)delivery_conf.digest_check_ms, check, NULL) < 0) {
        px_task_end(digest_task, PX_EINTERNAL);
        digest_task = NULL;
        return PX_EINTERNAL;
    }
    return 0;
}

void digest_worker_stop(void)
{
    if (digest_task)
        px_task_end(digest_task, 0);
    digest_task = NULL;
}
