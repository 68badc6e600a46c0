/*
 * task.h — what the files of the task plugin share. Not part of any public interface: the
 * plugin talks to the host only through <panthera/panthera.h>.
 *
 *   task.c      descriptor, init, the route table
 *   access.c    the gate every project-scoped route passes: a transaction, the caller's
 *               role in the project (the project row locked for writes), 404/403
 *   projects.c  GET/POST /v1/projects, GET/PUT/DELETE /v1/projects/{id}
 *   members.c   /v1/projects/{id}/members and /members/{userId}
 *   activity.c  GET /v1/projects/{id}/activity
 *   attachments.c /v1/tasks/{id}/attachments and /v1/attachments/{id}
 *   release.c   drops the blob references of deleted attachments (a background task)
 *   store.c     every SQL statement; lists come back as (total, item JSON) rows
 *   schemas.json the bodies' and answers' JSON schemas (embedded at build time)
 */
#ifndef TASK_PLUGIN_H
#define TASK_PLUGIN_H

#include <panthera/panthera.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern px_plugin_t *task_plugin;

/* Roles in a project, ordered: a role may do what every lower one may. */
enum task_role { ROLE_NONE = 0, ROLE_VIEWER = 1, ROLE_MEMBER = 2, ROLE_OWNER = 3 };

typedef struct task_op task_op_t;
typedef void (*task_op_fn)(task_op_t *op);

/* One request's state from the gate to the answer (request memory). */
struct task_op {
    px_req_t *req;
    px_pg_txn_t *txn;
    char pid[37];        /* the project */
    char sub[37];        /* a second path id (a member's user id), if any */
    char tid[37];        /* the task, for routes under /v1/tasks/{id} */
    bool by_task;        /* the path's id is a task: the gate finds its project */
    bool by_attachment;  /* the path's id is an attachment (aid): the gate finds its task */
    char aid[37];        /* the attachment, for routes under /v1/attachments/{id} */
    const char *blob;    /* by_attachment: its blob id, uploader and filename */
    const char *uploader;
    const char *filename;
    bool release;        /* the change deletes attachments: kick the release loop after */
    void *extra;         /* a handler's own state (request memory) */
    const char *status;  /* by_task: the task's status when gated */
    const char *priority; /* by_task: the task's priority when gated */
    const char *caller;  /* the caller's user id */
    const char *role;    /* the caller's role text in the project; NULL for a non-member admin */
    bool admin;
    int need;            /* the least role the route needs (an admin passes any) */
    bool lock;           /* take the project row FOR UPDATE: writes serialise per project */
    bool idempotent;     /* a POST create: px_pg_begin_idempotent */
    int64_t version;     /* the project's version when gated */
    json_t *body;        /* the validated request body (borrowed), or NULL */
    int page, limit;
    bool rebalanced;     /* a move already rebalanced its column once */
    bool editing;        /* comments: PUT (else DELETE) */
    json_t *events;      /* queued by op_event, emitted by op_finish */
    int answer_status;   /* op_finish: the answer's status ... */
    json_t *answer;      /* ... and body (NULL for 204) */
    task_op_fn then;     /* runs once the gate passed, inside op->txn */
};

/* A new op for `req` with the caller filled in. */
task_op_t *op_new(px_req_t *req);
/* Reads the path's project id (`param`), opens the transaction and checks the caller's
 * role, then runs op->then. Returns PX_ASYNC, or PX_DONE / a PX_E* code (answered or for
 * the handler to return). */
int op_gate(task_op_t *op, const char *param);
/* Callback helpers: answer a failed query (rollback happens when the request ends), or
 * commit and answer `body` (taken). */
void op_pg_fail(task_op_t *op, const px_pg_error_t *err);
void op_commit(task_op_t *op, int status, json_t *body);
/* Commits and answers 200 with the resource (JSON text in column 0 of row 0) and its
 * ETag; a GET whose If-None-Match names the version gets 304. */
void op_answer_versioned(task_op_t *op, const px_pg_result_t *res);
/* Commit, then answer 204 (no body). */
void op_commit_204(task_op_t *op);
/* Query inside the op's transaction; on a failure to queue, answers 500. */
void op_query(task_op_t *op, const char *name, const char *sql, int n, const char *const *values,
              px_pg_fn cb);
/* The JSON object in column `col` of row `row` (text from SQL), new reference or NULL. */
json_t *op_json(const px_pg_result_t *res, int row, int col);
/* Answers a list from rows of (total, item JSON text); an empty page is one row whose
 * item is NULL. */
void op_answer_list(task_op_t *op, const px_pg_result_t *res, const char *items);
/* page/limit/offset as text for a list query (request memory). */
const char *op_int_text(task_op_t *op, int64_t v);
const char *op_bool_text(bool v);
/* A copy of `s` in request memory (NULL stays NULL). */
const char *op_strdup(task_op_t *op, const char *s);

/* ---- events.c ---- */
/* Queue an event of PLUGINS.md: `payload` (taken) gets "actorId" now and "members" (and
 * a null "projectName" its value) when op_finish emits it. */
void op_event(task_op_t *op, const char *type, const char *aggregate, json_t *payload);
/* Emit the queued events in op->txn, then commit and answer `status` with `body` (taken;
 * NULL and 204: no body). */
void op_finish(task_op_t *op, int status, json_t *body);

/* ---- hooks.c ---- */
/* Runs the Lua hook `hook` on op->body with its context (see hooks.c); what comes back,
 * checked by `schema`, becomes op->body. 0 to go on, PX_DONE when answered. `priority`:
 * the task's current priority (updates). */
int op_hook(task_op_t *op, const char *hook, const char *schema, const char *priority);

/* ---- rank.c ---- */
/* A key made only of the 62 digits, not empty, not ending in '0'. */
bool rank_valid(const char *key);
/* The key strictly between `lo` and `hi` (NULL: open end) into `out` of `cap` bytes.
 * 0; PX_EINVAL for an invalid key or lo >= hi; PX_EOVERFLOW when `out` is too small. */
int rank_between(const char *lo, const char *hi, char *out, size_t cap);
/* [plugin:task] rank_max_length: a longer key makes a move rebalance its column. */
extern int64_t task_rank_max;

/* ---- store.c ---- */
extern const char sql_gate_read[], sql_gate_write[];
extern const char sql_project_insert[], sql_project_list[], sql_project_get[],
    sql_project_update[], sql_project_delete[];
extern const char sql_member_list[], sql_member_add[], sql_member_role[], sql_member_remove[];
extern const char sql_activity_list[];
extern const char sql_gate_task_read[], sql_gate_task_write[];
extern const char sql_task_check[], sql_task_insert[], sql_task_get[], sql_task_update[],
    sql_task_delete[], sql_task_list_updated[], sql_task_list_rank[], sql_task_list_due[],
    sql_task_list_priority[];
extern const char sql_move_check[], sql_rank_rebalance[], sql_task_move[];
extern const char sql_gate_attachment_read[], sql_gate_attachment_write[],
    sql_attachment_list[], sql_attachment_insert[], sql_attachment_delete[],
    sql_release_batch[], sql_release_done[];
extern const char sql_comment_list[], sql_comment_insert[], sql_comment_lock[],
    sql_comment_update[], sql_comment_delete[];

/* ---- handlers ---- */
int projects_list(px_req_t *req, void *ud);
int projects_create(px_req_t *req, void *ud);
int projects_get(px_req_t *req, void *ud);
int projects_update(px_req_t *req, void *ud);
int projects_delete(px_req_t *req, void *ud);
int members_list(px_req_t *req, void *ud);
int members_add(px_req_t *req, void *ud);
int members_update(px_req_t *req, void *ud);
int members_remove(px_req_t *req, void *ud);
int activity_list(px_req_t *req, void *ud);
int tasks_list(px_req_t *req, void *ud);
int tasks_create(px_req_t *req, void *ud);
int tasks_get(px_req_t *req, void *ud);
int tasks_update(px_req_t *req, void *ud);
int tasks_delete(px_req_t *req, void *ud);
int tasks_move(px_req_t *req, void *ud);
int comments_list(px_req_t *req, void *ud);
int comments_create(px_req_t *req, void *ud);
int comments_update(px_req_t *req, void *ud);
int comments_delete(px_req_t *req, void *ud);
int attachments_list(px_req_t *req, void *ud);
int attachments_upload(px_req_t *req, void *ud);
int attachments_get(px_req_t *req, void *ud);
int attachments_delete(px_req_t *req, void *ud);
/* [plugin:task] attachment_types as a NULL-terminated list (the route's accepted types,
 * application/octet-stream added) and attachment_max_size (attachments.c). */
int attachments_config(px_plugin_t *self);
extern const char *const *attachment_types;
extern uint64_t attachment_max_size;

/* ---- release.c ---- */
/* Worker start/stop: the background task that drops the blob references of deleted
 * attachments (every release_interval), and a run right away (after a commit). */
void task_release_start(px_plugin_t *plugin, void *ud);
void task_release_stop(px_plugin_t *plugin, void *ud);
void task_release_kick(void);
extern uint64_t task_release_interval_ms;

/* Queues task.updated for a non-empty `changes` ({field: [old, new]}), and task.assigned
 * / task.status_changed when those fields are among them (tasks.c). */
void task_change_events(task_op_t *op, const json_t *task, const json_t *changes);

extern const char task_schemas[];

#endif
