/*
 * cache.c — profiles in Redis, cache-aside.
 *
 * GET /v1/users/{id} (and the caller check of every authenticated route) reads
 * "panthera:user:profile:<id>" first; on a miss it reads PostgreSQL and stores the User
 * JSON with a TTL of cache_ttl. Updates and deletes drop the key after their statement
 * committed and before they answer, so a client never reads its own write stale.
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
#define KEY_MAX (sizeof(KEY_PREFIX) + 40)

void user_redis_state(bool up)
{
    static bool down;
    if (!up && !down)
        px_log(user_plugin, PX_LOG_WARN,
               "Redis is unavailable: profiles are read from PostgreSQL without the cache and "
               "failed logins are counted in PostgreSQL until it is back");
    else if (up && down)
        px_log(user_plugin, PX_LOG_INFO,
               "Redis is back: caching profiles and counting failed "
               "logins in it again");
    down = !up;
}

typedef struct load {
    char key[KEY_MAX];
    const char *id;
    profile_fn cb;
    void *ctx;
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
        const char *argv[] = {"SET", l->key, text, "EX", ttl};
        /* Nobody waits for it: the answer goes out now, the cache fills meanwhile. */
        if (px_redis_command(req, 5, argv, NULL, ignore_reply, NULL) == PX_EUNAVAIL)
            user_redis_state(false);
        free(text);
    }
    l->cb(req, user, l->ctx);
}

static void from_cache(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    load_t *l = ud;
    user_redis_state(err == 0);
    if (!err && px_redis_type(reply) == PX_REDIS_STRING) {
        size_t len = 0;
        const char *text = px_redis_string(reply, &len);
        json_t *user = json_loadb(text, len, 0, NULL);
        if (json_is_object(user) && json_is_string(json_object_get(user, "role"))) {
            l->cb(req, user, l->ctx);
            return;
        }
        json_decref(user); /* not ours, or damaged: read the row and write it again */
    }
    int rc = store_user_by_id(req, l->id, from_db, l);
    if (rc)
        user_fail(req, rc);
}

int profile_load(px_req_t *req, const char *id, profile_fn cb, void *ctx)
{
    load_t *l = px_req_alloc(req, sizeof(*l));
    snprintf(l->key, sizeof(l->key), KEY_PREFIX "%s", id);
    l->id = id;
    l->cb = cb;
    l->ctx = ctx;
    const char *argv[] = {"GET", l->key};
    int rc = px_redis_command(req, 2, argv, NULL, from_cache, l);
    if (rc == 0)
        return 0;
    if (rc == PX_EUNAVAIL)
        user_redis_state(false);
    return store_user_by_id(req, id, from_db, l);
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

int caller_load(px_req_t *req, profile_fn cb, void *ctx)
{
    const char *id = px_req_caller_id(req);
    if (!user_is_uuid(id)) {
        px_res_error(req, 401, "unauthorized", "this account does not exist", NULL);
        return 0;
    }
    caller_t *c = px_req_alloc(req, sizeof(*c));
    c->cb = cb;
    c->ctx = ctx;
    return profile_load(req, id, caller_found, c);
}
