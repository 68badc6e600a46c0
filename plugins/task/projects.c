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

/* No gate: the list is of the caller's projects (an admin's: all). */
static int list_handler(px_req_t *req, const task_route_t *route)
{
    task_op_t *op = op_new(req);
    op->route = route;
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
    rc = op_query(op, "project_list", sql_project_list, 6, values, op_answer_list);
    return rc ? rc : PX_ASYNC;
}

const task_route_t projects_list = {.items = "projects", .handler = list_handler};

/* ---- POST /v1/projects ---- */

static int created(task_op_t *op, const px_pg_result_t *res)
{
    json_t *project = op_json(res, 0, 0);
    if (!project)
        return PX_EINTERNAL;
    px_res_header(op->req, "Location", px_req_printf(op->req, "/v1/projects/%s", str(project, "id")));
    op_event(op, "project.created", str(project, "id"),
             json_pack("{s:O, s:O, s:O}", "projectId", json_object_get(project, "id"), "name",
                       json_object_get(project, "name"), "ownerId",
                       json_object_get(project, "ownerId")));
    snprintf(op->pid, sizeof(op->pid), "%s", str(project, "id"));
    return op_finish(op, 201, project);
}

static int create_begun(task_op_t *op)
{
    const char *values[] = {str(op->body, "name"), str(op->body, "description"),
                            str(op->body, "status"), op->caller};
    return op_query(op, "project_insert", sql_project_insert, 4, values, created);
}

/* No gate: there is no project yet; the caller becomes its owner. */
const task_route_t projects_create = {.scope = SCOPE_NONE, .idempotent = true, .body = true,
                                      .then = create_begun};

/* ---- GET /v1/projects/{id} ---- */

static int get_gated(task_op_t *op)
{
    const char *values[] = {op->pid, op->role};
    return op_query(op, "project_get", sql_project_get, 2, values, op_answer_versioned);
}

const task_route_t projects_get = {
    .scope = SCOPE_PROJECT, .need = ROLE_VIEWER, .then = get_gated};

/* ---- PUT /v1/projects/{id} ---- */

static int updated(task_op_t *op, const px_pg_result_t *res)
{
    json_t *changes = op_json(res, 0, 1);
    if (changes && json_object_size(changes))
        op_event(op, "project.updated", op->pid,
                 json_pack("{s:s, s:O}", "projectId", op->pid, "changes", changes));
    json_decref(changes);
    return op_answer_versioned(op, res);
}

static int update_gated(task_op_t *op)
{
    json_t *desc = json_object_get(op->body, "description");
    const char *values[] = {op->pid,
                            str(op->body, "name"),
                            json_string_value(desc),
                            str(op->body, "status"),
                            op_bool_text(desc != NULL),
                            op->caller,
                            op->role};
    return op_query(op, "project_update", sql_project_update, 7, values, updated);
}

const task_route_t projects_update = {.scope = SCOPE_PROJECT, .need = ROLE_OWNER, .lock = true,
                                      .body = true, .if_match = true, .then = update_gated};

/* ---- DELETE /v1/projects/{id} ---- */

static int deleted(task_op_t *op, const px_pg_result_t *res)
{
    json_t *members = op_json(res, 0, 1);
    op_event(op, "project.deleted", op->pid,
             json_pack("{s:s, s:s?, s:o}", "projectId", op->pid, "name", px_pg_value(res, 0, 0),
                       "members", members ? members : json_array()));
    return op_finish(op, 204, NULL);
}

static int delete_gated(task_op_t *op)
{
    const char *values[] = {op->pid};
    return op_query(op, "project_delete", sql_project_delete, 1, values, deleted);
}

/* Its tasks, comments and attachments go with it (ON DELETE CASCADE; the blob
 * references by release.c). */
const task_route_t projects_delete = {.scope = SCOPE_PROJECT, .need = ROLE_OWNER, .lock = true,
                                      .if_match = true, .release = true, .then = delete_gated};
