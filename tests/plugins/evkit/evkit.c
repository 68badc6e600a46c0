/*
 * evkit — exercises SDK 1.2 events (tests/api/test_events.py). Never in production.
 *
 *   POST /v1/evkit/write  {"aggregate", "count", "delay_ms", "type"?, "fail"?, "slow"?,
 *                          "never_ack"?, "no_sleep"?, "shape"?}
 *        one transaction: a row in evkit_writes (which takes an id from a sequence at
 *        once) — or, with "shape": "task", a task and its activity row as the task plugin
 *        writes them (migrations/005, for tests/bench/events.sh) —, `count` events (0:
 *        none) for the aggregate with payload {"seq": i, ...}, then
 *        pg_sleep(delay_ms) before the commit — the late committer a relay must not skip
 *        (no_sleep: true: no such statement, the last event is followed by the COMMIT)
 *   POST /v1/evkit/misuse     {"outside": code of px_event_emit(NULL, ...), "bad_type": ...}
 *   GET  /v1/evkit/seen       {"seen": [[event_id, aggregate, seq, attempt, type, producer,
 *                             xid], ...]} in the order the consumer handled them (xid: the
 *                             handling transaction)
 *
 * Consumer group [plugin:evkit] group (default "evkit"; subscribe = no: none, for the
 * benchmark of emitting alone; batch = N: px_event_batch(N), 0 (default): not asked),
 * pattern "evkit.*": records each
 * event in evkit_seen inside the delivery's transaction, then acks. An event with
 * "fail": true always asks for a retry (50 ms); one with "fail_once": true records itself
 * on its first attempt, then asks for a retry (50 ms), so the savepoint must undo that
 * record; one with "ack_broken": true records itself, runs a statement that fails (no
 * callback) and acks anyway; one with "slow": true on its first
 * attempt logs "evkit: slow handler in pid N" and sleeps 5 s inside the transaction
 * before acking (the window in which a test kills the worker). One with "never_ack":
 * true records itself, logs "evkit: not acking event ID" and never ends its delivery
 * (the consumer the [events] lease exists for). One with "wait_lock": K records itself,
 * logs "evkit: event ID waits for lock K" and takes pg_advisory_xact_lock(K) before acking,
 * so a test holding K keeps the batch open (and its locks held) until it lets go.
 *
 * prepare = yes: a batch hook (px_event_prepare) records each delivery transaction's event
 * ids, in the order it was given them, in evkit_prepared; it refuses a batch (PX_EINVAL)
 * that holds an event with "prepare_refuse": true on its first attempt. prepare =
 * elsewhere: asks for a hook on a group it did not subscribe (a config error).
 */
#include <panthera/panthera.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const px_migration_t evkit_migrations[];

static px_plugin_t *self_plugin;
static char group_name[64];

typedef struct write_ctx {
    px_req_t *req;
    json_t *body;
} write_ctx_t;

static void ignore(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)req, (void)res, (void)err, (void)ud;
}

static void write_committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    px_res_json(req, 201, json_pack("{s:b}", "committed", 1));
}

static void write_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    write_ctx_t *w = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    const char *agg = json_string_value(json_object_get(w->body, "aggregate"));
    const char *type = json_string_value(json_object_get(w->body, "type"));
    int count = (int)json_integer_value(json_object_get(w->body, "count"));
    char delay[32];
    snprintf(delay, sizeof(delay), "%lld",
             (long long)json_integer_value(json_object_get(w->body, "delay_ms")));
    const char *shape = json_string_value(json_object_get(w->body, "shape"));
    if (shape && !strcmp(shape, "task")) {
        /* plugins/task/store.c's sql_task_insert, without dependencies: the row, its
         * activity, and the Task's JSON back. */
        unsigned h = 5381;
        for (const char *c = agg; *c; c++)
            h = h * 33 + (unsigned char)*c;
        char project[16];
        snprintf(project, sizeof(project), "%u", 1 + h % 1000);
        const char *pt[] = {agg, project};
        px_pg_txn_query(txn, "evkit_task",
                        "WITH t AS (INSERT INTO evkit_tasks (id, project_id, title, description, "
                        "status, priority, rank, created_by) VALUES (gen_random_uuid(), "
                        "$2::bigint, $1, 'Something to do', 'todo', 'medium', gen_random_uuid()::text, "
                        "gen_random_uuid()) RETURNING *), "
                        "a AS (INSERT INTO evkit_activity (project_id, actor_id, action, entity, "
                        "entity_id, changes) SELECT t.project_id, t.created_by, 'created', "
                        "'task', t.id, jsonb_strip_nulls(jsonb_build_object('title', t.title, "
                        "'status', t.status, 'priority', t.priority)) FROM t) "
                        "SELECT to_jsonb(t)::text FROM t",
                        2, pt, ignore, NULL);
    } else {
        const char *p1[] = {agg};
        px_pg_txn_query(txn, NULL, "INSERT INTO evkit_writes (aggregate_id) VALUES ($1)", 1, p1,
                        ignore, NULL);
    }
    for (int i = 0; i < count; i++) {
        json_t *payload = json_pack("{s:i}", "seq", i);
        static const char *const flags[] = {"fail", "slow", "never_ack"};
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
            json_object_set_new(payload, flags[f],
                                json_boolean(json_is_true(json_object_get(w->body, flags[f]))));
        int rc = px_event_emit(txn, type ? type : "evkit.item.changed", agg, payload);
        if (rc) {
            px_pg_rollback(txn, NULL, NULL);
            px_res_error(req, 500, "internal", "emit failed", NULL);
            return;
        }
    }
    const char *p2[] = {delay};
    if (!json_is_true(json_object_get(w->body, "no_sleep")))
        px_pg_txn_query(txn, NULL, "SELECT pg_sleep($1::int / 1000.0)", 1, p2, ignore, NULL);
    px_pg_commit(txn, write_committed, NULL);
}

static int write_route(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    if (!json_is_string(json_object_get(body, "aggregate")))
        return px_res_error(req, 400, "validation_failed", "aggregate is required", NULL);
    write_ctx_t *w = px_req_alloc(req, sizeof(*w));
    w->req = req;
    w->body = body;
    rc = px_pg_begin(req, write_begun, w);
    return rc ? rc : PX_ASYNC;
}

static void misuse_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    json_t *out = json_object();
    json_object_set_new(out, "outside", json_integer(px_event_emit(NULL, "evkit.x", "a", json_object())));
    json_object_set_new(out, "bad_type", json_integer(px_event_emit(txn, "Bad Type", "a", NULL)));
    json_object_set_new(out, "no_aggregate", json_integer(px_event_emit(txn, "evkit.x", "", NULL)));
    json_object_set_new(out, "scalar_payload", json_integer(px_event_emit(txn, "evkit.x", "a", json_integer(1))));
    json_object_set_new(out, "subscribe_after_init",
                        json_integer(px_event_subscribe(self_plugin, "late", "*", NULL, NULL)));
    px_pg_rollback(txn, NULL, NULL);
    px_res_json(req, 200, out);
}

static int misuse(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = px_pg_begin(req, misuse_begun, NULL);
    return rc ? rc : PX_ASYNC;
}

static void seen_rows(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    json_t *rows = json_array();
    for (int i = 0; i < px_pg_rows(res); i++) {
        const char *seq = px_pg_value(res, i, 2);
        json_array_append_new(rows, json_pack("[I, s, o, i, s, s, s]",
                                              (json_int_t)strtoll(px_pg_value(res, i, 0), NULL, 10),
                                              px_pg_value(res, i, 1),
                                              seq ? json_integer(atoi(seq)) : json_null(),
                                              atoi(px_pg_value(res, i, 3)), px_pg_value(res, i, 4),
                                              px_pg_value(res, i, 5), px_pg_value(res, i, 6)));
    }
    px_res_json(req, 200, json_pack("{s:o}", "seen", rows));
}

static int seen(px_req_t *req, void *ud)
{
    (void)ud;
    const char *params[] = {group_name};
    int rc = px_pg_query(req, NULL,
                         "SELECT event_id, aggregate_id, seq, attempt, type, producer, "
                         "xid::text FROM evkit_seen WHERE group_name = $1 ORDER BY n",
                         1, params, seen_rows, NULL);
    return rc ? rc : PX_ASYNC;
}

static void acked_after(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                        void *ud)
{
    (void)task, (void)res;
    const px_event_t *ev = ud;
    if (err)
        px_event_retry(ev, 100, px_pg_error_message(err));
    else
        px_event_ack(ev);
}

static void retry_after(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                        void *ud)
{
    (void)task, (void)res, (void)err;
    px_event_retry(ud, 50, "evkit: told to fail once");
}

static void on_event(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)task, (void)ud;
    json_t *payload = px_event_payload(ev);
    if (json_is_true(json_object_get(payload, "fail"))) {
        px_event_retry(ev, 50, "evkit: told to fail");
        return;
    }
    char id[32], seq[16], attempt[16];
    snprintf(id, sizeof(id), "%lld", (long long)px_event_id(ev));
    snprintf(seq, sizeof(seq), "%lld", (long long)json_integer_value(json_object_get(payload, "seq")));
    snprintf(attempt, sizeof(attempt), "%d", px_event_attempt(ev));
    const char *params[] = {group_name, id, px_event_type(ev), px_event_aggregate(ev), seq,
                            attempt, px_event_producer(ev), px_event_time(ev)};
    px_pg_txn_query(txn, NULL,
                    "INSERT INTO evkit_seen (group_name, event_id, type, aggregate_id, seq, "
                    "attempt, producer, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    8, params, ignore, NULL);
    if (json_is_true(json_object_get(payload, "fail_once")) && px_event_attempt(ev) == 1) {
        px_pg_txn_query(txn, NULL, "SELECT 1", 0, NULL, retry_after, (void *)ev);
        return;
    }
    if (json_is_true(json_object_get(payload, "ack_broken"))) {
        px_pg_txn_query(txn, NULL, "SELECT 1 / 0", 0, NULL, NULL, NULL);
        px_event_ack(ev);
        return;
    }
    if (json_is_true(json_object_get(payload, "never_ack"))) {
        px_log(self_plugin, PX_LOG_INFO, "evkit: not acking event %s", id);
        return;
    }
    json_t *wait_lock = json_object_get(payload, "wait_lock");
    if (json_is_integer(wait_lock)) {
        char key[24];
        snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(wait_lock));
        px_log(self_plugin, PX_LOG_INFO, "evkit: event %s waits for lock %s", id, key);
        const char *p[] = {key};
        px_pg_txn_query(txn, NULL, "SELECT pg_advisory_xact_lock($1::bigint)", 1, p,
                        acked_after, (void *)ev);
        return;
    }
    if (json_is_true(json_object_get(payload, "slow")) && px_event_attempt(ev) == 1) {
        px_log(self_plugin, PX_LOG_INFO, "evkit: slow handler in pid %d", (int)getpid());
        px_pg_txn_query(txn, NULL, "SELECT pg_sleep(5)", 0, NULL, acked_after, (void *)ev);
        return;
    }
    px_pg_txn_query(txn, NULL, "SELECT 1", 0, NULL, acked_after, (void *)ev);
}

static int on_batch(px_req_t *task, px_pg_txn_t *txn, const px_event_t *const *events, size_t n,
                    void *ud)
{
    (void)task, (void)ud;
    char ids[4096];
    size_t len = 0;
    ids[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (json_is_true(json_object_get(px_event_payload(events[i]), "prepare_refuse")) &&
            px_event_attempt(events[i]) == 1)
            return PX_EINVAL;
        int w = snprintf(ids + len, sizeof(ids) - len, "%s%lld", i ? "," : "",
                         (long long)px_event_id(events[i]));
        if (w < 0 || (size_t)w >= sizeof(ids) - len - 1)
            return PX_EINVAL;
        len += (size_t)w;
    }
    ids[len++] = '}';
    ids[len] = '\0';
    const char *params[] = {group_name, ids};
    return px_pg_txn_query(txn, NULL,
                           "INSERT INTO evkit_prepared (group_name, ids) VALUES ($1, $2::bigint[])",
                           2, params, NULL, NULL);
}

static int evkit_init(px_plugin_t *self)
{
    self_plugin = self;
    px_config_declare(self, "group", "evkit");
    px_config_declare(self, "subscribe", "yes");
    px_config_declare(self, "batch", "0");
    px_config_declare(self, "prepare", "no");
    snprintf(group_name, sizeof(group_name), "%s", px_config_get(self, "group"));
    int rc = px_migrations(self, evkit_migrations);
    if (!rc && strcmp(px_config_get(self, "subscribe"), "no") != 0)
        rc = px_event_subscribe(self, group_name, "evkit.*", on_event, NULL);
    int batch = atoi(px_config_get(self, "batch"));
    if (!rc && batch)
        rc = px_event_batch(self, group_name, batch);
    if (!rc && !strcmp(px_config_get(self, "prepare"), "yes"))
        rc = px_event_prepare(self, group_name, on_batch, NULL);
    else if (!rc && !strcmp(px_config_get(self, "prepare"), "elsewhere"))
        rc = px_event_prepare(self, "evkit-elsewhere", on_batch, NULL);
    if (!rc)
        rc = px_route(self, "POST", "/v1/evkit/write", write_route, NULL);
    if (!rc)
        rc = px_route(self, "POST", "/v1/evkit/misuse", misuse, NULL);
    if (!rc)
        rc = px_route(self, "GET", "/v1/evkit/seen", seen, NULL);
    return rc;
}

PX_PLUGIN("evkit", "1.0.0", evkit_init, NULL, NULL);
