/*
 * pgkit — exercises the SDK's PostgreSQL and Redis calls in the host's own tests and
 * benchmarks. Never enabled in production. Its tables come from its migrations/.
 *
 *   GET  /v1/pgkit/items/:id   one row by primary key (a prepared statement), 404 if none
 *   POST /v1/pgkit/items       {"name": "..."} inserted in a transaction -> 201 {"id","name"}
 *                              (409 when the name exists, 503 when PostgreSQL is down);
 *                              idempotent with an Idempotency-Key header
 *   POST /v1/pgkit/notes       {"text": "..."} -> 201 {"id","text"}, idempotent; the table
 *                              has no unique constraint, so only the key prevents duplicates
 *   GET  /v1/pgkit/notes/count?text=...  {"count": N} rows with that text
 *   GET  /v1/pgkit/echo?v=...  SELECT $1::text: the value back as PostgreSQL saw it
 *   GET  /v1/pgkit/sleep?s=N   SELECT pg_sleep(N)
 *   GET  /v1/pgkit/locks?a=N&b=M  one statement outside a transaction taking the
 *                              transaction advisory locks N, then M: half of a lock cycle a
 *                              test closes from psql
 *   GET  /v1/pgkit/redis/:key  GET key from Redis -> {"value": ...}; 503 when Redis is down
 *   PUT  /v1/pgkit/redis/:key  SET key to the raw body
 */
#include <panthera/panthera.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void item_found(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    if (px_pg_rows(res) == 0) {
        px_res_error(req, 404, "not_found", "no such item", NULL);
        return;
    }
    px_res_json(req, 200,
                json_pack("{s:s, s:s}", "id", px_pg_value(res, 0, 0), "name",
                          px_pg_value(res, 0, 1)));
}

static int item_get(px_req_t *req, void *ud)
{
    (void)ud;
    const char *id = px_req_param(req, "id");
    if (strspn(id, "0123456789") != strlen(id) || strlen(id) > 18)
        return px_res_error(req, 400, "validation_failed", "id must be a number", NULL);
    const char *values[] = {id};
    int rc = px_pg_query(req, "pgkit_item_by_id", "SELECT id, name FROM pgkit_items WHERE id = $1",
                         1, values, item_found, NULL);
    return rc ? rc : PX_ASYNC;
}

static void inserted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    px_pg_txn_t *txn = ud;
    if (err) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_pg_error(req, err);
        return;
    }
    char location[64];
    snprintf(location, sizeof(location), "/v1/pgkit/items/%s", px_pg_value(res, 0, 0));
    px_res_header(req, "Location", location);
    px_pg_commit_respond(txn, 201,
                         json_pack("{s:s, s:s}", "id", px_pg_value(res, 0, 0), "name",
                                   px_pg_value(res, 0, 1)));
}

static void txn_started(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    const char *name = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    const char *values[] = {name};
    px_pg_txn_query(txn, NULL, "INSERT INTO pgkit_items (name) VALUES ($1) RETURNING id, name",
                    1, values, inserted, txn);
}

static int item_create(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || !*name)
        return px_res_error(req, 400, "validation_failed", "name is required",
                            json_pack("{s:s}", "name", "required"));
    rc = px_pg_begin_idempotent(req, txn_started, (void *)name);
    return rc ? rc : PX_ASYNC;
}

static void note_inserted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                          void *ud)
{
    px_pg_txn_t *txn = ud;
    if (err) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_pg_error(req, err);
        return;
    }
    px_pg_commit_respond(txn, 201,
                         json_pack("{s:s, s:s}", "id", px_pg_value(res, 0, 0), "text",
                                   px_pg_value(res, 0, 1)));
}

static void note_txn(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    const char *values[] = {ud};
    px_pg_txn_query(txn, NULL, "INSERT INTO pgkit_notes (text) VALUES ($1) RETURNING id, text", 1,
                    values, note_inserted, txn);
}

static int note_create(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    const char *text = json_string_value(json_object_get(body, "text"));
    if (!text)
        return px_res_error(req, 400, "validation_failed", "text is required",
                            json_pack("{s:s}", "text", "required"));
    rc = px_pg_begin_idempotent(req, note_txn, (void *)text);
    return rc ? rc : PX_ASYNC;
}

static void counted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_json(req, 200, json_pack("{s:s}", "count", px_pg_value(res, 0, 0)));
}

static int note_count(px_req_t *req, void *ud)
{
    (void)ud;
    const char *values[] = {px_req_query(req, "text")};
    int rc = px_pg_query(req, NULL, "SELECT count(*)::text FROM pgkit_notes WHERE text = $1", 1,
                         values, counted, NULL);
    return rc ? rc : PX_ASYNC;
}

static void echoed(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_json(req, 200, json_pack("{s:s?}", "value", px_pg_value(res, 0, 0)));
}

static int echo(px_req_t *req, void *ud)
{
    (void)ud;
    const char *values[] = {px_req_query(req, "v")};
    int rc = px_pg_query(req, NULL, "SELECT $1::text", 1, values, echoed, NULL);
    return rc ? rc : PX_ASYNC;
}

static int sleep_query(px_req_t *req, void *ud)
{
    (void)ud;
    const char *s = px_req_query(req, "s");
    const char *values[] = {s ? s : "1"};
    int rc = px_pg_query(req, NULL, "SELECT pg_sleep($1::float8)::text", 1, values, echoed, NULL);
    return rc ? rc : PX_ASYNC;
}

static int locks(px_req_t *req, void *ud)
{
    (void)ud;
    const char *values[] = {px_req_query(req, "a"), px_req_query(req, "b")};
    if (!values[0] || !values[1])
        return px_res_error(req, 400, "validation_failed", "a and b are required", NULL);
    int rc = px_pg_query(req, NULL,
                         "SELECT pg_advisory_xact_lock($1::bigint)::text || "
                         "pg_advisory_xact_lock($2::bigint)::text",
                         2, values, echoed, NULL);
    return rc ? rc : PX_ASYNC;
}

static void redis_got(px_req_t *req, const px_redis_reply_t *reply, int err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_error(req, 503, "unavailable", "redis did not answer", NULL);
        return;
    }
    size_t len = 0;
    const char *s = px_redis_string(reply, &len);
    int type = px_redis_type(reply);
    if (type == PX_REDIS_ERROR) {
        px_res_error(req, 500, "internal", s ? s : "redis error", NULL);
        return;
    }
    px_res_json(req, 200, json_pack("{s:s%}", "value", s ? s : "", s ? len : 0));
}

static int redis_get(px_req_t *req, void *ud)
{
    (void)ud;
    const char *argv[] = {"GET", px_req_param(req, "key")};
    int rc = px_redis_command(req, 2, argv, NULL, redis_got, NULL);
    if (rc == PX_EUNAVAIL)
        return px_res_error(req, 503, "unavailable", "redis is unavailable", NULL);
    return rc ? rc : PX_ASYNC;
}

static int redis_set(px_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *body = px_req_body(req, &len);
    const char *argv[] = {"SET", px_req_param(req, "key"), body};
    size_t lens[] = {3, strlen(argv[1]), len};
    int rc = px_redis_command(req, 3, argv, lens, redis_got, NULL);
    if (rc == PX_EUNAVAIL)
        return px_res_error(req, 503, "unavailable", "redis is unavailable", NULL);
    return rc ? rc : PX_ASYNC;
}

extern const px_migration_t pgkit_migrations[];

static int pgkit_init(px_plugin_t *self)
{
    int rc = px_migrations(self, pgkit_migrations);
    if (!rc)
        rc = px_route(self, "GET", "/v1/pgkit/items/:id", item_get, NULL);
    if (!rc)
        rc = px_route(self, "POST", "/v1/pgkit/notes", note_create, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/pgkit/notes/count", note_count, NULL);
    if (!rc)
        rc = px_route(self, "POST", "/v1/pgkit/items", item_create, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/pgkit/echo", echo, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/pgkit/sleep", sleep_query, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/pgkit/locks", locks, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/pgkit/redis/:key", redis_get, NULL);
    if (!rc)
        rc = px_route(self, "PUT", "/v1/pgkit/redis/:key", redis_set, NULL);
    return rc;
}

PX_PLUGIN("pgkit", "1.0.0", pgkit_init, NULL, NULL);
