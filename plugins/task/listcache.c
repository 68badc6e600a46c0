/*
 * listcache.c — the task-list pages a worker keeps, each under the list version it shows.
 *
 * Rendering a 50-task page (its JSON built by PostgreSQL) cost PostgreSQL about 0.6 ms of
 * CPU, and a board asks for the same page over and over while nothing in it changes. So
 * a worker keeps the answers it sent: one entry per normalised query (project, sort,
 * filters, page, limit: tasks.c builds the key), holding the whole answer body and the
 * project's list version it was rendered at (migrations/006: every write that changes a
 * list bumps it in its own transaction). The list statement reads the version with the
 * caller's membership and renders only when it differs from the kept entry's (store.c),
 * so:
 *   - authorisation stays per request: the membership is read every time, and a member
 *     removed a moment ago gets 404 even while his page is kept;
 *   - a write is seen by the very next list after its commit (the version comes from
 *     PostgreSQL, not from here), whichever worker or host made it;
 *   - nothing here has to be invalidated or shared: an entry of an old version is simply
 *     never served again and is replaced by the next render of that query.
 * No part of a page depends on the caller, so one entry serves every member.
 *
 * In a worker's memory rather than Redis: a hit is then the one PostgreSQL round trip it
 * needs anyway, with no Redis call beside it and no 25 kB copied through a socket and
 * parsed; two workers render a page once each, which costs less than a Redis read per
 * request. Bounded by [plugin:task] list_cache_size bytes per worker (0: keep nothing),
 * entries plus bookkeeping, the least recently used going first; a single answer larger
 * than an eighth of that is sent but not kept, so one huge page cannot empty the cache.
 * /metrics counts hits, renders, evictions, and the bytes stored and dropped (their
 * difference is what the workers hold).
 *
 * Answered from memory alone. An entry also remembers the host generation under which
 * PostgreSQL last showed it current (generation.c says when that is safe) and until when
 * (list_cache_ttl): a list whose request read that same generation, from a caller whose
 * role in the project is kept the same way (an entry "member/<project>/<caller>", the
 * role as its body), is answered without any statement. In the last quarter of its time
 * an entry is a miss for one caller, who asks PostgreSQL and stamps it again while the
 * others are still answered, so the connections of a worker do not all ask at once when
 * it ends.
 *
 * A worker is one thread on one loop: nothing here needs a lock. The entries go when the
 * worker stops.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "task.h"

typedef struct entry entry_t;
struct entry {
    entry_t *chain;          /* the next of the bucket */
    entry_t *newer, *older;  /* the use order */
    uint64_t hash;
    int64_t version;
    bool stamped, renewing; /* shown current under `gen`; one caller is renewing that */
    uint64_t gen, until, renew_at; /* monotonic ms */
    size_t key_len, body_len, cost;
    char data[];             /* the key, then the body */
};

static struct {
    entry_t **buckets;
    size_t nbuckets;        /* a power of two; 0 before the first entry */
    size_t count, bytes;
    entry_t *newest, *oldest;
} cache;

uint64_t task_list_cache_size, task_list_cache_ttl_ms;
static int metric_hits = -1, metric_renders = -1, metric_stored = -1, metric_dropped = -1,
           metric_evictions = -1, metric_memory = -1;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* FNV-1a: keys are short and made by us; no caller chooses them to collide (a q filter
 * is part of a key, so a chain is at worst a caller's own queries). */
static uint64_t hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h;
}

static entry_t **slot(const char *key, size_t len, uint64_t h)
{
    entry_t **at = &cache.buckets[h & (cache.nbuckets - 1)];
    while (*at && ((*at)->hash != h || (*at)->key_len != len || memcmp((*at)->data, key, len)))
        at = &(*at)->chain;
    return at;
}

static void unlink_use(entry_t *e)
{
    *(e->newer ? &e->newer->older : &cache.newest) = e->older;
    *(e->older ? &e->older->newer : &cache.oldest) = e->newer;
    e->newer = e->older = NULL;
}

static void link_newest(entry_t *e)
{
    e->older = cache.newest;
    e->newer = NULL;
    *(cache.newest ? &cache.newest->newer : &cache.oldest) = e;
    cache.newest = e;
}

/* Drops `e`, which `at` points to: replaced by a newer render, evicted (`evicted`), or
 * the worker stops. */
static void drop(entry_t **at, entry_t *e, bool evicted)
{
    *at = e->chain;
    unlink_use(e);
    cache.count--;
    cache.bytes -= e->cost;
    px_metric_add(task_plugin, metric_dropped, e->cost);
    if (evicted)
        px_metric_add(task_plugin, metric_evictions, 1);
    free(e);
}

/* Twice the buckets once there are more entries than buckets, so chains stay short. A
 * failed allocation keeps the old table (longer chains, still correct). */
static void grow(void)
{
    size_t n = cache.nbuckets ? cache.nbuckets * 2 : 64;
    entry_t **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < cache.nbuckets; i++)
        for (entry_t *e = cache.buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(cache.buckets);
    cache.buckets = b;
    cache.nbuckets = n;
}

int64_t listcache_get(const char *key, size_t len, const char **body, size_t *body_len)
{
    if (!cache.count)
        return -1;
    entry_t *e = *slot(key, len, hash(key, len));
    if (!e)
        return -1;
    unlink_use(e);
    link_newest(e);
    *body = e->data + e->key_len;
    *body_len = e->body_len;
    return e->version;
}

static void stamp(entry_t *e, uint64_t gen)
{
    uint64_t now = now_ms();
    e->stamped = true;
    e->renewing = false;
    e->gen = gen;
    e->until = now + task_list_cache_ttl_ms;
    e->renew_at = now + task_list_cache_ttl_ms * 3 / 4;
}

int64_t listcache_fresh(const char *key, size_t len, uint64_t gen, const char **body,
                        size_t *body_len)
{
    if (!cache.count || !task_list_cache_ttl_ms || !generation_heard())
        return -1;
    entry_t *e = *slot(key, len, hash(key, len));
    if (!e || !e->stamped || e->gen != gen)
        return -1;
    uint64_t now = now_ms();
    if (now >= e->until)
        return -1;
    if (now >= e->renew_at && !e->renewing) {
        e->renewing = true;
        return -1;
    }
    unlink_use(e);
    link_newest(e);
    *body = e->data + e->key_len;
    *body_len = e->body_len;
    return e->version;
}

void listcache_stamp(const char *key, size_t len, int64_t version, uint64_t gen)
{
    if (!cache.count)
        return;
    entry_t *e = *slot(key, len, hash(key, len));
    if (e && e->version == version)
        stamp(e, gen);
}

void listcache_put(const char *key, size_t len, int64_t version, uint64_t gen,
                   const char *body, size_t body_len)
{
    size_t cost = sizeof(entry_t) + len + body_len;
    if (cost > task_list_cache_size / 8)
        return;
    if (cache.count >= cache.nbuckets)
        grow();
    if (!cache.nbuckets)
        return;
    uint64_t h = hash(key, len);
    entry_t **at = slot(key, len, h);
    if (*at) {
        /* Two renders of one query crossed: keep the newer version's. */
        if ((*at)->version > version)
            return;
        drop(at, *at, false);
    }
    while (cache.oldest && cache.bytes + cost > task_list_cache_size) {
        entry_t *old = cache.oldest;
        drop(slot(old->data, old->key_len, old->hash), old, true);
    }
    entry_t *e = malloc(cost);
    if (!e)
        return;
    e->hash = h;
    e->version = version;
    e->key_len = len;
    e->body_len = body_len;
    e->cost = cost;
    e->stamped = false;
    stamp(e, gen);
    memcpy(e->data, key, len);
    memcpy(e->data + len, body, body_len);
    at = slot(key, len, h);
    e->chain = *at;
    *at = e;
    link_newest(e);
    cache.count++;
    cache.bytes += cost;
    px_metric_add(task_plugin, metric_stored, cost);
}

void listcache_served(bool kept, bool memory)
{
    px_metric_add(task_plugin, kept ? metric_hits : metric_renders, 1);
    if (memory)
        px_metric_add(task_plugin, metric_memory, 1);
}

static void listcache_clear(px_plugin_t *plugin, void *ud)
{
    (void)plugin;
    (void)ud;
    while (cache.oldest) {
        entry_t *old = cache.oldest;
        drop(slot(old->data, old->key_len, old->hash), old, false);
    }
    free(cache.buckets);
    memset(&cache, 0, sizeof(cache));
}

int listcache_config(px_plugin_t *self)
{
    int64_t size = 0, ttl = 0;
    const px_setting_t settings[] = {
        {"list_cache_size", "8m", PX_SETTING_SIZE, 0, (int64_t)1 << 34, NULL, &size},
        {"list_cache_ttl", "2s", PX_SETTING_DURATION_MS, 0, 600000, NULL, &ttl},
        {NULL, NULL, 0, 0, 0, NULL, NULL},
    };
    int rc = px_config_settings(self, settings);
    task_list_cache_size = (uint64_t)size;
    task_list_cache_ttl_ms = (uint64_t)ttl;
    struct {
        int *id;
        const char *name, *help;
    } counters[] = {
        {&metric_hits, "task_list_cache_hits_total",
         "task lists answered from a page the worker kept (its version current)"},
        {&metric_renders, "task_list_renders_total", "task lists PostgreSQL rendered"},
        {&metric_stored, "task_list_cache_stored_bytes_total",
         "bytes of task-list pages kept (entry and bookkeeping)"},
        {&metric_dropped, "task_list_cache_dropped_bytes_total",
         "bytes of task-list pages dropped (replaced, evicted); stored - dropped is held"},
        {&metric_evictions, "task_list_cache_evictions_total",
         "task-list pages dropped to stay within list_cache_size"},
        {&metric_memory, "task_list_memory_hits_total",
         "task lists answered from the worker's memory alone, without PostgreSQL"},
    };
    for (size_t i = 0; !rc && i < sizeof(counters) / sizeof(counters[0]); i++) {
        rc = px_metric_counter(self, counters[i].name, counters[i].help);
        *counters[i].id = rc;
        rc = rc < 0 ? rc : 0;
    }
    if (!rc)
        rc = px_on_worker_stop(self, listcache_clear, NULL);
    return rc;
}
