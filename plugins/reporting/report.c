/*
 * report.c — the pipeline every report shares:
 *
 *   negotiate (Accept, q-values; 406) -> range (?from&to; 400) -> gate (one query: may
 *   the caller see it, and its cache generation) -> Redis (the rendered answer under a
 *   key holding that generation) -> otherwise the report's SQL function -> render (JSON,
 *   CSV or SVG) -> answer, and store the rendering in Redis.
 *
 * The cache needs no invalidation message: the consumer bumps the project's (or the
 * site's) generation in the same transaction as the history it writes, so a changed
 * report is looked up under a new key and the old one simply expires. Redis down, or a
 * miss, costs one more query, never a wrong answer. A project the caller is not a member
 * of does not exist for them: 404, as in the task plugin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reporting.h"

#define RENDER_VERSION 2

#define DEFAULT_DAYS 30
#define MAX_DAYS 366

static const char *const offers_chart[] = {"application/json", "text/csv", "image/svg+xml",
                                           NULL};
static const char *const offers_table[] = {"application/json", "text/csv", NULL};
static const char *const content_types[] = {"application/json", "text/csv; charset=utf-8",
                                            "image/svg+xml; charset=utf-8"};

typedef struct report_req {
    px_req_t *req;
    const report_kind_t *kind;
    int fmt;
    char pid[37];
    char from[11], to[11];
    int64_t first, last;
    char today[11];
    char *name; /* the project's name (request memory) */
    char *key;  /* the cache key (request memory) */
} report_req_t;

static char *req_strdup(px_req_t *req, const char *s)
{
    size_t n = strlen(s) + 1;
    char *out = px_req_alloc(req, n);
    memcpy(out, s, n);
    return out;
}

static int bad_range(px_req_t *req, const char *field, const char *why)
{
    json_t *fields = json_pack("{s:s}", field, why);
    px_res_error(req, 400, "validation_failed", why, fields);
    return PX_OK;
}

/* ?from&to (YYYY-MM-DD, UTC days, both included): by default the 30 days up to today,
 * or up to `to`, or from `from`. Returns 0, or PX_DONE after answering 400. */
static int read_range(report_req_t *r)
{
    const char *f = px_req_query(r->req, "from"), *t = px_req_query(r->req, "to");
    int64_t today = date_today();
    if (f && date_parse(f, &r->first))
        return bad_range(r->req, "from", "must be a date (YYYY-MM-DD)"), PX_DONE;
    if (t && date_parse(t, &r->last))
        return bad_range(r->req, "to", "must be a date (YYYY-MM-DD)"), PX_DONE;
    if (!t)
        r->last = f ? (r->first + DEFAULT_DAYS - 1 < today ? r->first + DEFAULT_DAYS - 1 : today)
                    : today;
    if (!f)
        r->first = r->last - (DEFAULT_DAYS - 1);
    if (r->first > r->last)
        return bad_range(r->req, "from", "must not be after to"), PX_DONE;
    if (r->last - r->first + 1 > MAX_DAYS)
        return bad_range(r->req, "to", "a report covers at most 366 days"), PX_DONE;
    date_format(r->first, r->from);
    date_format(r->last, r->to);
    return 0;
}

static void add_headers(report_req_t *r)
{
    px_res_header(r->req, "X-Content-Type-Options", "nosniff");
    px_res_header(r->req, "Vary", "Accept");
    px_res_header(r->req, "Cache-Control", "private, no-cache");
    if (r->fmt != FMT_CSV)
        return;
    char disp[160];
    const char *scope = r->kind->project ? r->pid : "site";
    if (r->kind->ranged)
        snprintf(disp, sizeof(disp), "attachment; filename=\"%s-%s-%s-%s.csv\"", r->kind->name,
                 scope, r->from, r->to);
    else
        snprintf(disp, sizeof(disp), "attachment; filename=\"%s-%s-%s.csv\"", r->kind->name,
                 scope, r->today);
    px_res_header(r->req, "Content-Disposition", disp);
}

static void send_body(report_req_t *r, const char *data, size_t len)
{
    add_headers(r);
    px_res_send(r->req, 200, content_types[r->fmt], data, len);
}

static void chart_of(report_req_t *r, const json_t *days, rbuf_t *out)
{
    const report_kind_t *k = r->kind;
    chart_t c = {.stacked = k->stacked};
    char title[256];
    if (k->project)
        snprintf(title, sizeof(title), "%s of %s, %s to %s", k->title,
                 r->name, r->from, r->to);
    else
        snprintf(title, sizeof(title), "%s, %s to %s", k->title, r->from,
                 r->to);
    c.title = title;
    c.ndays = (int)json_array_size(days);
    if (c.ndays == 0)
        return;
    c.dates = calloc((size_t)c.ndays, sizeof(*c.dates));
    for (int s = 0; k->columns[s + 1] && s < CHART_MAX_SERIES - 1; s++) {
        c.labels[s] = k->labels[s];
        c.values[s] = calloc((size_t)c.ndays, sizeof(double));
        c.nseries++;
    }
    if (!c.dates)
        abort();
    size_t i;
    const json_t *day;
    json_array_foreach(days, i, day) {
        snprintf(c.dates[i], 11, "%s", json_string_value(json_object_get(day, "date")));
        for (int s = 0; s < c.nseries; s++) {
            if (!c.values[s])
                abort();
            c.values[s][i] = json_number_value(json_object_get(day, k->columns[s + 1]));
        }
    }
    svg_render(out, &c);
    for (int s = 0; s < c.nseries; s++)
        free(c.values[s]);
    free(c.dates);
}

/* The report's JSON text from PostgreSQL -> the negotiated rendering. */
static void render(report_req_t *r, const char *text, rbuf_t *out)
{
    const report_kind_t *k = r->kind;
    json_t *data = json_loads(text, 0, NULL);
    json_t *doc;
    if (k->ranged) {
        doc = json_pack("{s:s?, s:s, s:s, s:o}", "projectId", k->project ? r->pid : NULL, "from",
                        r->from, "to", r->to, "days", data ? data : json_array());
        if (!k->project)
            json_object_del(doc, "projectId");
    } else {
        doc = data ? data : json_object();
    }
    if (r->fmt == FMT_JSON) {
        char *s = json_dumps(doc, JSON_COMPACT);
        if (s)
            rbuf_puts(out, s);
        free(s);
    } else if (r->fmt == FMT_CSV) {
        if (k->csv)
            k->csv(out, doc);
        else
            csv_days(out, json_object_get(doc, "days"), k->columns);
    } else {
        chart_of(r, json_object_get(doc, "days"), out);
    }
    json_decref(doc);
}

static void computed(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    report_req_t *r = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    const char *text = px_pg_rows(res) == 1 ? px_pg_value(res, 0, 0) : NULL;
    if (!text) {
        px_res_code(req, PX_EINTERNAL, "the report could not be computed");
        return;
    }
    rbuf_t out = {0};
    render(r, text, &out);
    const char *set[] = {"SET", r->key, out.p ? out.p : "", "EX", NULL};
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)reporting_cache_ttl_s);
    set[4] = ttl;
    size_t lens[] = {3, strlen(r->key), out.len, 2, strlen(ttl)};
    px_redis_command(req, 5, set, lens, NULL, NULL); /* best effort: Redis may be down */
    send_body(r, out.p ? out.p : "", out.len);
    rbuf_free(&out);
}

static void compute(report_req_t *r)
{
    const report_kind_t *k = r->kind;
    const char *values[3];
    int n = 0;
    if (k->project)
        values[n++] = r->pid;
    if (k->ranged) {
        values[n++] = r->from;
        values[n++] = r->to;
    } else {
        values[n++] = r->today;
    }
    int rc = px_pg_query(r->req, k->sql_name, k->sql, n, values, computed, r);
    if (rc)
        px_res_code(r->req, rc, NULL);
}

static void cached(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    report_req_t *r = ud;
    size_t len;
    const char *data = !err && px_redis_type(reply) == PX_REDIS_STRING
                           ? px_redis_string(reply, &len) : NULL;
    (void)req;
    if (data)
        send_body(r, data, len);
    else
        compute(r);
}

static void gated(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    report_req_t *r = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    if (px_pg_rows(res) != 1) {
        px_res_error(req, 404, "not_found", "no such project", NULL);
        return;
    }
    const char *gen = px_pg_value(res, 0, 0), *second = px_pg_value(res, 0, 1);
    if (r->kind->project)
        r->name = req_strdup(req, second ? second : "");
    char site[48];
    snprintf(site, sizeof(site), "site-%s", second ? second : "");
    /* RENDER_VERSION changes with what a rendering looks like (the SVG layout), so an
     * upgraded plugin never serves an answer the previous one cached. */
    char key[256];
    snprintf(key, sizeof(key), "panthera:reporting:v%d:%s:%s:%s:%s:%s:%d", RENDER_VERSION,
             r->kind->name,
             r->kind->project ? r->pid : site, gen, r->kind->ranged ? r->from : r->today,
             r->kind->ranged ? r->to : r->today, r->fmt);
    r->key = req_strdup(req, key);
    const char *get[] = {"GET", r->key};
    if (px_redis_command(req, 2, get, NULL, cached, r))
        compute(r);
}

int report_handle(px_req_t *req, void *ud)
{
    const report_kind_t *kind = ud;
    int fmt = px_req_accept(req, kind->svg ? offers_chart : offers_table);
    if (fmt < 0)
        return fmt;
    report_req_t *r = px_req_alloc(req, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->kind = kind;
    r->fmt = fmt;
    date_format(date_today(), r->today);
    if (kind->project) {
        int rc = px_req_uuid(req, "id", r->pid);
        if (rc)
            return rc;
    }
    if (kind->ranged && read_range(r))
        return PX_OK;
    const char *role = px_req_caller_role(req);
    const char *admin = role && !strcmp(role, "admin") ? "true" : "false";
    const char *caller = px_req_caller_id(req);
    const char *values[] = {r->pid, admin, caller ? caller : ""};
    int rc = kind->project
                 ? px_pg_query(req, "gate_project", sql_gate_project, 3, values, gated, r)
                 : px_pg_query(req, "gate_site", sql_gate_site, 0, NULL, gated, r);
    return rc ? rc : PX_ASYNC;
}
