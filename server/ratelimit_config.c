/*
 * ratelimit_config.c — the [ratelimit] section: limits, route rules and trusted proxies (see
 * ratelimit.h for the syntax). config.c hands over one key at a time; the limiter in
 * ratelimit.c only reads the result, when a worker starts.
 *
 * Rules are checked here as far as their text allows (the method, the pattern's shape, the
 * limit, two limits with one window on one route), never against the routes themselves:
 * plugins are loaded later, by each worker, so ratelimit_new is where a rule that names no
 * loaded route is reported.
 *
 * A rule's id, the part of its Redis keys that names it, hashes the method, the pattern's
 * shape and the window, and nothing else: changing only N, moving the rule to another line
 * or renaming a parameter keeps the counts already made; changing the window starts afresh.
 */
#include "ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_WINDOW_MS (366ull * 24 * 3600 * 1000)

enum { SEEN_DEFAULT, SEEN_PROXIES, SEEN_PREFIX, SEEN_COUNT };

/* ---- limits and rules ---- */

int ratelimit_parse_limit(const char *s, uint64_t *limit, uint64_t *window_ms)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || slash - s > 15)
        return -1;
    char count[16];
    memcpy(count, s, (size_t)(slash - s));
    count[slash - s] = '\0';
    long n;
    uint64_t ms;
    if (parse_int(count, 1, 1000000000, &n) || parse_duration_ms(slash + 1, &ms) || ms == 0 ||
        ms > MAX_WINDOW_MS)
        return -1;
    *limit = (uint64_t)n;
    *window_ms = ms;
    return 0;
}

/* FNV-1a, 64 bits: stable across processes and hosts, which is all a key name needs. */
static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The pattern with parameter names dropped: "/v1/users/:id" → "/v1/users/:". */
static void pattern_shape(const char *pattern, buf_t *out)
{
    for (const char *p = pattern; *p;) {
        if (*p == ':' && (p == pattern || p[-1] == '/')) {
            buf_append(out, ":", 1);
            while (*p && *p != '/')
                p++;
        } else {
            buf_append(out, p, 1);
            p++;
        }
    }
}

static void rule_set_id(ratelimit_rule_t *rule)
{
    buf_t b = {0};
    if (rule->pattern) {
        buf_appends(&b, router_method_name(rule->method));
        buf_append(&b, " ", 1);
        pattern_shape(rule->pattern, &b);
    } else {
        buf_appends(&b, "default");
    }
    buf_printf(&b, " %llu", (unsigned long long)rule->window_ms);
    uint64_t h = fnv1a(0xcbf29ce484222325ull, b.data, b.len);
    buf_free(&b);
    snprintf(rule->id, sizeof(rule->id), "%016llx", (unsigned long long)h);
}

static int check_pattern(const char *pattern, char *err, size_t errlen)
{
    if (pattern[0] != '/') {
        snprintf(err, errlen, "pattern \"%s\" must start with '/'", pattern);
        return -1;
    }
    size_t len = strlen(pattern);
    if (len > 1 && pattern[len - 1] == '/') {
        snprintf(err, errlen, "pattern \"%s\" must not end with '/' (routes never do)", pattern);
        return -1;
    }
    for (const char *p = pattern + 1; len > 1;) {
        const char *end = strchr(p, '/');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (seg == 0 || (p[0] == ':' && seg == 1)) {
            snprintf(err, errlen, "pattern \"%s\" has an empty %s", pattern,
                     seg ? "parameter name" : "segment");
            return -1;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

int ratelimit_parse_rule(const char *value, ratelimit_rule_t *rule, char *err, size_t errlen)
{
    memset(rule, 0, sizeof(*rule));
    char *copy = xstrdup(value);
    char *save = NULL;
    char *tok[4];
    int n = 0;
    for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (n == 4)
            break;
        tok[n++] = t;
    }
    int rc = -1;
    if (n != 3) {
        snprintf(err, errlen,
                 "expected \"METHOD PATTERN N/WINDOW\" such as \"POST /v1/auth/login 10/1m\", "
                 "got \"%s\"",
                 value);
        goto done;
    }
    int method = router_method_parse(tok[0]);
    if (method == METHOD_HEAD) {
        snprintf(err, errlen, "HEAD requests are served by the GET route: limit \"GET %s\"",
                 tok[1]);
        goto done;
    }
    if (method == METHOD_UNKNOWN) {
        snprintf(err, errlen, "unknown method \"%s\" (GET, POST, PUT, PATCH, DELETE, OPTIONS)",
                 tok[0]);
        goto done;
    }
    if (check_pattern(tok[1], err, errlen))
        goto done;
    if (ratelimit_parse_limit(tok[2], &rule->limit, &rule->window_ms)) {
        snprintf(err, errlen,
                 "limit \"%s\" is not N/WINDOW, such as 10/1m (N from 1, WINDOW a duration "
                 "such as 1s, 10s, 1m or 1h)",
                 tok[2]);
        goto done;
    }
    rule->method = method;
    rule->pattern = xstrdup(tok[1]);
    rule_set_id(rule);
    rc = 0;
done:
    free(copy);
    return rc;
}

void ratelimit_rule_clear(ratelimit_rule_t *rule)
{
    if (!rule)
        return;
    free(rule->pattern);
    free(rule->file);
    rule->pattern = NULL;
    rule->file = NULL;
}

bool ratelimit_rule_matches(const ratelimit_rule_t *rule, int method, const char *pattern)
{
    if (!rule->pattern || rule->method != method)
        return false;
    const char *a = rule->pattern, *b = pattern;
    while (*a && *b) {
        if (*a == ':' && *b == ':' && a > rule->pattern && a[-1] == '/' && b > pattern &&
            b[-1] == '/') {
            while (*a && *a != '/')
                a++;
            while (*b && *b != '/')
                b++;
            continue;
        }
        if (*a != *b)
            return false;
        a++;
        b++;
    }
    return *a == *b;
}

/* ---- configuration ---- */

static const char *const seen_keys[SEEN_COUNT] = {"default", "trusted_proxies", "key_prefix"};

void ratelimit_config_foreach_key(void (*fn)(const char *section, const char *key, void *ud),
                                  void *ud)
{
    for (size_t i = 0; i < SEEN_COUNT; i++)
        fn("ratelimit", seen_keys[i], ud);
    fn("ratelimit", "route*", ud); /* ratelimit_config_set: any key starting with "route" */
}

static int set_proxies(ratelimit_config_t *rc, const char *value, char *err, size_t errlen)
{
    free(rc->proxies);
    rc->proxies = NULL;
    rc->nproxies = 0;
    char *copy = xstrdup(value);
    char *save = NULL;
    int rc_ = 0;
    for (char *t = strtok_r(copy, " ,\t", &save); t; t = strtok_r(NULL, " ,\t", &save)) {
        ratelimit_cidr_t c;
        int prc = ratelimit_parse_cidr(t, &c);
        if (prc == -2) {
            snprintf(err, errlen,
                     "trusted_proxies: \"%s\" has bits set beyond its prefix length (the "
                     "network is written with them cleared, such as 10.0.0.0/8)",
                     t);
            rc_ = -1;
            break;
        }
        if (prc) {
            snprintf(err, errlen,
                     "trusted_proxies: \"%s\" is not an address or a CIDR block such as "
                     "10.0.0.0/8 or fd00::/8",
                     t);
            rc_ = -1;
            break;
        }
        rc->proxies = xrealloc(rc->proxies, (rc->nproxies + 1) * sizeof(ratelimit_cidr_t));
        rc->proxies[rc->nproxies++] = c;
    }
    free(copy);
    return rc_;
}

static int add_route_rule(ratelimit_config_t *rc, const char *key, const char *value,
                          const char *file, int line, char *err, size_t errlen)
{
    ratelimit_rule_t rule;
    char why[400];
    if (ratelimit_parse_rule(value, &rule, why, sizeof(why))) {
        snprintf(err, errlen, "%s: %s", key, why);
        return -1;
    }
    size_t same_route = 1;
    for (size_t i = 0; i < rc->nrules; i++) {
        const ratelimit_rule_t *o = rc->rules[i];
        if (!ratelimit_rule_matches(o, rule.method, rule.pattern))
            continue;
        if (o->window_ms == rule.window_ms) {
            snprintf(err, errlen, "%s: %s %s already has a limit per this window at %s:%d", key,
                     router_method_name(rule.method), rule.pattern, o->file, o->line);
            ratelimit_rule_clear(&rule);
            return -1;
        }
        same_route++;
    }
    /* The default may apply too. */
    if (same_route >= RATELIMIT_MAX_RULES_PER_ROUTE) {
        snprintf(err, errlen, "%s: %s %s has more than %d limits", key,
                 router_method_name(rule.method), rule.pattern, RATELIMIT_MAX_RULES_PER_ROUTE - 1);
        ratelimit_rule_clear(&rule);
        return -1;
    }
    ratelimit_rule_t *r = xmalloc(sizeof(*r));
    *r = rule;
    r->index = (uint32_t)rc->nrules + 1;
    r->file = xstrdup(file);
    r->line = line;
    rc->rules = xrealloc(rc->rules, (rc->nrules + 1) * sizeof(*rc->rules));
    rc->rules[rc->nrules++] = r;
    return 0;
}

int ratelimit_config_set(ratelimit_config_t **rcp, const char *key, const char *value,
                         const char *file, int line, char *err, size_t errlen)
{
    if (!*rcp) {
        *rcp = xcalloc(1, sizeof(ratelimit_config_t));
        (*rcp)->key_prefix = xstrdup(RATELIMIT_DEFAULT_PREFIX);
    }
    ratelimit_config_t *rc = *rcp;
    if (!strncmp(key, "route", 5))
        return add_route_rule(rc, key, value, file, line, err, errlen);
    int which = -1;
    for (int i = 0; i < SEEN_COUNT; i++)
        if (!strcmp(key, seen_keys[i]))
            which = i;
    if (which < 0) {
        snprintf(err, errlen,
                 "unknown key \"%s\" in [ratelimit] (expected default, trusted_proxies, "
                 "key_prefix, or route... = METHOD PATTERN N/WINDOW)",
                 key);
        return -1;
    }
    if (rc->seen_file[which]) {
        snprintf(err, errlen, "duplicate key \"%s\" in [ratelimit] (first set at %s:%d)", key,
                 rc->seen_file[which], rc->seen_line[which]);
        return -1;
    }
    rc->seen_file[which] = xstrdup(file);
    rc->seen_line[which] = line;
    switch (which) {
    case SEEN_DEFAULT: {
        if (!*value)
            return 0;
        uint64_t limit, window;
        if (ratelimit_parse_limit(value, &limit, &window)) {
            snprintf(err, errlen,
                     "default: \"%s\" is not N/WINDOW, such as 300/1m (N from 1, WINDOW a "
                     "duration such as 1s, 10s, 1m or 1h), or empty for none",
                     value);
            return -1;
        }
        ratelimit_rule_t *d = xcalloc(1, sizeof(*d));
        d->method = METHOD_UNKNOWN;
        d->limit = limit;
        d->window_ms = window;
        d->index = 0;
        d->file = xstrdup(file);
        d->line = line;
        rule_set_id(d);
        rc->deflt = d;
        return 0;
    }
    case SEEN_PROXIES: return set_proxies(rc, value, err, errlen);
    default:
        free(rc->key_prefix);
        rc->key_prefix = xstrdup(value);
        return 0;
    }
}

void ratelimit_config_free(ratelimit_config_t *rc)
{
    if (!rc)
        return;
    if (rc->deflt) {
        ratelimit_rule_clear(rc->deflt);
        free(rc->deflt);
    }
    for (size_t i = 0; i < rc->nrules; i++) {
        ratelimit_rule_clear(rc->rules[i]);
        free(rc->rules[i]);
    }
    free(rc->rules);
    free(rc->proxies);
    free(rc->key_prefix);
    for (int i = 0; i < SEEN_COUNT; i++)
        free(rc->seen_file[i]);
    free(rc);
}
