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
 * Counting happens in Redis so that every worker of every host shares one count. With
 * Redis down the throttle allows everything (and says so in the log once): refusing every
 * login because the cache is away would be worse.
 *
 * Per client address, POST /v1/auth/login is limited by the host's [ratelimit] (see
 * conf.d/20-user.conf): the SDK lends plugins no client address, and the host already
 * knows which proxies to believe.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "user.h"

#define KEY_PREFIX "panthera:user:login:"

/* KEYS[1] the counter, ARGV[1] the limit, ARGV[2] the window in ms. Returns {count, 0}
 * with the attempt taken, or {count, ms left} when the account is over its limit. */
static const char reserve_script[] =
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "if n >= tonumber(ARGV[1]) then return {n, redis.call('PTTL', KEYS[1])} end "
    "n = redis.call('INCR', KEYS[1]) "
    "if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
    "return {n, 0}";

/* Gives an attempt back, never below zero, never resurrecting an expired counter. */
static const char release_script[] = "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "
                                     "if n > 0 then return redis.call('DECR', KEYS[1]) end "
                                     "return 0";

typedef struct limit_op {
    char key[sizeof(KEY_PREFIX) + 64];
    limit_fn cb;
    void *ctx;
} limit_op_t;

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
            px_log(user_plugin, PX_LOG_WARN, "login throttle: unexpected Redis reply; allowing");
        op->cb(req, false, 0, op->ctx);
        return;
    }
    long long pttl = px_redis_integer(px_redis_element(reply, 1));
    if (pttl == 0) {
        op->cb(req, false, 0, op->ctx);
        return;
    }
    op->cb(req, true, pttl > 0 ? (pttl + 999) / 1000 : 1, op->ctx);
}

int limit_reserve(px_req_t *req, const char *subject, limit_fn cb, void *ctx)
{
    limit_op_t *op = px_req_alloc(req, sizeof(*op));
    make_key(subject, op->key, sizeof(op->key));
    op->cb = cb;
    op->ctx = ctx;
    char limit[24], window[24];
    snprintf(limit, sizeof(limit), "%lld", (long long)user_settings.login_limit);
    snprintf(window, sizeof(window), "%lld", (long long)user_settings.login_window_ms);
    const char *argv[] = {"EVAL", reserve_script, "1", op->key, limit, window};
    int rc = px_redis_command(req, 6, argv, NULL, reserved, op);
    if (rc) {
        user_redis_state(false);
        cb(req, false, 0, ctx);
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

void limit_release(px_req_t *req, const char *subject)
{
    char key[sizeof(KEY_PREFIX) + 64];
    make_key(subject, key, sizeof(key));
    const char *argv[] = {"EVAL", release_script, "1", key};
    /* Nobody waits for it: the command is on its way before the login answers. */
    if (px_redis_command(req, 4, argv, NULL, released, NULL) == PX_EUNAVAIL)
        user_redis_state(false);
}
