/*
 * ratelimit.h — request rate limits per client address and per route, counted in Redis so
 * that every worker of every host shares one count, with a per-worker fallback while Redis
 * is down.
 *
 * Configuration. A [ratelimit] section:
 *
 *     [ratelimit]
 *     default = 300/1m                        ; per client address, over all routes
 *     route = POST /v1/auth/login 10/1m       ; any key starting with "route" adds a rule
 *     route_burst = POST /v1/auth/login 3/1s  ; a route may have several (different windows)
 *     route2 = GET /v1/users/:id 100/1s
 *     trusted_proxies = 127.0.0.1, 10.0.0.0/8, ::1
 *     key_prefix = panthera:rl:
 *
 * A limit is N/WINDOW: at most N requests per WINDOW (a duration: 1s, 10s, 1m, 1h, 500ms).
 * A rule names a route by the method and pattern it was registered with; a parameter
 * segment matches any parameter segment (":id" and ":userId" are the same route shape,
 * which is what the router itself considers a conflict). HEAD requests are served by the
 * GET route and count against its rules. A rule that names no loaded route is logged as a
 * warning when a worker starts (its plugin may simply not be enabled). The default limit
 * leaves out the host's own routes (/healthz, /readyz, /metrics): a load balancer's health
 * checks must never be refused because the clients behind it were busy; a route rule can
 * still limit them explicitly. Every error names file:line, as everywhere in config.c.
 *
 * The client. The peer address of the connection, unless that peer is a trusted proxy:
 * then X-Forwarded-For is read from the right (the nearest hop) and the first address that
 * is not itself a trusted proxy is the client. Addresses left of it were written by the
 * client and are never believed. If every hop is trusted, the left-most one is the client;
 * if a hop is not an address ("unknown", garbage), the walk stops at the last trusted hop
 * (the proxy itself is limited: a client cannot invent buckets). IPv4-mapped IPv6 addresses
 * count as IPv4. An IPv6 client is counted per /64: one host usually holds a whole /64, and
 * per-address counting would let it spread over 2^64 buckets.
 *
 * Counting. Fixed windows that start with a client's first request (not aligned to the
 * clock: no clock is shared between hosts, the whole count is in Redis, and a window never
 * ends early for a client that just started). Redis key per (rule, client):
 * "<key_prefix><rule id>:<client>", the rule id being 16 hex digits of a hash of the
 * method, the pattern shape and the window (so changing a window on reload starts fresh
 * counts, changing only N keeps them). One Lua script per request counts every rule that
 * applies in one round trip and atomically: INCR each key, PEXPIRE it with its window when
 * it was created, return the counts and the milliseconds left. A request over any of its
 * limits is answered 429 rate_limited with Retry-After (whole seconds until that window
 * ends, at least 1); it still counts, but never extends a window. A response to a request
 * that any rule counted carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset
 * (seconds) for its tightest rule (the one over its limit, on a 429).
 *
 * Redis down. When Redis is not configured, not connected, or a call fails or times out
 * (REDIS_EUNAVAILABLE, REDIS_ETIMEOUT, an error reply), the worker counts in its own
 * memory with the same rules and windows: a bounded open-addressing table (8192 entries,
 * made on first use; when a neighbourhood is full, the entry whose window ends first is
 * dropped). Each of N workers allows limit / N (at least 1), so all of them together let
 * through no more than the limit: a client spreading its connections over the workers
 * must not get N times the limit for as long as Redis is away (issue 11: the login limit
 * was doubled that way). The price, a client whose connections all land on one worker
 * gets only its share, is paid by the few over 1/N of a limit. The switch is logged once each
 * way (to per-worker counting, back to Redis), never per request. Counts made while
 * degraded are not carried over to Redis.
 *
 * Cost. With no [ratelimit] rules the worker has no limiter at all (one NULL check per
 * request). Otherwise the rules of every route are resolved when the worker starts, into
 * a table keyed by route pointer: a route without rules costs one probe of that table.
 * A limited request costs one Redis round trip, during which dispatch waits (the handler
 * runs from the reply callback).
 */
#ifndef PX_RATELIMIT_H
#define PX_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"
#include "router.h"

struct worker;

#define RATELIMIT_DEFAULT_PREFIX "panthera:rl:"
/* Rules that may apply to one route, the default included. */
#define RATELIMIT_MAX_RULES_PER_ROUTE 8
#define RATELIMIT_LOCAL_CAPACITY 8192

/* ---- configuration (config.c owns a ratelimit_config_t per config_t) ---- */

typedef struct ratelimit_rule {
    int method;     /* enum router_method; METHOD_UNKNOWN for the default rule */
    char *pattern;  /* NULL for the default rule */
    uint64_t limit; /* requests per window, >= 1 */
    uint64_t window_ms;
    uint32_t index; /* position in the config (0 = the default), keys the local table */
    char id[17];    /* 16 hex digits, part of the Redis key */
    char *file;     /* where it was set */
    int line;
} ratelimit_rule_t;

typedef struct ratelimit_addr {
    uint8_t family; /* AF_INET, AF_INET6, or 0 for unknown */
    uint8_t bytes[16];
} ratelimit_addr_t;

typedef struct ratelimit_cidr {
    ratelimit_addr_t addr;
    uint8_t bits;
} ratelimit_cidr_t;

typedef struct ratelimit_config {
    ratelimit_rule_t *deflt;  /* NULL: no per-address default */
    ratelimit_rule_t **rules; /* route rules, in config order */
    size_t nrules;
    ratelimit_cidr_t *proxies;
    size_t nproxies;
    char *key_prefix;
    /* Where each single-valued key was set, for duplicate errors. */
    char *seen_file[3];
    int seen_line[3];
} ratelimit_config_t;

/* One "key = value" of [ratelimit] at file:line. `*rc` is made on first use. Returns 0, or
 * -1 with a one-line reason (without file:line) in `err`. */
int ratelimit_config_set(ratelimit_config_t **rc, const char *key, const char *value,
                         const char *file, int line, char *err, size_t errlen);
/* NULL is accepted. */
void ratelimit_config_free(ratelimit_config_t *rc);
/* The keys [ratelimit] accepts, for config_foreach_key: fn("ratelimit", key, ud) each. */
void ratelimit_config_foreach_key(void (*fn)(const char *section, const char *key, void *ud),
                                  void *ud);

/* ---- pieces, exposed for the unit tests ---- */

/* "N/WINDOW" → limit and window. 0 or -1. */
int ratelimit_parse_limit(const char *s, uint64_t *limit, uint64_t *window_ms);
/* "METHOD PATTERN N/WINDOW" → `rule` (pattern malloc'd; free with ratelimit_rule_clear).
 * 0, or -1 with the reason in `err`. */
int ratelimit_parse_rule(const char *value, ratelimit_rule_t *rule, char *err, size_t errlen);
void ratelimit_rule_clear(ratelimit_rule_t *rule);
/* True when the rule's method and pattern name the route (parameter names aside). */
bool ratelimit_rule_matches(const ratelimit_rule_t *rule, int method, const char *pattern);

/* "10.0.0.0/8", "::1", "fd00::/8". 0; -1 when it is not an address or prefix, -2 when
 * host bits are set beyond the prefix. */
int ratelimit_parse_cidr(const char *s, ratelimit_cidr_t *out);
bool ratelimit_cidr_match(const ratelimit_cidr_t *cidrs, size_t n, const ratelimit_addr_t *a);
/* A peer address as accept gave it (`family` AF_INET or AF_INET6, else unknown); an
 * IPv4-mapped IPv6 address becomes IPv4. */
void ratelimit_addr_set(ratelimit_addr_t *a, int family, const void *bytes);
/* An address as it appears in X-Forwarded-For: "203.0.113.7", "2001:db8::1",
 * "203.0.113.7:5040", "[2001:db8::1]:443", surrounding blanks allowed. Mapped IPv6 becomes
 * IPv4. 0 or -1. */
int ratelimit_parse_addr(const char *s, size_t len, ratelimit_addr_t *out);

/* The client of a request whose connection's peer is `peer`, given the values of its
 * X-Forwarded-For headers in order (values[i] is lens[i] bytes, not NUL-terminated). */
void ratelimit_client_addr(const ratelimit_cidr_t *proxies, size_t nproxies,
                           const ratelimit_addr_t *peer, const char *const *values,
                           const size_t *lens, size_t nvalues, ratelimit_addr_t *out);
/* The bucket a client is counted in (an IPv6 address cut to its /64), as the text used in
 * Redis keys: "203.0.113.7", "2001:db8:1:2::/64", "unknown". Returns the length. */
size_t ratelimit_bucket(const ratelimit_addr_t *client, ratelimit_addr_t *bucket, char *text,
                        size_t textlen);

/* The client of request `r` as the limiter counts it (trusted proxies and all), as text:
 * "203.0.113.7", "2001:db8:1:2::/64" or "unknown". Returns `text`. */
const char *ratelimit_request_client(px_req_t *r, char *text, size_t textlen);

/* The per-worker fallback: fixed windows in a bounded table. */
typedef struct ratelimit_local ratelimit_local_t;

/* `capacity` is rounded up to a power of two; `seed` keys the hash (random in a worker, so
 * nobody can aim collisions at a bucket). */
ratelimit_local_t *ratelimit_local_new(size_t capacity, uint64_t seed);
void ratelimit_local_free(ratelimit_local_t *l); /* NULL is accepted */
/* Counts one request of `bucket` against rule `rule` at `now_ms` (any monotonic clock).
 * Returns the count in the current window, this request included; `*ttl_ms` gets what is
 * left of the window. */
uint64_t ratelimit_local_hit(ratelimit_local_t *l, uint32_t rule, const ratelimit_addr_t *bucket,
                             uint64_t window_ms, uint64_t now_ms, uint64_t *ttl_ms);

/* ---- the worker's limiter ---- */

typedef struct ratelimit ratelimit_t;

/* The limiter for worker `w`, whose routes must all be registered; reads w->cfg->ratelimit
 * and uses w->redis when there is one. NULL when no rule is configured. */
ratelimit_t *ratelimit_new(struct worker *w);
/* After the loop has stopped (every Redis callback has run). NULL is accepted. */
void ratelimit_free(ratelimit_t *rl);

typedef void (*ratelimit_resume_fn)(px_req_t *req);

/* Checks `req` (its route is set) against its rules. Returns 0 when the handler may run
 * now. Returns 1 when the limiter took the request over: it has answered it (429), or it
 * asked Redis and will, from the reply callback, either answer it or call `resume(req)` to
 * go on with the dispatch. */
int ratelimit_check(ratelimit_t *rl, px_req_t *req, ratelimit_resume_fn resume);

#endif
