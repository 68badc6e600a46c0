/*
 * cache.c — profiles in Redis, cache-aside (the host's px_cache_*).
 *
 * GET /v1/users/{id} (and the caller check of every authenticated route) reads the key
 * "profile:<id>" (in Redis "panthera:user:profile:<id>") first; on a miss it reads
 * PostgreSQL and stores the User JSON with a TTL of cache_ttl. Updates and deletes drop
 * the key after their statement committed and before they answer, so a client never
 * reads its own write stale.
 *
 * Cached values are the User JSON behind a short tag (PROFILE_TAG): a value without it is
 * not ours (or from an older format) and counts as a miss. GET /v1/users/me answers with
 * the cached bytes as they are (caller_answer): the most frequent authenticated read then
 * parses and prints no JSON at all.
 *
 * Redis is an accelerator, never a dependency: when it is not configured, not connected
 * or the call fails, px_cache_get reports a miss and the read goes to PostgreSQL and
 * succeeds (the host logs the outage once).
 *
 * Known limits, accepted for a cache with a short TTL: a reader that missed, read the old
 * row and stores it just after a writer dropped the key leaves the old profile cached until
 * the TTL ends; and a write made while Redis is unreachable cannot drop the key, so a
 * profile cached before the outage may be served for up to cache_ttl once Redis is back.
 */
#include <stdlib.h>
#include <string.h>

#include "user.h"

#define KEY_PREFIX "profile:"
#define PROFILE_TAG "u1:"
#define PROFILE_TAG_LEN (sizeof(PROFILE_TAG) - 1)

typedef struct load {
    char id[37];
    const char *key;
    profile_fn cb; /* NULL: answer 200 with the User, a cached one as its bytes are */
    void *ctx;
    bool caller; /* the caller's own row: 401 when it is gone */
} load_t;

static int found(px_req_t *req, load_t *l, json_t *user)
{
    if (!user && l->caller)
        return px_res_error(req, 401, "unauthorized", "this account no longer exists", NULL);
    return l->cb ? l->cb(req, user, l->ctx) : px_res_json(req, 200, user);
}

static int from_db(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    load_t *l = ud;
    if (px_pg_rows(res) == 0)
        return found(req, l, NULL);
    json_t *user = store_user_json(res, 0, 0);
    char *text = json_dumps(user, JSON_COMPACT);
    if (text) {
        size_t len = strlen(text);
        char *value = px_req_alloc(req, PROFILE_TAG_LEN + len);
        memcpy(value, PROFILE_TAG, PROFILE_TAG_LEN);
        memcpy(value + PROFILE_TAG_LEN, text, len);
        /* Nobody waits for it: the answer goes out now, the cache fills meanwhile. */
        px_cache_set(req, l->key, value, PROFILE_TAG_LEN + len, user_settings.cache_ttl * 1000);
        free(text);
    }
    return found(req, l, user);
}

static int from_cache(px_req_t *req, const char *text, size_t len, void *ud)
{
    load_t *l = ud;
    if (text && len > PROFILE_TAG_LEN && !memcmp(text, PROFILE_TAG, PROFILE_TAG_LEN)) {
        text += PROFILE_TAG_LEN;
        len -= PROFILE_TAG_LEN;
        if (!l->cb)
            return px_res_send(req, 200, "application/json; charset=utf-8", text, len);
        json_t *user = json_loadb(text, len, 0, NULL);
        if (json_is_object(user) && json_is_string(json_object_get(user, "role")))
            return found(req, l, user);
        json_decref(user); /* damaged: read the row and write it again */
    }
    return store_user_by_id(req, l->id, from_db, l);
}

static int load(px_req_t *req, const char *id, profile_fn cb, void *ctx, bool caller)
{
    load_t *l = px_req_alloc(req, sizeof(*l));
    /* Only a token's subject can be other than a uuid (a path's id passed px_req_uuid). */
    if (px_uuid_parse(id, l->id))
        return px_res_error(req, 401, "unauthorized", "this account does not exist", NULL);
    l->key = px_req_printf(req, KEY_PREFIX "%s", l->id);
    l->cb = cb;
    l->ctx = ctx;
    l->caller = caller;
    return px_cache_get(req, l->key, from_cache, l);
}

int profile_load(px_req_t *req, const char *id, profile_fn cb, void *ctx)
{
    return load(req, id, cb, ctx, false);
}

int profile_forget(px_req_t *req, const char *id, px_cache_done_fn then, void *ctx)
{
    return px_cache_del(req, px_req_printf(req, KEY_PREFIX "%s", id), then, ctx);
}

int caller_load(px_req_t *req, profile_fn cb, void *ctx)
{
    return load(req, px_req_caller_id(req), cb, ctx, true);
}

int caller_answer(px_req_t *req)
{
    return load(req, px_req_caller_id(req), NULL, NULL, true);
}
