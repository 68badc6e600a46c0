/*
 * gateway.c — what stands between a matched route and the plugin's handler, and between
 * the handler's answer and the wire: the bearer-token check and role gate of a route, and
 * the admins' on_request / on_response Lua hooks. http.c calls these; they answer through
 * http_respond_error when they refuse.
 */
#include "gateway.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "hooks.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "revocation.h"
#include "ticket.h"
#include "token_cache.h"
#include "worker.h"

/* Workers are processes and a reload starts new ones, so one cache per process is one
 * per worker and per configuration (token_cache.c says why that keeps it exact). */
static token_cache_t *verified;
static bool verified_made;

/* auth_jwt_verify, unless this worker accepted exactly this token before and it is still
 * unexpired. */
static int verify_token(const auth_settings_t *a, const char *token, size_t len,
                        auth_caller_t *caller)
{
    if (!verified_made) {
        verified = token_cache_new(a->token_cache);
        verified_made = true;
    }
    int64_t now = (int64_t)time(NULL), leeway = (int64_t)(a->leeway_ms / 1000);
    if (token_cache_get(verified, token, len, now, leeway, caller))
        return 0;
    int rc = auth_jwt_verify((const unsigned char *)a->token_secret, strlen(a->token_secret),
                             token, len, a->issuer, now, leeway, caller);
    if (rc == 0)
        token_cache_put(verified, token, len, caller);
    return rc;
}

/* The route's role, once the caller is known. Returns non-zero when it has answered. */
static int role_refused(px_req_t *r, const route_t *rt)
{
    if (rt->auth == PX_AUTH_REQUIRED && rt->role[0] && strcmp(rt->role, r->caller_role) != 0 &&
        strcmp(r->caller_role, "admin") != 0) {
        http_respond_error(r, 403, "forbidden", "your role may not do this", NULL);
        return 1;
    }
    return 0;
}

/* A ticket was redeemed: the role gate, then on with the request. */
static void (*ticket_resume)(px_req_t *req);

static void ticket_redeemed(px_req_t *r)
{
    if (!role_refused(r, r->route))
        ticket_resume(r);
}

/* The gateway: verify the bearer token (or, on a PX_ROUTE_TICKET route, a stream ticket)
 * and the route's role before any plugin code runs. Returns non-zero when it has
 * answered, or will go on by calling `resume` (a ticket is checked in Redis).
 *
 * A route registered without auth still has its token checked when admins' hooks run:
 * a rule such as "admins only under /v1/x/" must see the admin on every route, not only
 * on those whose plugin asked for a caller. There a missing or bad token is no error and
 * the caller is lent to the hooks alone (hook_caller): the plugin, which asked for no
 * caller, keeps seeing an anonymous request, as its idempotency scope does. */
int gateway_check_caller(px_req_t *r, const route_t *rt, void (*resume)(px_req_t *req))
{
    bool hooks_only = rt->auth == PX_AUTH_NONE;
    if (hooks_only && !r->worker->hooks)
        return 0;
    const auth_settings_t *a = &r->worker->cfg->auth;
    const char *header = NULL;
    for (uint32_t i = 0; i < r->nheaders && !header; i++) {
        const header_t *h = &r->headers[i];
        if (h->name_len == 13 && !strncasecmp(r->head.data + h->name_off, "authorization", 13))
            header = r->head.data + h->value_off;
    }
    /* A token in a URL ends up in logs, proxies and browser history: never accepted. */
    if (!hooks_only && r->query && api_req_query(r, "access_token")) {
        http_respond_error(r, 401, "unauthorized",
                           "tokens are not accepted in the URL: send Authorization: Bearer, "
                           "or a stream ticket where the route takes one",
                           NULL);
        return 1;
    }
    if (!header && !hooks_only && (rt->flags & PX_ROUTE_TICKET) && r->query) {
        const char *ticket = api_req_query(r, "ticket");
        if (ticket) {
            ticket_resume = resume; /* the same function for every request of a worker */
            return ticket_redeem(r, ticket, ticket_redeemed);
        }
    }
    if (!header) {
        if (rt->auth != PX_AUTH_REQUIRED)
            return 0;
        http_respond_error(r, 401, "unauthorized", "a bearer token is required", NULL);
        return 1;
    }
    const char *token;
    size_t len;
    int rc = auth_bearer_token(header, &token, &len);
    if (rc == 0 && !a->token_secret)
        rc = AUTH_EINVAL;
    auth_caller_t caller;
    if (rc == 0)
        rc = verify_token(a, token, len, &caller);
    if (rc == 0 && revocation_refused(caller.id, caller.issued_ms))
        rc = AUTH_EREVOKED;
    if (rc && hooks_only)
        return 0;
    if (rc) {
        if (rc == AUTH_EREVOKED)
            metrics_revoked_refused(METRICS_REVOKED_TOKEN);
        char msg[96];
        snprintf(msg, sizeof(msg), "invalid bearer token: %s", auth_strerror(rc));
        http_respond_error(r, 401, "unauthorized", msg, NULL);
        return 1;
    }
    r->has_caller = !hooks_only;
    r->hook_caller = hooks_only;
    r->caller_issued_ms = caller.issued_ms;
    memcpy(r->caller_id, caller.id, sizeof(r->caller_id));
    memcpy(r->caller_role, caller.role, sizeof(r->caller_role));
    return role_refused(r, rt);
}

static void request_header_at(void *ctx, size_t i, hooks_header_t *out)
{
    const px_req_t *r = ctx;
    const header_t *h = &r->headers[i];
    out->name = r->head.data + h->name_off;
    out->name_len = h->name_len;
    out->value = r->head.data + h->value_off;
    out->value_len = h->value_len;
}

/* What an admin's on_request and on_response hooks see: method, path, headers, the
 * caller, the body's size and the route's plugin, lent as they are for the one call
 * (hooks.h, "The request object"): nothing is copied, the hooks read what they use. */
static void request_context(px_req_t *r, hooks_request_view_t *view)
{
    *view = (hooks_request_view_t){
        .method = r->method_name ? r->method_name : "",
        .path = r->path,
        .path_len = r->path ? r->path_len : 0,
        .caller_id = r->has_caller || r->hook_caller ? r->caller_id : NULL,
        .caller_role = r->has_caller || r->hook_caller ? r->caller_role : NULL,
        .body_size = (int64_t)r->body.len,
        .plugin = r->plugin,
        .nheaders = r->nheaders,
        .header_at = request_header_at,
        .ctx = r,
    };
}

/* Returns non-zero when the hook answered (deny or error). Header changes apply to the
 * request as the handler will see it. */
int gateway_on_request(px_req_t *r)
{
    hooks_request_view_t view;
    request_context(r, &view);
    hooks_result_t out;
    hooks_call_request(r->worker->hooks, "on_request", &view, NULL, &out);
    int rc = 0;
    if (out.action != HOOKS_ALLOW) {
        api_hook_answer(r, "on_request", &out);
        rc = 1;
    } else if (out.value) {
        /* The headers the hooks set (a string) or removed (null), each name once; the
         * plugin's px_req_header looks there before the headers sent. */
        json_decref(r->header_overrides);
        r->header_overrides = json_incref(out.value);
    }
    hooks_result_clear(&out);
    return rc;
}

static void add_static_header(void *ctx, const char *name, const char *value)
{
    http_add_header(ctx, name, value);
}

/* The scripts' RESPONSE_HEADERS, then their on_response hooks, for this response. The
 * headers are added from a list made at load; Lua runs only when an on_response applies
 * to the path. Returns non-zero when a hook failed (the caller answers 500 instead). */
int gateway_on_response(px_req_t *r, int status)
{
    hooks_t *h = r->worker->hooks;
    const char *path = r->path ? r->path : "";
    size_t path_len = r->path ? r->path_len : 0;
    hooks_response_headers(h, path, path_len, add_static_header, r);
    if (!hooks_has_for(h, "on_response", path, path_len))
        return 0;
    json_t *headers = json_object();
    const char *p = r->extra_headers.data;
    const char *end = p ? p + r->extra_headers.len : NULL;
    while (p && p < end) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!colon || !eol || colon > eol)
            break;
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)(colon - p), p);
        json_object_set_new(headers, name, json_stringn(colon + 2, (size_t)(eol - colon - 2)));
        p = eol + 2;
    }
    json_t *res = json_pack("{s:i, s:o}", "status", status, "headers", headers);
    hooks_request_view_t view;
    request_context(r, &view);
    hooks_result_t out;
    hooks_call_request(h, "on_response", &view, res, &out);
    json_decref(res);
    int rc = 0;
    if (out.action == HOOKS_ERROR) {
        log_error("lua hook on_response: %s", out.message ? out.message : "failed");
        rc = -1;
    } else if (out.changed && json_is_object(json_object_get(out.value, "headers"))) {
        r->extra_headers.len = 0;
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(out.value, "headers"), key, v)
        {
            if (json_is_string(v))
                http_add_header(r, key, json_string_value(v));
        }
    }
    hooks_result_clear(&out);
    return rc;
}

