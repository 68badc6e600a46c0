/*
 * http_admit.c — who gets a connection when a worker runs short of them.
 *
 * A worker holds at most [http] max_connections. Before this file, a worker at its cap
 * stopped accepting, so about 8,000 sockets that never sent a byte (or idle keep-alives
 * that a client simply left open) locked every other client out, health checks included,
 * for as long as they stayed. Three rules, nginx's and then some:
 *
 * Make room. At the cap, the worker closes the connection that has waited longest
 * without a request in progress: an idle keep-alive (between requests) or one that has
 * sent nothing since it was accepted, oldest first. Both sit in a deadline list of their
 * own (http.c), so the oldest of each is that list's head: choosing costs two looks.
 * A connection accepted less than FRESH_GRACE_MS ago is left alone: its first bytes may
 * be in the kernel, unread, and closing it would throw away a client that did nothing
 * wrong. Only when nothing can be closed does the worker stop accepting, and the worker's
 * tick starts it again as soon as something can (worker.c).
 *
 * Silence is short. A connection that has sent nothing yet gets first_byte_timeout (10 s
 * by default, never more than header_timeout), not the 60 s a request that started gets.
 *
 * One address, a fraction. No client address holds more than max_connections_per_client
 * of a worker's connections (max_connections / 8 unless set); one more is closed as
 * soon as it is accepted. A peer in [ratelimit] trusted_proxies is not counted: every
 * client behind a proxy shares its address, and the proxy limits its own clients. IPv6
 * peers count per /64 and IPv4-mapped ones as IPv4, as the rate limiter counts them.
 *
 * Every shed connection is counted in /metrics (panthera_connections_shed_total, by
 * reason) and summed into one log line per worker every LOG_EVERY_MS at most: under the
 * attack this is for, a line per connection would be a second attack, on the disk.
 */
#include "http_admit.h"

#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "worker.h"

#define FRESH_GRACE_MS 1000
#define LOG_EVERY_MS 10000

typedef struct client_slot {
    ratelimit_addr_t addr; /* family 0: free */
    uint32_t count;
} client_slot_t;

typedef struct http_admit {
    client_slot_t *slots; /* open addressing, linear probing, backward-shift deletion */
    size_t mask;
    uint64_t per_client;
    /* Shed since the last log line. */
    uint64_t evicted;
    uint64_t refused;
    uint64_t last_log;
} http_admit_t;

static uint64_t per_client_cap(const http_limits_t *lim)
{
    if (lim->max_connections_per_client)
        return lim->max_connections_per_client;
    return lim->max_connections >= 8 ? lim->max_connections / 8 : 1;
}

static http_admit_t *admit_get(worker_t *w)
{
    if (!w->admit) {
        http_admit_t *a = xcalloc(1, sizeof(*a));
        size_t cap = 64;
        /* At most half full: every connection (a few over the cap while evicted ones
         * close) could come from a different address. */
        while (cap < 2 * (w->limits->max_connections + 64))
            cap *= 2;
        a->slots = xcalloc(cap, sizeof(client_slot_t));
        a->mask = cap - 1;
        a->per_client = per_client_cap(w->limits);
        w->admit = a;
    }
    return w->admit;
}

void http_admit_free(worker_t *w)
{
    if (!w->admit)
        return;
    free(w->admit->slots);
    free(w->admit);
    w->admit = NULL;
}

static size_t addr_hash(const ratelimit_addr_t *a)
{
    uint64_t h = 1469598103934665603ull ^ a->family; /* FNV-1a */
    for (size_t i = 0; i < sizeof(a->bytes); i++)
        h = (h ^ a->bytes[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static client_slot_t *find(http_admit_t *a, const ratelimit_addr_t *key, bool add)
{
    for (size_t i = addr_hash(key) & a->mask, n = 0; n <= a->mask; i = (i + 1) & a->mask, n++) {
        client_slot_t *s = &a->slots[i];
        if (s->addr.family == 0) {
            if (!add)
                return NULL;
            s->addr = *key;
            s->count = 0;
            return s;
        }
        if (!memcmp(&s->addr, key, sizeof(*key)))
            return s;
    }
    return NULL;
}

/* Free a slot without breaking the probe chain of those after it (no tombstones: the
 * table would fill with them under churn). */
static void remove_slot(http_admit_t *a, client_slot_t *s)
{
    size_t hole = (size_t)(s - a->slots);
    for (size_t i = (hole + 1) & a->mask;; i = (i + 1) & a->mask) {
        client_slot_t *next = &a->slots[i];
        if (next->addr.family == 0)
            break;
        size_t home = addr_hash(&next->addr) & a->mask;
        /* Move it into the hole unless its home lies cyclically in (hole, i]. */
        bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!stays) {
            a->slots[hole] = *next;
            hole = i;
        }
    }
    memset(&a->slots[hole], 0, sizeof(client_slot_t));
}

static void client_key(const conn_t *c, ratelimit_addr_t *key)
{
    ratelimit_addr_t peer;
    char text[64];
    ratelimit_addr_set(&peer, c->family, c->addr);
    ratelimit_bucket(&peer, key, text, sizeof(text));
}

static void note_shed(worker_t *w, http_admit_t *a)
{
    uint64_t now = uv_now(w->loop);
    if (a->last_log && now - a->last_log < LOG_EVERY_MS)
        return;
    a->last_log = now;
    log_warn("connection limits: %llu idle connections closed to make room (max_connections "
             "= %llu per worker), %llu refused over max_connections_per_client = %llu; %zu "
             "open now",
             (unsigned long long)a->evicted, (unsigned long long)w->limits->max_connections,
             (unsigned long long)a->refused, (unsigned long long)a->per_client, w->nconns);
    a->evicted = a->refused = 0;
}

int http_admit_conn(conn_t *c)
{
    worker_t *w = c->worker;
    http_admit_t *a = admit_get(w);
    if (c->family == 0)
        return 0; /* no address to count by (a unix socket) */
    const ratelimit_config_t *rc = w->cfg->ratelimit;
    ratelimit_addr_t peer;
    ratelimit_addr_set(&peer, c->family, c->addr);
    if (rc && rc->nproxies && ratelimit_cidr_match(rc->proxies, rc->nproxies, &peer))
        return 0;
    ratelimit_addr_t key;
    client_key(c, &key);
    client_slot_t *s = find(a, &key, true);
    if (!s)
        return 0; /* cannot happen at half load; never refuse for our own bookkeeping */
    if (s->count >= a->per_client) {
        a->refused++;
        metrics_connection_shed(METRICS_SHED_PER_CLIENT);
        note_shed(w, a);
        return -1;
    }
    s->count++;
    c->admit_counted = true;
    return 0;
}

void http_admit_release(conn_t *c)
{
    if (!c->admit_counted || !c->worker->admit)
        return;
    c->admit_counted = false;
    http_admit_t *a = c->worker->admit;
    ratelimit_addr_t key;
    client_key(c, &key);
    client_slot_t *s = find(a, &key, false);
    if (s && --s->count == 0)
        remove_slot(a, s);
}

/* The connection to close for room, or NULL: the longest-waiting of the idle list's head
 * and the fresh list's head (each list is in deadline order, one timeout per list). */
static conn_t *victim(worker_t *w)
{
    uint64_t now = uv_now(w->loop);
    conn_t *idle = w->timer_head[CT_IDLE];
    conn_t *fresh = w->timer_head[CT_FRESH];
    if (fresh && now - http_timer_started(fresh) < FRESH_GRACE_MS)
        fresh = NULL;
    if (!idle || !fresh)
        return idle ? idle : fresh;
    return http_timer_started(idle) <= http_timer_started(fresh) ? idle : fresh;
}

bool http_admit_can_make_room(worker_t *w)
{
    return victim(w) != NULL;
}

bool http_admit_make_room(worker_t *w)
{
    conn_t *c = victim(w);
    if (!c)
        return false;
    http_admit_t *a = admit_get(w);
    a->evicted++;
    metrics_connection_shed(METRICS_SHED_IDLE);
    note_shed(w, a);
    http_conn_close(c);
    return true;
}
