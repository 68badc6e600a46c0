/*
 * helperkit — exercises the SDK 1.2 HELPERS area in the host's own tests. Never enabled
 * in production. Its table comes from its migrations/.
 *
 *   GET  /v1/helperkit/stmt?v=X   a prepared statement named "pgkit_item_by_id", as pgkit
 *                                 names its own for other SQL -> {"value": "X@helperkit"}
 *   POST /v1/helperkit/batch      {"names": [...], "scores": [...]?} inserted in one
 *                                 transaction, every statement queued without a callback;
 *                                 the commit's outcome -> 201 {"inserted": N}, or 200
 *                                 {"error": {sqlstate, constraint, detail, message}}
 *   GET  /v1/helperkit/types      typed getters on one row of literals
 *   GET  /v1/helperkit/code/:n    px_res_code(-n, "from helperkit")
 *   GET  /v1/helperkit/list       px_req_page + px_res_list over 95 numbered items
 *   GET  /v1/helperkit/things/:id px_req_uuid -> {"id": canonical}
 *   GET  /v1/helperkit/uuid       {"id": px_uuid_new()}
 *   GET  /v1/helperkit/config     the typed config values (keys below)
 *   GET  /v1/helperkit/report     px_req_accept over JSON, CSV
 *   GET  /v1/helperkit/versioned  ETag "7" (If-None-Match -> 304)
 *   PUT  /v1/helperkit/versioned  If-Match must list "7" (else 412)
 *   POST /v1/helperkit/incr/:key?by=N  a Lua script (INCRBY) by SHA -> {"value", "sha"}
 *   POST /v1/helperkit/fail       a Lua script that raises -> {"error": text}
 *   POST /v1/helperkit/observe?v=X  helperkit_calls_total += 1, X into helperkit_sizes
 *   GET  /v1/helperkit/declared   what refused declarations returned (in init and now)
 * Hook: before_helperkit_thing (declared, never run).
 *
 * Config ([plugin:helperkit]): count (int, 5), enabled (bool, yes), ttl (duration, 90s),
 * max (size, 8k), unset (no default). Read at init: a malformed value refuses start-up.
 */
#include <panthera/panthera.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static px_plugin_t *self_plugin;

static void stmt_done(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                      void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_json(req, 200, json_pack("{s:s?}", "value", px_pg_value(res, 0, 0)));
}

static int stmt(px_req_t *req, void *ud)
{
    (void)ud;
    const char *values[] = {px_req_query(req, "v")};
    int rc = px_pg_query(req, "pgkit_item_by_id", "SELECT $1::text || '@helperkit'", 1, values,
                         stmt_done, NULL);
    return rc ? rc : PX_ASYNC;
}

/* ---- a batch of statements with no callback each ---- */

static void batch_committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    json_t *names = ud;
    if (!err) {
        px_res_json(req, 201, json_pack("{s:I}", "inserted", (json_int_t)json_array_size(names)));
        return;
    }
    px_res_json(req, 200,
                json_pack("{s:{s:s, s:s?, s:s?, s:s, s:i}}", "error", "sqlstate",
                          px_pg_error_sqlstate(err), "constraint", px_pg_error_constraint(err),
                          "detail", px_pg_error_detail(err), "message",
                          px_pg_error_message(err), "kind", px_pg_error_kind(err)));
}

static void batch_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    json_t *body = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    json_t *names = json_object_get(body, "names");
    json_t *scores = json_object_get(body, "scores");
    for (size_t i = 0; i < json_array_size(names); i++) {
        char score[32];
        json_t *s = json_array_get(scores, i);
        snprintf(score, sizeof(score), "%lld", s ? (long long)json_integer_value(s) : 0LL);
        const char *values[] = {json_string_value(json_array_get(names, i)), score};
        int rc = px_pg_txn_query(txn, "batch_insert",
                                 "INSERT INTO helperkit_items (name, score) VALUES ($1, $2::int)",
                                 2, values, NULL, NULL);
        if (rc) {
            px_pg_rollback(txn, NULL, NULL);
            px_res_error(req, 500, "internal", "could not queue a statement", NULL);
            return;
        }
    }
    px_pg_commit(txn, batch_committed, names);
}

static int batch(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    if (!json_is_array(json_object_get(body, "names")))
        return px_res_error(req, 400, "validation_failed", "names is required", NULL);
    rc = px_pg_begin(req, batch_begun, body);
    return rc ? rc : PX_ASYNC;
}

/* ---- typed getters ---- */

static json_t *int64_of(const px_pg_result_t *res, int col)
{
    int64_t v;
    int rc = px_pg_int64(res, 0, col, &v);
    return rc ? json_pack("{s:i}", "rc", rc) : json_pack("{s:I}", "value", (json_int_t)v);
}

static void types_done(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    int b = -1, rc_b_on_text, rc_b_null;
    double d = 0, inf = 0;
    int dummy;
    int rc_b = px_pg_bool(res, 0, 1, &b);
    rc_b_on_text = px_pg_bool(res, 0, 4, &dummy);
    rc_b_null = px_pg_bool(res, 0, 3, &dummy);
    int rc_d = px_pg_double(res, 0, 2, &d);
    int rc_inf = px_pg_double(res, 0, 6, &inf);
    double dd;
    int rc_d_text = px_pg_double(res, 0, 4, &dd);
    json_t *cols = json_array();
    for (int c = 0; c <= px_pg_cols(res); c++)
        json_array_append_new(cols, px_pg_colname(res, c) ? json_string(px_pg_colname(res, c))
                                                          : json_null());
    px_res_json(req, 200,
                json_pack("{s:o, s:o, s:o, s:{s:i, s:i}, s:{s:i, s:f}, s:i, s:i, s:i, s:{s:i, "
                          "s:b}, s:o, s:i, s:i}",
                          "int", int64_of(res, 0), "big", int64_of(res, 5), "int_on_text",
                          int64_of(res, 4), "bool", "rc", rc_b, "value", b, "double", "rc", rc_d,
                          "value", d, "bool_on_text", rc_b_on_text, "bool_on_null", rc_b_null,
                          "double_on_text", rc_d_text, "inf", "rc", rc_inf, "positive",
                          inf > 1e308, "columns", cols, "null", px_pg_is_null(res, 0, 3),
                          "not_null", px_pg_is_null(res, 0, 0)));
}

static int types(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_pg_query(req, NULL,
                         "SELECT 42::int8 AS i, true AS b, 2.5::float8 AS d, NULL::text AS n, "
                         "'x1' AS s, 9223372036854775808::numeric AS big, "
                         "'Infinity'::float8 AS inf",
                         0, NULL, types_done, NULL);
    return rc ? rc : PX_ASYNC;
}

/* ---- helpers every plugin needs ---- */

static int code(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_code(req, -atoi(px_req_param(req, "n")), "from helperkit");
}

static int list(px_req_t *req, void *ud)
{
    (void)ud;
    int page, limit;
    int rc = px_req_page(req, &page, &limit);
    if (rc)
        return rc;
    json_t *items = json_array();
    for (int i = (page - 1) * limit; i < page * limit && i < 95; i++)
        json_array_append_new(items, json_integer(i));
    return px_res_list(req, "things", items, 95, page, limit);
}

static int thing(px_req_t *req, void *ud)
{
    (void)ud;
    char id[37];
    int rc = px_req_uuid(req, "id", id);
    if (rc)
        return rc;
    return px_res_json(req, 200, json_pack("{s:s}", "id", id));
}

static int uuid(px_req_t *req, void *ud)
{
    (void)ud;
    char id[37];
    int rc = px_uuid_new(id);
    return rc ? rc : px_res_json(req, 200, json_pack("{s:s}", "id", id));
}

static int64_t cfg_count, cfg_ttl;
static int cfg_enabled, cfg_unset_rc;
static uint64_t cfg_max;

static int config(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_json(req, 200,
                       json_pack("{s:I, s:b, s:I, s:I, s:i}", "count", (json_int_t)cfg_count,
                                 "enabled", cfg_enabled, "ttl_ms", (json_int_t)cfg_ttl, "max",
                                 (json_int_t)cfg_max, "unset_rc", cfg_unset_rc));
}

static int report(px_req_t *req, void *ud)
{
    (void)ud;
    static const char *const offers[] = {"application/json", "text/csv", NULL};
    int which = px_req_accept(req, offers);
    if (which < 0)
        return which;
    if (which == 1)
        return px_res_send(req, 200, "text/csv; charset=utf-8", "a,b\r\n1,2\r\n", 10);
    return px_res_json(req, 200, json_pack("{s:i, s:i}", "a", 1, "b", 2));
}

static int versioned_get(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_res_etag(req, "7");
    if (rc)
        return rc;
    return px_res_json(req, 200, json_pack("{s:i}", "version", 7));
}

static int versioned_put(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_req_if_match(req, "7");
    if (rc)
        return rc;
    return px_res_json(req, 200, json_pack("{s:i}", "version", 8));
}

/* ---- Redis scripts ---- */

static px_redis_script_t *incr_script, *fail_script;

static void script_done(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    px_redis_script_t *script = ud;
    if (err) {
        px_res_code(req, PX_EUNAVAIL, "redis is unavailable");
        return;
    }
    if (px_redis_type(reply) == PX_REDIS_ERROR) {
        px_res_json(req, 200, json_pack("{s:s}", "error", px_redis_string(reply, NULL)));
        return;
    }
    px_res_json(req, 200,
                json_pack("{s:I, s:s}", "value", (json_int_t)px_redis_integer(reply), "sha",
                          px_redis_script_sha(script)));
}

static int incr(px_req_t *req, void *ud)
{
    (void)ud;
    const char *by = px_req_query(req, "by");
    const char *argv[] = {px_req_param(req, "key"), by ? by : "1"};
    int rc = px_redis_eval(req, incr_script, 1, 2, argv, NULL, script_done, incr_script);
    return rc ? rc : PX_ASYNC;
}

static int fail(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_redis_eval(req, fail_script, 0, 0, NULL, NULL, script_done, fail_script);
    return rc ? rc : PX_ASYNC;
}

/* ---- metrics and declarations ---- */

static int calls_id, sizes_id;
static json_t *declared;

static int observe(px_req_t *req, void *ud)
{
    (void)ud;
    const char *v = px_req_query(req, "v");
    px_metric_add(self_plugin, calls_id, 1);
    px_metric_add(self_plugin, sizes_id, 1); /* another kind's id: ignored */
    if (v)
        px_metric_observe(self_plugin, sizes_id, atof(v));
    return px_res_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static int declared_now(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *out = json_deep_copy(declared);
    json_object_set_new(out, "late_counter",
                        json_integer(px_metric_counter(self_plugin, "late_total", "late")));
    json_object_set_new(out, "late_hook",
                        json_integer(px_hook_declare(self_plugin, "before_late", "late")));
    return px_res_json(req, 200, out);
}

static int declare_all(px_plugin_t *self)
{
    static const double bounds[] = {1, 10, 100};
    static const double unordered[] = {10, 1};
    calls_id = px_metric_counter(self, "helperkit_calls_total", "Calls of observe.");
    sizes_id = px_metric_histogram(self, "helperkit_sizes", "Values observed.", bounds, 3);
    if (calls_id < 0 || sizes_id < 0)
        return PX_EINVAL;
    int rc = px_hook_declare(self, "before_helperkit_thing", "changes a helperkit thing");
    if (rc)
        return rc;
    declared = json_pack(
        "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "dup_counter",
        px_metric_counter(self, "helperkit_calls_total", "again"), "host_name",
        px_metric_counter(self, "panthera_mine_total", "x"), "bad_name",
        px_metric_counter(self, "9lives", "x"), "unordered",
        px_metric_histogram(self, "helperkit_u", "x", unordered, 2), "multiline_help",
        px_metric_counter(self, "helperkit_m_total", "a\nb"), "dup_hook",
        px_hook_declare(self, "before_helperkit_thing", "again"), "host_hook",
        px_hook_declare(self, "on_request", "mine"), "bad_hook",
        px_hook_declare(self, "Before-X", "x"));
    return 0;
}

static int read_config(px_plugin_t *self)
{
    static const char *const keys[][2] = {
        {"count", "5"}, {"enabled", "yes"}, {"ttl", "90s"}, {"max", "8k"}, {"unset", NULL}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        px_config_declare(self, keys[i][0], keys[i][1]);
    int rc = px_config_int(self, "count", &cfg_count);
    if (!rc)
        rc = px_config_bool(self, "enabled", &cfg_enabled);
    if (!rc)
        rc = px_config_duration_ms(self, "ttl", &cfg_ttl);
    if (!rc)
        rc = px_config_size(self, "max", &cfg_max);
    int64_t unused;
    cfg_unset_rc = px_config_int(self, "unset", &unused);
    return rc;
}

extern const px_migration_t helperkit_migrations[];

static int helperkit_init(px_plugin_t *self)
{
    self_plugin = self;
    int rc = read_config(self);
    if (rc)
        return rc;
    rc = declare_all(self);
    if (rc)
        return rc;
    incr_script = px_redis_script_new(self, "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    fail_script = px_redis_script_new(self, "return redis.error_reply('helperkit says no')");
    static const struct {
        const char *method, *pattern;
        px_handler_fn fn;
    } routes[] = {
        {"GET", "/v1/helperkit/stmt", stmt},
        {"POST", "/v1/helperkit/batch", batch},
        {"GET", "/v1/helperkit/types", types},
        {"GET", "/v1/helperkit/code/:n", code},
        {"GET", "/v1/helperkit/list", list},
        {"GET", "/v1/helperkit/things/:id", thing},
        {"GET", "/v1/helperkit/uuid", uuid},
        {"GET", "/v1/helperkit/config", config},
        {"GET", "/v1/helperkit/report", report},
        {"GET", "/v1/helperkit/versioned", versioned_get},
        {"PUT", "/v1/helperkit/versioned", versioned_put},
        {"POST", "/v1/helperkit/incr/:key", incr},
        {"POST", "/v1/helperkit/fail", fail},
        {"POST", "/v1/helperkit/observe", observe},
        {"GET", "/v1/helperkit/declared", declared_now},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        rc = px_route(self, routes[i].method, routes[i].pattern, routes[i].fn, NULL);
        if (rc)
            return rc;
    }
    return px_migrations(self, helperkit_migrations);
}

static void helperkit_fini(px_plugin_t *self)
{
    (void)self;
    px_redis_script_free(incr_script);
    px_redis_script_free(fail_script);
    json_decref(declared);
}

PX_PLUGIN("helperkit", "1.0.0", helperkit_init, helperkit_fini, NULL);
