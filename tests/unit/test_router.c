/* test_router.c — server/router.c: pattern checks, match precedence and backtracking,
 * 404 / 405 with the Allow list, HEAD, duplicates and limits. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "router.h"

/* Handlers are never called here: a route is told apart by its userdata. */
static int handler(px_req_t *req, void *userdata)
{
    (void)req;
    (void)userdata;
    return PX_OK;
}

static char err[512];

static int add(router_t *r, const char *method, const char *pattern, const char *tag)
{
    err[0] = '\0';
    return router_add(r, method, pattern, handler, (void *)tag, "test", 0, err, sizeof(err));
}

static int add_owned(router_t *r, const char *method, const char *pattern, const char *owner)
{
    err[0] = '\0';
    return router_add(r, method, pattern, handler, NULL, owner, 0, err, sizeof(err));
}

static router_match_t m;

static void match(const router_t *r, int method, const char *path)
{
    router_match(r, method, path, strlen(path), &m);
}

/* The tag of the matched route, or NULL. */
static const char *matched(void)
{
    return m.status == 200 && m.route ? (const char *)m.route->userdata : NULL;
}

static char param_buf[ROUTER_MAX_PARAMS][128];

static const char *param(size_t i)
{
    if (i >= m.nparams)
        return NULL;
    snprintf(param_buf[i], sizeof(param_buf[i]), "%.*s", (int)m.params[i].len,
             m.params[i].value);
    return param_buf[i];
}

static void test_methods(void)
{
    CHECK_EQ_INT(router_method_parse("GET"), METHOD_GET);
    CHECK_EQ_INT(router_method_parse("HEAD"), METHOD_HEAD);
    CHECK_EQ_INT(router_method_parse("OPTIONS"), METHOD_OPTIONS);
    CHECK_EQ_INT(router_method_parse("get"), METHOD_UNKNOWN);
    CHECK_EQ_INT(router_method_parse("TRACE"), METHOD_UNKNOWN);
    CHECK_EQ_INT(router_method_parse(""), METHOD_UNKNOWN);
    CHECK_STR(router_method_name(METHOD_DELETE), "DELETE");
    CHECK_STR(router_method_name(METHOD_UNKNOWN), "?");
    CHECK_STR(router_method_name(METHOD_COUNT), "?");
}

static void literal_beats_param(bool literal_first)
{
    router_t *r = router_new();
    if (literal_first) {
        CHECK_EQ_INT(add(r, "GET", "/v1/users/me", "me"), 0);
        CHECK_EQ_INT(add(r, "GET", "/v1/users/:id", "id"), 0);
    } else {
        CHECK_EQ_INT(add(r, "GET", "/v1/users/:id", "id"), 0);
        CHECK_EQ_INT(add(r, "GET", "/v1/users/me", "me"), 0);
    }
    match(r, METHOD_GET, "/v1/users/me");
    CHECK_EQ_INT(m.status, 200);
    CHECK_STR(matched(), "me");
    CHECK_EQ_INT(m.nparams, 0);

    match(r, METHOD_GET, "/v1/users/42");
    CHECK_EQ_INT(m.status, 200);
    CHECK_STR(matched(), "id");
    CHECK_EQ_INT(m.nparams, 1);
    CHECK_STR(param(0), "42");
    CHECK_STR(m.route->param_names[0], "id");

    /* A prefix or extension of a literal is not the literal. */
    match(r, METHOD_GET, "/v1/users/mex");
    CHECK_STR(matched(), "id");
    CHECK_STR(param(0), "mex");
    match(r, METHOD_GET, "/v1/users/m");
    CHECK_STR(matched(), "id");
    CHECK_STR(param(0), "m");
    router_free(r);
}

static void test_literal_beats_param_literal_first(void)
{
    literal_beats_param(true);
}

static void test_literal_beats_param_param_first(void)
{
    literal_beats_param(false);
}

/* Whole literal paths are looked up in a hash table before the walk (router.c): paths that
 * hash alike (same length, same middle and last bytes) must still be told apart, the table
 * must keep every route when it grows, and a 405 or an inner node must answer as the walk
 * does. */
static void test_literal_table(void)
{
    router_t *r = router_new();
    static char patterns[40][32], tags[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(patterns[i], sizeof(patterns[i]), "/v1/%c%c/x/q", 'a' + i % 20, 'a' + i / 20);
        snprintf(tags[i], sizeof(tags[i]), "t%d", i);
        CHECK_EQ_INT(add(r, "GET", patterns[i], tags[i]), 0);
    }
    CHECK_EQ_INT(add(r, "POST", patterns[7], "post7"), 0);
    CHECK_EQ_INT(add(r, "GET", "/v1/:p/x/q", "param"), 0);
    for (int i = 0; i < 40; i++) {
        match(r, METHOD_GET, patterns[i]);
        CHECK_STR(matched(), tags[i]);
        CHECK_EQ_INT(m.nparams, 0);
    }
    match(r, METHOD_POST, patterns[7]);
    CHECK_STR(matched(), "post7");
    match(r, METHOD_HEAD, patterns[3]);
    CHECK_STR(matched(), "t3");
    match(r, METHOD_DELETE, patterns[7]);
    CHECK_EQ_INT(m.status, 405);
    CHECK_EQ_INT(m.allow_mask, (1u << METHOD_GET) | (1u << METHOD_HEAD) | (1u << METHOD_POST));
    match(r, METHOD_GET, "/v1/zz/x/q");
    CHECK_STR(matched(), "param");
    CHECK_STR(param(0), "zz");
    match(r, METHOD_GET, "/v1/aa/x");
    CHECK_EQ_INT(m.status, 404);
    router_free(r);
}

static void test_backtracking(void)
{
    router_t *r = router_new();
    CHECK_EQ_INT(add(r, "GET", "/a/:x/c", "xc"), 0);
    CHECK_EQ_INT(add(r, "GET", "/a/b/d", "bd"), 0);

    match(r, METHOD_GET, "/a/b/d");
    CHECK_STR(matched(), "bd");
    CHECK_EQ_INT(m.nparams, 0);

    /* The literal "b" leads nowhere for "c": back up and take :x = "b". */
    match(r, METHOD_GET, "/a/b/c");
    CHECK_EQ_INT(m.status, 200);
    CHECK_STR(matched(), "xc");
    CHECK_EQ_INT(m.nparams, 1);
    CHECK_STR(param(0), "b");

    match(r, METHOD_GET, "/a/z/c");
    CHECK_STR(matched(), "xc");
    CHECK_STR(param(0), "z");

    /* A failed param branch leaves no stale capture behind. */
    match(r, METHOD_GET, "/a/b/e");
    CHECK_EQ_INT(m.status, 404);
    CHECK_EQ_INT(m.nparams, 0);
    CHECK(m.route == NULL);

    /* An inner node of a longer pattern is not a route. */
    match(r, METHOD_GET, "/a/b");
    CHECK_EQ_INT(m.status, 404);
    match(r, METHOD_GET, "/a");
    CHECK_EQ_INT(m.status, 404);
    router_free(r);
}

static void test_backtracking_deep(void)
{
    /* Backtracking across two levels: the literal path matches up to the last segment. */
    router_t *r = router_new();
    CHECK_EQ_INT(add(r, "GET", "/p/:a/:b/z", "abz"), 0);
    CHECK_EQ_INT(add(r, "GET", "/p/q/r/s", "qrs"), 0);
    CHECK_EQ_INT(add(r, "GET", "/p/q/:b/y", "qby"), 0);
    match(r, METHOD_GET, "/p/q/r/z");
    CHECK_STR(matched(), "abz");
    CHECK_EQ_INT(m.nparams, 2);
    CHECK_STR(param(0), "q");
    CHECK_STR(param(1), "r");
    match(r, METHOD_GET, "/p/q/r/y");
    CHECK_STR(matched(), "qby");
    CHECK_EQ_INT(m.nparams, 1);
    CHECK_STR(param(0), "r");
    match(r, METHOD_GET, "/p/q/r/s");
    CHECK_STR(matched(), "qrs");
    CHECK_EQ_INT(m.nparams, 0);
    router_free(r);
}

static void test_404_and_405(void)
{
    router_t *r = router_new();
    CHECK_EQ_INT(add(r, "POST", "/things", "create"), 0);
    CHECK_EQ_INT(add(r, "GET", "/things", "list"), 0);
    CHECK_EQ_INT(add(r, "DELETE", "/things/:id", "delete"), 0);

    match(r, METHOD_GET, "/nothing");
    CHECK_EQ_INT(m.status, 404);
    CHECK_EQ_INT(m.allow_mask, 0);
    CHECK(m.route == NULL);

    match(r, METHOD_DELETE, "/things");
    CHECK_EQ_INT(m.status, 405);
    CHECK(m.route == NULL);
    CHECK_EQ_INT(m.allow_mask, (1u << METHOD_GET) | (1u << METHOD_HEAD) | (1u << METHOD_POST));
    char allow[96];
    router_allow_string(m.allow_mask, allow, sizeof(allow));
    CHECK_STR(allow, "GET, HEAD, POST");

    /* No GET, so no HEAD in Allow either; and no params are reported for a 405. */
    match(r, METHOD_PUT, "/things/7");
    CHECK_EQ_INT(m.status, 405);
    CHECK_EQ_INT(m.allow_mask, 1u << METHOD_DELETE);
    CHECK_EQ_INT(m.nparams, 0);
    router_allow_string(m.allow_mask, allow, sizeof(allow));
    CHECK_STR(allow, "DELETE");

    /* A method the router does not know is a 405 on a known path, not a crash. */
    match(r, METHOD_UNKNOWN, "/things");
    CHECK_EQ_INT(m.status, 405);

    /* Paths that cannot match at all. */
    router_match(r, METHOD_GET, "", 0, &m);
    CHECK_EQ_INT(m.status, 404);
    match(r, METHOD_GET, "things");
    CHECK_EQ_INT(m.status, 404);
    match(r, METHOD_GET, "*");
    CHECK_EQ_INT(m.status, 404);
    router_free(r);
}

static void test_allow_string(void)
{
    char out[96];
    router_allow_string(0, out, sizeof(out));
    CHECK_STR(out, "");
    router_allow_string((1u << METHOD_COUNT) - 1, out, sizeof(out));
    CHECK_STR(out, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    router_allow_string((1u << METHOD_OPTIONS) | (1u << METHOD_GET), out, sizeof(out));
    CHECK_STR(out, "GET, OPTIONS");
}

static void test_head_falls_back_to_get(void)
{
    router_t *r = router_new();
    CHECK_EQ_INT(add(r, "GET", "/page/:n", "get"), 0);
    match(r, METHOD_HEAD, "/page/3");
    CHECK_EQ_INT(m.status, 200);
    CHECK_STR(matched(), "get");
    CHECK_EQ_INT(m.route->method, METHOD_GET);
    CHECK_STR(param(0), "3");

    /* HEAD cannot be registered: GET answers it. */
    CHECK_EQ_INT(add(r, "HEAD", "/page/:n", "head"), PX_EINVAL);
    CHECK_CONTAINS(err, "HEAD");

    /* Without a GET, HEAD is a 405. */
    CHECK_EQ_INT(add(r, "POST", "/form", "post"), 0);
    match(r, METHOD_HEAD, "/form");
    CHECK_EQ_INT(m.status, 405);
    CHECK_EQ_INT(m.allow_mask, 1u << METHOD_POST);
    router_free(r);
}

static void collect_route(const route_t *route, void *arg)
{
    char *out = arg;
    size_t used = strlen(out);
    snprintf(out + used, 256 - used, "%s %s|", router_method_name(route->method),
             route->pattern);
}

static void test_duplicates(void)
{
    router_t *r = router_new();
    CHECK_EQ_INT(add_owned(r, "GET", "/v1/users/:id", "user"), 0);

    /* Same method, same shape (param names do not matter). */
    CHECK_EQ_INT(add_owned(r, "GET", "/v1/users/:uid", "intruder"), PX_EEXIST);
    CHECK_CONTAINS(err, "\"user\"");
    CHECK_CONTAINS(err, "/v1/users/:id");
    CHECK_CONTAINS(err, "GET /v1/users/:uid");

    CHECK_EQ_INT(add_owned(r, "GET", "/v1/users/:id", "user"), PX_EEXIST);
    CHECK_CONTAINS(err, "\"user\"");

    /* Another method or another shape is fine. */
    CHECK_EQ_INT(add_owned(r, "PUT", "/v1/users/:id", "user"), 0);
    CHECK_EQ_INT(add_owned(r, "GET", "/v1/users/:id/tasks", "task"), 0);
    CHECK_EQ_INT(add_owned(r, "GET", "/v1/users/all", "user"), 0);

    /* The failed registrations left nothing behind; the rest are listed in order. */
    char seen[256] = "";
    router_foreach(r, collect_route, seen);
    CHECK_STR(seen, "GET /v1/users/:id|PUT /v1/users/:id|GET /v1/users/:id/tasks|"
                    "GET /v1/users/all|");
    router_free(r);
}

static void test_bad_patterns(void)
{
    router_t *r = router_new();
    static const char *bad[] = {
        "",                /* empty */
        "v1/things",       /* no leading slash */
        "/v1//things",     /* empty segment */
        "//",              /* empty segment */
        "/v1/:",           /* bare ':' */
        "/v1/:/x",         /* bare ':' in the middle */
        "/v1/a b",         /* space */
        "/v1/a%20b",       /* percent-encodings are not patterns */
        "/v1/things?x=1",  /* a query is not part of a path */
        "/v1/things#top",  /* nor a fragment */
        "/v1/\"q\"",       /* quote */
        "/v1/a\\b",        /* backslash */
        "/v1/caf\xc3\xa9", /* raw UTF-8 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = add(r, "GET", bad[i], "bad");
        if (rc != PX_EINVAL)
            fprintf(stderr, "pattern \"%s\" gave %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, PX_EINVAL);
        CHECK(err[0] != '\0');
    }
    CHECK_EQ_INT(add(r, "GET", NULL, "bad"), PX_EINVAL);
    CHECK_EQ_INT(add(r, "FETCH", "/v1/x", "bad"), PX_EINVAL);
    CHECK_CONTAINS(err, "FETCH");
    CHECK_EQ_INT(add(r, NULL, "/v1/x", "bad"), PX_EINVAL);
    CHECK_EQ_INT(add(r, "get", "/v1/x", "bad"), PX_EINVAL);
    CHECK_EQ_INT(router_add(r, "GET", "/v1/x", NULL, NULL, "test", 0, err, sizeof(err)),
                 PX_EINVAL);

    /* None of them registered anything. */
    char seen[256] = "";
    router_foreach(r, collect_route, seen);
    CHECK_STR(seen, "");

    /* The characters RFC 3986 allows in a segment are fine. */
    CHECK_EQ_INT(add(r, "GET", "/a-b.c_d~e!$&'()*+,;=@/:p", "ok"), 0);
    match(r, METHOD_GET, "/a-b.c_d~e!$&'()*+,;=@/v");
    CHECK_STR(matched(), "ok");
    router_free(r);
}

static void test_root(void)
{
    router_t *r = router_new();
    CHECK_EQ_INT(add(r, "GET", "/", "root"), 0);
    match(r, METHOD_GET, "/");
    CHECK_STR(matched(), "root");
    match(r, METHOD_GET, "//");
    CHECK_EQ_INT(m.status, 404);
    router_free(r);
}

static void test_trailing_slash(void)
{
    router_t *r = router_new();
    CHECK_EQ_INT(add(r, "GET", "/v1/things", "plain"), 0);
    /* Strict: a request with a trailing slash is another path. */
    match(r, METHOD_GET, "/v1/things/");
    CHECK_EQ_INT(m.status, 404);
    match(r, METHOD_GET, "/v1/things");
    CHECK_STR(matched(), "plain");

    /* A pattern written with a trailing slash is either refused, or registered as what
     * it says and then matched by that very path. What it must not be is silently
     * registered as "/v1/things" (a duplicate of the route above, or a route that its own
     * path never reaches). */
    int rc = add(r, "GET", "/v1/things/", "slash");
    if (rc == 0) {
        match(r, METHOD_GET, "/v1/things/");
        CHECK_EQ_INT(m.status, 200);
        CHECK_STR(matched(), "slash");
        match(r, METHOD_GET, "/v1/things");
        CHECK_STR(matched(), "plain");
    } else {
        CHECK_EQ_INT(rc, PX_EINVAL);
        if (rc != PX_EINVAL)
            fprintf(stderr, "router_add(\"/v1/things/\"): %s\n", err);
    }

    /* The same on a router without the slash-less twin. */
    router_t *r2 = router_new();
    rc = add(r2, "POST", "/v1/items/", "slash");
    if (rc == 0) {
        match(r2, METHOD_POST, "/v1/items/");
        CHECK_EQ_INT(m.status, 200);
        match(r2, METHOD_POST, "/v1/items");
        CHECK_EQ_INT(m.status, 404);
    } else {
        CHECK_EQ_INT(rc, PX_EINVAL);
    }
    router_free(r2);
    router_free(r);
}

static void test_params_raw(void)
{
    router_t *r = router_new();
    CHECK_EQ_INT(add(r, "GET", "/files/:dir/:name", "file"), 0);
    match(r, METHOD_GET, "/files/a%2Fb/hello%20world.txt");
    CHECK_STR(matched(), "file");
    CHECK_EQ_INT(m.nparams, 2);
    /* Still percent-encoded: decoding is the HTTP layer's job. */
    CHECK_STR(param(0), "a%2Fb");
    CHECK_STR(param(1), "hello%20world.txt");
    /* Slices point into the caller's path. */
    const char *path = "/files/x/y";
    router_match(r, METHOD_GET, path, strlen(path), &m);
    CHECK(m.params[0].value == path + 7);
    CHECK_EQ_INT(m.params[0].len, 1);
    CHECK(m.params[1].value == path + 9);

    /* A param never matches an empty segment. */
    match(r, METHOD_GET, "/files//y");
    CHECK_EQ_INT(m.status, 404);
    match(r, METHOD_GET, "/files/x/");
    CHECK_EQ_INT(m.status, 404);

    /* `len` bounds the path: bytes after it are not looked at. */
    router_match(r, METHOD_GET, "/files/x/y/zzz", 10, &m);
    CHECK_STR(matched(), "file");
    CHECK_STR(param(1), "y");
    router_free(r);
}

static void build_pattern(char *out, size_t outlen, size_t segments, bool params)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < segments; i++)
        used += (size_t)snprintf(out + used, outlen - used, params ? "/:p%zu" : "/s%zu", i);
}

static void test_depth_limit(void)
{
    router_t *r = router_new();
    char pattern[1024], path[2048];
    build_pattern(pattern, sizeof(pattern), ROUTER_MAX_DEPTH, false);
    CHECK_EQ_INT(add(r, "GET", pattern, "deep"), 0);
    match(r, METHOD_GET, pattern);
    CHECK_STR(matched(), "deep");

    build_pattern(pattern, sizeof(pattern), ROUTER_MAX_DEPTH + 1, false);
    CHECK_EQ_INT(add(r, "GET", pattern, "deeper"), PX_EINVAL);
    CHECK_CONTAINS(err, "deeper than");
    match(r, METHOD_GET, pattern);
    CHECK_EQ_INT(m.status, 404);

    /* A request path of any depth is just a 404, even one that follows the deepest
     * pattern all the way down first. */
    build_pattern(path, sizeof(path), ROUTER_MAX_DEPTH, false);
    size_t used = strlen(path);
    for (int i = 0; i < 200; i++)
        used += (size_t)snprintf(path + used, sizeof(path) - used, "/x");
    match(r, METHOD_GET, path);
    CHECK_EQ_INT(m.status, 404);
    router_free(r);
}

static void test_param_limit(void)
{
    router_t *r = router_new();
    char pattern[1024];
    build_pattern(pattern, sizeof(pattern), ROUTER_MAX_PARAMS, true);
    CHECK_EQ_INT(add(r, "GET", pattern, "max"), 0);
    char path[256];
    size_t used = 0;
    for (int i = 0; i < ROUTER_MAX_PARAMS; i++)
        used += (size_t)snprintf(path + used, sizeof(path) - used, "/v%d", i);
    match(r, METHOD_GET, path);
    CHECK_STR(matched(), "max");
    CHECK_EQ_INT(m.nparams, ROUTER_MAX_PARAMS);
    CHECK_STR(param(ROUTER_MAX_PARAMS - 1), "v15");
    CHECK_STR(m.route->param_names[ROUTER_MAX_PARAMS - 1], "p15");

    build_pattern(pattern, sizeof(pattern), ROUTER_MAX_PARAMS + 1, true);
    CHECK_EQ_INT(add(r, "POST", pattern, "too many"), PX_EINVAL);
    router_free(r);
}

int main(void)
{
    RUN(test_methods);
    RUN(test_literal_beats_param_literal_first);
    RUN(test_literal_beats_param_param_first);
    RUN(test_literal_table);
    RUN(test_backtracking);
    RUN(test_backtracking_deep);
    RUN(test_404_and_405);
    RUN(test_allow_string);
    RUN(test_head_falls_back_to_get);
    RUN(test_duplicates);
    RUN(test_bad_patterns);
    RUN(test_root);
    RUN(test_trailing_slash);
    RUN(test_params_raw);
    RUN(test_depth_limit);
    RUN(test_param_limit);
    router_free(NULL);
    return check_finish();
}
