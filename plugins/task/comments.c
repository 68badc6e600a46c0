/*
 * comments.c — GET/POST /v1/tasks/{id}/comments and PUT/DELETE
 * /v1/tasks/{id}/comments/{commentId}.
 *
 * Members read, members and owners comment (viewers 403), the author edits, and the
 * author, an owner of the project or an admin deletes (others 403). `@username` of a
 * member of the project is a mention (task_mentions in SQL, at write time: a name that is
 * no member mentions nobody). A comment emits task.commented and, when it mentions
 * someone, comment.mentioned.
 */
#include <stdio.h>
#include <string.h>

#include "task.h"

#define EXCERPT_CHARS 200

/* The first EXCERPT_CHARS characters (code points) of `text`. New reference. */
static json_t *excerpt(const char *text)
{
    size_t i = 0, chars = 0;
    while (text[i] && chars < EXCERPT_CHARS) {
        i++;
        while ((text[i] & 0xC0) == 0x80)
            i++;
        chars++;
    }
    return json_stringn(text, i);
}

/* ---- GET ---- */

const task_route_t comments_list = {
    .scope = SCOPE_TASK, .need = ROLE_VIEWER, .paged = true, .then = op_list,
    .list = sql_comment_list, .items = "comments"};

/* ---- POST ---- */

static int created(task_op_t *op, const px_pg_result_t *res)
{
    json_t *comment = op_json(res, 0, 0);
    if (!comment)
        return PX_EINTERNAL;
    const char *cid = json_string_value(json_object_get(comment, "id"));
    px_res_header(op->req, "Location",
                  px_req_printf(op->req, "/v1/tasks/%s/comments/%s", op->tid, cid));
    const char *title = px_pg_value(res, 0, 1);
    json_t *ex = excerpt(json_string_value(json_object_get(comment, "body")));
    op_event(op, "task.commented", op->tid,
             json_pack("{s:s, s:s, s:s?, s:s, s:O}", "projectId", op->pid, "taskId", op->tid,
                       "title", title, "commentId", cid, "excerpt", ex));
    json_t *mentions = json_object_get(comment, "mentions");
    if (json_array_size(mentions))
        op_event(op, "comment.mentioned", op->tid,
                 json_pack("{s:s, s:s, s:s, s:s?, s:s, s:O, s:O}", "source", "task", "projectId",
                           op->pid, "taskId", op->tid, "title", title, "commentId", cid,
                           "excerpt", ex, "mentionedUserIds", mentions));
    json_decref(ex);
    return op_finish(op, 201, comment);
}

static int create_gated(task_op_t *op)
{
    const char *values[] = {op->pid, op->tid,
                            json_string_value(json_object_get(op->body, "body")), op->caller};
    return op_query(op, "comment_insert", sql_comment_insert, 4, values, created);
}

const task_route_t comments_create = {.scope = SCOPE_TASK, .need = ROLE_MEMBER, .lock = true,
                                      .idempotent = true, .body = true, .then = create_gated};

/* ---- PUT and DELETE: the comment, locked, then who may ---- */

static int changed(task_op_t *op, const px_pg_result_t *res)
{
    return op->route->body ? op_answer_versioned(op, res) : op_finish(op, 204, NULL);
}

static int locked(task_op_t *op, const px_pg_result_t *res)
{
    if (!px_pg_rows(res))
        return px_res_error(op->req, 404, "not_found", "no such comment", NULL);
    const char *author = px_pg_value(res, 0, 0);
    bool mine = author && op->caller && !strcmp(author, op->caller);
    bool owner = op->role && !strcmp(op->role, "owner");
    if (op->route->body ? !mine : !(mine || owner || op->admin))
        return px_res_error(op->req, 403, "forbidden",
                            op->route->body ? "only the author may edit a comment"
                                            : "only the author, an owner of the project or an "
                                              "admin may delete a comment",
                            NULL);
    if (px_req_if_match(op->req, px_pg_value(res, 0, 1)))
        return px_res_code(op->req, PX_EPRECONDITION, "the comment changed since you read it");
    if (op->route->body) {
        const char *values[] = {op->pid, op->sub,
                                json_string_value(json_object_get(op->body, "body")),
                                op->caller};
        return op_query(op, "comment_update", sql_comment_update, 4, values, changed);
    }
    const char *values[] = {op->pid, op->sub, op->caller};
    return op_query(op, "comment_delete", sql_comment_delete, 3, values, changed);
}

static int change_gated(task_op_t *op)
{
    const char *values[] = {op->sub, op->tid};
    return op_query(op, "comment_lock", sql_comment_lock, 2, values, locked);
}

/* Viewers may not edit (403); whether the comment is theirs is decided after. */
const task_route_t comments_update = {.scope = SCOPE_TASK, .need = ROLE_MEMBER, .lock = true,
                                      .body = true, .sub = "commentId", .then = change_gated};
/* Any role passes the gate (a viewer may delete what they wrote as a member); who may is
 * decided after: the author, an owner, an admin. */
const task_route_t comments_delete = {.scope = SCOPE_TASK, .need = ROLE_VIEWER, .lock = true,
                                      .sub = "commentId", .then = change_gated};
