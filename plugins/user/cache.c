/*
 * cache.c — profiles in Redis, cache-aside.
 *
 * GET /v1/users/{id} (and the caller check of every authenticated route) reads
 * "panthera:user:profile:<id>" first; on a miss it reads PostgreSQL and stores the User
 * JSON with a TTL of cache_ttl. Updates and deletes drop the key after their statement
 * committed and before they answer, so a client never reads its own write stale.
 *
 * Cached values are the User JSON behind a short tag (PROFILE_TAG): a value without it is
 * not ours (or from an older format) and counts as a miss. GET /v1/users/me answers with
 * the cached bytes as they are (caller_answer): the most frequent authenticated read then
 * parses and prints no JSON at all.
 *
 * Redis is an accelerator, never a dependency: when it is not configured, not connected
 * (px_redis_command says PX_EUNAVAIL) or the call fails (the callback gets an error), the
 * read goes to PostgreSQL and succeeds. The change of state is logged once each way.
 *
 * Known limits, accepted for a cache with a short TTL: a reader that missed, read the old
 * row and stores it just after a writer dropped the key leaves the old profile cached until
 * the TTL ends; and a write made while Redis is unreachable cannot drop the key, so a
 * profile cached before the outage may be served for up to cache_ttl once Redis is back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"

#define KEY_PREFIX "panthera:user:profile:"
#define PROFILE_TAG "u1:"
#define PROFILE_TAG_LEN (sizeof(PROFILE_TAG) - 1)
#define KEY_MAX (sizeof(KEY_PREFIX) + 40)

void user_redis_state(bool up)
{
    static bool down;
    if (!up && !down)
        px_log(user_plugin, PX_LOG_WARN,
               "Redis is unavailable: profiles are read from PostgreSQL without the cache "
               "until it is back");
    else if (up && down)
        px_log(user_plugin, PX_LOG_INFO,
               "Redis is back: caching profiles again");
    down = !up;
}

typedef struct load {
    char key[KEY_MAX];
    const char *id;
    profile_fn cb;
    void *ctx;
    bool answer_cached; /* a cached profile is sent as it is, without calling cb */
} load_t;

static void ignore_reply(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    (void)req;
    (void)reply;
    (void)ud;
    user_redis_state(err == 0);
}

static void from_db(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    load_t *l = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    if (px_pg_rows(res) == 0) {
        l->cb(req, NULL, l->ctx);
        return;
    }
    json_t *user = store_user_json(res, 0, 0);
    char *text = json_dumps(user, JSON_COMPACT);
    if (text) {
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%lld", (long long)user_settings.cache_ttl);
        size_t len = strlen(text);
        const char *argv[] = {"SET", l->key, PROFILE_TAG, "EX", ttl};
        size_t argvlen[] = {3, strlen(l->key), PROFILE_TAG_LEN + len, 2, strlen(ttl)};
        char *value = px_req_alloc(req, PROFILE_TAG_LEN + len);
        memcpy(value, PROFILE_TAG, PROFILE_TAG_LEN);
        memcpy(value + PROFILE_TAG_LEN, text, len);
        argv[2] = value;
        /* Nobody waits for it: the answer goes out now, the cache fills meanwhile. */
        if (px_redis_command(req, 5, argv, argvlen, ignore_reply, NULL) == PX_EUNAVAIL)
            user_redis_state(false);
        free(text);
    }
    l->cb(req, user, l->ctx);
}

static void from_cache(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    load_t *l = ud;
    user_redis_state(err == 0);
    size_t len = 0;
    const char *text = !err && px_redis_type(reply) == PX_REDIS_STRING
                           ? px_redis_string(reply, &len)
                           : NULL;
    if (text && len > PROFILE_TAG_LEN && !memcmp(text, PROFILE_TAG, PROFILE_TAG_LEN)) {
        text += PROFILE_TAG_LEN;
        len -= PROFILE_TAG_LEN;
        if (l->answer_cached) {
            px_res_send(req, 200, "application/json; charset=utf-8", text, len);
            return;
        }
        json_t *user = json_loadb(text, len, 0, NULL);
        if (json_is_object(user) && json_is_string(json_object_get(user, "role"))) {
            l->cb(req, user, l->ctx);
            return;
        }
        json_decref(user); /* damaged: read the row and write it again */
    }
    int rc = store_user_by_id(req, l->id, from_db, l);
    if (rc)
        user_fail(req, rc);
}

static int load(px_req_t *req, const char *id, profile_fn cb, void *ctx, bool answer_cached)
{
    load_t *l = px_req_alloc(req, sizeof(*l));
    snprintf(l->key, sizeof(l->key), KEY_PREFIX "%s", id);
    l->id = id;
    l->cb = cb;
    l->ctx = ctx;
    l->answer_cached = answer_cached;
    const char *argv[] = {"GET", l->key};
    int rc = px_redis_command(req, 2, argv, NULL, from_cache, l);
    if (rc == 0)
        return 0;
    if (rc == PX_EUNAVAIL)
        user_redis_state(false);
    return store_user_by_id(req, id, from_db, l);
}

int profile_load(px_req_t *req, const char *id, profile_fn cb, void *ctx)
{
    return load(req, id, cb, ctx, false);
}

typedef struct forget {
    void (*then)(px_req_t *req, void *ctx);
    void *ctx;
} forget_t;

static void forgotten(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    (void)reply;
    forget_t *f = ud;
    user_redis_state(err == 0);
    f->then(req, f->ctx);
}

int profile_forget(px_req_t *req, const char *id, void (*then)(px_req_t *req, void *ctx), void *ctx)
{
    forget_t *f = px_req_alloc(req, sizeof(*f));
    f->then = then;
    f->ctx = ctx;
    char key[KEY_MAX];
    snprintf(key, sizeof(key), KEY_PREFIX "%s", id);
    const char *argv[] = {"DEL", key};
    int rc = px_redis_command(req, 2, argv, NULL, forgotten, f);
    if (rc) {
        user_redis_state(rc != PX_EUNAVAIL);
        then(req, ctx);
    }
    return 0;
}

typedef struct caller {
    char id[37];
    profile_fn cb;
    void *ctx;
} caller_t;

static void caller_found(px_req_t *req, json_t *user, void *ud)
{
    caller_t *c = ud;
    if (!user) {
        px_res_error(req, 401, "unauthorized", "this account no longer exists", NULL);
        return;
    }
    c->cb(req, user, c->ctx);
}

static int caller(px_req_t *req, profile_fn cb, void *ctx, bool answer_cached)
{
    caller_t *c = px_req_alloc(req, sizeof(*c));
    if (px_uuid_parse(px_req_caller_id(req), c->id)) {
        px_res_error(req, 401, "unauthorized", "this account does not exist", NULL);
        return 0;
    }
    c->cb = cb;
    c->ctx = ctx;
    return load(req, c->id, caller_found, c, answer_cached);
}

int caller_load(px_req_t *req, profile_fn cb, void *ctx)
{
    return caller(req, cb, ctx, false);
}

static void answer_profile(px_req_t *req, json_t *user, void *ctx)
{
    (void)ctx;
    px_res_json(req, 200, user);
}

int caller_answer(px_req_t *req)
{
    return caller(req, answer_profile, NULL, true);
}
