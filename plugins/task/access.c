/*
 * access.c — the gate of every project-scoped route, and the small answer helpers.
 *
 * API.md: a non-member gets 404 for a project and everything in it (no existence leak);
 * a member whose role is too low gets 403; admins see and manage every project. The gate
 * opens the transaction the change will run in and reads the caller's role there; for a
 * write it locks the project row (FOR UPDATE), so every write of one project — the
 * last-owner check above all — is decided against a state nobody else changes meanwhile.
 * If-Match is checked against the version read under that lock, so 412 is exact.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

task_op_t *op_new(px_req_t *req)
{
    task_op_t *op = px_req_alloc(req, sizeof(*op));
    memset(op, 0, sizeof(*op));
    op->req = req;
    op->caller = px_req_caller_id(req);
    const char *role = px_req_caller_role(req);
    op->admin = role && !strcmp(role, "admin");
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

void op_pg_fail(task_op_t *op, const px_pg_error_t *err)
{
    px_res_pg_error(op->req, err);
}

void op_commit(task_op_t *op, int status, json_t *body)
{
    px_pg_commit_respond(op->txn, status, body);
}

static void committed_empty(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    /* The deletion left rows in task_blob_releases: drop those references now. */
    if (op->release)
        task_release_kick();
    px_res_send(req, 204, NULL, NULL, 0);
}

void op_commit_204(task_op_t *op)
{
    if (px_pg_commit(op->txn, committed_empty, op))
        px_res_code(op->req, PX_EINTERNAL, NULL);
}

void op_query(task_op_t *op, const char *name, const char *sql, int n, const char *const *values,
              px_pg_fn cb)
{
    if (px_pg_txn_query(op->txn, name, sql, n, values, cb, op))
        px_res_code(op->req, PX_EINTERNAL, NULL);
}

json_t *op_json(const px_pg_result_t *res, int row, int col)
{
    const char *text = px_pg_value(res, row, col);
    return text ? json_loads(text, 0, NULL) : NULL;
}

const char *op_int_text(task_op_t *op, int64_t v)
{
    char *s = px_req_alloc(op->req, 24);
    snprintf(s, 24, "%lld", (long long)v);
    return s;
}

const char *op_strdup(task_op_t *op, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *copy = px_req_alloc(op->req, n);
    memcpy(copy, s, n);
    return copy;
}

const char *op_bool_text(bool v)
{
    return v ? "true" : "false";
}

void op_answer_list(task_op_t *op, const px_pg_result_t *res, const char *items)
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
    px_res_list(op->req, items, arr, total, op->page, op->limit);
}

void op_answer_versioned(task_op_t *op, const px_pg_result_t *res)
{
    json_t *doc = op_json(res, 0, 0);
    if (!doc) {
        px_res_code(op->req, PX_EINTERNAL, NULL);
        return;
    }
    const char *etag = op_int_text(op, json_integer_value(json_object_get(doc, "version")));
    if (px_res_etag(op->req, etag) == PX_DONE) {
        json_decref(doc);
        return;
    }
    op_finish(op, 200, doc);
}

static void gated(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    if (err) {
        op_pg_fail(op, err);
        return;
    }
    op->role = px_pg_rows(res) ? op_strdup(op, px_pg_value(res, 0, 1)) : NULL;
    if (!px_pg_rows(res) || (!op->role && !op->admin)) {
        px_res_error(op->req, 404, "not_found",
                     op->by_attachment ? "no such attachment"
                     : op->by_task     ? "no such task"
                                       : "no such project",
                     NULL);
        return;
    }
    px_pg_int64(res, 0, 0, &op->version);
    if (op->by_task || op->by_attachment) {
        snprintf(op->pid, sizeof(op->pid), "%s", px_pg_value(res, 0, 2));
        op->status = op_strdup(op, px_pg_value(res, 0, 3));
        op->priority = op_strdup(op, px_pg_value(res, 0, 4));
    }
    if (op->by_attachment) {
        snprintf(op->tid, sizeof(op->tid), "%s", px_pg_value(res, 0, 5));
        op->blob = op_strdup(op, px_pg_value(res, 0, 6));
        op->uploader = op_strdup(op, px_pg_value(res, 0, 7));
        op->filename = op_strdup(op, px_pg_value(res, 0, 8));
    }
    int have = op->admin ? ROLE_OWNER : role_rank(op->role);
    if (have < op->need) {
        px_res_error(op->req, 403, "forbidden",
                     op->need == ROLE_OWNER ? "only an owner of the project may do this"
                                            : "viewers may only read this project",
                     NULL);
        return;
    }
    op->then(op);
}

static void began(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    if (err) {
        op_pg_fail(op, err);
        return;
    }
    op->txn = txn;
    static const char *const names[3][2] = {{"gate_read", "gate_write"},
                                            {"gate_task_read", "gate_task_write"},
                                            {"gate_attachment_read", "gate_attachment_write"}};
    static const char *const sql[3][2] = {{sql_gate_read, sql_gate_write},
                                          {sql_gate_task_read, sql_gate_task_write},
                                          {sql_gate_attachment_read, sql_gate_attachment_write}};
    int kind = op->by_attachment ? 2 : op->by_task ? 1 : 0;
    const char *values[] = {kind == 2 ? op->aid : kind == 1 ? op->tid : op->pid, op->caller};
    op_query(op, names[kind][op->lock], sql[kind][op->lock], 2, values, gated);
}

int op_gate(task_op_t *op, const char *param)
{
    int rc = px_req_uuid(op->req, param,
                         op->by_attachment ? op->aid : op->by_task ? op->tid : op->pid);
    if (rc)
        return rc;
    rc = op->idempotent ? px_pg_begin_idempotent(op->req, began, op)
                        : px_pg_begin(op->req, began, op);
    return rc ? rc : PX_ASYNC;
}
