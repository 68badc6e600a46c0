/*
 * limit.c — the failed-login throttle, per account.
 *
 * Each account has a counter in Redis, "panthera:user:login:<sha256 of the subject>", where
 * the subject is the account's id when the login names one (so failures by username also
 * hold back logins by email), else the login as typed, lower-cased (an unknown name is
 * throttled like a known one, so the throttle says nothing about which accounts exist).
 * At most login_limit failed logins per account per login_window; beyond that, every login
 * of the account is answered 429 with Retry-After until the window ends, without checking
 * the password (the right one included: otherwise the throttle would be an oracle).
 *
 * Why reserve, not count afterwards: checking the count, then verifying, then counting a
 * failure lets every guess sent in parallel pass the check before the first failure is
 * counted — an attacker would get as many guesses per window as it can send at once. So a
 * login takes an attempt before its password is checked, in the same script that checks
 * the count (atomically, in Redis), and a successful login gives its attempt back: the
 * counter holds failures and attempts in flight, and honest clients that log in often are
 * never slowed. The first attempt starts the window; the script sets the TTL whenever the
 * key has none, so a counter can never outlive its window.
 *
 * Counting happens in Redis so that every worker of every host shares one count. While
 * Redis is away (not configured, not connected, or a call fails) the same reservation is
 * made in PostgreSQL instead, in user_login_attempts, by one statement: an upsert that
 * only takes the attempt while the account is under its limit, so parallel guesses are
 * serialised by the row lock as the script serialises them in Redis. Turning the
 * throttle off instead let 15 wrong passwords in a row through (issue 11). The two
 * stores do not share counts: a window begun in one starts afresh in the other when
 * Redis leaves or comes back. Only when PostgreSQL does not answer either is a login
 * let through to its lookup, which then fails on the same outage.
 *
 * Per client address, POST /v1/auth/login is limited by the host's [ratelimit] (see
 * conf.d/20-user.conf): the SDK lends plugins no client address, and the host already
 * knows which proxies to believe.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"

#define KEY_PREFIX "panthera:user:login:"

/* KEYS[1] the counter, ARGV[1] the limit, ARGV[2] the window in ms. Returns {count, 0}
 * with the attempt taken, or {count, ms left} when the account is over its limit. */
#define RESERVE_LUA                                                                       \
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "                               \
    "if n >= tonumber(ARGV[1]) then return {n, redis.call('PTTL', KEYS[1])} end "          \
    "n = redis.call('INCR', KEYS[1]) "                                                     \
    "if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end " \
    "return {n, 0}"

/* Gives an attempt back, never below zero, never resurrecting an expired counter. */
#define RELEASE_LUA                                                                       \
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "                               \
    "if n > 0 then return redis.call('DECR', KEYS[1]) end return 0"

/* Sent by SHA (px_redis_eval), made in init. */
static px_redis_script_t *reserve_script, *release_script;

typedef struct limit_op {
    char key[sizeof(KEY_PREFIX) + 64];
    char limit[24], window[24]; /* login_limit and login_window_ms as text */
    bool *in_pg;
    limit_fn cb;
    void *ctx;
} limit_op_t;

int limit_init(px_plugin_t *self)
{
    limit_fini();
    reserve_script = px_redis_script_new(self, RESERVE_LUA);
    release_script = px_redis_script_new(self, RELEASE_LUA);
    return reserve_script && release_script ? 0 : PX_EINTERNAL;
}

void limit_fini(void)
{
    px_redis_script_free(reserve_script);
    px_redis_script_free(release_script);
    reserve_script = release_script = NULL;
}

/* $1 the key, $2 the limit, $3 the window in ms. One row: the count when the attempt was
 * taken (NULL when the account is over its limit), and the ms left of the window as it
 * was before the statement. Expired rows of other accounts are removed a few at a time. */
static const char pg_reserve_sql[] =
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

static const char pg_release_sql[] =
    "UPDATE user_login_attempts SET count = count - 1 "
    "WHERE key = $1 AND count > 0 AND expires_at > now()";

static void pg_reserved(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                        void *ud)
{
    limit_op_t *op = ud;
    if (err || px_pg_rows(res) != 1) {
        op->cb(req, false, 0, op->ctx);
        return;
    }
    if (px_pg_value(res, 0, 0)) {
        op->cb(req, false, 0, op->ctx);
        return;
    }
    const char *ms = px_pg_value(res, 0, 1);
    long long pttl = ms ? strtoll(ms, NULL, 10) : 0;
    op->cb(req, true, pttl > 0 ? (pttl + 999) / 1000 : 1, op->ctx);
}

/* Redis is away: the same reservation in PostgreSQL. */
static void reserve_in_pg(px_req_t *req, limit_op_t *op)
{
    *op->in_pg = true;
    const char *values[] = {op->key, op->limit, op->window};
    if (px_pg_query(req, "user_login_reserve", pg_reserve_sql, 3, values, pg_reserved, op))
        op->cb(req, false, 0, op->ctx);
}

static void make_key(const char *subject, char *key, size_t size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (const char *s = subject; *s; s++) {
        char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
        EVP_DigestUpdate(ctx, &c, 1);
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    int n = snprintf(key, size, "%s", KEY_PREFIX);
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        n += snprintf(key + n, size - (size_t)n, "%02x", md[i]);
}

static void reserved(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    limit_op_t *op = ud;
    user_redis_state(err == 0);
    if (err || px_redis_type(reply) != PX_REDIS_ARRAY || px_redis_elements(reply) != 2) {
        if (!err)
            px_log(user_plugin, PX_LOG_WARN,
                   "login throttle: unexpected Redis reply; counting in PostgreSQL");
        reserve_in_pg(req, op);
        return;
    }
    long long pttl = px_redis_integer(px_redis_element(reply, 1));
    if (pttl == 0) {
        op->cb(req, false, 0, op->ctx);
        return;
    }
    op->cb(req, true, pttl > 0 ? (pttl + 999) / 1000 : 1, op->ctx);
}

int limit_reserve(px_req_t *req, const char *subject, bool *in_pg, limit_fn cb, void *ctx)
{
    limit_op_t *op = px_req_alloc(req, sizeof(*op));
    make_key(subject, op->key, sizeof(op->key));
    op->in_pg = in_pg;
    *in_pg = false;
    op->cb = cb;
    op->ctx = ctx;
    snprintf(op->limit, sizeof(op->limit), "%lld", (long long)user_settings.login_limit);
    snprintf(op->window, sizeof(op->window), "%lld", (long long)user_settings.login_window_ms);
    const char *argv[] = {op->key, op->limit, op->window};
    int rc = px_redis_eval(req, reserve_script, 1, 3, argv, NULL, reserved, op);
    if (rc) {
        user_redis_state(false);
        reserve_in_pg(req, op);
    }
    return 0;
}

static void released(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    (void)req;
    (void)reply;
    (void)ud;
    user_redis_state(err == 0);
}

static void pg_released(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                        void *ud)
{
    (void)req;
    (void)res;
    (void)err;
    (void)ud;
}

void limit_release(px_req_t *req, const char *subject, bool in_pg)
{
    char key[sizeof(KEY_PREFIX) + 64];
    make_key(subject, key, sizeof(key));
    if (in_pg) {
        const char *values[] = {key};
        px_pg_query(req, "user_login_release", pg_release_sql, 1, values, pg_released, NULL);
        return;
    }
    const char *argv[] = {key};
    /* Nobody waits for it: the command is on its way before the login answers. */
    if (px_redis_eval(req, release_script, 1, 1, argv, NULL, released, NULL) == PX_EUNAVAIL)
        user_redis_state(false);
}
