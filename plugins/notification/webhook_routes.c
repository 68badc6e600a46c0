/* webhook_routes.c — a user's webhook endpoints and their delivery log.
 *
 *   GET    /v1/notifications/webhooks                 the caller's endpoints
 *   POST   /v1/notifications/webhooks                 register one (Idempotency-Key):
 *                                                     201 with the secret, shown once
 *   GET    /v1/notifications/webhooks/:id             one endpoint
 *   DELETE /v1/notifications/webhooks/:id             remove it and its log
 *   GET    /v1/notifications/webhooks/:id/deliveries  the delivery log, newest first
 *
 * Endpoints are personal: another user's (an admin's too) is 404, as is one that does
 * not exist. The URL is checked at registration the way every send checks it
 * (webhook_addr.c): its host is resolved on the webhook queue (DNS blocks) and every
 * address must be public, else 400 validation_failed naming `url`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <panthera/panthera.h>

#include "delivery.h"

extern const char delivery_schemas[];

#define MAX_PER_USER "20"

static const char webhook_cols[] =
    "id, url, description,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

static json_t *webhook_json(const px_pg_result_t *res, int row)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(px_pg_value(res, row, 0)));
    json_object_set_new(o, "url", json_string(px_pg_value(res, row, 1)));
    const char *d = px_pg_value(res, row, 2);
    json_object_set_new(o, "description", d ? json_string(d) : json_null());
    json_object_set_new(o, "createdAt", json_string(px_pg_value(res, row, 3)));
    return o;
}

static int invalid_url(px_req_t *req, const char *why)
{
    json_t *fields = json_object();
    json_object_set_new(fields, "url", json_string(why));
    return px_res_error(req, 400, "validation_failed", "the request has invalid fields", fields);
}

/* ---- list ---- */

typedef struct page {
    int page, limit;
    const char *name;
} page_t;

/* Both lists are one statement answering one row: the total and the page as JSON
 * (built by PostgreSQL in the API's shape), so a page past the end still knows the
 * total. For the delivery log the row exists only when the endpoint is the caller's. */
static void listed(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    page_t *p = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    if (px_pg_rows(res) != 1) {
        px_res_code(req, PX_ENOENT, NULL);
        return;
    }
    int64_t total = 0;
    px_pg_int64(res, 0, 0, &total);
    json_t *items = json_loads(px_pg_value(res, 0, 1), 0, NULL);
    if (!json_is_array(items)) {
        json_decref(items);
        px_res_code(req, PX_EINTERNAL, NULL);
        return;
    }
    px_res_list(req, p->name, items, total, p->page, p->limit);
}

#define WEBHOOK_JSON                                                                          \
    "json_build_object('id', id, 'url', url, 'description', description, 'createdAt',"       \
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"

static int page_params(px_req_t *req, page_t **out, char limit[16], char offset[24])
{
    page_t *p = px_req_alloc(req, sizeof *p);
    int rc = px_req_page(req, &p->page, &p->limit);
    if (rc)
        return rc;
    snprintf(limit, 16, "%d", p->limit);
    snprintf(offset, 24, "%lld", (long long)(p->page - 1) * p->limit);
    *out = p;
    return 0;
}

static int webhooks_list(px_req_t *req, void *ud)
{
    (void)ud;
    page_t *p;
    char limit[16], offset[24];
    int rc = page_params(req, &p, limit, offset);
    if (rc)
        return rc;
    p->name = "webhooks";
    const char *v[] = {px_req_caller_id(req), limit, offset};
    static const char sql[] =
        "SELECT (SELECT count(*) FROM notification_webhook WHERE user_id = $1::uuid),"
        " coalesce((SELECT json_agg(j ORDER BY o) FROM (SELECT " WEBHOOK_JSON " AS j,"
        "   row_number() OVER (ORDER BY created_at, id) AS o FROM notification_webhook"
        "   WHERE user_id = $1::uuid ORDER BY created_at, id"
        "   LIMIT $2::int OFFSET $3::bigint) x), '[]')";
    rc = px_pg_query(req, NULL, sql, 3, v, listed, p);
    return rc ? rc : PX_ASYNC;
}

/* ---- create ---- */

typedef struct create {
    char url[2001];
    char *description;
    webhook_url_t u;
    int allow_loopback;
    char addr[64];
    const char *why;
    int refused;
    char id[37];
    char secret[WEBHOOK_SECRET_LEN + 1];
} create_t;

static void inserted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    px_pg_txn_t *txn = ud;
    if (err) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_pg_error(req, err);
        return;
    }
    if (px_pg_rows(res) != 1) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_error(req, 409, "conflict", "at most " MAX_PER_USER " webhooks per user", NULL);
        return;
    }
    json_t *o = webhook_json(res, 0);
    json_object_set_new(o, "secret", json_string(px_pg_value(res, 0, 4)));
    char location[128];
    snprintf(location, sizeof location, "/v1/notifications/webhooks/%s", px_pg_value(res, 0, 0));
    px_res_header(req, "Location", location);
    px_pg_commit_respond(txn, 201, o);
}

static void begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    create_t *c = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    char sql[768];
    snprintf(sql, sizeof sql,
             "INSERT INTO notification_webhook (id, user_id, url, description, secret)"
             " SELECT $1::uuid, $2::uuid, $3, $4, $5"
             " WHERE (SELECT count(*) FROM notification_webhook WHERE user_id = $2::uuid) < "
             MAX_PER_USER
             " RETURNING %s, secret",
             webhook_cols);
    const char *v[] = {c->id, px_req_caller_id(req), c->url, c->description, c->secret};
    if (px_pg_txn_query(txn, NULL, sql, 5, v, inserted, txn) != 0) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_code(req, PX_EUNAVAIL, NULL);
    }
}

static void resolve_work(void *ud)
{
    create_t *c = ud;
    c->refused = webhook_resolve_checked(&c->u, c->allow_loopback, c->addr, &c->why) != 0;
}

/* `c` is malloc'd, not request memory: the request may end (the client leaves) while
 * the resolver thread still writes into it. Freed here, or after the transaction. */
static void resolved(px_req_t *req, int status, void *ud)
{
    create_t *c = ud;
    if (!req) {
        free(c);
        return;
    }
    create_t *kept = px_req_alloc(req, sizeof *kept);
    memcpy(kept, c, sizeof *kept);
    free(c);
    c = kept;
    if (status) {
        px_res_code(req, PX_EUNAVAIL, NULL);
        return;
    }
    if (c->refused) {
        char why[160];
        snprintf(why, sizeof why, "refused: %s", c->why);
        invalid_url(req, why);
        return;
    }
    if (px_uuid_new(c->id) || webhook_secret_new(c->secret)) {
        px_res_code(req, PX_EINTERNAL, NULL);
        return;
    }
    int rc = px_pg_begin_idempotent(req, begun, c);
    if (rc)
        px_res_code(req, rc, NULL);
}

static int webhooks_create(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    create_t *c = calloc(1, sizeof *c);
    if (!c)
        return PX_EINTERNAL;
    const char *url = json_string_value(json_object_get(body, "url"));
    const char *d = json_string_value(json_object_get(body, "description"));
    c->description = d ? (char *)d : NULL;
    snprintf(c->url, sizeof c->url, "%s", url);
    c->allow_loopback = delivery_conf.webhook_allow_loopback;
    const char *why;
    if (webhook_url_parse(c->url, &c->u, &why) != 0) {
        free(c);
        return invalid_url(req, why);
    }
    rc = px_work_on(req, DELIVERY_WEBHOOK_QUEUE, resolve_work, resolved, c);
    if (rc)
        free(c);
    return rc ? rc : PX_ASYNC;
}

/* ---- one, delete ---- */

static void got(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err)
        px_res_pg_error(req, err);
    else if (px_pg_rows(res) != 1)
        px_res_code(req, PX_ENOENT, NULL);
    else
        px_res_json(req, 200, webhook_json(res, 0));
}

static int webhooks_get(px_req_t *req, void *ud)
{
    (void)ud;
    char id[37];
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s FROM notification_webhook WHERE id = $1::uuid AND user_id = $2::uuid",
             webhook_cols);
    const char *v[] = {id, px_req_caller_id(req)};
    rc = px_pg_query(req, NULL, sql, 2, v, got, NULL);
    return rc ? rc : PX_ASYNC;
}

static void deleted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err)
        px_res_pg_error(req, err);
    else if (px_pg_affected(res) != 1)
        px_res_code(req, PX_ENOENT, NULL);
    else
        px_res_send(req, 204, NULL, "", 0);
}

static int webhooks_delete(px_req_t *req, void *ud)
{
    (void)ud;
    char id[37];
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    const char *v[] = {id, px_req_caller_id(req)};
    rc = px_pg_query(req, NULL,
                     "DELETE FROM notification_webhook WHERE id = $1::uuid AND user_id = $2::uuid",
                     2, v, deleted, NULL);
    return rc ? rc : PX_ASYNC;
}

/* ---- delivery log ---- */

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static int webhooks_deliveries(px_req_t *req, void *ud)
{
    (void)ud;
    char id[37];
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    page_t *p;
    char limit[16], offset[24];
    if ((rc = page_params(req, &p, limit, offset)))
        return rc;
    p->name = "deliveries";
    const char *v[] = {id, px_req_caller_id(req), limit, offset};
    static const char sql[] =
        "SELECT (SELECT count(*) FROM notification_webhook_delivery WHERE webhook_id = w.id),"
        " coalesce((SELECT json_agg(j ORDER BY o) FROM (SELECT json_build_object("
        "   'id', id, 'notificationId', notification_id, 'state', state, 'attempts', attempts,"
        "   'lastStatus', last_status, 'lastError', last_error,"
        "   'createdAt', " TS("created_at") ", 'deliveredAt', " TS("delivered_at") ","
        "   'nextAttemptAt', CASE WHEN state = 'pending' THEN " TS("next_attempt_at") " END) AS j,"
        "   row_number() OVER (ORDER BY created_at DESC, id DESC) AS o"
        "   FROM notification_webhook_delivery WHERE webhook_id = w.id"
        "   ORDER BY created_at DESC, id DESC LIMIT $3::int OFFSET $4::bigint) x), '[]')"
        " FROM notification_webhook w WHERE w.id = $1::uuid AND w.user_id = $2::uuid";
    rc = px_pg_query(req, NULL, sql, 4, v, listed, p);
    return rc ? rc : PX_ASYNC;
}

int webhook_routes(px_plugin_t *self)
{
    int rc = px_schema(self, NULL, delivery_schemas);
    if (rc)
        return rc;
#define PAGE_QUERY                                                                            \
    {"page", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1000000000, "              \
             "\"default\": 1}", 0, NULL},                                                     \
    {"limit", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100, \"default\": 10}",   \
     0, NULL}
    static const px_param_spec_t page_query[] = {PAGE_QUERY, {NULL, NULL, 0, NULL}};
    static const px_param_spec_t webhook_id[] = {
        {"id", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL}, {NULL, NULL, 0, NULL}};
    static const px_response_spec_t list_200[] = {{200, "WebhookList", NULL, NULL}, {0}};
    static const px_response_spec_t create_201[] = {
        {201, "WebhookCreated", "Registered, with Location; the secret is shown only here", NULL},
        {400, "Error", "validation_failed: the URL is malformed, not https, or resolves to "
                       "a loopback, private, link-local or metadata address", NULL},
        {409, "Error", "Too many webhooks, or the Idempotency-Key was used for another "
                       "request", NULL},
        {0}};
    static const px_response_spec_t one_200[] = {
        {200, "Webhook", NULL, NULL}, {404, "Error", "No such webhook of the caller's", NULL}, {0}};
    static const px_response_spec_t done_204[] = {
        {204, NULL, NULL, NULL}, {404, "Error", "No such webhook of the caller's", NULL}, {0}};
    static const px_response_spec_t log_200[] = {
        {200, "WebhookDeliveryList", "Newest first", NULL},
        {404, "Error", "No such webhook of the caller's", NULL}, {0}};
#define W(m, p, fn, body, resp, text, q, pp)                                                  \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = fn,             \
     .auth = PX_AUTH_REQUIRED, .request_schema = body, .responses = resp, .summary = text,  \
     .tag = "notification", .query = q, .params = pp}
    static const px_route_spec_t routes[] = {
        W("GET", "/v1/notifications/webhooks", webhooks_list, NULL, list_200,
          "The caller's webhook endpoints", page_query, NULL),
        W("POST", "/v1/notifications/webhooks", webhooks_create, "CreateWebhookRequest",
          create_201, "Register a webhook endpoint (Idempotency-Key)", NULL, NULL),
        W("GET", "/v1/notifications/webhooks/:id", webhooks_get, NULL, one_200,
          "One of the caller's webhook endpoints", NULL, webhook_id),
        W("DELETE", "/v1/notifications/webhooks/:id", webhooks_delete, NULL, done_204,
          "Remove a webhook endpoint and its delivery log", NULL, webhook_id),
        W("GET", "/v1/notifications/webhooks/:id/deliveries", webhooks_deliveries, NULL, log_200,
          "A webhook's delivery log, newest first", page_query, webhook_id),
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if ((rc = px_route_add(self, &routes[i])))
            return rc;
    return 0;
}
