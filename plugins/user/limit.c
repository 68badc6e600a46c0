/*
 * limit.c — the failed-login throttle, per account.
 *
 * Each account has a counter, a row of user_login_attempts keyed by the SHA-256 of the
 * subject: the account's id when the login names one (so failures by username also hold
 * back logins by email), else the login as typed, lower-cased (an unknown name is
 * throttled like a known one, so the throttle says nothing about which accounts exist).
 * At most login_limit failed logins per account per login_window; beyond that, every login
 * of the account is answered 429 with Retry-After until the window ends, without checking
 * the password (the right one included: otherwise the throttle would be an oracle).
 *
 * Why reserve, not count afterwards: checking the count, then verifying, then counting a
 * failure lets every guess sent in parallel pass the check before the first failure is
 * counted — an attacker would get as many guesses per window as it can send at once. So a
 * login takes an attempt before its password is checked, in one statement that checks the
 * count (an upsert that only takes the attempt while the account is under its limit;
 * parallel guesses are serialised by the row lock), and a successful login gives its
 * attempt back: the counter holds failures and attempts in flight, and honest clients that
 * log in often are never slowed. The first attempt starts the window.
 *
 * Why PostgreSQL and not Redis. The counter used to live in Redis, falling back to this
 * table while Redis was away. But "away" includes a command that merely took longer than
 * [redis] command_timeout on a busy host, and the two stores do not share counts: under
 * load, 20 parallel guesses with login_limit 3 got 5 checked, some counted in each store.
 * One store cannot disagree with itself. It costs one short statement per login, beside a
 * password hash that costs tens of milliseconds of CPU, and it is shared by every worker
 * of every host as Redis was. When PostgreSQL does not answer, a login is let through to
 * its lookup, which then fails on the same outage.
 *
 * Per client address, POST /v1/auth/login is limited by the host's [ratelimit] (see
 * conf.d/20-user.conf): the SDK lends plugins no client address, and the host already
 * knows which proxies to believe.
 */
#include <string.h>

#include "user.h"

typedef struct limit_op {
    char key[65];
    limit_fn cb;
    void *ctx;
} limit_op_t;

/* $1 the key, $2 the limit, $3 the window in ms. One row: the count when the attempt was
 * taken (NULL when the account is over its limit), and the ms left of the window as it
 * was before the statement. Expired rows of other accounts are removed a few at a time. */
static const char reserve_sql[] =
    "WITH up AS (INSERT INTO user_login_attempts AS a (key, count, expires_at) "
    "  VALUES ($1, 1, now() + make_interval(secs => $3::double precision / 1000)) "
    "  ON CONFLICT (key) DO UPDATE SET "
    "    count = CASE WHEN a.expires_at <= now() THEN 1 ELSE a.count + 1 END, "
    "    expires_at = CASE WHEN a.expires_at <= now() THEN EXCLUDED.expires_at "
    "                 ELSE a.expires_at END "
    "  WHERE a.expires_at <= now() OR a.count < $2::int "
    "  RETURNING a.count), "
    "gc AS (DELETE FROM user_login_attempts WHERE key IN (SELECT key FROM "
    "  user_login_attempts WHERE expires_at < now() AND key <> $1 LIMIT 8)) "
    "SELECT (SELECT count FROM up), (SELECT ceil(extract(epoch FROM expires_at - now()) * "
    "  1000)::bigint FROM user_login_attempts WHERE key = $1)";

/* Gives an attempt back, never below zero, never into an expired window. */
static const char release_sql[] = "UPDATE user_login_attempts SET count = count - 1 "
                                  "WHERE key = $1 AND count > 0 AND expires_at > now()";

/* The hex SHA-256 of `subject` in ASCII lower case (tokens_hash's digest). */
static void make_key(px_req_t *req, const char *subject, char key[65])
{
    char *lower = px_req_strdup(req, subject);
    for (char *s = lower; *s; s++)
        *s = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
    tokens_hash(lower, strlen(lower), key);
}

static void reserved(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    limit_op_t *op = ud;
    if (err || px_pg_rows(res) != 1 || px_pg_value(res, 0, 0)) {
        user_fail(req, op->cb(req, false, 0, op->ctx));
        return;
    }
    int64_t left = 0;
    px_pg_int64(res, 0, 1, &left);
    user_fail(req, op->cb(req, true, left > 0 ? (left + 999) / 1000 : 1, op->ctx));
}

int limit_reserve(px_req_t *req, const char *subject, limit_fn cb, void *ctx)
{
    limit_op_t *op = px_req_alloc(req, sizeof(*op));
    make_key(req, subject, op->key);
    op->cb = cb;
    op->ctx = ctx;
    const char *values[] = {op->key,
                            px_req_printf(req, "%lld", (long long)user_settings.login_limit),
                            px_req_printf(req, "%lld", (long long)user_settings.login_window_ms)};
    if (px_pg_query(req, "user_login_reserve", reserve_sql, 3, values, reserved, op))
        return cb(req, false, 0, ctx);
    return 0;
}

static void released(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    (void)req, (void)res, (void)err, (void)ud;
}

void limit_release(px_req_t *req, const char *subject)
{
    char key[65];
    make_key(req, subject, key);
    const char *values[] = {key};
    /* Nobody waits for it: the statement is on its way before the login answers. */
    px_pg_query(req, "user_login_release", release_sql, 1, values, released, NULL);
}
