/*
 * api_cache.c — cache-aside in Redis for plugins (SDK 1.2, HELPERS area: px_cache_get,
 * px_cache_set, px_cache_del).
 *
 * Why. A plugin that caches reads (the user plugin's profiles) wrote the same hundred
 * lines: build a key, GET it, treat "not configured", "not connected", a timeout and an
 * error reply all as a miss, SET with a TTL without waiting, DEL before answering a write,
 * and log the outage once rather than per request. The host does it once: Redis is an
 * accelerator here, never a dependency, so every failure is a miss and the caller reads
 * its source of truth.
 *
 * Keys are "panthera:<plugin>:<key>": two plugins that both cache "item:1" keep their own
 * entries, as prepared-statement names are per plugin (api_pg.c).
 *
 * Outages are logged once per worker each way (caches bypassed / back), from what each
 * call sees: not connected when it starts, or a transport error when it ends.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "request.h"
#include "util.h"

#define KEY_MAX 200

typedef struct cache_op {
    px_cache_fn get;
    px_cache_done_fn then;
    void *userdata;
} cache_op_t;

static void cache_state(bool up)
{
    static bool down;
    if (!up && !down)
        log_warn("Redis is unavailable: plugin caches (px_cache_*) are bypassed until it is back");
    else if (up && down)
        log_info("Redis is back: plugin caches are used again");
    down = !up;
}

/* "panthera:<plugin>:<key>" in request memory, or NULL for a bad key. */
static const char *full_key(px_req_t *r, const char *key)
{
    size_t len = key ? strlen(key) : 0;
    if (len == 0 || len > KEY_MAX)
        return NULL;
    const char *plugin = r->plugin ? r->plugin : "host";
    size_t n = strlen(plugin) + len + 11;
    char *out = api_req_alloc(r, n);
    snprintf(out, n, "panthera:%s:%s", plugin, key);
    return out;
}

static void got(px_req_t *r, const px_redis_reply_t *reply, int err, void *ud)
{
    cache_op_t *op = ud;
    cache_state(err == 0);
    size_t len = 0;
    const char *value = !err && api_redis_type(reply) == PX_REDIS_STRING
                            ? api_redis_string(reply, &len)
                            : NULL;
    api_run_answer(r, op->get(r, value, value ? len : 0, op->userdata));
}

int api_cache_get(px_req_t *r, const char *key, px_cache_fn cb, void *ud)
{
    const char *k = r && cb ? full_key(r, key) : NULL;
    if (!k)
        return PX_EINVAL;
    cache_op_t *op = api_req_alloc(r, sizeof(*op));
    op->get = cb;
    op->userdata = ud;
    const char *argv[] = {"GET", k};
    if (api_redis_command(r, 2, argv, NULL, got, op) == 0)
        return 0;
    cache_state(false);
    api_run_answer(r, cb(r, NULL, 0, ud));
    return 0;
}

int api_cache_set(px_req_t *r, const char *key, const void *value, size_t len, int64_t ttl_ms)
{
    const char *k = r && value ? full_key(r, key) : NULL;
    if (!k || ttl_ms <= 0)
        return PX_EINVAL;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
    const char *argv[] = {"SET", k, value, "PX", ttl};
    size_t argvlen[] = {3, strlen(k), len, 2, strlen(ttl)};
    int rc = api_redis_command(r, 5, argv, argvlen, NULL, NULL);
    if (rc == PX_EUNAVAIL)
        cache_state(false);
    return rc;
}

static void deleted(px_req_t *r, const px_redis_reply_t *reply, int err, void *ud)
{
    UNUSED(reply);
    cache_op_t *op = ud;
    cache_state(err == 0);
    if (op->then)
        api_run_answer(r, op->then(r, op->userdata));
}

int api_cache_del(px_req_t *r, const char *key, px_cache_done_fn then, void *ud)
{
    const char *k = r ? full_key(r, key) : NULL;
    if (!k)
        return PX_EINVAL;
    cache_op_t *op = api_req_alloc(r, sizeof(*op));
    op->then = then;
    op->userdata = ud;
    const char *argv[] = {"DEL", k};
    if (api_redis_command(r, 2, argv, NULL, deleted, op) == 0)
        return 0;
    cache_state(false);
    if (then)
        api_run_answer(r, then(r, ud));
    return 0;
}
