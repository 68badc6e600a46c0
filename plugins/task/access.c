/*
 * access.c — the gate of every project-scoped route, and the small answer helpers.
 *
 * API.md: a non-member gets 404 for a project and everything in it (no existence leak);
 * a member whose role is too low gets 403; admins see and manage every project. The gate
 * opens the transaction the change will run in and reads the caller's role there; for a
 * write it locks the project row (FOR UPDATE), so every write of one project — the
 * last-owner check above all — is decided against a state nobody else changes meanwhile.
 * If-Match is checked against the version read under that lock, so 412 is exact.
 *
 * Every route runs through here the same way (op_route, with the route's task_route_t:
 * see task.h), so no handler repeats — or can forget — a step of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

/* What the op holds in jansson references goes when the request ends: answered, failed
 * (px_pg_run answered and no step runs), or left by its client. Each is set to NULL, so a
 * step that still runs after a client left sees nothing rather than freed memory. */
static void op_closed(px_req_t *req, int reason, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    (void)reason;
    json_decref(op->answer);
    json_decref(op->members);
    json_decref(op->events);
    json_decref(op->hooked);
    op->answer = op->members = op->events = op->hooked = NULL;
    op->body = NULL;
}

task_op_t *op_new(px_req_t *req)
{
    task_op_t *op = px_req_alloc(req, sizeof(*op));
    memset(op, 0, sizeof(*op));
    op->req = req;
    op->caller = px_req_caller_id(req);
    const char *role = px_req_caller_role(req);
    op->admin = role && !strcmp(role, "admin");
    px_req_on_close(req, op_closed, op);
    return op;
}

static int role_rank(const char *role)
{
    if (!role)
        return ROLE_NONE;
    if (!strcmp(role, "owner"))
        return ROLE_OWNER;
    if (!strcmp(role, "member"))
        return ROLE_MEMBER;
    return !strcmp(role, "viewer") ? ROLE_VIEWER : ROLE_NONE;
}

int op_commit(task_op_t *op, int status, json_t *body)
{
    if (op->txn)
        return px_pg_commit_respond(op->txn, status, body);
    return px_res_json(op->req, status, body);
}

static void committed_empty(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    /* The deletion left rows in task_blob_releases: drop those references now. */
    if (op->route && op->route->release)
        task_release_kick();
    px_res_send(req, 204, NULL, NULL, 0);
}

int op_commit_204(task_op_t *op)
{
    if (!op->txn) {
        committed_empty(op->req, NULL, op);
        return PX_OK;
    }
    return px_pg_commit(op->txn, committed_empty, op) ? PX_EINTERNAL : PX_OK;
}

/* Every query of an op comes back here, only with a result. One query of an op is in
 * flight at a time (a transaction runs them in order anyway). */
static int stepped(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    task_step_fn step = op->step;
    op->step = NULL;
    return step(op, res);
}

int op_query(task_op_t *op, const char *name, const char *sql, int n, const char *const *values,
             task_step_fn step)
{
    op->step = step;
    return op->txn ? px_pg_txn_run(op->txn, name, sql, n, values, stepped, op)
                   : px_pg_run(op->req, name, sql, n, values, stepped, op);
}

json_t *op_json(const px_pg_result_t *res, int row, int col)
{
    const char *text = px_pg_value(res, row, col);
    return text ? json_loads(text, 0, NULL) : NULL;
}

const char *op_int_text(task_op_t *op, int64_t v)
{
    return px_req_printf(op->req, "%lld", (long long)v);
}

const char *op_strdup(task_op_t *op, const char *s)
{
    return px_req_strdup(op->req, s);
}

const char *op_bool_text(bool v)
{
    return v ? "true" : "false";
}

int op_list(task_op_t *op)
{
    const char *ids[] = {op->pid, op->tid, op->aid};
    const char *values[] = {ids[op->route->scope], op_int_text(op, op->limit),
                            op_int_text(op, (int64_t)(op->page - 1) * op->limit)};
    return op_query(op, op->route->items, op->route->list, 3, values, op_answer_list);
}

int op_answer_list(task_op_t *op, const px_pg_result_t *res)
{
    json_t *arr = json_array();
    int64_t total = 0;
    for (int i = 0; i < px_pg_rows(res); i++) {
        json_t *item = op_json(res, i, 1);
        if (item)
            json_array_append_new(arr, item);
    }
    if (px_pg_rows(res) > 0)
        px_pg_int64(res, 0, 0, &total);
    return px_res_list(op->req, op->route->items, arr, total, op->page, op->limit);
}

int op_answer_versioned(task_op_t *op, const px_pg_result_t *res)
{
    json_t *doc = op_json(res, 0, 0);
    if (!doc)
        return PX_EINTERNAL;
    const char *etag = op_int_text(op, json_integer_value(json_object_get(doc, "version")));
    if (px_res_etag(op->req, etag) == PX_DONE) {
        json_decref(doc);
        return PX_DONE;
    }
    return op_finish(op, 200, doc);
}

static int gated(task_op_t *op, const px_pg_result_t *res)
{
    op->role = px_pg_rows(res) ? op_strdup(op, px_pg_value(res, 0, 1)) : NULL;
    if (!px_pg_rows(res) || (!op->role && !op->admin)) {
        static const char *const what[] = {"no such project", "no such task",
                                           "no such attachment"};
        return px_res_error(op->req, 404, "not_found", what[op->route->scope], NULL);
    }
    px_pg_int64(res, 0, 0, &op->version);
    int scope = op->route->scope;
    if (scope != SCOPE_PROJECT) {
        snprintf(op->pid, sizeof(op->pid), "%s", px_pg_value(res, 0, 2));
        op->status = op_strdup(op, px_pg_value(res, 0, 3));
        op->priority = op_strdup(op, px_pg_value(res, 0, 4));
    }
    if (scope == SCOPE_ATTACHMENT) {
        snprintf(op->tid, sizeof(op->tid), "%s", px_pg_value(res, 0, 5));
        op->blob = op_strdup(op, px_pg_value(res, 0, 6));
        op->uploader = op_strdup(op, px_pg_value(res, 0, 7));
        op->filename = op_strdup(op, px_pg_value(res, 0, 8));
    }
    int have = op->admin ? ROLE_OWNER : role_rank(op->role);
    if (have < op->route->need)
        return px_res_error(op->req, 403, "forbidden",
                            op->route->need == ROLE_OWNER
                                ? "only an owner of the project may do this"
                                : "viewers may only read this project",
                            NULL);
    if (op->route->if_match && px_req_if_match(op->req, op_int_text(op, op->version)))
        return px_res_code(op->req, PX_EPRECONDITION,
                           scope == SCOPE_PROJECT ? "the project changed since you read it"
                                                  : "the task changed since you read it");
    op->passed = true;
    return op->route->then ? op->route->then(op) : PX_OK;
}

/* A write's first statement locks the users it will name (store.c, sql_lock_users): the
 * caller (author, uploader, member) and whoever the body names as assignee or new member.
 * A name that is not a UUID is left to the route's own validation. */
static int lock_named_users(task_op_t *op)
{
    static const char *const named[] = {"assigneeId", "userId"};
    char ids[3][37], array[3 * 38 + 3];
    int n = 0;
    if (op->caller && !px_uuid_parse(op->caller, ids[n]))
        n++;
    for (size_t i = 0; op->body && i < sizeof(named) / sizeof(named[0]); i++) {
        const char *id = json_string_value(json_object_get(op->body, named[i]));
        if (id && !px_uuid_parse(id, ids[n]))
            n++;
    }
    if (n == 0)
        return PX_OK;
    size_t len = 0;
    array[len++] = '{';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(array + len, sizeof(array) - len, "%s%s", i ? "," : "", ids[i]);
    snprintf(array + len, sizeof(array) - len, "}");
    const char *values[] = {op_strdup(op, array)};
    return px_pg_txn_query(op->txn, "lock_users", sql_lock_users, 1, values, NULL, NULL);
}

static int began(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    op->txn = txn;
    /* Only writes open a transaction: once one committed, no worker of the host answers
     * a list from memory before asking PostgreSQL again (generation.c). */
    if (txn && (generation_on_commit(txn) || lock_named_users(op)))
        return PX_EINTERNAL;
    if (op->route->scope == SCOPE_NONE)
        return op->route->then(op);
    static const char *const names[3][2] = {{"gate_read", "gate_write"},
                                            {"gate_task_read", "gate_task_write"},
                                            {"gate_attachment_read", "gate_attachment_write"}};
    static const char *const sql[3][2] = {{sql_gate_read, sql_gate_write},
                                          {sql_gate_task_read, sql_gate_task_write},
                                          {sql_gate_attachment_read, sql_gate_attachment_write}};
    int scope = op->route->scope, lock = op->route->lock;
    const char *ids[] = {op->pid, op->tid, op->aid};
    const char *values[] = {ids[scope], op->caller};
    int rc = op_query(op, names[scope][lock], sql[scope][lock], 2, values, gated);
    return rc || !op->route->ahead ? rc : op->route->ahead(op);
}

int op_prepare(px_req_t *req, const task_route_t *route, task_op_t **out)
{
    task_op_t *op = op_new(req);
    op->route = route;
    char *ids[] = {op->pid, op->tid, op->aid};
    int rc = route->scope == SCOPE_NONE ? 0 : px_req_uuid(req, "id", ids[route->scope]);
    if (!rc && route->sub)
        rc = px_req_uuid(req, route->sub, op->sub);
    if (!rc && route->paged)
        rc = px_req_page(req, &op->page, &op->limit);
    if (!rc && route->body)
        rc = px_req_json(req, &op->body);
    *out = op;
    return rc;
}

/* A read runs without a transaction: at READ COMMITTED each statement of one would see
 * its own snapshot anyway, so BEGIN and COMMIT would only add two round trips (and hold a
 * pooled connection between them) without making the read more consistent. The gate's
 * check and the read are still two statements, as they were. */
int op_gate(task_op_t *op)
{
    const task_route_t *route = op->route;
    int rc = !route->lock && !route->idempotent && route->scope != SCOPE_NONE
                 ? began(op->req, NULL, op)
                 : px_pg_begin_run(op->req, route->idempotent ? PX_PG_IDEMPOTENT : 0, began, op);
    return rc ? rc : PX_ASYNC;
}

int op_route(px_req_t *req, void *ud)
{
    const task_route_t *route = ud;
    if (route->handler)
        return route->handler(req, route);
    task_op_t *op;
    int rc = op_prepare(req, route, &op);
    return rc ? rc : op_gate(op);
}
