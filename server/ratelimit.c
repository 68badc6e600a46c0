/*
 * ratelimit.c — rate limits per client and route (see ratelimit.h for what and why).
 *
 * The request path. dispatch() calls ratelimit_check() once the route matched and the
 * caller was checked. A route with no rules returns at the first probe of the worker's
 * route table. Otherwise the client's bucket is worked out, and while Redis is connected
 * one EVALSHA counts every rule of the route; dispatch returns with the request in flight
 * and on_reply() later answers 429 or resumes the dispatch. The context of that call lives
 * in the request's arena: a request is released only after it is answered, and only
 * on_reply answers it while the call is out, so the context outlives every use. A client
 * that hangs up meanwhile leaves the request without a connection; on_reply then answers
 * into the void (499, as nginx logs it) instead of running the handler for nobody.
 *
 * When Redis is down the same rules are counted in the worker's own table, synchronously.
 *
 * The [ratelimit] section itself (limits, rules, trusted proxies) is read by
 * ratelimit_config.c; this file only uses what it made.
 */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "redis.h"
#include "util.h"
#include "worker.h"

#define MAX_XFF_HEADERS 16
/* Slots looked at for one key in the local table before the oldest is dropped. */
#define LOCAL_PROBES 16

/* KEYS[i] counts one rule, ARGV[i] is its window in ms. Returns count and ms left for each
 * key in turn. A key without an expiry (left by anything else) gets one, so a count can
 * never stick forever. */
static const char count_script[] = "local out = {}\n"
                                   "for i, key in ipairs(KEYS) do\n"
                                   "  local n = redis.call('INCR', key)\n"
                                   "  local ttl = redis.call('PTTL', key)\n"
                                   "  if n == 1 or ttl < 0 then\n"
                                   "    redis.call('PEXPIRE', key, ARGV[i])\n"
                                   "    ttl = tonumber(ARGV[i])\n"
                                   "  end\n"
                                   "  out[2 * i - 1] = n\n"
                                   "  out[2 * i] = ttl\n"
                                   "end\n"
                                   "return out\n";

/* ---- addresses ---- */

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void ratelimit_addr_set(ratelimit_addr_t *a, int family, const void *bytes)
{
    memset(a, 0, sizeof(*a));
    if (family == AF_INET6 && !memcmp(bytes, v4_mapped, 12)) {
        a->family = AF_INET;
        memcpy(a->bytes, (const uint8_t *)bytes + 12, 4);
    } else if (family == AF_INET || family == AF_INET6) {
        a->family = (uint8_t)family;
        memcpy(a->bytes, bytes, family == AF_INET ? 4 : 16);
    }
}

static int addr_pton(const char *s, ratelimit_addr_t *out)
{
    uint8_t bytes[16];
    if (inet_pton(AF_INET, s, bytes) == 1) {
        ratelimit_addr_set(out, AF_INET, bytes);
        return 0;
    }
    if (inet_pton(AF_INET6, s, bytes) == 1) {
        ratelimit_addr_set(out, AF_INET6, bytes);
        return 0;
    }
    return -1;
}

static bool all_digits(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int ratelimit_parse_addr(const char *s, size_t len, ratelimit_addr_t *out)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0)
        return -1;
    if (s[0] == '[') {
        /* "[2001:db8::1]" or "[2001:db8::1]:443" */
        const char *close = memchr(s, ']', len);
        if (!close)
            return -1;
        size_t rest = len - (size_t)(close + 1 - s);
        if (rest && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return -1;
        s++;
        len = (size_t)(close - s);
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - s))) {
            /* one colon: IPv4 with a port */
            if (!all_digits(colon + 1, len - (size_t)(colon + 1 - s)))
                return -1;
            len = (size_t)(colon - s);
        }
    }
    char text[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof(text))
        return -1;
    memcpy(text, s, len);
    text[len] = '\0';
    return addr_pton(text, out);
}

int ratelimit_parse_cidr(const char *s, ratelimit_cidr_t *out)
{
    char text[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof(text))
        return -1;
    snprintf(text, sizeof(text), "%s", s);
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    uint8_t bytes[16];
    int family;
    if (inet_pton(AF_INET, text, bytes) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, text, bytes) == 1)
        family = AF_INET6;
    else
        return -1;
    long max = family == AF_INET ? 32 : 128, bits = max;
    if (slash && parse_int(slash + 1, 0, max, &bits))
        return -1;
    if (family == AF_INET6 && !memcmp(bytes, v4_mapped, 12)) {
        /* ::ffff:10.0.0.0/104 is 10.0.0.0/8: addresses are matched as IPv4. */
        if (bits < 96)
            return -1;
        bits -= 96;
    }
    memset(out, 0, sizeof(*out));
    ratelimit_addr_set(&out->addr, family, bytes);
    out->bits = (uint8_t)bits;
    /* Host bits set beyond the prefix usually mean a typo ("10.1.2.3/8"). */
    size_t nbytes = out->addr.family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < nbytes; i++) {
        int keep = (int)bits - (int)i * 8;
        uint8_t mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
        if (out->addr.bytes[i] & ~mask)
            return -2;
    }
    return 0;
}

bool ratelimit_cidr_match(const ratelimit_cidr_t *cidrs, size_t n, const ratelimit_addr_t *a)
{
    for (size_t i = 0; i < n; i++) {
        const ratelimit_cidr_t *c = &cidrs[i];
        if (c->addr.family != a->family || !a->family)
            continue;
        size_t whole = c->bits / 8;
        unsigned rest = c->bits % 8;
        if (memcmp(c->addr.bytes, a->bytes, whole))
            continue;
        if (rest) {
            uint8_t mask = (uint8_t)(0xff << (8 - rest));
            if ((c->addr.bytes[whole] ^ a->bytes[whole]) & mask)
                continue;
        }
        return true;
    }
    return false;
}

void ratelimit_client_addr(const ratelimit_cidr_t *proxies, size_t nproxies,
                           const ratelimit_addr_t *peer, const char *const *values,
                           const size_t *lens, size_t nvalues, ratelimit_addr_t *out)
{
    *out = *peer;
    if (!nproxies || !ratelimit_cidr_match(proxies, nproxies, peer))
        return;
    /* From the nearest hop outwards: the last header first, each from its end. */
    for (size_t h = nvalues; h-- > 0;) {
        const char *v = values[h];
        size_t end = lens[h];
        while (true) {
            size_t start = end;
            while (start > 0 && v[start - 1] != ',')
                start--;
            const char *elem = v + start;
            size_t len = end - start;
            size_t blank = 0;
            while (blank < len && (elem[blank] == ' ' || elem[blank] == '\t'))
                blank++;
            if (blank < len) {
                ratelimit_addr_t hop;
                if (ratelimit_parse_addr(elem, len, &hop))
                    return; /* not an address: the last trusted hop is the client */
                *out = hop;
                if (!ratelimit_cidr_match(proxies, nproxies, &hop))
                    return;
            }
            if (start == 0)
                break;
            end = start - 1;
        }
    }
}

size_t ratelimit_bucket(const ratelimit_addr_t *client, ratelimit_addr_t *bucket, char *text,
                        size_t textlen)
{
    *bucket = *client;
    char a[INET6_ADDRSTRLEN];
    int n;
    if (client->family == AF_INET) {
        inet_ntop(AF_INET, client->bytes, a, sizeof(a));
        n = snprintf(text, textlen, "%s", a);
    } else if (client->family == AF_INET6) {
        memset(bucket->bytes + 8, 0, 8);
        inet_ntop(AF_INET6, bucket->bytes, a, sizeof(a));
        n = snprintf(text, textlen, "%s/64", a);
    } else {
        n = snprintf(text, textlen, "unknown");
    }
    return n < 0 ? 0 : (size_t)n < textlen ? (size_t)n : textlen - 1;
}

/* ---- the local table ---- */

typedef struct local_entry {
    uint64_t expires; /* 0: never used */
    uint64_t count;
    uint32_t rule;
    ratelimit_addr_t addr;
} local_entry_t;

struct ratelimit_local {
    local_entry_t *slots;
    size_t mask;
    uint64_t seed;
};

ratelimit_local_t *ratelimit_local_new(size_t capacity, uint64_t seed)
{
    size_t cap = 16;
    while (cap < capacity)
        cap *= 2;
    ratelimit_local_t *l = xcalloc(1, sizeof(*l));
    l->slots = xcalloc(cap, sizeof(local_entry_t));
    l->mask = cap - 1;
    l->seed = seed;
    return l;
}

void ratelimit_local_free(ratelimit_local_t *l)
{
    if (!l)
        return;
    free(l->slots);
    free(l);
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t local_hash(const ratelimit_local_t *l, uint32_t rule, const ratelimit_addr_t *a)
{
    uint64_t w0, w1;
    memcpy(&w0, a->bytes, 8);
    memcpy(&w1, a->bytes + 8, 8);
    uint64_t h = mix(l->seed ^ ((uint64_t)rule << 8 | a->family));
    h = mix(h ^ w0);
    return mix(h ^ w1);
}

uint64_t ratelimit_local_hit(ratelimit_local_t *l, uint32_t rule, const ratelimit_addr_t *bucket,
                             uint64_t window_ms, uint64_t now_ms, uint64_t *ttl_ms)
{
    size_t start = (size_t)local_hash(l, rule, bucket);
    local_entry_t *victim = NULL;
    local_entry_t *e = NULL;
    for (size_t i = 0; i < LOCAL_PROBES; i++) {
        local_entry_t *s = &l->slots[(start + i) & l->mask];
        if (s->expires == 0) {
            /* Slots are reused but never emptied, so the key is not further on. */
            if (!victim || victim->expires > now_ms)
                victim = s;
            break;
        }
        if (s->rule == rule && !memcmp(&s->addr, bucket, sizeof(*bucket))) {
            e = s;
            break;
        }
        /* Prefer a slot whose window is over, else the one that ends first. */
        if (!victim || (victim->expires > now_ms && s->expires < victim->expires))
            victim = s;
    }
    if (!e) {
        e = victim;
        e->rule = rule;
        e->addr = *bucket;
        e->expires = 0;
    }
    if (e->expires <= now_ms) {
        e->expires = now_ms + window_ms;
        e->count = 0;
    }
    e->count++;
    *ttl_ms = e->expires - now_ms;
    return e->count;
}

/* ---- the worker's limiter ---- */

typedef struct route_rules {
    const route_t *route; /* NULL: empty slot */
    size_t n;
    const ratelimit_rule_t *rules[RATELIMIT_MAX_RULES_PER_ROUTE];
} route_rules_t;

struct ratelimit {
    const ratelimit_config_t *cfg;
    route_rules_t *table;
    size_t mask;
    redis_script_t *script;
    ratelimit_local_t *local; /* made the first time Redis cannot count */
    uint64_t seed;
    uint64_t share; /* counted locally, a worker allows limit / share (the worker count) */
    bool degraded;
};

/* The context of one Redis call, in the request's arena. */
typedef struct pending {
    ratelimit_t *rl;
    px_req_t *req;
    ratelimit_resume_fn resume;
    const route_rules_t *rr;
    ratelimit_addr_t bucket;
} pending_t;

static size_t route_slot(const ratelimit_t *rl, const route_t *route)
{
    return (size_t)(((uintptr_t)route >> 4) * 0x9e3779b97f4a7c15ull >> 20) & rl->mask;
}

static const route_rules_t *route_lookup(const ratelimit_t *rl, const route_t *route)
{
    for (size_t i = route_slot(rl, route);; i = (i + 1) & rl->mask) {
        const route_rules_t *rr = &rl->table[i];
        if (rr->route == route)
            return rr;
        if (!rr->route)
            return NULL;
    }
}

typedef struct build {
    const ratelimit_config_t *cfg;
    bool *matched;
    route_rules_t *found;
    size_t nfound;
} build_t;

static void collect_route(const route_t *route, void *arg)
{
    build_t *b = arg;
    route_rules_t rr = {.route = route};
    for (size_t i = 0; i < b->cfg->nrules; i++) {
        if (!ratelimit_rule_matches(b->cfg->rules[i], route->method, route->pattern))
            continue;
        b->matched[i] = true;
        if (rr.n < RATELIMIT_MAX_RULES_PER_ROUTE)
            rr.rules[rr.n++] = b->cfg->rules[i];
    }
    if (b->cfg->deflt && strcmp(route->owner, "host") != 0 && rr.n < RATELIMIT_MAX_RULES_PER_ROUTE)
        rr.rules[rr.n++] = b->cfg->deflt;
    if (!rr.n)
        return;
    b->found = xrealloc(b->found, (b->nfound + 1) * sizeof(route_rules_t));
    b->found[b->nfound++] = rr;
}

ratelimit_t *ratelimit_new(worker_t *w)
{
    const ratelimit_config_t *cfg = w->cfg->ratelimit;
    if (!cfg || (!cfg->deflt && !cfg->nrules))
        return NULL;
    build_t b = {.cfg = cfg, .matched = xcalloc(cfg->nrules + 1, sizeof(bool))};
    router_foreach(w->router, collect_route, &b);
    for (size_t i = 0; i < cfg->nrules; i++) {
        const ratelimit_rule_t *r = cfg->rules[i];
        if (!b.matched[i])
            log_warn("%s:%d: [ratelimit] no route %s %s is loaded: this limit applies to nothing",
                     r->file, r->line, router_method_name(r->method), r->pattern);
    }
    free(b.matched);
    if (!b.nfound)
        return NULL;
    ratelimit_t *rl = xcalloc(1, sizeof(*rl));
    rl->cfg = cfg;
    size_t cap = 8;
    while (cap < b.nfound * 2)
        cap *= 2;
    rl->table = xcalloc(cap, sizeof(route_rules_t));
    rl->mask = cap - 1;
    for (size_t i = 0; i < b.nfound; i++) {
        size_t s = route_slot(rl, b.found[i].route);
        while (rl->table[s].route)
            s = (s + 1) & rl->mask;
        rl->table[s] = b.found[i];
    }
    free(b.found);
    rl->script = redis_script_new(count_script);
    if (getrandom(&rl->seed, sizeof(rl->seed), GRND_NONBLOCK) != sizeof(rl->seed))
        rl->seed = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
    long workers = config_workers_effective(w->cfg);
    rl->share = workers > 1 ? (uint64_t)workers : 1;
    if (!w->redis)
        log_info("[ratelimit]: no [redis] address: limits are counted by each worker on its own, "
                 "each allowing 1/%ld of every limit",
                 workers);
    return rl;
}

void ratelimit_free(ratelimit_t *rl)
{
    if (!rl)
        return;
    free(rl->table);
    redis_script_free(rl->script);
    ratelimit_local_free(rl->local);
    free(rl);
}

static void went_local(ratelimit_t *rl, const char *why)
{
    if (rl->degraded)
        return;
    rl->degraded = true;
    log_warn("[ratelimit]: Redis cannot count (%s): falling back to per-worker counting until it "
             "is back",
             why);
}

static void went_redis(ratelimit_t *rl)
{
    if (!rl->degraded)
        return;
    rl->degraded = false;
    log_info("[ratelimit]: Redis is back: counting in Redis again");
}

/* "2s", "1m", "1h", "500ms": for messages. */
static void format_window(uint64_t ms, char *out, size_t len)
{
    if (ms % 3600000 == 0)
        snprintf(out, len, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(out, len, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(out, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(out, len, "%llums", (unsigned long long)ms);
}

static uint64_t ceil_seconds(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;
    return s ? s : 1;
}

static void add_number_header(px_req_t *r, const char *name, uint64_t v)
{
    char text[24];
    snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
    http_add_header(r, name, text);
}

/* A rule's limit as this count applies it: whole in Redis, where every worker shares one
 * count; counted in a worker's own memory, that worker's share of it (at least 1), so
 * that N workers together still let through no more than the limit. */
static uint64_t rule_limit(const ratelimit_rule_t *rule, uint64_t share)
{
    uint64_t limit = rule->limit / share;
    return limit ? limit : 1;
}

/* Given each rule's count and time left, answer 429 (returns 1) or let the request go on
 * (returns 0); the RateLimit-* headers describe the tightest rule either way. `share` is
 * 1 for counts from Redis, the worker count for local ones. */
static int decide(px_req_t *r, const route_rules_t *rr, const uint64_t *counts,
                  const uint64_t *ttls, uint64_t share)
{
    size_t tight = 0, over = SIZE_MAX;
    uint64_t tight_left = UINT64_MAX;
    for (size_t i = 0; i < rr->n; i++) {
        uint64_t limit = rule_limit(rr->rules[i], share);
        uint64_t left = counts[i] >= limit ? 0 : limit - counts[i];
        if (left < tight_left || (left == tight_left && ttls[i] > ttls[tight])) {
            tight = i;
            tight_left = left;
        }
        if (counts[i] > limit && (over == SIZE_MAX || ttls[i] > ttls[over]))
            over = i;
    }
    size_t shown = over != SIZE_MAX ? over : tight;
    add_number_header(r, "RateLimit-Limit", rule_limit(rr->rules[shown], share));
    add_number_header(r, "RateLimit-Remaining", over != SIZE_MAX ? 0 : tight_left);
    add_number_header(r, "RateLimit-Reset", ceil_seconds(ttls[shown]));
    if (over == SIZE_MAX)
        return 0;
    const ratelimit_rule_t *rule = rr->rules[over];
    uint64_t retry = ceil_seconds(ttls[over]);
    add_number_header(r, "Retry-After", retry);
    char window[24], msg[200];
    format_window(rule->window_ms, window, sizeof(window));
    snprintf(msg, sizeof(msg), "too many requests: at most %llu per %s%s; retry in %llu s",
             (unsigned long long)rule_limit(rule, share), window,
             rule->pattern ? " on this route" : " from one client", (unsigned long long)retry);
    http_respond_error(r, 429, "rate_limited", msg, NULL);
    return 1;
}

static void count_local(ratelimit_t *rl, px_req_t *r, const route_rules_t *rr,
                        const ratelimit_addr_t *bucket, uint64_t *counts, uint64_t *ttls)
{
    if (!rl->local)
        rl->local = ratelimit_local_new(RATELIMIT_LOCAL_CAPACITY, rl->seed);
    uint64_t now = uv_now(r->worker->loop);
    for (size_t i = 0; i < rr->n; i++)
        counts[i] = ratelimit_local_hit(rl->local, rr->rules[i]->index, bucket,
                                        rr->rules[i]->window_ms, now, &ttls[i]);
}

/* A reply of the count script for `n` keys: counts and ms left. 0 or -1. */
static int read_reply(const redis_reply_t *reply, size_t n, uint64_t *counts, uint64_t *ttls)
{
    if (redis_reply_type(reply) != REDIS_TYPE_ARRAY || redis_reply_count(reply) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const redis_reply_t *c = redis_reply_element(reply, 2 * i);
        const redis_reply_t *t = redis_reply_element(reply, 2 * i + 1);
        if (redis_reply_type(c) != REDIS_TYPE_INTEGER || redis_reply_type(t) != REDIS_TYPE_INTEGER)
            return -1;
        int64_t count = redis_reply_integer(c), ttl = redis_reply_integer(t);
        counts[i] = count > 0 ? (uint64_t)count : 1;
        ttls[i] = ttl > 0 ? (uint64_t)ttl : 0;
    }
    return 0;
}

static void on_reply(const redis_reply_t *reply, const redis_error_t *err, void *ud)
{
    pending_t *p = ud;
    px_req_t *r = p->req;
    ratelimit_t *rl = p->rl;
    if (err && err->kind == REDIS_ECANCELLED) {
        /* Only redis_close cancels: the worker is stopping. */
        http_respond_error(r, 503, "unavailable", "the server is shutting down", NULL);
        return;
    }
    uint64_t counts[RATELIMIT_MAX_RULES_PER_ROUTE], ttls[RATELIMIT_MAX_RULES_PER_ROUTE];
    uint64_t share = 1;
    if (!err && read_reply(reply, p->rr->n, counts, ttls) == 0) {
        went_redis(rl);
    } else {
        share = rl->share;
        char why[160];
        if (err)
            snprintf(why, sizeof(why), "%s: %s", redis_errkind_name(err->kind), err->message);
        else if (redis_reply_type(reply) == REDIS_TYPE_ERROR)
            snprintf(why, sizeof(why), "%.150s", redis_reply_string(reply, NULL));
        else
            snprintf(why, sizeof(why), "unexpected reply to the count script");
        went_local(rl, why);
        count_local(rl, r, p->rr, &p->bucket, counts, ttls);
    }
    if (!r->conn) {
        /* The client hung up while we asked: nobody to run the handler for. */
        http_respond_error(r, 499, NULL, "the client closed the connection", NULL);
        return;
    }
    if (decide(r, p->rr, counts, ttls, share))
        return;
    p->resume(r);
}

/* The peer, then X-Forwarded-For when the peer is a trusted proxy. */
static bool is_xff(const px_req_t *r, const header_t *h)
{
    return h->name_len == 15 && !strncasecmp(r->head.data + h->name_off, "x-forwarded-for", 15);
}

static void find_client_with(const ratelimit_config_t *cfg, px_req_t *r, ratelimit_addr_t *client)
{
    ratelimit_addr_t peer = {0};
    if (r->conn)
        ratelimit_addr_set(&peer, r->conn->family, r->conn->addr);
    if (!cfg || !cfg->nproxies || !ratelimit_cidr_match(cfg->proxies, cfg->nproxies, &peer)) {
        *client = peer;
        return;
    }
    /* The last MAX_XFF_HEADERS of them: the proxies append theirs after whatever the client
     * sent, so only the leftmost, the client's own, may be left out. */
    uint32_t total = 0, skip;
    for (uint32_t i = 0; i < r->nheaders; i++)
        total += is_xff(r, &r->headers[i]);
    skip = total > MAX_XFF_HEADERS ? total - MAX_XFF_HEADERS : 0;
    const char *values[MAX_XFF_HEADERS];
    size_t lens[MAX_XFF_HEADERS], n = 0;
    for (uint32_t i = 0; i < r->nheaders && n < MAX_XFF_HEADERS; i++) {
        const header_t *h = &r->headers[i];
        if (!is_xff(r, h))
            continue;
        if (skip > 0) {
            skip--;
            continue;
        }
        values[n] = r->head.data + h->value_off;
        lens[n++] = h->value_len;
    }
    ratelimit_client_addr(cfg->proxies, cfg->nproxies, &peer, values, lens, n, client);
}

static void find_client(const ratelimit_t *rl, px_req_t *r, ratelimit_addr_t *client)
{
    find_client_with(rl->cfg, r, client);
}

const char *ratelimit_request_client(px_req_t *r, char *text, size_t textlen)
{
    ratelimit_addr_t client, bucket;
    find_client_with(r->worker->cfg->ratelimit, r, &client);
    ratelimit_bucket(&client, &bucket, text, textlen);
    return text;
}

int ratelimit_check(ratelimit_t *rl, px_req_t *r, ratelimit_resume_fn resume)
{
    const route_rules_t *rr = route_lookup(rl, r->route);
    if (!rr)
        return 0;
    ratelimit_addr_t client, bucket;
    char text[INET6_ADDRSTRLEN + 8];
    find_client(rl, r, &client);
    size_t text_len = ratelimit_bucket(&client, &bucket, text, sizeof(text));

    redis_client_t *redis = r->worker->redis;
    if (redis && redis_is_connected(redis)) {
        pending_t *p = arena_alloc(&r->arena, sizeof(*p));
        *p = (pending_t){.rl = rl, .req = r, .resume = resume, .rr = rr, .bucket = bucket};
        const char *argv[2 * RATELIMIT_MAX_RULES_PER_ROUTE];
        char windows[RATELIMIT_MAX_RULES_PER_ROUTE][24];
        size_t prefix_len = strlen(rl->cfg->key_prefix);
        for (size_t i = 0; i < rr->n; i++) {
            size_t len = prefix_len + 16 + 1 + text_len;
            char *key = arena_alloc(&r->arena, len + 1);
            memcpy(key, rl->cfg->key_prefix, prefix_len);
            memcpy(key + prefix_len, rr->rules[i]->id, 16);
            key[prefix_len + 16] = ':';
            memcpy(key + prefix_len + 17, text, text_len + 1);
            argv[i] = key;
            snprintf(windows[i], sizeof(windows[i]), "%llu",
                     (unsigned long long)rr->rules[i]->window_ms);
            argv[rr->n + i] = windows[i];
        }
        int rc = redis_eval(redis, rl->script, (int)rr->n, (int)(2 * rr->n), argv, NULL, on_reply,
                            p, NULL);
        if (rc == 0)
            return 1;
        went_local(rl, strerror(-rc));
    } else if (redis) {
        went_local(rl, "not connected");
    }
    uint64_t counts[RATELIMIT_MAX_RULES_PER_ROUTE], ttls[RATELIMIT_MAX_RULES_PER_ROUTE];
    count_local(rl, r, rr, &bucket, counts, ttls);
    return decide(r, rr, counts, ttls, rl->share);
}
