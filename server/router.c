/*
 * router.c — a segment trie. Each node is one path segment; a node has literal children
 * and at most one :param child. Matching prefers the literal child and backtracks to
 * the param child, so "/v1/users/me" wins over "/v1/users/:id" whatever the order the
 * routes were added in. A node holds one route per method; a path that reaches a node
 * with no route for the method is a 405 listing what the node does allow.
 *
 * Most requests name a pattern without :params ("/v1/hello"), and for those the walk's
 * answer is known in advance: literal children are tried first at every level and each
 * literal is one child, so the all-literal chain is the first the walk would take and the
 * node it ends in is the match. A small open-addressed table maps such whole paths to their
 * node; a path not in it (a :param route, a 404) is walked as before.
 */
#include "router.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct node {
    char *literal; /* NULL for the param child */
    size_t len;    /* strlen(literal): compared on every request */
    struct node **children;
    size_t nchildren;
    struct node *param;
    route_t *routes[METHOD_COUNT];
} node_t;

typedef struct exact_entry {
    const char *path; /* the pattern of one of the node's routes, owned by that route */
    size_t len;
    const node_t *node;
} exact_entry_t;

struct router {
    node_t root;
    route_t **all;
    size_t nall;
    exact_entry_t *exact; /* power-of-two size, at most half full; NULL until a literal route */
    size_t exact_cap;
    size_t exact_used;
};

static const char *method_names[METHOD_COUNT] = {"GET",   "HEAD",   "POST",   "PUT",
                                                 "PATCH", "DELETE", "OPTIONS"};

int router_method_parse(const char *name)
{
    for (int i = 0; i < METHOD_COUNT; i++)
        if (!strcmp(name, method_names[i]))
            return i;
    return METHOD_UNKNOWN;
}

const char *router_method_name(int method)
{
    return method >= 0 && method < METHOD_COUNT ? method_names[method] : "?";
}

router_t *router_new(void)
{
    return xcalloc(1, sizeof(router_t));
}

static void node_free_children(node_t *n)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        node_free_children(n->children[i]);
        free(n->children[i]->literal);
        free(n->children[i]);
    }
    free(n->children);
    if (n->param) {
        node_free_children(n->param);
        free(n->param);
    }
}

void router_free(router_t *r)
{
    if (!r)
        return;
    node_free_children(&r->root);
    for (size_t i = 0; i < r->nall; i++) {
        route_t *rt = r->all[i];
        free(rt->pattern);
        for (size_t j = 0; j < rt->nparams; j++)
            free(rt->param_names[j]);
        free(rt);
    }
    free(r->all);
    free(r->exact);
    free(r);
}

/* The length and three bytes, not every byte: a miss (every :param route, every 404) must
 * cost next to nothing before the walk. `len` is at least 1: every path starts with '/'. */
static size_t exact_hash(const char *p, size_t len)
{
    return len * 31u + (unsigned char)p[len - 1] * 7u + (unsigned char)p[len / 2];
}

static const node_t *exact_find(const router_t *r, const char *path, size_t len)
{
    if (!r->exact)
        return NULL;
    size_t mask = r->exact_cap - 1;
    for (size_t i = exact_hash(path, len) & mask;; i = (i + 1) & mask) {
        const exact_entry_t *e = &r->exact[i];
        if (!e->path)
            return NULL;
        if (e->len == len && !memcmp(e->path, path, len))
            return e->node;
    }
}

static void exact_put(router_t *r, const char *path, size_t len, const node_t *node)
{
    size_t mask = r->exact_cap - 1;
    size_t i = exact_hash(path, len) & mask;
    while (r->exact[i].path)
        i = (i + 1) & mask;
    r->exact[i] = (exact_entry_t){.path = path, .len = len, .node = node};
}

static void exact_add(router_t *r, const char *path, const node_t *node)
{
    size_t len = strlen(path);
    if (exact_find(r, path, len))
        return; /* another method of the same node */
    if (2 * (r->exact_used + 1) > r->exact_cap) {
        exact_entry_t *old = r->exact;
        size_t old_cap = r->exact_cap;
        r->exact_cap = old_cap ? 2 * old_cap : 16;
        r->exact = xcalloc(r->exact_cap, sizeof(exact_entry_t));
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].path)
                exact_put(r, old[i].path, old[i].len, old[i].node);
        free(old);
    }
    exact_put(r, path, len, node);
    r->exact_used++;
}

static bool valid_segment_char(char c)
{
    /* RFC 3986 pchar without percent-encodings: patterns are plain. */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~!$&'()*+,;=@", c) != NULL;
}

static node_t *child_literal(node_t *n, const char *seg, size_t len, bool create)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        node_t *c = n->children[i];
        if (c->len == len && !memcmp(c->literal, seg, len))
            return c;
    }
    if (!create)
        return NULL;
    node_t *c = xcalloc(1, sizeof(*c));
    c->literal = xstrndup(seg, len);
    c->len = len;
    n->children = xrealloc(n->children, (n->nchildren + 1) * sizeof(node_t *));
    n->children[n->nchildren++] = c;
    return c;
}

int router_add(router_t *r, const char *method, const char *pattern, px_handler_fn handler,
               void *userdata, const char *owner, int owner_id, char *err, size_t errlen)
{
    int m = router_method_parse(method ? method : "");
    if (m == METHOD_UNKNOWN || m == METHOD_HEAD) {
        snprintf(err, errlen, "unsupported method \"%s\" (GET, POST, PUT, PATCH, DELETE, OPTIONS)",
                 method ? method : "(null)");
        return PX_EINVAL;
    }
    if (!pattern || pattern[0] != '/' || !handler) {
        snprintf(err, errlen, "pattern \"%s\" must start with '/'", pattern ? pattern : "(null)");
        return PX_EINVAL;
    }
    size_t plen = strlen(pattern);
    if (plen > 1 && pattern[plen - 1] == '/') {
        /* "/things/" would be a different path from "/things": say so rather than guess. */
        snprintf(err, errlen, "pattern \"%s\" must not end with '/'", pattern);
        return PX_EINVAL;
    }
    route_t *rt = xcalloc(1, sizeof(*rt));
    node_t *n = &r->root;
    const char *p = pattern + 1;
    size_t depth = 0;
    int rc = PX_EINVAL;
    while (*p || p == pattern + 1) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (++depth > ROUTER_MAX_DEPTH) {
            snprintf(err, errlen, "pattern \"%s\" is deeper than %d segments", pattern,
                     ROUTER_MAX_DEPTH);
            goto fail;
        }
        if (len == 0 && end) {
            snprintf(err, errlen, "pattern \"%s\" has an empty segment", pattern);
            goto fail;
        }
        if (len > 0 && p[0] == ':') {
            if (len == 1 || rt->nparams == ROUTER_MAX_PARAMS) {
                snprintf(err, errlen, "pattern \"%s\": bad or too many :params", pattern);
                goto fail;
            }
            if (!n->param)
                n->param = xcalloc(1, sizeof(node_t));
            n = n->param;
            rt->param_names[rt->nparams++] = xstrndup(p + 1, len - 1);
        } else {
            for (size_t i = 0; i < len; i++) {
                if (!valid_segment_char(p[i])) {
                    snprintf(err, errlen, "pattern \"%s\" has a character a path cannot hold "
                             "unencoded", pattern);
                    goto fail;
                }
            }
            n = child_literal(n, p, len, true);
        }
        if (!end)
            break;
        p = end + 1;
    }
    if (n->routes[m]) {
        snprintf(err, errlen, "%s %s is already claimed by plugin \"%s\" (as %s)", method, pattern,
                 n->routes[m]->owner, n->routes[m]->pattern);
        rc = PX_EEXIST;
        goto fail;
    }
    rt->method = m;
    rt->pattern = xstrdup(pattern);
    rt->handler = handler;
    rt->userdata = userdata;
    rt->owner = owner;
    rt->owner_id = owner_id;
    n->routes[m] = rt;
    if (rt->nparams == 0)
        exact_add(r, rt->pattern, n);
    r->all = xrealloc(r->all, (r->nall + 1) * sizeof(route_t *));
    r->all[r->nall++] = rt;
    return 0;

fail:
    for (size_t j = 0; j < rt->nparams; j++)
        free(rt->param_names[j]);
    free(rt);
    return rc;
}

static bool has_routes(const node_t *n)
{
    for (int i = 0; i < METHOD_COUNT; i++)
        if (n->routes[i])
            return true;
    return false;
}

/* Finds the node that ends the path and holds routes; `m` collects param slices on the
 * way. An inner node of a longer pattern is not a match, so the search backtracks. */
static const node_t *walk(const node_t *n, const char *p, const char *end, router_match_t *m)
{
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *seg_end = slash ? slash : end;
    size_t len = (size_t)(seg_end - p);
    const node_t *found = NULL;

    for (size_t i = 0; i < n->nchildren && !found; i++) {
        const node_t *c = n->children[i];
        if (c->len == len && !memcmp(c->literal, p, len))
            found = slash ? walk(c, slash + 1, end, m) : has_routes(c) ? c : NULL;
    }
    if (!found && n->param && len > 0 && m->nparams < ROUTER_MAX_PARAMS) {
        size_t slot = m->nparams++;
        m->params[slot].value = p;
        m->params[slot].len = len;
        found = slash ? walk(n->param, slash + 1, end, m) : has_routes(n->param) ? n->param : NULL;
        if (!found)
            m->nparams = slot;
    }
    return found;
}

void router_match(const router_t *r, int method, const char *path, size_t len, router_match_t *m)
{
    /* Not the params array: only the first nparams entries are ever read. */
    m->route = NULL;
    m->status = 404;
    m->allow_mask = 0;
    m->nparams = 0;
    if (len == 0 || path[0] != '/')
        return;
    const node_t *n = exact_find(r, path, len);
    if (!n)
        n = walk(&r->root, path + 1, path + len, m);
    if (!n) {
        m->nparams = 0;
        return;
    }
    const route_t *rt = method >= 0 && method < METHOD_COUNT ? n->routes[method] : NULL;
    if (!rt && method == METHOD_HEAD)
        rt = n->routes[METHOD_GET];
    if (rt) {
        m->route = rt;
        m->status = 200;
        return;
    }
    m->status = 405;
    m->nparams = 0;
    for (int i = 0; i < METHOD_COUNT; i++)
        if (n->routes[i])
            m->allow_mask |= 1u << i;
    if (m->allow_mask & (1u << METHOD_GET))
        m->allow_mask |= 1u << METHOD_HEAD;
}

void router_allow_string(unsigned mask, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < METHOD_COUNT; i++) {
        if (!(mask & (1u << i)))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", method_names[i]);
        if (n < 0 || (size_t)n >= outlen - used)
            return;
        used += (size_t)n;
    }
}

route_t *router_last(router_t *r)
{
    return r->nall ? r->all[r->nall - 1] : NULL;
}

void router_foreach(const router_t *r, void (*fn)(const route_t *route, void *arg), void *arg)
{
    for (size_t i = 0; i < r->nall; i++)
        fn(r->all[i], arg);
}
