/*
 * console — the web console: a single-page app of plain ES modules and CSS, served at
 * `/` and `/app/...` (the app shell, index.html) and `/assets/<file>`. The app talks to
 * the public /v1 API only, like any third-party client (README.md).
 *
 * The files are compiled into the .so (embed_assets.py): a request names an entry of a
 * fixed table or nothing, so no path can reach the file system (no traversal to refuse,
 * no directory to misconfigure), and each file's ETag, its SHA-256, is computed at build
 * time. px_res_file (the FILES area) is not used on purpose: it answers for untrusted
 * uploads, with `Content-Security-Policy: sandbox`, `attachment` for HTML and a type
 * sniffed from the bytes, which is right for a user's file and would stop our own page
 * and modules from running.
 */
#include <string.h>

#include "console.h"

/* The app's own origin only: no inline script or style, no eval, no framing. Images may
 * be blob: (local previews of an upload before it is sent). */
static const char console_csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

static const console_asset_t *console_find(const char *name)
{
    for (const console_asset_t *a = console_assets; a->name; a++)
        if (!strcmp(a->name, name))
            return a;
    return NULL;
}

/* Whether If-None-Match names `etag` (a list, or "*"); weak tags compare equal too. */
static int console_etag_matches(const char *header, const char *etag)
{
    if (!header)
        return 0;
    if (!strcmp(header, "*"))
        return 1;
    size_t n = strlen(etag);
    for (const char *p = header; (p = strstr(p, etag)); p += n) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ')
            return 1;
    }
    return 0;
}

/* Every answer revalidates (no-cache): the module files keep stable names (imports name
 * them), so a long max-age would pin an old version; with the ETag a revalidation is a
 * 304 without a body. */
static int console_send(px_req_t *req, const console_asset_t *a)
{
    int rc = px_res_header(req, "ETag", a->etag);
    if (!rc)
        rc = px_res_header(req, "Cache-Control", "no-cache");
    if (!rc)
        rc = px_res_header(req, "Content-Security-Policy", console_csp);
    if (!rc)
        rc = px_res_header(req, "X-Content-Type-Options", "nosniff");
    if (!rc)
        rc = px_res_header(req, "Referrer-Policy", "no-referrer");
    if (rc)
        return rc;
    if (console_etag_matches(px_req_header(req, "If-None-Match"), a->etag))
        return px_res_send(req, 304, NULL, "", 0);
    return px_res_send(req, 200, a->content_type, a->data, a->len);
}

static int console_shell(px_req_t *req, void *userdata)
{
    (void)userdata;
    const console_asset_t *a = console_find("index.html");
    return a ? console_send(req, a) : PX_ENOENT;
}

static int console_asset(px_req_t *req, void *userdata)
{
    (void)userdata;
    const char *name = px_req_param(req, "name");
    const console_asset_t *a = name ? console_find(name) : NULL;
    if (!a || !strcmp(a->name, "index.html"))
        return px_res_error(req, 404, "not_found", "no such file", NULL);
    return console_send(req, a);
}

static int console_init(px_plugin_t *self)
{
    static const px_response_spec_t shell_200[] = {
        {200, NULL, "The app shell (index.html), with ETag", "text/html"},
        {304, NULL, "If-None-Match matched", NULL}, {0}};
    static const px_response_spec_t asset_200[] = {
        {200, NULL, "The file, with ETag", "application/octet-stream"},
        {304, NULL, "If-None-Match matched", NULL},
        {404, "Error", "No such file", NULL}, {0}};
#define SHELL(p)                                                                              \
    {.size = sizeof(px_route_spec_t), .method = "GET", .pattern = p, .handler = console_shell, \
     .auth = PX_AUTH_NONE, .responses = shell_200, .tag = "console",                         \
     .summary = "The web console (single-page app shell)"}
    /* The router has no catch-all: /app routes to a depth of five segments, which the
     * app's own paths (/app/projects/<id>/tasks/<id>) stay within. */
    static const px_route_spec_t routes[] = {
        SHELL("/"), SHELL("/app"), SHELL("/app/:a"), SHELL("/app/:a/:b"),
        SHELL("/app/:a/:b/:c"), SHELL("/app/:a/:b/:c/:d"), SHELL("/app/:a/:b/:c/:d/:e"),
        {.size = sizeof(px_route_spec_t), .method = "GET", .pattern = "/assets/:name",
         .handler = console_asset, .auth = PX_AUTH_NONE, .responses = asset_200,
         .tag = "console", .summary = "A static file of the web console"},
    };
#undef SHELL
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = px_route_add(self, &routes[i]);
    return rc;
}

PX_PLUGIN("console", "1.0.0", console_init, NULL, NULL);
