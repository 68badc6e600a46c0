/* openapi.c — one OpenAPI 3 document for the whole server: the host's own endpoints plus
 * each plugin's "paths" and "components", merged in load order. Two plugins describing
 * the same path and method is a programming error the router already refuses, so a plain
 * merge is enough. */
#include "openapi.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "util.h"

static json_t *host_paths(void)
{
    json_t *ok = json_pack("{s:s}", "description", "OK");
    json_t *paths = json_pack(
        "{s:{s:{s:s, s:{s:O}}}, s:{s:{s:s, s:{s:O, s:{s:s}}}}, s:{s:{s:s, s:{s:O}}},"
        " s:{s:{s:s, s:{s:O}}}}",
        "/healthz", "get", "summary", "The process is alive", "responses", "200", ok,
        "/readyz", "get", "summary", "PostgreSQL and Redis answer", "responses", "200", ok,
        "503", "description", "A dependency is down",
        "/metrics", "get", "summary", "Prometheus metrics", "responses", "200", ok,
        "/openapi.json", "get", "summary", "This document", "responses", "200", ok);
    json_decref(ok);
    return paths;
}

json_t *openapi_document(const plugin_set_t *set)
{
    json_t *doc = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:[{s:s}], s:o, s:{s:{s:{s:s, s:s, s:s}}, s:{}}}", "openapi",
        "3.0.3", "info", "title", "Panthera", "version", PX_VERSION, "description",
        "Merged from every loaded plugin.", "servers", "url", "/", "paths", host_paths(),
        "components", "securitySchemes", "bearerAuth", "type", "http", "scheme", "bearer",
        "bearerFormat", "JWT", "schemas");
    for (size_t i = 0; i < set->n; i++) {
        const json_t *frag = set->items[i]->openapi;
        if (!frag)
            continue;
        json_t *paths = json_object_get(frag, "paths");
        if (json_is_object(paths))
            json_object_update_recursive(json_object_get(doc, "paths"), paths);
        json_t *components = json_object_get(frag, "components");
        if (json_is_object(components))
            json_object_update_recursive(json_object_get(doc, "components"), components);
    }
    return doc;
}

static int handle_openapi(px_req_t *req, void *ud)
{
    const plugin_set_t *set = ud;
    /* Plugins only contribute during init, so the document never changes in a worker. */
    static char *cached;
    static size_t cached_len;
    if (!cached) {
        json_t *doc = openapi_document(set);
        cached = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(doc);
        if (!cached)
            return PX_EINTERNAL;
        cached_len = strlen(cached);
    }
    return http_respond(req, 200, "application/json; charset=utf-8", cached, cached_len, false);
}

void openapi_register(plugin_set_t *set)
{
    plugin_host_route(set, "GET", "/openapi.json", handle_openapi, set);
}
