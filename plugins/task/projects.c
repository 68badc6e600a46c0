/*
 * projects.c — GET/POST /v1/projects and GET/PUT/DELETE /v1/projects/{id}.
 *
 * The list is one statement (the caller's memberships, or every project for an admin);
 * the rest go through the gate (access.c): members read, owners write and delete.
 */
#include <stdio.h>
#include <string.h>

#include "task.h"

static const char *str(const json_t *body, const char *key)
{
    return json_string_value(json_object_get(body, key));
}

/* ---- GET /v1/projects ---- */

static void listed(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)req;
    if (err) {
        op_pg_fail(ud, err);
        return;
    }
    op_answer_list(ud, res, "projects");
}

int projects_list(px_req_t *req, void *ud)
{
    (void)ud;
    task_op_t *op = op_new(req);
    int rc = px_req_page(req, &op->page, &op->limit);
    if (rc)
        return rc;
    const char *q = px_req_query(req, "q");
    const char *values[] = {op->caller,
                            op_bool_text(op->admin),
                            px_req_query(req, "status"),
                            q && *q ? q : NULL,
                            op_int_text(op, op->limit),
                            op_int_text(op, (int64_t)(op->page - 1) * op->limit)};
    rc = px_pg_query(req, "project_list", sql_project_list, 6, values, listed, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- POST /v1/projects ---- */

static void created(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    if (err) {
        op_pg_fail(op, err);
        return;
    }
    json_t *project = op_json(res, 0, 0);
    if (!project) {
        px_res_code(req, PX_EINTERNAL, NULL);
        return;
    }
    char location[64];
    snprintf(location, sizeof(location), "/v1/projects/%s", str(project, "id"));
    px_res_header(req, "Location", location);
    op_event(op, "project.created", str(project, "id"),
             json_pack("{s:O, s:O, s:O}", "projectId", json_object_get(project, "id"), "name",
                       json_object_get(project, "name"), "ownerId",
                       json_object_get(project, "ownerId")));
    snprintf(op->pid, sizeof(op->pid), "%s", str(project, "id"));
    op_finish(op, 201, project);
}

static void create_begun(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    if (err) {
        op_pg_fail(op, err);
        return;
    }
    op->txn = txn;
    const char *values[] = {str(op->body, "name"), str(op->body, "description"),
                            str(op->body, "status"), op->caller};
    op_query(op, "project_insert", sql_project_insert, 4, values, created);
}

int projects_create(px_req_t *req, void *ud)
{
    (void)ud;
    task_op_t *op = op_new(req);
    int rc = px_req_json(req, &op->body);
    if (rc)
        return rc;
    rc = px_pg_begin_idempotent(req, create_begun, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- GET /v1/projects/{id} ---- */

static void got(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)req;
    if (err) {
        op_pg_fail(ud, err);
        return;
    }
    op_answer_versioned(ud, res);
}

static void get_gated(task_op_t *op)
{
    const char *values[] = {op->pid, op->role};
    op_query(op, "project_get", sql_project_get, 2, values, got);
}

int projects_get(px_req_t *req, void *ud)
{
    (void)ud;
    task_op_t *op = op_new(req);
    op->need = ROLE_VIEWER;
    op->then = get_gated;
    return op_gate(op, "id");
}

/* ---- PUT /v1/projects/{id} ---- */

static void updated(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    if (err) {
        op_pg_fail(op, err);
        return;
    }
    json_t *changes = op_json(res, 0, 1);
    if (changes && json_object_size(changes))
        op_event(op, "project.updated", op->pid,
                 json_pack("{s:s, s:O}", "projectId", op->pid, "changes", changes));
    json_decref(changes);
    op_answer_versioned(op, res);
}

static void update_gated(task_op_t *op)
{
    int rc = px_req_if_match(op->req, op_int_text(op, op->version));
    if (rc) {
        px_res_code(op->req, rc, "the project changed since you read it");
        return;
    }
    json_t *desc = json_object_get(op->body, "description");
    const char *values[] = {op->pid,
                            str(op->body, "name"),
                            json_string_value(desc),
                            str(op->body, "status"),
                            op_bool_text(desc != NULL),
                            op->caller,
                            op->role};
    op_query(op, "project_update", sql_project_update, 7, values, updated);
}

int projects_update(px_req_t *req, void *ud)
{
    (void)ud;
    task_op_t *op = op_new(req);
    int rc = px_req_json(req, &op->body);
    if (rc)
        return rc;
    op->need = ROLE_OWNER;
    op->lock = true;
    op->then = update_gated;
    return op_gate(op, "id");
}

/* ---- DELETE /v1/projects/{id} ---- */

static void deleted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    if (err) {
        op_pg_fail(op, err);
        return;
    }
    json_t *members = op_json(res, 0, 1);
    op_event(op, "project.deleted", op->pid,
             json_pack("{s:s, s:s?, s:o}", "projectId", op->pid, "name", px_pg_value(res, 0, 0),
                       "members", members ? members : json_array()));
    op_finish(op, 204, NULL);
}

static void delete_gated(task_op_t *op)
{
    int rc = px_req_if_match(op->req, op_int_text(op, op->version));
    if (rc) {
        px_res_code(op->req, rc, "the project changed since you read it");
        return;
    }
    const char *values[] = {op->pid};
    op_query(op, "project_delete", sql_project_delete, 1, values, deleted);
}

int projects_delete(px_req_t *req, void *ud)
{
    (void)ud;
    task_op_t *op = op_new(req);
    op->need = ROLE_OWNER;
    op->lock = true;
    op->then = delete_gated;
    op->release = true; /* its attachments go with it */
    return op_gate(op, "id");
}
