/*
 * notes — the example plugin for SDK 1.2's work outside a request: a write that emits an
 * event in its own transaction, a consumer group that counts what happened, and a
 * background task whose timer keeps a cached total fresh.
 *
 *   POST /v1/notes        {"text": "..."} -> 201 {"id": "..."}; emits note.created
 *   GET  /v1/notes/stats  {"created": N (counted by the consumer), "cached_total": M (the
 *                          timer's last count in this worker, -1 before its first run)}
 *
 * Config ([plugin:notes]): refresh = 1000 (ms between two refreshes of cached_total)
 * Needs [postgres]: its tables come with it (the migrations below).
 *
 * Build out of tree with only the SDK installed (see the Makefile):
 *   cc -shared -fPIC $(pkg-config --cflags panthera-sdk) notes.c -o notes.so \
 *      $(pkg-config --libs panthera-sdk) -Wl,--no-undefined
 */
#include <panthera/panthera.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const px_migration_t migrations[] = {
    {"001_notes", "CREATE TABLE notes_items (id bigserial PRIMARY KEY, text text NOT NULL,"
                  " created_at timestamptz NOT NULL DEFAULT now());"
                  "CREATE TABLE notes_counts (kind text PRIMARY KEY, n bigint NOT NULL);"
                  "INSERT INTO notes_counts VALUES ('created', 0);"},
    {NULL, NULL},
};

static px_req_t *refresher; /* this worker's background task */
static long long cached_total = -1;

/* ---- the write: a row and its event, one transaction ---- */

typedef struct write {
    const char *text; /* borrowed from the request's JSON body */
    px_pg_txn_t *txn;
} write_t;

static void inserted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    write_t *w = ud;
    px_pg_txn_t *txn = w->txn;
    if (err) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_pg_error(req, err);
        return;
    }
    const char *id = px_pg_value(res, 0, 0);
    /* The event exists exactly when the note does: both commit or neither. */
    int rc = px_event_emit(txn, "note.created", id,
                           json_pack("{s:s, s:s}", "id", id, "text", w->text));
    if (rc) {
        px_pg_rollback(txn, NULL, NULL);
        px_res_error(req, 500, "internal", "the event could not be recorded", NULL);
        return;
    }
    px_pg_commit_respond(txn, 201, json_pack("{s:s}", "id", id));
}

static void write_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    write_t *w = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    w->txn = txn;
    const char *params[] = {w->text};
    px_pg_txn_query(txn, "notes_insert", "INSERT INTO notes_items (text) VALUES ($1) RETURNING id",
                    1, params, inserted, w);
}

static int create(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    json_t *text = json_object_get(body, "text");
    if (!json_is_string(text) || json_object_size(body) != 1)
        return px_res_error(req, 400, "validation_failed", "the body is {\"text\": string}",
                            json_pack("{s:s}", "text", "must be a string"));
    write_t *w = px_req_alloc(req, sizeof(*w));
    w->text = json_string_value(text);
    rc = px_pg_begin_idempotent(req, write_begun, w);
    return rc ? rc : PX_ASYNC;
}

/* ---- the consumer: counts note.created, in the delivery's own transaction ---- */

static void counted(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                    void *ud)
{
    (void)task, (void)res;
    const px_event_t *ev = ud;
    if (err)
        px_event_retry(ev, 1000, px_pg_error_message(err));
    else
        px_event_ack(ev); /* the count and "done" commit together: never counted twice */
}

static void on_note_event(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)ud;
    (void)task;
    px_pg_txn_query(txn, "notes_count",
                    "UPDATE notes_counts SET n = n + 1 WHERE kind = 'created'", 0, NULL,
                    counted, (void *)ev);
}

/* ---- the timer: a background task refreshes a cached total ---- */

static void total_read(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    (void)task, (void)ud;
    if (!err)
        cached_total = strtoll(px_pg_value(res, 0, 0), NULL, 10);
}

static void refresh(px_req_t *task, int64_t timer_id, void *ud)
{
    (void)timer_id, (void)ud;
    px_pg_query(task, "notes_total", "SELECT count(*) FROM notes_items", 0, NULL, total_read,
                NULL);
}

static void worker_started(px_plugin_t *p, void *ud)
{
    (void)ud;
    refresher = px_task_begin(p, "refresh");
    if (refresher)
        px_timer_start(refresher, 0, strtoull(px_config_get(p, "refresh"), NULL, 10), refresh,
                       NULL);
}

static void worker_draining(px_plugin_t *p, void *ud)
{
    (void)p, (void)ud;
    if (refresher)
        px_task_end(refresher, 0); /* stops its timer, cancels a refresh in flight */
    refresher = NULL;
}

static void stats_read(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_json(req, 200, json_pack("{s:I, s:I}", "created",
                                    (json_int_t)strtoll(px_pg_value(res, 0, 0), NULL, 10),
                                    "cached_total", (json_int_t)cached_total));
}

static int stats(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_pg_query(req, "notes_stats", "SELECT n FROM notes_counts WHERE kind = 'created'",
                         0, NULL, stats_read, NULL);
    return rc ? rc : PX_ASYNC;
}

/* ---- SSE: GET /v1/notes/stream (live note.created over a channel) goes here, once the
 * streams area of SDK 1.2 lands: px_route_add with PX_ROUTE_STREAM, subscribe to the
 * channel the consumer publishes to after its commit. ---- */

static int notes_init(px_plugin_t *p)
{
    px_config_declare(p, "refresh", "1000");
    int rc = px_migrations(p, migrations);
    if (!rc)
        rc = px_event_subscribe(p, "notes-counter", "note.*", on_note_event, NULL);
    if (!rc)
        rc = px_on_worker_start(p, worker_started, NULL);
    if (!rc)
        rc = px_on_worker_stop(p, worker_draining, NULL);
    if (!rc)
        rc = px_route(p, "POST", "/v1/notes", create, NULL);
    if (!rc)
        rc = px_route(p, "GET", "/v1/notes/stats", stats, NULL);
    return rc;
}

PX_PLUGIN("notes", "1.0.0", notes_init, NULL, NULL);
