/* router.h — method + path patterns with :param segments, matched segment by segment. */
#ifndef PX_ROUTER_H
#define PX_ROUTER_H

#include <stddef.h>

#include "panthera.h"

enum router_method {
    METHOD_GET,
    METHOD_HEAD,
    METHOD_POST,
    METHOD_PUT,
    METHOD_PATCH,
    METHOD_DELETE,
    METHOD_OPTIONS,
    METHOD_COUNT,
    METHOD_UNKNOWN = -1
};

#define ROUTER_MAX_PARAMS 16
#define ROUTER_MAX_DEPTH 32

typedef struct route {
    int method;
    char *pattern;
    px_handler_fn handler;
    void *userdata;
    const char *owner; /* plugin name, borrowed from the plugin */
    int owner_id;      /* the plugin's index in the shared metrics */
    int auth;          /* enum px_auth */
    char role[16];     /* required role, "" for any */
    unsigned flags;    /* enum px_route_flag */
    size_t max_body;   /* 0: [http] max_body_size */
    px_route_spec_t spec; /* as px_route_add got it, zeroed past the plugin's size; all
                           * zero for routes from px_route/px_route_auth */
    const struct route_checks *checks; /* what the spec checks (route_spec.c), or NULL */
    size_t nparams;
    char *param_names[ROUTER_MAX_PARAMS];
} route_t;

typedef struct router router_t;

typedef struct router_match {
    const route_t *route; /* NULL unless status is 200 */
    int status;           /* 200, 404 or 405 */
    unsigned allow_mask;  /* for 405: bit per router_method */
    size_t nparams;
    struct {
        const char *value; /* raw (still percent-encoded) slice of the path */
        size_t len;
    } params[ROUTER_MAX_PARAMS];
} router_match_t;

router_t *router_new(void);
void router_free(router_t *r);

int router_method_parse(const char *name);
const char *router_method_name(int method);

/* Returns 0; PX_EINVAL (bad method or pattern) or PX_EEXIST (the same method and path
 * shape is taken: `*conflict` then names the owner) with a reason in `err`. */
int router_add(router_t *r, const char *method, const char *pattern, px_handler_fn handler,
               void *userdata, const char *owner, int owner_id, char *err, size_t errlen);
/* The route router_add just added (for setting its auth gate), or NULL. */
route_t *router_last(router_t *r);

/* `path` is the request path without the query string. HEAD falls back to GET. */
void router_match(const router_t *r, int method, const char *path, size_t len,
                  router_match_t *m);

/* "GET, HEAD, POST" for an Allow header. */
void router_allow_string(unsigned mask, char *out, size_t outlen);

/* Calls `fn` for every route, in registration order. */
void router_foreach(const router_t *r, void (*fn)(const route_t *route, void *arg), void *arg);

#endif
