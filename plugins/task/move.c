/*
 * move.c — POST /v1/tasks/{id}/move {status?, before?, after?}: board drag and drop.
 *
 * The task goes into the column of `status` (default: its own), just above `before`, just
 * below `after`, between the two when both are given, or at the end of the column. Its
 * new rank is a key strictly between its new neighbours' (rank.c): no other task is
 * renumbered. When that key would be longer than rank_max_length the column is first
 * rebalanced — every key rewritten, evenly spaced and short, in this same transaction —
 * and the neighbours are read again. The gate holds the project row lock, so neighbours
 * cannot change between the read and the write.
 */
#include <stdio.h>
#include <string.h>

#include "task.h"

#define RANK_CAP 300

int64_t task_rank_max = 32;

static const char *str(const json_t *body, const char *key)
{
    return json_string_value(json_object_get(body, key));
}

static int move_check(task_op_t *op);

static int rebalanced(task_op_t *op, const px_pg_result_t *res)
{
    (void)res;
    return move_check(op);
}

static int invalid(task_op_t *op, const char *field, const char *why)
{
    int rc = px_res_error(op->req, 400, "validation_failed", "the request has invalid fields",
                          json_pack("{s:s}", field, why));
    return rc ? rc : PX_DONE;
}

/* A neighbour named in the body must be another task of the target column: 0, or
 * answered (PX_DONE or a code to return). */
static int neighbour_check(task_op_t *op, const char *field, const char *status,
                           const char *want)
{
    if (!str(op->body, field))
        return 0;
    const char *why = !status ? "must be another task of this project"
                      : strcmp(status, want) ? "must be a task of the target status"
                                             : NULL;
    return why ? invalid(op, field, why) : 0;
}

static int checked(task_op_t *op, const px_pg_result_t *res)
{
    const char *target = str(op->body, "status") ? str(op->body, "status") : op->status;
    int rc = neighbour_check(op, "before", px_pg_value(res, 0, 0), target);
    if (!rc)
        rc = neighbour_check(op, "after", px_pg_value(res, 0, 3), target);
    if (rc)
        return rc;
    const char *open = px_pg_value(res, 0, 7);
    if (!strcmp(target, "done") && strcmp(op->status, "done") && open)
        return px_res_error(
            op->req, 409, "conflict",
            px_req_printf(op->req, "the task depends on tasks that are not done: %.978s", open),
            NULL);
    const char *lo, *hi;
    if (str(op->body, "before") && str(op->body, "after")) {
        lo = px_pg_value(res, 0, 4);
        hi = px_pg_value(res, 0, 1);
        if (strcmp(lo, hi) >= 0)
            return invalid(op, "after", "must be above `before` in the column");
    } else if (str(op->body, "before")) {
        lo = px_pg_value(res, 0, 2);
        hi = px_pg_value(res, 0, 1);
    } else if (str(op->body, "after")) {
        lo = px_pg_value(res, 0, 4);
        hi = px_pg_value(res, 0, 5);
    } else {
        lo = px_pg_value(res, 0, 6);
        hi = NULL;
    }
    char *rank = px_req_alloc(op->req, RANK_CAP);
    rc = rank_between(lo, hi, rank, RANK_CAP);
    if (rc == PX_EINVAL)
        return px_res_code(op->req, PX_EINTERNAL, "the board order of this column is damaged");
    if (rc || (int64_t)strlen(rank) > task_rank_max) {
        if (op->rebalanced)
            return px_res_code(op->req, PX_EINTERNAL, "the column could not be rebalanced");
        op->rebalanced = true;
        const char *values[] = {op->pid, target, op->tid};
        return op_query(op, "rank_rebalance", sql_rank_rebalance, 3, values, rebalanced);
    }
    const char *values[] = {op->tid, target, rank, op->caller};
    return op_query(op, "task_move", sql_task_move, 4, values, task_changed);
}

/* The neighbours again, after a rebalance (the gate has passed: op->step's order). */
static int move_check(task_op_t *op)
{
    const char *values[] = {op->tid, str(op->body, "status"), str(op->body, "before"),
                            str(op->body, "after")};
    return op_query(op, "move_check", sql_move_check, 4, values, checked);
}

static int checked_ahead(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    task_op_t *op = ud;
    (void)req;
    return op->passed ? checked(op, res) : PX_DONE;
}

/* The neighbours, sent behind the gate (task_route_t.ahead): the check reads under the
 * lock the gate takes, and the move waits one round trip less while holding it. */
static int move_ahead(task_op_t *op)
{
    const char *values[] = {op->tid, str(op->body, "status"), str(op->body, "before"),
                            str(op->body, "after")};
    return px_pg_txn_run(op->txn, "move_check", sql_move_check, 4, values, checked_ahead, op);
}

const task_route_t tasks_move = {.scope = SCOPE_TASK, .need = ROLE_MEMBER, .lock = true,
                                 .body = true, .if_match = true, .ahead = move_ahead};
