/*
 * local.c — each worker's own copies of the anonymous renders (hot pages, lists), served
 * without the round trip to Redis.
 *
 * Why. A kept render (render.c) still costs every request one Redis call: a Lua script,
 * its reply parsed, two more wake-ups of a loop shared by 64 connections. Most of the
 * time nothing has changed since the previous request, so each worker keeps the last
 * renders it served in its own memory and answers them from there.
 *
 * Correctness: the generation. A copy is kept under the host's generation (px_generation
 * on the plugin's channel "version": server/api_generation.c), read when the request
 * began; it is served only while the generation is still that one. Every change that bumps the content version in Redis bumps the
 * generation right after, before its answer goes out: the writers (content_touch) and
 * the hot consumer (feed.c). So a client that wrote and then reads, on any worker of the
 * host, finds the generation moved and is served from Redis under the new version, where
 * its write shows. The order matters: Redis first, then the generation. A reader that
 * sees the new generation thus finds the new version in Redis; one that read the old
 * generation may keep a newer render under it, which the bump has already made
 * unreachable.
 *
 * Other hosts hear every bump through the channel: as prompt as pub/sub but not
 * synchronous, so a read on host B a moment after a write on host A may be answered from
 * B's copy before B heard; only a Redis read per request closes that, and this file
 * exists to save it. Deployments that need read-your-write across hosts behind a
 * balancer without affinity set local_pages = 0 (every render from Redis, as before).
 * Copies are served only while the channel is up; when it comes back the host's
 * generation moves, so nothing kept before is served again. local_ttl_ms bounds the age
 * of any copy whatever happens.
 *
 * Renewal. In the last quarter of its time a copy is a miss for one caller, who fetches
 * it again (from Redis, or renders it), while the others still get it: without that,
 * every connection of the worker would miss at the same instant when it expires, and if
 * the render in Redis had expired meanwhile (nobody asked Redis in its own renewal
 * window, since the copies answered), all of them would render it in PostgreSQL at once,
 * every RENDER_TTL_MS (the p99 of a search went past a second). The generation is
 * checked as always: a renewal never serves what a bump made unreachable.
 *
 * Memory. At most local_pages copies and local_bytes bytes (keys and texts) per worker;
 * a render larger than that is not kept. A new copy first replaces one of its key, then
 * evicts copies of an older generation or past their time, then the oldest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "content.h"

typedef struct entry {
    char *key;
    uint64_t hash;
    char *text;
    size_t len;
    uint64_t gen;
    uint64_t expires;  /* monotonic ms */
    uint64_t renew_at; /* from then on, one caller renews it (RENEW below) */
    bool renewing;     /* that caller is on its way */
    uint64_t born;     /* insertion order: the oldest goes first */
} entry_t;

static px_plugin_t *plugin;
static px_generation_t *generation;
static int64_t max_pages, max_bytes, ttl_ms;
static entry_t *entries;
static int count;
static size_t used;
static uint64_t births;
static int hits_metric = -1, misses_metric = -1;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void drop(int i)
{
    used -= strlen(entries[i].key) + entries[i].len;
    free(entries[i].key);
    free(entries[i].text);
    entries[i] = entries[--count];
}

static void drop_all(void)
{
    while (count)
        drop(count - 1);
}

/* ---- the generation ---- */

uint64_t local_generation(void)
{
    return px_generation_read(generation, NULL);
}

void local_bump(px_req_t *ctx)
{
    px_generation_bump(generation, ctx);
}

static void worker_start(px_plugin_t *self, void *ud)
{
    (void)self, (void)ud;
    if (max_pages)
        entries = calloc((size_t)max_pages, sizeof(*entries));
}

static void worker_stop(px_plugin_t *self, void *ud)
{
    (void)self, (void)ud;
    drop_all();
    free(entries);
    entries = NULL;
}

int local_init(px_plugin_t *self)
{
    plugin = self;
    px_config_declare(self, "local_pages", "64");
    px_config_declare(self, "local_bytes", "8388608");
    px_config_declare(self, "local_ttl_ms", "2000");
    int rc = px_config_int(self, "local_pages", &max_pages);
    if (!rc)
        rc = px_config_int(self, "local_bytes", &max_bytes);
    if (!rc)
        rc = px_config_int(self, "local_ttl_ms", &ttl_ms);
    if (rc || max_pages < 0 || max_pages > 4096 || max_bytes < 0 ||
        max_bytes > (int64_t)1 << 30 || ttl_ms < 1 || ttl_ms > 600000) {
        px_log(self, PX_LOG_ERROR, "[plugin:content] local_pages must be 0 to 4096, "
               "local_bytes 0 to 1073741824 and local_ttl_ms 1 to 600000");
        return PX_EINVAL;
    }
    rc = px_generation_new(self, "version", max_pages ? 0 : PX_GENERATION_PUBLISH_ONLY,
                           &generation);
    if (!rc)
        rc = px_on_worker_start(self, worker_start, NULL);
    if (!rc)
        rc = px_on_worker_stop(self, worker_stop, NULL);
    hits_metric = px_metric_counter(self, "content_local_hits_total",
                                    "Renders served from a worker's own copy.");
    misses_metric = px_metric_counter(self, "content_local_misses_total",
                                      "Renders a worker had no current copy of.");
    return rc;
}

/* ---- the copies ---- */

bool local_enabled(void)
{
    int trusted = 0;
    px_generation_read(generation, &trusted);
    return trusted && entries;
}

const char *local_get(const char *key, uint64_t gen, size_t *len)
{
    if (!local_enabled() || !key)
        return NULL;
    uint64_t h = hash_of(key), now = now_ms();
    for (int i = 0; i < count; i++) {
        entry_t *e = &entries[i];
        if (e->hash == h && e->gen == gen && e->expires > now && !strcmp(e->key, key)) {
            if (now >= e->renew_at && !e->renewing) {
                e->renewing = true;
                break;
            }
            *len = e->len;
            px_metric_add(plugin, hits_metric, 1);
            return e->text;
        }
    }
    px_metric_add(plugin, misses_metric, 1);
    return NULL;
}

/* The copy to give up for a new one: one that can no longer be served, else the
 * oldest. */
static int victim(uint64_t current, uint64_t now)
{
    int oldest = 0;
    for (int i = 0; i < count; i++) {
        if (entries[i].gen != current || entries[i].expires <= now)
            return i;
        if (entries[i].born < entries[oldest].born)
            oldest = i;
    }
    return oldest;
}

void local_put(const char *key, uint64_t gen, const char *text, size_t len)
{
    uint64_t current = local_generation(), now = now_ms();
    size_t need = key ? strlen(key) + len : 0;
    /* Kept under a generation already gone, it could never be served. */
    if (!local_enabled() || !key || gen != current || need > (size_t)max_bytes)
        return;
    uint64_t h = hash_of(key);
    for (int i = 0; i < count; i++)
        if (entries[i].hash == h && !strcmp(entries[i].key, key)) {
            drop(i);
            break;
        }
    while (count > 0 && (count == max_pages || used + need > (size_t)max_bytes))
        drop(victim(current, now));
    char *k = strdup(key), *t = malloc(len ? len : 1);
    if (!k || !t) {
        free(k);
        free(t);
        return;
    }
    memcpy(t, text, len);
    entries[count++] = (entry_t){.key = k, .hash = h, .text = t, .len = len, .gen = gen,
                                 .expires = now + (uint64_t)ttl_ms,
                                 .renew_at = now + (uint64_t)ttl_ms * 3 / 4, .born = ++births};
    used += need;
}
