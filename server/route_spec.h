/* route_spec.h — what the host does with a route's spec beyond routing it: the schemas a
 * plugin registers (px_schema), the checks of a request's body, query and path parameters
 * against them before the handler runs, and what /openapi.json needs to describe it. */
#ifndef PX_ROUTE_SPEC_H
#define PX_ROUTE_SPEC_H

#include "config.h"
#include "plugin.h"
#include "request.h"
#include "validate.h"

/* One checked parameter: a query parameter, or a path parameter at `index`. */
typedef struct route_param_check {
    const char *name; /* borrowed from the plugin's spec */
    bool required;
    size_t index;
    const validate_node_t *node;
} route_param_check_t;

typedef struct route_checks {
    struct route_checks *next; /* the plugin's list, freed with the plugin */
    route_t *route;
    const char *body_name; /* the spec's request_schema, resolved by route_spec_finish */
    const char *const *content_types; /* the spec's: other bodies are 415 */
    const validate_node_t *body;
    size_t nquery, npath;
    route_param_check_t *query;
    route_param_check_t *path;
} route_checks_t;

/* Compile what `rt->spec` declares (its parameters' schemas) and hang the checks on `rt`.
 * 0, or PX_EINVAL with the reason in `err`. During the plugin's init. */
int route_spec_add(px_plugin_t *p, route_t *rt, char *err, size_t errlen);
/* After the plugin's init: resolve $refs and the schema names its routes use. 0, or -1
 * with the errors added to `errs`. */
int route_spec_finish(px_plugin_t *p, config_errors_t *errs);
/* Free what route_spec_add and px_schema made for `p`. */
void route_spec_free(px_plugin_t *p);

/* Before the handler: check the request against its route's spec. Returns non-zero when
 * it has answered (404 for a path parameter; 415 for a body of a type the spec does not
 * list; 400 bad_request or validation_failed). */
int route_spec_check(px_req_t *r);

/* The host's own schemas ("Error", API.md's error shape), which every plugin's $refs may
 * name. */
const validate_registry_t *route_spec_host_schemas(void);

#endif
