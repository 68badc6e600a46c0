/* test_ratelimit.c — server/ratelimit.c without Redis: limits and rules as configured,
 * CIDR blocks, X-Forwarded-For with and without trusted proxies, client buckets, and the
 * per-worker fallback table with its windows. The Redis side is tests/api/test_ratelimit.py. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "ratelimit.h"
#include "util.h"

static ratelimit_addr_t addr(const char *text)
{
    ratelimit_addr_t a;
    if (ratelimit_parse_addr(text, strlen(text), &a)) {
        fprintf(stderr, "bad test address %s\n", text);
        exit(2);
    }
    return a;
}

static bool addr_is(const ratelimit_addr_t *a, const char *text)
{
    ratelimit_addr_t b = addr(text);
    return !memcmp(a, &b, sizeof(b));
}

static void test_parse_limit(void)
{
    uint64_t n = 0, ms = 0;
    CHECK_EQ_INT(ratelimit_parse_limit("5/2s", &n, &ms), 0);
    CHECK_EQ_U64(n, 5);
    CHECK_EQ_U64(ms, 2000);
    CHECK_EQ_INT(ratelimit_parse_limit("10/1m", &n, &ms), 0);
    CHECK_EQ_U64(ms, 60000);
    CHECK_EQ_INT(ratelimit_parse_limit("1/1h", &n, &ms), 0);
    CHECK_EQ_U64(n, 1);
    CHECK_EQ_U64(ms, 3600000);
    CHECK_EQ_INT(ratelimit_parse_limit("100/500ms", &n, &ms), 0);
    CHECK_EQ_U64(ms, 500);
    CHECK_EQ_INT(ratelimit_parse_limit("7/10", &n, &ms), 0); /* bare number: seconds */
    CHECK_EQ_U64(ms, 10000);
    static const char *bad[] = {"5",      "/1s",   "0/1s",   "5/0s",  "5/", "x/1s",
                                "5/1x",   "-1/1s", "5/1s/2", "5 /1s", "",   "99999999999999999/1s",
                                "5/9000h"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (ratelimit_parse_limit(bad[i], &n, &ms) != -1) {
            fprintf(stderr, "accepted limit \"%s\"\n", bad[i]);
            CHECK(!"a bad limit was accepted");
        }
    }
}

static void test_parse_rule(void)
{
    ratelimit_rule_t r;
    char err[400];
    CHECK_EQ_INT(ratelimit_parse_rule("POST /v1/auth/login 10/1m", &r, err, sizeof(err)), 0);
    CHECK_EQ_INT(r.method, METHOD_POST);
    CHECK_STR(r.pattern, "/v1/auth/login");
    CHECK_EQ_U64(r.limit, 10);
    CHECK_EQ_U64(r.window_ms, 60000);
    CHECK_EQ_INT(strlen(r.id), 16);
    CHECK_EQ_INT(strspn(r.id, "0123456789abcdef"), 16);
    ratelimit_rule_clear(&r);

    CHECK_EQ_INT(ratelimit_parse_rule("  GET\t/v1/users/:id   100/1s ", &r, err, sizeof(err)), 0);
    CHECK_EQ_INT(r.method, METHOD_GET);
    CHECK_STR(r.pattern, "/v1/users/:id");
    CHECK_EQ_U64(r.limit, 100);
    char id[17];
    memcpy(id, r.id, sizeof(id));
    ratelimit_rule_clear(&r);
    /* The id names the route shape and the window: not the parameter's name, not N. */
    CHECK_EQ_INT(ratelimit_parse_rule("GET /v1/users/:userId 7/1s", &r, err, sizeof(err)), 0);
    CHECK_STR(r.id, id);
    ratelimit_rule_clear(&r);
    CHECK_EQ_INT(ratelimit_parse_rule("GET /v1/users/:id 100/2s", &r, err, sizeof(err)), 0);
    CHECK(strcmp(r.id, id) != 0);
    ratelimit_rule_clear(&r);
    CHECK_EQ_INT(ratelimit_parse_rule("PUT /v1/users/:id 100/1s", &r, err, sizeof(err)), 0);
    CHECK(strcmp(r.id, id) != 0);
    ratelimit_rule_clear(&r);
    CHECK_EQ_INT(ratelimit_parse_rule("GET / 1/1s", &r, err, sizeof(err)), 0);
    ratelimit_rule_clear(&r);

    static const struct {
        const char *value;
        const char *says;
    } bad[] = {
        {"GET /v1/x", "expected \"METHOD PATTERN N/WINDOW\""},
        {"GET /v1/x 5/1s extra", "expected \"METHOD PATTERN N/WINDOW\""},
        {"", "expected"},
        {"HEAD /v1/x 5/1s", "limit \"GET /v1/x\""},
        {"get /v1/x 5/1s", "unknown method \"get\""},
        {"FETCH /v1/x 5/1s", "unknown method"},
        {"GET v1/x 5/1s", "must start with '/'"},
        {"GET /v1/x/ 5/1s", "must not end with '/'"},
        {"GET /v1//x 5/1s", "empty segment"},
        {"GET /v1/: 5/1s", "empty parameter name"},
        {"GET /v1/x 5/1q", "limit \"5/1q\" is not N/WINDOW"},
        {"GET /v1/x 0/1s", "is not N/WINDOW"},
        {"GET /v1/x 1m", "is not N/WINDOW"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(ratelimit_parse_rule(bad[i].value, &r, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, bad[i].says);
        CHECK(r.pattern == NULL);
    }
}

static void test_rule_matches(void)
{
    ratelimit_rule_t r;
    char err[400];
    CHECK_EQ_INT(ratelimit_parse_rule("GET /v1/users/:id 5/1s", &r, err, sizeof(err)), 0);
    CHECK(ratelimit_rule_matches(&r, METHOD_GET, "/v1/users/:id"));
    CHECK(ratelimit_rule_matches(&r, METHOD_GET, "/v1/users/:userId"));
    CHECK(!ratelimit_rule_matches(&r, METHOD_POST, "/v1/users/:id"));
    CHECK(!ratelimit_rule_matches(&r, METHOD_GET, "/v1/users/me"));
    CHECK(!ratelimit_rule_matches(&r, METHOD_GET, "/v1/users"));
    CHECK(!ratelimit_rule_matches(&r, METHOD_GET, "/v1/users/:id/tasks"));
    CHECK(!ratelimit_rule_matches(&r, METHOD_GET, "/v1/user/:id"));
    ratelimit_rule_clear(&r);
    CHECK_EQ_INT(ratelimit_parse_rule("GET /v1/users/me 5/1s", &r, err, sizeof(err)), 0);
    CHECK(!ratelimit_rule_matches(&r, METHOD_GET, "/v1/users/:id"));
    CHECK(ratelimit_rule_matches(&r, METHOD_GET, "/v1/users/me"));
    ratelimit_rule_clear(&r);
    CHECK_EQ_INT(ratelimit_parse_rule("DELETE /v1/a:b 5/1s", &r, err, sizeof(err)), 0);
    /* A ':' inside a segment is a literal character, not a parameter. */
    CHECK(!ratelimit_rule_matches(&r, METHOD_DELETE, "/v1/a:c"));
    CHECK(ratelimit_rule_matches(&r, METHOD_DELETE, "/v1/a:b"));
    ratelimit_rule_clear(&r);
}

static void test_cidr(void)
{
    ratelimit_cidr_t c[8];
    CHECK_EQ_INT(ratelimit_parse_cidr("10.0.0.0/8", &c[0]), 0);
    CHECK_EQ_INT(c[0].bits, 8);
    ratelimit_addr_t a = addr("10.200.3.4");
    CHECK(ratelimit_cidr_match(c, 1, &a));
    a = addr("11.0.0.1");
    CHECK(!ratelimit_cidr_match(c, 1, &a));
    a = addr("::ffff:10.1.1.1"); /* mapped: matched as IPv4 */
    CHECK(ratelimit_cidr_match(c, 1, &a));

    CHECK_EQ_INT(ratelimit_parse_cidr("127.0.0.1", &c[1]), 0);
    CHECK_EQ_INT(c[1].bits, 32);
    a = addr("127.0.0.1");
    CHECK(ratelimit_cidr_match(c, 2, &a));
    a = addr("127.0.0.2");
    CHECK(!ratelimit_cidr_match(c, 2, &a));

    CHECK_EQ_INT(ratelimit_parse_cidr("192.168.0.0/20", &c[0]), 0);
    a = addr("192.168.15.255");
    CHECK(ratelimit_cidr_match(c, 1, &a));
    a = addr("192.168.16.0");
    CHECK(!ratelimit_cidr_match(c, 1, &a));

    CHECK_EQ_INT(ratelimit_parse_cidr("::1", &c[0]), 0);
    CHECK_EQ_INT(c[0].bits, 128);
    a = addr("::1");
    CHECK(ratelimit_cidr_match(c, 1, &a));
    a = addr("::2");
    CHECK(!ratelimit_cidr_match(c, 1, &a));
    a = addr("127.0.0.1");
    CHECK(!ratelimit_cidr_match(c, 1, &a));

    CHECK_EQ_INT(ratelimit_parse_cidr("fd00::/8", &c[0]), 0);
    a = addr("fd12:3456::1");
    CHECK(ratelimit_cidr_match(c, 1, &a));
    a = addr("fe80::1");
    CHECK(!ratelimit_cidr_match(c, 1, &a));
    CHECK_EQ_INT(ratelimit_parse_cidr("2001:db8:abcd:12::/63", &c[0]), 0);
    a = addr("2001:db8:abcd:13::ffff");
    CHECK(ratelimit_cidr_match(c, 1, &a));
    a = addr("2001:db8:abcd:14::");
    CHECK(!ratelimit_cidr_match(c, 1, &a));

    /* /0 covers a whole family, and only that family. */
    CHECK_EQ_INT(ratelimit_parse_cidr("0.0.0.0/0", &c[0]), 0);
    CHECK_EQ_INT(ratelimit_parse_cidr("::/0", &c[1]), 0);
    a = addr("8.8.8.8");
    CHECK(ratelimit_cidr_match(c, 1, &a));
    CHECK(!ratelimit_cidr_match(&c[1], 1, &a));
    a = addr("2001:db8::1");
    CHECK(!ratelimit_cidr_match(c, 1, &a));
    CHECK(ratelimit_cidr_match(&c[1], 1, &a));

    CHECK_EQ_INT(ratelimit_parse_cidr("::ffff:10.0.0.0/104", &c[0]), 0);
    CHECK_EQ_INT(c[0].bits, 8);
    a = addr("10.9.9.9");
    CHECK(ratelimit_cidr_match(c, 1, &a));

    /* An unknown peer (a family we do not read) is never trusted. */
    ratelimit_addr_t unknown = {0};
    CHECK(!ratelimit_cidr_match(c, 1, &unknown));

    CHECK_EQ_INT(ratelimit_parse_cidr("10.1.2.3/8", &c[0]), -2);
    CHECK_EQ_INT(ratelimit_parse_cidr("fd00::1/8", &c[0]), -2);
    static const char *bad[] = {"10.0.0.0/33", "::/129",   "garbage",
                                "10.0.0.0/",   "10.0.0/8", "10.0.0.0/-1",
                                "10.0.0.0/8x", "",         "::ffff:10.0.0.0/64"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (ratelimit_parse_cidr(bad[i], &c[0]) != -1) {
            fprintf(stderr, "accepted CIDR \"%s\"\n", bad[i]);
            CHECK(!"a bad CIDR block was accepted");
        }
    }
}

static void test_parse_addr(void)
{
    ratelimit_addr_t a;
    CHECK_EQ_INT(ratelimit_parse_addr("203.0.113.7", 11, &a), 0);
    CHECK_EQ_INT(a.family, AF_INET);
    CHECK_EQ_INT(a.bytes[0], 203);
    CHECK_EQ_INT(a.bytes[3], 7);
    static const char *same_v4[] = {" 203.0.113.7 ", "203.0.113.7:5040", "\t203.0.113.7",
                                    "::ffff:203.0.113.7", "[::ffff:203.0.113.7]:80"};
    for (size_t i = 0; i < ARRAY_SIZE(same_v4); i++) {
        ratelimit_addr_t b;
        CHECK_EQ_INT(ratelimit_parse_addr(same_v4[i], strlen(same_v4[i]), &b), 0);
        CHECK(!memcmp(&a, &b, sizeof(a)));
    }
    CHECK_EQ_INT(ratelimit_parse_addr("2001:db8::1", 11, &a), 0);
    CHECK_EQ_INT(a.family, AF_INET6);
    static const char *same_v6[] = {"[2001:db8::1]", "[2001:db8::1]:443", " 2001:db8:0::1 "};
    for (size_t i = 0; i < ARRAY_SIZE(same_v6); i++) {
        ratelimit_addr_t b;
        CHECK_EQ_INT(ratelimit_parse_addr(same_v6[i], strlen(same_v6[i]), &b), 0);
        CHECK(!memcmp(&a, &b, sizeof(a)));
    }
    /* Only `len` bytes count. */
    CHECK_EQ_INT(ratelimit_parse_addr("10.0.0.1, 10.0.0.2", 8, &a), 0);
    CHECK(addr_is(&a, "10.0.0.1"));
    static const char *bad[] = {
        "unknown",        "",        "   ",       "1.2.3.4:", "1.2.3.4:port",
        "[2001:db8::1",   "[::1]x",  "[::1]:",    "1.2.3",    "fe80::1%eth0",
        "1.2.3.4:123456", "_hidden", "[1.2.3.4]x"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (ratelimit_parse_addr(bad[i], strlen(bad[i]), &a) != -1) {
            fprintf(stderr, "accepted address \"%s\"\n", bad[i]);
            CHECK(!"a bad address was accepted");
        }
    }
}

/* The client for `peer` given X-Forwarded-For header values (NULL-terminated list). */
static ratelimit_addr_t client_of(const ratelimit_cidr_t *proxies, size_t n, const char *peer,
                                  const char *const *xff)
{
    const char *values[8];
    size_t lens[8], nv = 0;
    for (; xff && xff[nv]; nv++) {
        values[nv] = xff[nv];
        lens[nv] = strlen(xff[nv]);
    }
    ratelimit_addr_t p = addr(peer), out;
    ratelimit_client_addr(proxies, n, &p, values, lens, nv, &out);
    return out;
}

#define XFF(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_forwarded_for(void)
{
    ratelimit_cidr_t proxies[3];
    CHECK_EQ_INT(ratelimit_parse_cidr("127.0.0.1", &proxies[0]), 0);
    CHECK_EQ_INT(ratelimit_parse_cidr("10.0.0.0/8", &proxies[1]), 0);
    CHECK_EQ_INT(ratelimit_parse_cidr("::1", &proxies[2]), 0);
    ratelimit_addr_t c;

    /* No trusted proxies at all, or a peer that is not one: the header is ignored. */
    c = client_of(NULL, 0, "127.0.0.1", XFF("203.0.113.7"));
    CHECK(addr_is(&c, "127.0.0.1"));
    c = client_of(proxies, 3, "198.51.100.1", XFF("203.0.113.7"));
    CHECK(addr_is(&c, "198.51.100.1"));
    c = client_of(proxies, 3, "198.51.100.1", XFF("10.0.0.1"));
    CHECK(addr_is(&c, "198.51.100.1"));

    /* A trusted peer without the header: the peer itself. */
    c = client_of(proxies, 3, "127.0.0.1", NULL);
    CHECK(addr_is(&c, "127.0.0.1"));

    c = client_of(proxies, 3, "127.0.0.1", XFF("203.0.113.7"));
    CHECK(addr_is(&c, "203.0.113.7"));
    c = client_of(proxies, 3, "::1", XFF("203.0.113.7"));
    CHECK(addr_is(&c, "203.0.113.7"));
    /* What the client wrote left of the nearest untrusted hop is not believed. */
    c = client_of(proxies, 3, "127.0.0.1", XFF("6.6.6.6, 203.0.113.7"));
    CHECK(addr_is(&c, "203.0.113.7"));
    /* Trusted hops are skipped from the right. */
    c = client_of(proxies, 3, "127.0.0.1", XFF("6.6.6.6, 203.0.113.7, 10.0.0.5,10.1.1.1"));
    CHECK(addr_is(&c, "203.0.113.7"));
    /* Several headers are one list, in order. */
    c = client_of(proxies, 3, "127.0.0.1", XFF("6.6.6.6", "203.0.113.7, 10.1.1.1"));
    CHECK(addr_is(&c, "203.0.113.7"));
    c = client_of(proxies, 3, "127.0.0.1", XFF("6.6.6.6, 203.0.113.9", "10.1.1.1"));
    CHECK(addr_is(&c, "203.0.113.9"));
    /* Every hop trusted: the left-most. */
    c = client_of(proxies, 3, "127.0.0.1", XFF("10.0.0.1, 10.0.0.2"));
    CHECK(addr_is(&c, "10.0.0.1"));
    /* A hop that is no address stops the walk at the last trusted one. */
    c = client_of(proxies, 3, "127.0.0.1", XFF("203.0.113.7, unknown, 10.0.0.2"));
    CHECK(addr_is(&c, "10.0.0.2"));
    c = client_of(proxies, 3, "127.0.0.1", XFF("203.0.113.7, unknown"));
    CHECK(addr_is(&c, "127.0.0.1"));
    c = client_of(proxies, 3, "127.0.0.1", XFF("garbage"));
    CHECK(addr_is(&c, "127.0.0.1"));
    /* Empty elements and blanks are skipped; ports and brackets are dropped. */
    c = client_of(proxies, 3, "127.0.0.1", XFF("203.0.113.7, , "));
    CHECK(addr_is(&c, "203.0.113.7"));
    c = client_of(proxies, 3, "127.0.0.1", XFF(""));
    CHECK(addr_is(&c, "127.0.0.1"));
    c = client_of(proxies, 3, "127.0.0.1", XFF("[2001:db8::7]:443"));
    CHECK(addr_is(&c, "2001:db8::7"));
    c = client_of(proxies, 3, "127.0.0.1", XFF("203.0.113.7:5555"));
    CHECK(addr_is(&c, "203.0.113.7"));
    /* A mapped peer is the IPv4 peer. */
    c = client_of(proxies, 3, "::ffff:127.0.0.1", XFF("203.0.113.8"));
    CHECK(addr_is(&c, "203.0.113.8"));
}

static void test_bucket(void)
{
    ratelimit_addr_t a = addr("203.0.113.7"), b;
    char text[64];
    CHECK_EQ_INT(ratelimit_bucket(&a, &b, text, sizeof(text)), strlen("203.0.113.7"));
    CHECK_STR(text, "203.0.113.7");
    CHECK(!memcmp(&a, &b, sizeof(a)));

    a = addr("2001:db8:1:2:3:4:5:6");
    ratelimit_bucket(&a, &b, text, sizeof(text));
    CHECK_STR(text, "2001:db8:1:2::/64");
    CHECK(addr_is(&b, "2001:db8:1:2::"));
    ratelimit_addr_t a2 = addr("2001:db8:1:2:ffff::1"), b2;
    ratelimit_bucket(&a2, &b2, text, sizeof(text));
    CHECK(!memcmp(&b, &b2, sizeof(b)));

    ratelimit_addr_t unknown = {0};
    ratelimit_bucket(&unknown, &b, text, sizeof(text));
    CHECK_STR(text, "unknown");
    /* A short buffer is cut, never overrun. */
    a = addr("203.0.113.7");
    CHECK_EQ_INT(ratelimit_bucket(&a, &b, text, 5), 4);
    CHECK_STR(text, "203.");
}

static void test_local_window(void)
{
    ratelimit_local_t *l = ratelimit_local_new(64, 42);
    ratelimit_addr_t a = addr("203.0.113.7"), b = addr("203.0.113.8");
    uint64_t ttl = 0;
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &a, 2000, 1000, &ttl), 1);
    CHECK_EQ_U64(ttl, 2000);
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &a, 2000, 1500, &ttl), 2);
    CHECK_EQ_U64(ttl, 1500);
    /* Other rules and other clients have counts of their own. */
    CHECK_EQ_U64(ratelimit_local_hit(l, 2, &a, 2000, 1500, &ttl), 1);
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &b, 2000, 1500, &ttl), 1);
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &a, 2000, 2999, &ttl), 3);
    CHECK_EQ_U64(ttl, 1);
    /* The window started with the first request and ends window_ms later. */
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &a, 2000, 3000, &ttl), 1);
    CHECK_EQ_U64(ttl, 2000);
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &a, 2000, 3001, &ttl), 2);
    CHECK_EQ_U64(ttl, 1999);
    /* b's window (from 1500) is independent of a's. */
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &b, 2000, 3499, &ttl), 2);
    CHECK_EQ_U64(ratelimit_local_hit(l, 1, &b, 2000, 3500, &ttl), 1);
    ratelimit_local_free(l);
    ratelimit_local_free(NULL);
}

static void test_local_bounded(void)
{
    /* 16 slots, 1000 clients with live windows: old entries are dropped, never the one
     * just counted, and the table never grows. */
    ratelimit_local_t *l = ratelimit_local_new(1, 7);
    uint64_t ttl;
    int wrong = 0;
    for (int i = 0; i < 1000; i++) {
        char text[32];
        snprintf(text, sizeof(text), "198.51.%d.%d", i / 256, i % 256);
        ratelimit_addr_t a = addr(text);
        if (ratelimit_local_hit(l, 1, &a, 60000, 1000 + (uint64_t)i, &ttl) != 1)
            wrong++;
        if (ratelimit_local_hit(l, 1, &a, 60000, 1000 + (uint64_t)i, &ttl) != 2)
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
    /* Once their windows are over, every entry is free again. */
    for (int i = 0; i < 16; i++) {
        char text[32];
        snprintf(text, sizeof(text), "192.0.2.%d", i);
        ratelimit_addr_t a = addr(text);
        CHECK_EQ_U64(ratelimit_local_hit(l, 1, &a, 10, 100000, &ttl), 1);
    }
    ratelimit_local_free(l);
}

static void test_config_set(void)
{
    ratelimit_config_t *rc = NULL;
    char err[600];
    CHECK_EQ_INT(
        ratelimit_config_set(&rc, "route", "GET /v1/hello 5/2s", "a.conf", 3, err, sizeof(err)), 0);
    CHECK_OR_RETURN(rc != NULL);
    CHECK_STR(rc->key_prefix, RATELIMIT_DEFAULT_PREFIX);
    CHECK(rc->deflt == NULL);
    CHECK_EQ_INT(ratelimit_config_set(&rc, "route_login", "POST /v1/auth/login 10/1m", "a.conf", 4,
                                      err, sizeof(err)),
                 0);
    /* Same route, another window: a second limit. */
    CHECK_EQ_INT(ratelimit_config_set(&rc, "route", "POST /v1/auth/login 3/1s", "b.conf", 1, err,
                                      sizeof(err)),
                 0);
    CHECK_EQ_INT(rc->nrules, 3);
    CHECK_EQ_INT(rc->rules[0]->index, 1);
    CHECK_EQ_INT(rc->rules[2]->index, 3);
    CHECK_STR(rc->rules[1]->file, "a.conf");
    CHECK_EQ_INT(rc->rules[1]->line, 4);
    /* Same route shape and window again: refused, naming the first. */
    CHECK_EQ_INT(
        ratelimit_config_set(&rc, "route2", "GET /v1/hello 9/2s", "b.conf", 2, err, sizeof(err)),
        -1);
    CHECK_CONTAINS(err, "route2: GET /v1/hello already has a limit per this window at a.conf:3");
    CHECK_EQ_INT(
        ratelimit_config_set(&rc, "route3", "GET /v1/hello", "b.conf", 3, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "route3: expected \"METHOD PATTERN N/WINDOW\"");
    CHECK_EQ_INT(rc->nrules, 3);

    CHECK_EQ_INT(ratelimit_config_set(&rc, "default", "300/1m", "a.conf", 5, err, sizeof(err)), 0);
    CHECK_OR_RETURN(rc->deflt != NULL);
    CHECK_EQ_U64(rc->deflt->limit, 300);
    CHECK_EQ_U64(rc->deflt->window_ms, 60000);
    CHECK_EQ_INT(rc->deflt->index, 0);
    CHECK(rc->deflt->pattern == NULL);
    CHECK_EQ_INT(ratelimit_config_set(&rc, "default", "5/1s", "b.conf", 9, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "duplicate key \"default\" in [ratelimit] (first set at a.conf:5)");

    CHECK_EQ_INT(ratelimit_config_set(&rc, "trusted_proxies", "127.0.0.1, 10.0.0.0/8 ::1", "a.conf",
                                      6, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(rc->nproxies, 3);
    CHECK_EQ_INT(ratelimit_config_set(&rc, "key_prefix", "app1:rl:", "a.conf", 7, err, sizeof(err)),
                 0);
    CHECK_STR(rc->key_prefix, "app1:rl:");
    CHECK_EQ_INT(ratelimit_config_set(&rc, "limit", "5/1s", "a.conf", 8, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "unknown key \"limit\" in [ratelimit]");
    ratelimit_config_free(rc);

    rc = NULL;
    CHECK_EQ_INT(ratelimit_config_set(&rc, "default", "", "a.conf", 1, err, sizeof(err)), 0);
    CHECK(rc && rc->deflt == NULL);
    CHECK_EQ_INT(ratelimit_config_set(&rc, "trusted_proxies", "127.0.0.1, 10.1.0.0/8", "a.conf", 2,
                                      err, sizeof(err)),
                 -1);
    CHECK_CONTAINS(err, "\"10.1.0.0/8\" has bits set beyond its prefix length");
    CHECK_EQ_INT(ratelimit_config_set(&rc, "default", "lots", "a.conf", 3, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "duplicate key");
    ratelimit_config_free(rc);

    rc = NULL;
    CHECK_EQ_INT(
        ratelimit_config_set(&rc, "trusted_proxies", "localhost", "a.conf", 2, err, sizeof(err)),
        -1);
    CHECK_CONTAINS(err, "trusted_proxies: \"localhost\" is not an address or a CIDR block");
    CHECK_EQ_INT(ratelimit_config_set(&rc, "default", "lots", "a.conf", 3, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "default: \"lots\" is not N/WINDOW");
    ratelimit_config_free(rc);
    ratelimit_config_free(NULL);
}

/* Through config_load: the section is known, values keep their ':' and errors name
 * file:line. */
static void test_config_file(void)
{
    char dir[] = "/tmp/pxrl.XXXXXX";
    CHECK_OR_RETURN(mkdtemp(dir) != NULL);
    char *path = xasprintf("%s/pantherad.conf", dir);
    FILE *fp = fopen(path, "w");
    CHECK_OR_RETURN(fp != NULL);
    fputs("[server]\n"
          "workers = 1\n"
          "[ratelimit]\n"
          "route = GET /v1/users/:id 5/1s\n"
          "route_login = POST /v1/auth/login 10/1m ; brute force\n"
          "trusted_proxies = 127.0.0.1, ::1\n",
          fp);
    fclose(fp);
    config_errors_t errs = {0};
    config_t *cfg = config_load(path, &errs);
    CHECK_EQ_INT(errs.n, 0);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  %s\n", errs.items[i]);
    CHECK(cfg && cfg->ratelimit);
    if (cfg && cfg->ratelimit) {
        CHECK_EQ_INT(cfg->ratelimit->nrules, 2);
        CHECK_STR(cfg->ratelimit->rules[0]->pattern, "/v1/users/:id");
        CHECK_EQ_INT(cfg->ratelimit->rules[0]->line, 4);
        CHECK_STR(cfg->ratelimit->rules[1]->pattern, "/v1/auth/login");
        CHECK_EQ_U64(cfg->ratelimit->rules[1]->limit, 10);
        CHECK_EQ_INT(cfg->ratelimit->nproxies, 2);
    }
    config_free(cfg);

    fp = fopen(path, "w");
    CHECK_OR_RETURN(fp != NULL);
    fputs("[server]\n"
          "workers = 1\n"
          "[ratelimit]\n"
          "route = GET /v1/users/:id 5/x\n"
          "trusted_proxies = 10.0.0.0/40\n"
          "bogus = 1\n",
          fp);
    fclose(fp);
    cfg = config_load(path, &errs);
    CHECK(cfg == NULL);
    CHECK_EQ_INT(errs.n, 3);
    char *where = xasprintf("%s:4: route: limit \"5/x\"", path);
    CHECK_CONTAINS(errs.n > 0 ? errs.items[0] : NULL, where);
    free(where);
    where = xasprintf("%s:5: trusted_proxies:", path);
    CHECK_CONTAINS(errs.n > 1 ? errs.items[1] : NULL, where);
    free(where);
    where = xasprintf("%s:6: unknown key \"bogus\" in [ratelimit]", path);
    CHECK_CONTAINS(errs.n > 2 ? errs.items[2] : NULL, where);
    free(where);
    config_errors_free(&errs);
    unlink(path);
    rmdir(dir);
    free(path);
}

int main(void)
{
    RUN(test_parse_limit);
    RUN(test_parse_rule);
    RUN(test_rule_matches);
    RUN(test_cidr);
    RUN(test_parse_addr);
    RUN(test_forwarded_for);
    RUN(test_bucket);
    RUN(test_local_window);
    RUN(test_local_bounded);
    RUN(test_config_set);
    RUN(test_config_file);
    return check_finish();
}
