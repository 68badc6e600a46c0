/*
 * comments.c — GET/POST /v1/posts/{id}/comments and PUT/DELETE
 * /v1/posts/{id}/comments/{commentId}.
 *
 * A comment lives under a post: a post the caller cannot see hides its comments (404).
 * The comment's author edits it; its author, the post's author or an admin deletes it
 * (else 403). The post's commentCount moves in the statement that adds or removes the
 * comment. `@username` mentions are resolved to user ids when the body is written; a
 * create emits post.commented and, when someone was mentioned, comment.mentioned; a
 * delete emits comment.deleted (the hot score and counters of consumers go down).
 */
#include <stdio.h>
#include <string.h>

#include "content.h"

typedef struct comment_op {
    char post_id[37];
    char id[37];
    const char *body;
    bool remove;
    const char *comment_author, *post_author; /* of the locked comment */
    px_pg_txn_t *txn;
    int page, limit;
} comment_op_t;

static comment_op_t *op_new(px_req_t *req)
{
    comment_op_t *op = px_req_alloc(req, sizeof(*op));
    memset(op, 0, sizeof(*op));
    return op;
}

static int body_read(px_req_t *req, comment_op_t *op)
{
    json_t *body;
    int rc = px_req_json(req, &body);
    if (!rc)
        op->body = json_string_value(json_object_get(body, "body"));
    return rc;
}

/* ---- GET /v1/posts/{id}/comments ---- */

static int listed(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    comment_op_t *op = ud;
    int64_t visible = 0, total = 0;
    px_pg_int64(res, 0, 0, &visible);
    if (!visible)
        return px_res_error(req, 404, "not_found", "no such post", NULL);
    px_pg_int64(res, 0, 1, &total);
    json_t *items = json_array();
    for (int i = 0; i < px_pg_rows(res); i++) {
        const char *text = px_pg_value(res, i, 2);
        json_t *c = text ? json_loads(text, 0, NULL) : NULL;
        if (c)
            json_array_append_new(items, c);
    }
    return px_res_list(req, "comments", items, total, op->page, op->limit);
}

int comments_list(px_req_t *req, void *ud)
{
    (void)ud;
    comment_op_t *op = op_new(req);
    int rc = px_req_uuid(req, "id", op->post_id);
    if (!rc)
        rc = px_req_page(req, &op->page, &op->limit);
    if (rc)
        return rc;
    rc = store_comment_list(req, op->post_id, px_req_caller_id(req), op->page, op->limit,
                            listed, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- POST /v1/posts/{id}/comments ---- */

static int inserted(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    comment_op_t *op = ud;
    if (px_pg_rows(res) == 0)
        return px_res_error(req, 404, "not_found", "no such post", NULL);
    json_t *mentioned = json_loads(px_pg_value(res, 0, 4), 0, NULL);
    if (!json_is_array(mentioned)) {
        json_decref(mentioned);
        return PX_EINTERNAL;
    }
    const char *actor = px_req_caller_id(req), *title = px_pg_value(res, 0, 2);
    const char *excerpt = px_pg_value(res, 0, 3);
    int rc = px_event_emit(op->txn, "post.commented", op->post_id,
                           json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "postId", op->post_id,
                                     "authorId", px_pg_value(res, 0, 1), "title", title,
                                     "commentId", op->id, "excerpt", excerpt, "actorId",
                                     actor));
    if (!rc && json_array_size(mentioned))
        rc = px_event_emit(op->txn, "comment.mentioned", op->post_id,
                           json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:s}", "source",
                                     "post", "postId", op->post_id, "title", title,
                                     "commentId", op->id, "excerpt", excerpt,
                                     "mentionedUserIds", mentioned, "actorId", actor,
                                     "postStatus", px_pg_value(res, 0, 6)));
    json_decref(mentioned);
    if (rc)
        return rc;
    /* Parsed last: nothing above can fail with it held. */
    json_t *comment = json_loads(px_pg_value(res, 0, 0), 0, NULL);
    if (!comment)
        return PX_EINTERNAL;
    px_res_header(req, "Location",
                  px_req_printf(req, "/v1/posts/%s/comments/%s", op->post_id, op->id));
    px_res_header(req, "ETag", "\"1\"");
    return px_pg_commit_respond(op->txn, 201, comment);
}

static int create_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    comment_op_t *op = ud;
    op->txn = txn;
    return store_comment_insert(txn, op->post_id, op->id, px_req_caller_id(req), op->body,
                                inserted, op);
}

/* before_comment_create sees {postId, body} and may veto (PX_DONE: answered) or change
 * the body, which must still pass CommentRequest. */
static int comment_hook(px_req_t *req, comment_op_t *op)
{
    json_t *value = json_pack("{s:s, s:s}", "postId", op->post_id, "body", op->body);
    int rc = px_hook_run(req, "before_comment_create", &value);
    if (rc) {
        json_decref(value);
        return rc;
    }
    json_object_del(value, "postId");
    json_t *bad = NULL;
    rc = px_schema_check(content_plugin, "CommentRequest", value, &bad);
    if (rc == PX_EINVAL) {
        json_decref(value);
        px_res_error(req, 400, "validation_failed",
                     "the before_comment_create hook gave an invalid comment", bad);
        return PX_DONE;
    }
    if (!rc)
        op->body = px_req_strdup(req, json_string_value(json_object_get(value, "body")));
    json_decref(value);
    return rc;
}

int comments_create(px_req_t *req, void *ud)
{
    (void)ud;
    comment_op_t *op = op_new(req);
    int rc = px_req_uuid(req, "id", op->post_id);
    if (!rc)
        rc = body_read(req, op);
    if (!rc)
        rc = comment_hook(req, op);
    if (!rc)
        rc = px_uuid_new(op->id);
    if (rc)
        return rc;
    rc = px_pg_begin_run(req, PX_PG_IDEMPOTENT, create_begun, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- PUT and DELETE /v1/posts/{id}/comments/{commentId} ---- */

static int changed(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    comment_op_t *op = ud;
    if (op->remove) {
        json_t *payload = json_pack("{s:s, s:s, s:s, s:s, s:s}", "postId", op->post_id,
                                    "authorId", op->post_author, "commentId", op->id,
                                    "commentAuthorId", op->comment_author, "actorId",
                                    px_req_caller_id(req));
        int rc = px_event_emit(op->txn, "comment.deleted", op->post_id, payload);
        return rc ? rc : px_pg_commit(op->txn, content_committed_204, op);
    }
    json_t *comment = json_loads(px_pg_value(res, 0, 0), 0, NULL);
    if (!comment)
        return PX_EINTERNAL;
    px_res_header(req, "ETag", content_etag(req, px_pg_value(res, 0, 1)));
    return px_pg_commit_respond(op->txn, 200, comment);
}

static int locked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    comment_op_t *op = ud;
    if (px_pg_rows(res) == 0)
        return px_res_error(req, 404, "not_found", "no such comment", NULL);
    const char *me = px_req_caller_id(req);
    bool author = !strcmp(px_pg_value(res, 0, 0), me);
    bool allowed = op->remove ? author || !strcmp(px_pg_value(res, 0, 2), me) ||
                                    content_is_admin(req)
                              : author;
    if (!allowed)
        return px_res_error(req, 403, "forbidden",
                            op->remove ? "only the comment's author, the post's author or an "
                                         "admin may delete a comment"
                                       : "only the comment's author may edit it",
                            NULL);
    op->comment_author = px_req_strdup(req, px_pg_value(res, 0, 0));
    op->post_author = px_req_strdup(req, px_pg_value(res, 0, 2));
    int rc = px_req_if_match(req, px_pg_value(res, 0, 1));
    if (rc)
        return rc;
    return op->remove ? store_comment_delete(op->txn, op->id, changed, op)
                      : store_comment_update(op->txn, op->id, me, op->body, changed, op);
}

static int write_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    comment_op_t *op = ud;
    op->txn = txn;
    return store_comment_lock(txn, op->post_id, op->id, px_req_caller_id(req), locked, op);
}

static int write_start(px_req_t *req, bool remove)
{
    comment_op_t *op = op_new(req);
    op->remove = remove;
    int rc = px_req_uuid(req, "id", op->post_id);
    if (!rc)
        rc = px_req_uuid(req, "commentId", op->id);
    if (!rc && !remove)
        rc = body_read(req, op);
    if (rc)
        return rc;
    rc = px_pg_begin_run(req, 0, write_begun, op);
    return rc ? rc : PX_ASYNC;
}

int comments_update(px_req_t *req, void *ud)
{
    (void)ud;
    return write_start(req, false);
}

int comments_delete(px_req_t *req, void *ud)
{
    (void)ud;
    return write_start(req, true);
}
