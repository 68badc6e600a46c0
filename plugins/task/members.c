/*
 * members.c — GET/POST /v1/projects/{id}/members and PUT/DELETE
 * /v1/projects/{id}/members/{userId}.
 *
 * Members read the list; owners add, change roles and remove. The last owner can be
 * neither demoted nor removed (409): the gate locked the project row, so two owners
 * demoting each other at once are decided one after the other, and one of them stays.
 */
#include <stdio.h>
#include <string.h>

#include "task.h"

static int last_owner(task_op_t *op)
{
    return px_res_error(op->req, 409, "conflict", "a project keeps at least one owner", NULL);
}

static int not_member(task_op_t *op)
{
    return px_res_error(op->req, 404, "not_found", "no such member of this project", NULL);
}

/* ---- GET ---- */

const task_route_t members_list = {
    .scope = SCOPE_PROJECT, .need = ROLE_VIEWER, .paged = true, .then = op_list,
    .list = sql_member_list, .items = "members"};

/* ---- POST ---- */

static int added(task_op_t *op, const px_pg_result_t *res)
{
    int64_t users = 0;
    px_pg_int64(res, 0, 0, &users);
    if (!users)
        return px_res_error(op->req, 400, "validation_failed", "the request has invalid fields",
                            json_pack("{s:s}",
                                      json_object_get(op->body, "username") ? "username"
                                                                            : "userId",
                                      "no such user"));
    json_t *member = op_json(res, 0, 1);
    if (!member)
        return px_res_error(op->req, 409, "conflict",
                            "the user is already a member of this project", NULL);
    px_res_header(op->req, "Location",
                  px_req_printf(op->req, "/v1/projects/%s/members/%s", op->pid,
                                json_string_value(json_object_get(member, "userId"))));
    op_event(op, "project.member_added", op->pid,
             json_pack("{s:s, s:n, s:O, s:O}", "projectId", op->pid, "projectName", "userId",
                       json_object_get(member, "userId"), "role", json_object_get(member, "role")));
    return op_finish(op, 201, member);
}

/* Exactly one of userId and username names the user (the schema cannot say "one of"). */
static int add_gated(task_op_t *op)
{
    const char *id = json_string_value(json_object_get(op->body, "userId"));
    const char *name = json_string_value(json_object_get(op->body, "username"));
    if (!id == !name) {
        const char *why = id ? "give userId or username, not both" : "give userId or username";
        return px_res_error(op->req, 400, "validation_failed", "the request has invalid fields",
                            json_pack("{s:s}", "userId", why));
    }
    const char *values[] = {op->pid, id, json_string_value(json_object_get(op->body, "role")),
                            op->caller, name};
    return op_query(op, "member_add", sql_member_add, 5, values, added);
}

const task_route_t members_add = {.scope = SCOPE_PROJECT, .need = ROLE_OWNER, .lock = true,
                                  .idempotent = true, .body = true, .then = add_gated};

/* ---- PUT ---- */

static int role_changed(task_op_t *op, const px_pg_result_t *res)
{
    if (!px_pg_rows(res))
        return not_member(op);
    const char *old = px_pg_value(res, 0, 0);
    const char *want = json_string_value(json_object_get(op->body, "role"));
    int64_t owners = 0;
    px_pg_int64(res, 0, 1, &owners);
    if (!strcmp(old, "owner") && strcmp(want, "owner") && owners <= 1)
        return last_owner(op);
    json_t *member = op_json(res, 0, 2);
    if (!member)
        return PX_EINTERNAL;
    if (strcmp(old, want))
        op_event(op, "project.member_role_changed", op->pid,
                 json_pack("{s:s, s:s, s:s, s:s}", "projectId", op->pid, "userId", op->sub, "from",
                           old, "to", want));
    return op_finish(op, 200, member);
}

static int role_gated(task_op_t *op)
{
    const char *values[] = {op->pid, op->sub,
                            json_string_value(json_object_get(op->body, "role")), op->caller};
    return op_query(op, "member_role", sql_member_role, 4, values, role_changed);
}

const task_route_t members_update = {.scope = SCOPE_PROJECT, .need = ROLE_OWNER, .lock = true,
                                     .body = true, .sub = "userId", .then = role_gated};

/* ---- DELETE ---- */

static int removed(task_op_t *op, const px_pg_result_t *res)
{
    if (!px_pg_rows(res))
        return not_member(op);
    int64_t gone = 0;
    px_pg_int64(res, 0, 2, &gone);
    if (!gone)
        return last_owner(op);
    op_event(op, "project.member_removed", op->pid,
             json_pack("{s:s, s:n, s:s}", "projectId", op->pid, "projectName", "userId", op->sub));
    return op_finish(op, 204, NULL);
}

static int remove_gated(task_op_t *op)
{
    const char *values[] = {op->pid, op->sub, op->caller};
    return op_query(op, "member_remove", sql_member_remove, 3, values, removed);
}

const task_route_t members_remove = {.scope = SCOPE_PROJECT, .need = ROLE_OWNER, .lock = true,
                                     .sub = "userId", .then = remove_gated};
