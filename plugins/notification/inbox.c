/*
 * inbox.c — GET /v1/notifications, POST /v1/notifications/{id}/read,
 * POST /v1/notifications/read-all, GET /v1/notifications/unread-count.
 *
 * Only the caller's own rows, and only those made while the caller wanted them in the
 * app (in_app). Someone else's id is 404, like an unknown one.
 *
 * Last-Modified (list and unread-count) is the inbox's modified_at (migrations/001: it moves by at least a second
 * on every new row, read and sweep), read BEFORE the page: a change between the two makes
 * the page newer than the date, so the client's next If-Modified-Since gets the page
 * again, never a stale 304.
 */
/* timegm and strptime need _GNU_SOURCE, which the build defines. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notification.h"

typedef struct list {
    int page, limit;
    char limit_s[16], offset_s[24];
    const char *values[5];
    void (*then)(px_req_t *req, struct list *l); /* after Last-Modified, when not 304 */
} list_t;

static void http_date(int64_t t, char out[40])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* If-Modified-Since as epoch seconds, or -1 when absent or not an IMF-fixdate (RFC 9110
 * says to ignore a date that does not parse). */
static int64_t if_modified_since(px_req_t *req)
{
    const char *h = px_req_header(req, "If-Modified-Since");
    struct tm tm = {0};
    if (!h)
        return -1;
    const char *end = strptime(h, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    return (int64_t)timegm(&tm);
}

static void listed(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    list_t *l = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    int64_t total = 0;
    json_t *items = json_array();
    for (int i = 0; i < px_pg_rows(res); i++) {
        if (i == 0)
            px_pg_int64(res, 0, 0, &total);
        const char *item = px_pg_value(res, i, 1);
        json_t *j = item ? json_loads(item, 0, NULL) : NULL;
        if (j)
            json_array_append_new(items, j);
    }
    px_res_list(req, "notifications", items, total, l->page, l->limit);
}

static void modified(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    list_t *l = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    int64_t at;
    if (px_pg_rows(res) == 1 && !px_pg_int64(res, 0, 0, &at)) {
        char date[40];
        http_date(at, date);
        px_res_header(req, "Last-Modified", date);
        px_res_header(req, "Cache-Control", "private, no-cache");
        int64_t since = if_modified_since(req);
        if (since >= 0 && at <= since) {
            px_res_send(req, 304, NULL, NULL, 0);
            return;
        }
    }
    l->then(req, l);
}

/* Answer 304 or go on with l->then, once the inbox's Last-Modified is known. */
static int with_last_modified(px_req_t *req, list_t *l)
{
    int rc = px_pg_query(req, "inbox_modified", sql_inbox_modified, 1, l->values, modified, l);
    return rc ? rc : PX_ASYNC;
}

static void list_page(px_req_t *req, list_t *l)
{
    int rc = px_pg_query(req, "inbox_list", sql_inbox_list, 5, l->values, listed, l);
    if (rc)
        px_res_code(req, rc, NULL);
}

int inbox_list(px_req_t *req, void *ud)
{
    (void)ud;
    list_t *l = px_req_alloc(req, sizeof(*l));
    int rc = px_req_page(req, &l->page, &l->limit);
    if (rc)
        return rc;
    const char *unread = px_req_query(req, "unread");
    snprintf(l->limit_s, sizeof(l->limit_s), "%d", l->limit);
    snprintf(l->offset_s, sizeof(l->offset_s), "%" PRId64, (int64_t)(l->page - 1) * l->limit);
    l->values[0] = px_req_caller_id(req);
    l->values[1] = unread && !strcmp(unread, "true") ? "t" : "f";
    l->values[2] = px_req_query(req, "type");
    l->values[3] = l->limit_s;
    l->values[4] = l->offset_s;
    l->then = list_page;
    return with_last_modified(req, l);
}

/* ---- read, read-all ---- */

static void marked(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    const char *found = px_pg_value(res, 0, 0);
    if (!found || !strcmp(found, "0") || !strcmp(found, "f")) {
        px_res_error(req, 404, "not_found", "no such notification", NULL);
        return;
    }
    px_res_send(req, 204, NULL, NULL, 0);
}

int inbox_read(px_req_t *req, void *ud)
{
    (void)ud;
    char *id = px_req_alloc(req, 37);
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    const char *values[] = {px_req_caller_id(req), id};
    rc = px_pg_query(req, "inbox_read", sql_inbox_read, 2, values, marked, NULL);
    return rc ? rc : PX_ASYNC;
}

/* The body is optional ({} or none at all): checked here by the schema rather than by the
 * route, which would refuse an empty body. */
int inbox_read_all(px_req_t *req, void *ud)
{
    (void)ud;
    size_t len = 0;
    const char *before = NULL;
    px_req_body(req, &len);
    if (len) {
        json_t *body, *fields = NULL;
        int rc = px_req_json(req, &body);
        if (rc)
            return rc;
        if (px_schema_check(notif_plugin, "ReadAll", body, &fields))
            return px_res_error(req, 400, "validation_failed", "the body is {before?: id}",
                                fields);
        before = json_string_value(json_object_get(body, "before"));
    }
    const char *values[] = {px_req_caller_id(req), before};
    int rc = px_pg_query(req, "inbox_read_all", sql_inbox_read_all, 2, values, marked, NULL);
    return rc ? rc : PX_ASYNC;
}

/* ---- unread-count ---- */

static void counted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    int64_t n = 0;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_pg_int64(res, 0, 0, &n);
    px_res_json(req, 200, json_pack("{s:I}", "count", (json_int_t)n));
}

static void count_unread(px_req_t *req, list_t *l)
{
    int rc = px_pg_query(req, "inbox_unread", sql_inbox_unread, 1, l->values, counted, NULL);
    if (rc)
        px_res_code(req, rc, NULL);
}

/* The same Last-Modified as the list: the count changes only when the inbox does. */
int inbox_unread_count(px_req_t *req, void *ud)
{
    (void)ud;
    list_t *l = px_req_alloc(req, sizeof(*l));
    memset(l, 0, sizeof(*l));
    l->values[0] = px_req_caller_id(req);
    l->then = count_unread;
    return with_last_modified(req, l);
}
