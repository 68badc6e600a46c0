/* unsubscribe.c — one-click unsubscribe (RFC 8058) from a link in a mail.
 *
 *   POST /v1/notifications/unsubscribe?token=T   email 'off' for the token's type(s): 204
 *   GET  /v1/notifications/unsubscribe?token=T   a confirmation page with a form; changes
 *                                                nothing (mail scanners follow links)
 *
 * The token (unsubscribe_token.c) is the only credential: no session, no bearer. A bad,
 * tampered or expired one is 400 either way, with no hint which. The page is served
 * with no-store, no referrer (the token is in its URL) and a CSP that allows nothing
 * but its own inline style and a form posting back here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <panthera/panthera.h>

#include "delivery.h"
#include "notification.h"

typedef struct unsub {
    char user[37];
    char types[UNSUB_TYPES_MAX];
} unsub_t;

/* 0 with the token's fields, PX_DONE after answering 400 / 503. */
static int read_token(px_req_t *req, unsub_t *u, int html)
{
    size_t key_len;
    const unsigned char *key = delivery_unsub_key(&key_len);
    if (!key) {
        px_res_code(req, PX_EUNAVAIL, "starting up; retry");
        return PX_DONE;
    }
    const char *token = px_req_query(req, "token");
    if (token && unsub_token_check(key, key_len, token, (int64_t)time(NULL), u->user, u->types) == 0)
        return 0;
    if (html) {
        static const char page[] =
            "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
            "<p>This unsubscribe link is invalid or has expired. You can change which mails "
            "you get in your notification preferences.</p>";
        px_res_header(req, "Cache-Control", "no-store");
        px_res_send(req, 400, "text/html; charset=utf-8", page, sizeof page - 1);
    } else {
        px_res_error(req, 400, "bad_request", "the unsubscribe token is invalid or has expired",
                     NULL);
    }
    return PX_DONE;
}

static void page_headers(px_req_t *req)
{
    px_res_header(req, "Cache-Control", "no-store");
    px_res_header(req, "Referrer-Policy", "no-referrer");
    px_res_header(req, "X-Content-Type-Options", "nosniff");
    px_res_header(req, "Content-Security-Policy",
                  "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                  "frame-ancestors 'none'");
}

static int unsubscribe_page(px_req_t *req, void *ud)
{
    (void)ud;
    unsub_t u;
    int rc = read_token(req, &u, 1);
    if (rc)
        return rc;
    /* The token is base64url and a dot, the types [a-z0-9_.,-]: nothing to escape, but
     * both went through the checks above, so only those characters can be here. */
    const char *token = px_req_query(req, "token");
    char *html = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&html, &len);
    if (!f)
        return PX_EINTERNAL;
    fprintf(f,
            "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
            "<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}</style>"
            "<h1>Unsubscribe</h1><p>Stop email notifications of type <b>%s</b>?</p>"
            "<form method=post action=\"/v1/notifications/unsubscribe?token=%s\">"
            "<input type=hidden name=from value=page>"
            "<button type=submit>Unsubscribe</button></form>",
            u.types, token);
    fclose(f);
    page_headers(req);
    rc = px_res_send(req, 200, "text/html; charset=utf-8", html, len);
    free(html);
    return rc;
}

/* A type the user never set gets a row now: email off, inApp its configured default
 * (the core's, notif_cfg), so unsubscribing from mail changes nothing in the inbox. */
static const char upsert_sql[] =
    "INSERT INTO notification_preference (user_id, type, in_app, email)"
    " SELECT $1::uuid, t, ia, 'off'"
    " FROM unnest(string_to_array($2, ','), string_to_array($3, ',')::boolean[]) AS x(t, ia)"
    " ON CONFLICT (user_id, type) DO UPDATE SET email = 'off'";

static void done(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)res;
    int from_page = ud != NULL;
    if (err) {
        px_res_pg_error(req, err);
    } else if (from_page) {
        static const char page[] = "<!doctype html><meta charset=utf-8><title>Unsubscribed"
                                   "</title><p>Done: you will get no more of these mails.</p>";
        page_headers(req);
        px_res_send(req, 200, "text/html; charset=utf-8", page, sizeof page - 1);
    } else {
        px_res_send(req, 204, NULL, "", 0);
    }
}

static int unsubscribe_post(px_req_t *req, void *ud)
{
    (void)ud;
    unsub_t u;
    int rc = read_token(req, &u, 0);
    if (rc)
        return rc;
    size_t blen = 0;
    const char *body = px_req_body(req, &blen);
    int from_page = blen == 9 && !memcmp(body, "from=page", 9);
    char in_app[UNSUB_TYPES_MAX * 2] = "";
    char types[UNSUB_TYPES_MAX];
    snprintf(types, sizeof types, "%s", u.types);
    for (char *save = NULL, *t = strtok_r(types, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int i = notif_type_index(t);
        strcat(in_app, *in_app ? "," : "");
        strcat(in_app, i < 0 || notif_cfg.in_app[i] ? "t" : "f");
    }
    const char *v[] = {u.user, u.types, in_app};
    rc = px_pg_query(req, NULL, upsert_sql, 3, v, done, from_page ? (void *)1 : NULL);
    return rc ? rc : PX_ASYNC;
}

int unsubscribe_routes(px_plugin_t *self)
{
    static const px_param_spec_t token_query[] = {
        {"token", "{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 1100}", 1,
         "the signed token from the mail's List-Unsubscribe link"},
        {NULL, NULL, 0, NULL}};
    static const char *const form_types[] = {"application/x-www-form-urlencoded",
                                             "multipart/form-data", "text/plain", NULL};
    static const px_response_spec_t post_responses[] = {
        {204, NULL, "Email for the token's type(s) is now off", NULL},
        {200, NULL, "The same, answering the confirmation page's form", "text/html"},
        {400, "Error", "The token is invalid, tampered with or expired", NULL},
        {0, NULL, NULL, NULL}};
    static const px_response_spec_t get_responses[] = {
        {200, NULL, "A confirmation page with a form that posts here", "text/html"},
        {400, NULL, "The token is invalid, tampered with or expired", "text/html"},
        {0, NULL, NULL, NULL}};
    static const px_route_spec_t routes[] = {
        {.size = sizeof(px_route_spec_t), .method = "POST",
         .pattern = "/v1/notifications/unsubscribe", .handler = unsubscribe_post,
         .auth = PX_AUTH_NONE, .max_body = 4096, .content_types = form_types,
         .query = token_query, .responses = post_responses,
         .summary = "One-click unsubscribe (RFC 8058); the token is the only credential",
         .tag = "notification"},
        {.size = sizeof(px_route_spec_t), .method = "GET",
         .pattern = "/v1/notifications/unsubscribe", .handler = unsubscribe_page,
         .auth = PX_AUTH_NONE, .query = token_query, .responses = get_responses,
         .summary = "Unsubscribe confirmation page; changes nothing", .tag = "notification"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = px_route_add(self, &routes[i]);
        if (rc)
            return rc;
    }
    return 0;
}
