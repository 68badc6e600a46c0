/*
 * tasks.c — GET/POST /v1/projects/{id}/tasks and GET/PUT/DELETE /v1/tasks/{id}.
 *
 * Members and owners write, viewers read (403 on writes), non-members get 404. A create
 * or update first runs sql_task_check under the project row lock the gate took: the new
 * dependencies must be tasks of the project (400), must not close a cycle (409, decided
 * one request at a time per project, so two clients adding A->B and B->A cannot both
 * win), and a task may not become done while one of them is open (409 naming them). The
 * assignee must be a member (400). A task entering a status column goes to its end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

#define RANK_CAP 300

static const char *str(const json_t *body, const char *key)
{
    return json_string_value(json_object_get(body, key));
}

static int invalid(task_op_t *op, const char *field, const char *why)
{
    return px_res_error(op->req, 400, "validation_failed", "the request has invalid fields",
                        json_pack("{s:s}", field, why));
}

/* The body's dependsOn as JSON text (request memory), or NULL when absent. */
static const char *deps_text(task_op_t *op)
{
    json_t *deps = json_object_get(op->body, "dependsOn");
    if (!deps)
        return NULL;
    char *text = json_dumps(deps, JSON_COMPACT);
    const char *copy = op_strdup(op, text);
    free(text);
    return copy;
}

/* Answered, for a verdict: PX_DONE, or the code px_res_error could not answer. */
static int answered(int rc)
{
    return rc ? rc : PX_DONE;
}

/* The verdict of sql_task_check: 0 to go on, else PX_DONE (answered) or a code to return.
 * `done_check`: the task is to be done after this request and was not, or its
 * dependencies change. */
static int check_verdict(task_op_t *op, const px_pg_result_t *res, bool done_check)
{
    int64_t foreign = 0;
    int cycle = 0;
    px_pg_int64(res, 0, 0, &foreign);
    px_pg_bool(res, 0, 1, &cycle);
    if (foreign)
        return answered(invalid(op, "dependsOn", "every dependency must be a task of this project"));
    if (cycle)
        return answered(px_res_error(op->req, 409, "conflict",
                                     "a task cannot depend on itself or on a task that depends "
                                     "on it",
                                     NULL));
    int assignee_ok = 0;
    px_pg_bool(res, 0, 4, &assignee_ok);
    if (!assignee_ok)
        return answered(invalid(op, "assigneeId", "must be a member of the project"));
    const char *open = px_pg_value(res, 0, 2);
    if (done_check && open)
        return answered(px_res_error(
            op->req, 409, "conflict",
            px_req_printf(op->req, "the task depends on tasks that are not done: %.978s", open),
            NULL));
    return 0;
}

void task_change_events(task_op_t *op, const json_t *task, const json_t *changes)
{
    if (!task || !changes || !json_object_size(changes))
        return;
    const char *tid = str(task, "id");
    json_t *title = json_object_get(task, "title");
    op_event(op, "task.updated", tid,
             json_pack("{s:s, s:s, s:O, s:O}", "projectId", op->pid, "taskId", tid, "title", title,
                       "changes", changes));
    json_t *assignee = json_object_get(changes, "assigneeId");
    if (assignee)
        op_event(op, "task.assigned", tid,
                 json_pack("{s:s, s:s, s:O, s:O, s:O}", "projectId", op->pid, "taskId", tid,
                           "title", title, "assigneeId", json_array_get(assignee, 1),
                           "previousAssigneeId", json_array_get(assignee, 0)));
    json_t *status = json_object_get(changes, "status");
    if (status)
        op_event(op, "task.status_changed", tid,
                 json_pack("{s:s, s:s, s:O, s:O, s:O}", "projectId", op->pid, "taskId", tid,
                           "title", title, "from", json_array_get(status, 0), "to",
                           json_array_get(status, 1)));
}

/* ---- GET /v1/projects/{id}/tasks ---- */

/* A list request's statement, kept beside the op: a kept page that went away before the
 * answer came (evicted meanwhile) is asked for again, with no known version. */
typedef struct {
    const char *key;      /* listcache.c's key of this query */
    size_t key_len;
    const char *member;   /* and of the caller's role in the project */
    size_t member_len;
    uint64_t gen;         /* the generation, read before anything else (generation.c) */
    const char *name, *sql;
    const char **values;
    int n, known;         /* the values, and which of them is the known version */
} list_query_t;

/* Answers `body` (`len` bytes) of list version `version`, with that as its ETag. */
static int list_send(task_op_t *op, int64_t version, const char *body, size_t len, bool kept,
                     bool memory)
{
    listcache_served(kept, memory);
    if (px_res_etag(op->req, op_int_text(op, version)) == PX_DONE)
        return PX_DONE;
    return px_res_send(op->req, 200, "application/json; charset=utf-8", body, len);
}

/* The list's one row: (list version, total, the page as a JSON array; total and page NULL
 * when the kept page is current), or none when the caller may not see the project. The
 * envelope is px_res_list's shape, written around PostgreSQL's text. */
static int listed(task_op_t *op, const px_pg_result_t *res)
{
    list_query_t *lq = op->extra;
    if (!px_pg_rows(res))
        return px_res_error(op->req, 404, "not_found", "no such project", NULL);
    int64_t version = 0;
    px_pg_int64(res, 0, 0, &version);
    const char *total = px_pg_value(res, 0, 1), *items = px_pg_value(res, 0, 2);
    const char *role = px_pg_value(res, 0, 3);
    if (role)
        listcache_put(lq->member, lq->member_len, 0, lq->gen, role, strlen(role));
    if (!items) {
        const char *body;
        size_t len;
        int64_t kept = listcache_get(lq->key, lq->key_len, &body, &len);
        /* A newer render of the same query may have replaced it meanwhile: newer than the
         * snapshot this request read, so still what a list after the request began sees. */
        if (kept >= version) {
            listcache_stamp(lq->key, lq->key_len, version, lq->gen);
            return list_send(op, kept, body, len, true, false);
        }
        lq->values[lq->known] = NULL;
        return op_query(op, lq->name, lq->sql, lq->n, lq->values, listed);
    }
    if (!total)
        return PX_EINTERNAL;
    /* Copied piece by piece: a printf of the page's ~25 kB was a third of the server's
     * CPU for this route (perf). */
    char head[96];
    int hn = snprintf(head, sizeof(head), "{\"total\":%.24s,\"page\":%d,\"limit\":%d,\"tasks\":",
                      total, op->page, op->limit);
    size_t in = strlen(items), len = (size_t)hn + in + 1;
    char *body = px_req_alloc(op->req, len);
    memcpy(body, head, (size_t)hn);
    memcpy(body + hn, items, in);
    body[len - 1] = '}';
    listcache_put(lq->key, lq->key_len, version, lq->gen, body, len);
    return list_send(op, version, body, len, false, false);
}

/* listcache.c's key of a list: everything its answer depends on besides the project's
 * state (the project, sort, page, limit, and each filter: "-" when absent, else its
 * length and value, so no two queries share a key). Request memory. */
static const char *list_key(task_op_t *op, size_t sort, const char *const *filters, size_t n,
                            size_t *len)
{
    const char *key = px_req_printf(op->req, "%s/%zu/%d/%d", op->pid, sort, op->page, op->limit);
    for (size_t f = 0; f < n; f++)
        key = filters[f] ? px_req_printf(op->req, "%s/%zu:%s", key, strlen(filters[f]), filters[f])
                         : px_req_printf(op->req, "%s/-", key);
    *len = strlen(key);
    return key;
}

/* No separate gate: the statement itself answers nothing for a non-member (store.c). */
static int list_handler(px_req_t *req, const task_route_t *route)
{
    static const struct {
        const char *sort, *name, *sql, *filtered;
    } sorts[] = {
        {"-updatedAt", "task_list_updated", sql_task_list_updated, sql_task_find_updated},
        {"rank", "task_list_rank", sql_task_list_rank, sql_task_find_rank},
        {"dueDate", "task_list_due", sql_task_list_due, sql_task_find_due},
        {"priority", "task_list_priority", sql_task_list_priority, sql_task_find_priority},
    };
    /* First: whatever PostgreSQL tells this request is stamped with it. */
    uint64_t gen = generation_now();
    task_op_t *op;
    int rc = op_prepare(req, route, &op);
    if (rc)
        return rc;
    const char *sort = px_req_query(req, "sort");
    size_t i = 0;
    while (sort && i + 1 < sizeof(sorts) / sizeof(sorts[0]) && strcmp(sorts[i].sort, sort))
        i++;
    const char *q = px_req_query(req, "q");
    const char *filters[] = {px_req_query(req, "status"),    px_req_query(req, "assigneeId"),
                             px_req_query(req, "priority"),  px_req_query(req, "dueBefore"),
                             px_req_query(req, "dueAfter"), q && *q ? q : NULL};
    size_t nf = sizeof(filters) / sizeof(filters[0]);
    bool filtered = false;
    for (size_t f = 0; f < nf; f++)
        filtered = filtered || filters[f];
    list_query_t *lq = px_req_alloc(req, sizeof(*lq));
    lq->gen = gen;
    lq->key = list_key(op, i, filters, nf, &lq->key_len);
    lq->member = px_req_printf(req, "member/%s/%s", op->pid, op->caller ? op->caller : "");
    lq->member_len = strlen(lq->member);
    const char *body, *role;
    size_t len, role_len;
    /* Nothing written since PostgreSQL last showed this page current and the caller a
     * member (an admin needs no membership), under this generation: answered from here. */
    int64_t kept = op->admin || listcache_fresh(lq->member, lq->member_len, gen, &role,
                                                &role_len) >= 0
                       ? listcache_fresh(lq->key, lq->key_len, gen, &body, &len)
                       : -1;
    if (kept >= 0)
        return list_send(op, kept, body, len, true, true);
    kept = listcache_get(lq->key, lq->key_len, &body, &len);
    const char *known = kept >= 0 ? op_int_text(op, kept) : NULL;
    const char *limit = op_int_text(op, op->limit);
    const char *offset = op_int_text(op, (int64_t)(op->page - 1) * op->limit);
    const char *admin = op_bool_text(op->admin);
    if (filtered) {
        const char *values[] = {op->pid,    filters[0], filters[1], filters[2],
                                filters[3], filters[4], filters[5], limit,
                                offset,     op->caller, admin,      known};
        lq->n = 12;
        lq->values = px_req_alloc(req, sizeof(values));
        memcpy(lq->values, values, sizeof(values));
        lq->name = NULL;
        lq->sql = sorts[i].filtered;
    } else {
        const char *values[] = {op->pid, op->caller, admin, limit, offset, known};
        lq->n = 6;
        lq->values = px_req_alloc(req, sizeof(values));
        memcpy(lq->values, values, sizeof(values));
        lq->name = sorts[i].name;
        lq->sql = sorts[i].sql;
    }
    lq->known = lq->n - 1;
    op->extra = lq;
    rc = op_query(op, lq->name, lq->sql, lq->n, lq->values, listed);
    return rc ? rc : PX_ASYNC;
}

const task_route_t tasks_list = {
    .scope = SCOPE_PROJECT, .need = ROLE_VIEWER, .paged = true, .handler = list_handler};

/* ---- POST /v1/projects/{id}/tasks ---- */

static int created(task_op_t *op, const px_pg_result_t *res)
{
    json_t *task = op_json(res, 0, 0);
    if (!task)
        return PX_EINTERNAL;
    const char *tid = str(task, "id");
    px_res_header(op->req, "Location", px_req_printf(op->req, "/v1/tasks/%s", tid));
    op_event(op, "task.created", tid,
             json_pack("{s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O}", "projectId", op->pid, "taskId",
                       tid, "title", json_object_get(task, "title"), "status",
                       json_object_get(task, "status"), "priority",
                       json_object_get(task, "priority"), "assigneeId",
                       json_object_get(task, "assigneeId"), "dueDate",
                       json_object_get(task, "dueDate"), "createdAt",
                       json_object_get(task, "createdAt")));
    if (str(task, "assigneeId"))
        op_event(op, "task.assigned", tid,
                 json_pack("{s:s, s:s, s:O, s:O, s:n}", "projectId", op->pid, "taskId", tid,
                           "title", json_object_get(task, "title"), "assigneeId",
                           json_object_get(task, "assigneeId"), "previousAssigneeId"));
    return op_finish(op, 201, task);
}

static int create_checked(task_op_t *op, const px_pg_result_t *res)
{
    const char *status = str(op->body, "status");
    int rc = check_verdict(op, res, status && !strcmp(status, "done"));
    if (rc)
        return rc;
    char *rank = px_req_alloc(op->req, RANK_CAP);
    if (rank_between(px_pg_value(res, 0, 3), NULL, rank, RANK_CAP))
        return px_res_code(op->req, PX_EINTERNAL, "the board order of this column is damaged");
    const char *values[] = {op->pid,
                            str(op->body, "title"),
                            str(op->body, "description"),
                            status,
                            str(op->body, "priority"),
                            str(op->body, "assigneeId"),
                            str(op->body, "dueDate"),
                            rank,
                            deps_text(op),
                            op->caller};
    return op_query(op, "task_insert", sql_task_insert, 10, values, created);
}

static int create_gated(task_op_t *op)
{
    int rc = op_hook(op, "before_task_create", "TaskCreate", NULL);
    if (rc)
        return rc;
    const char *status = str(op->body, "status");
    const char *values[] = {op->pid, NULL, deps_text(op), status ? status : "todo",
                            str(op->body, "assigneeId")};
    return op_query(op, "task_check", sql_task_check, 5, values, create_checked);
}

const task_route_t tasks_create = {.scope = SCOPE_PROJECT, .need = ROLE_MEMBER, .lock = true,
                                   .idempotent = true, .body = true, .then = create_gated};

/* ---- GET /v1/tasks/{id} ---- */

static int get_gated(task_op_t *op)
{
    const char *values[] = {op->tid};
    return op_query(op, "task_get", sql_task_get, 1, values, op_answer_versioned);
}

const task_route_t tasks_get = {.scope = SCOPE_TASK, .need = ROLE_VIEWER, .then = get_gated};

/* ---- PUT /v1/tasks/{id} ---- */

int task_changed(task_op_t *op, const px_pg_result_t *res)
{
    json_t *task = op_json(res, 0, 0), *changes = op_json(res, 0, 1);
    op->members = op_json(res, 0, 2);
    task_change_events(op, task, changes);
    json_decref(task);
    json_decref(changes);
    return op_answer_versioned(op, res);
}

static int update_checked(task_op_t *op, const px_pg_result_t *res)
{
    const char *status = str(op->body, "status");
    const char *after = status ? status : op->status;
    bool moving = strcmp(after, op->status) != 0;
    bool done_check = !strcmp(after, "done") &&
                      (moving || json_object_get(op->body, "dependsOn") != NULL);
    int rc = check_verdict(op, res, done_check);
    if (rc)
        return rc;
    char *rank = NULL;
    if (moving) {
        rank = px_req_alloc(op->req, RANK_CAP);
        if (rank_between(px_pg_value(res, 0, 3), NULL, rank, RANK_CAP))
            return px_res_code(op->req, PX_EINTERNAL,
                               "the board order of this column is damaged");
    }
    json_t *desc = json_object_get(op->body, "description");
    json_t *assignee = json_object_get(op->body, "assigneeId");
    json_t *due = json_object_get(op->body, "dueDate");
    const char *values[] = {op->tid,
                            str(op->body, "title"),
                            json_string_value(desc),
                            op_bool_text(desc != NULL),
                            status,
                            str(op->body, "priority"),
                            json_string_value(assignee),
                            op_bool_text(assignee != NULL),
                            json_string_value(due),
                            op_bool_text(due != NULL),
                            rank,
                            deps_text(op),
                            op->caller};
    return op_query(op, "task_update", sql_task_update, 13, values, task_changed);
}

static int update_gated(task_op_t *op)
{
    int rc = op_hook(op, "before_task_update", "TaskUpdate", op->priority);
    if (rc)
        return rc;
    const char *status = str(op->body, "status");
    const char *values[] = {op->pid, op->tid, deps_text(op), status ? status : op->status,
                            str(op->body, "assigneeId")};
    return op_query(op, "task_check", sql_task_check, 5, values, update_checked);
}

const task_route_t tasks_update = {.scope = SCOPE_TASK, .need = ROLE_MEMBER, .lock = true,
                                   .body = true, .if_match = true, .then = update_gated};

/* ---- DELETE /v1/tasks/{id} ---- */

static int deleted(task_op_t *op, const px_pg_result_t *res)
{
    op_event(op, "task.deleted", op->tid,
             json_pack("{s:s, s:s, s:s?, s:s?}", "projectId", op->pid, "taskId", op->tid, "title",
                       px_pg_value(res, 0, 0), "status", px_pg_value(res, 0, 1)));
    return op_finish(op, 204, NULL);
}

static int delete_gated(task_op_t *op)
{
    const char *values[] = {op->tid, op->caller};
    return op_query(op, "task_delete", sql_task_delete, 2, values, deleted);
}

/* Its comments and attachments go with it (the blob references by release.c). */
const task_route_t tasks_delete = {.scope = SCOPE_TASK, .need = ROLE_MEMBER, .lock = true,
                                   .if_match = true, .release = true, .then = delete_gated};
