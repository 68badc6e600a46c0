/*
 * activity.c — GET /v1/projects/{id}/activity: the project's feed, newest first. The rows
 * are written by the statements that make the changes (store.c), in their transaction.
 */
#include "task.h"

static void listed(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    (void)req;
    if (err) {
        op_pg_fail(ud, err);
        return;
    }
    op_answer_list(ud, res, "activity");
}

static void gated(task_op_t *op)
{
    const char *values[] = {op->pid, op_int_text(op, op->limit),
                            op_int_text(op, (int64_t)(op->page - 1) * op->limit)};
    op_query(op, "activity_list", sql_activity_list, 3, values, listed);
}

int activity_list(px_req_t *req, void *ud)
{
    (void)ud;
    task_op_t *op = op_new(req);
    int rc = px_req_page(req, &op->page, &op->limit);
    if (rc)
        return rc;
    op->need = ROLE_VIEWER;
    op->then = gated;
    return op_gate(op, "id");
}
