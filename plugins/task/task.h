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
 *   listcache.c the task-list pages a worker keeps under their project's list version
 *   generation.c the host's generation: when a kept page is answered without PostgreSQL
 *   store.c     every SQL statement; lists come back as (total, item JSON) rows, the task
 *               list as (total, the page as one JSON text) with its gate folded in
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
typedef struct task_route task_route_t;
/* A route's `then` and the steps after it return what a handler returns (PX_OK or
 * PX_DONE once answered, PX_OK or PX_ASYNC when a query they started will answer, or a
 * PX_E* code, which the host answers), so each ends with `return op_query(...)` or
 * `return px_res_...(...)`. */
typedef int (*task_op_fn)(task_op_t *op);
/* A step after a query of the op succeeded: the host answered a failure (px_pg_run), so
 * no step sees one. */
typedef int (*task_step_fn)(task_op_t *op, const px_pg_result_t *res);

/* What a route's :id names; the gate finds the project from it. SCOPE_NONE: no :id and
 * no gate (a create of a project: the transaction only). */
enum task_scope { SCOPE_PROJECT = 0, SCOPE_TASK = 1, SCOPE_ATTACHMENT = 2, SCOPE_NONE = 3 };

/* One route's pipeline, declared once beside its handler and run by op_route (the
 * handler of every route in task.c's table, with the descriptor as userdata):
 *   :id (and `sub`) parsed as uuids -> the page or the JSON body -> a transaction
 *   (idempotent for creates) -> the caller's role read with the resource, the project
 *   (and task, attachment) rows locked for writes -> 404 for what the caller may not see,
 *   403 below `need` -> 412 when `if_match` and If-Match names another version -> `then`,
 *   inside the transaction, which answers (op_finish emits the queued events and commits).
 * A route that does not start with the gate (a list of the caller's projects, a create
 * without a project, an upload that stores its blob first) names its own `handler`. */
struct task_route {
    enum task_scope scope;
    int need;          /* the least role (an admin passes any) */
    bool lock;         /* a write: lock the rows, so writes of one project serialise */
    bool idempotent;   /* a POST create: px_pg_begin_idempotent */
    bool body;         /* the validated JSON body into op->body */
    bool paged;        /* ?page&limit into op->page, op->limit */
    bool if_match;     /* If-Match against the gated version (project or task) */
    bool release;      /* deletes attachments: kick the release loop after the commit */
    const char *sub;   /* a second uuid path parameter, into op->sub */
    const char *items; /* a list: the answer's array ("tasks"; op_answer_list) */
    const char *list;  /* with then = op_list: its SQL ($1 the :id, $2 limit, $3 offset) */
    task_op_fn then;   /* NULL with `ahead`: its statement's step goes on */
    /* A statement sent right behind the gate's, in its transaction, without waiting for
     * the gate's answer: it runs after the gate's FOR UPDATE, so it reads what the lock
     * protects, and the round trip it saves is one less under the project's lock. It
     * may only read, and its step must return PX_DONE unless op->passed (the gate let
     * the request through; otherwise the gate has answered). */
    task_op_fn ahead;
    int (*handler)(px_req_t *req, const task_route_t *route);
};

/* One request's state from the gate to the answer (request memory). */
struct task_op {
    px_req_t *req;
    const task_route_t *route;
    px_pg_txn_t *txn;
    char pid[37];        /* the project */
    char sub[37];        /* a second path id (a member's user id, a comment), if any */
    char tid[37];        /* the task, for routes under /v1/tasks/{id} and attachments */
    char aid[37];        /* the attachment, for routes under /v1/attachments/{id} */
    const char *status;  /* task scope: the task's status when gated */
    const char *priority; /* task scope: the task's priority when gated */
    const char *blob;    /* attachment scope: its blob id, uploader and filename */
    const char *uploader;
    const char *filename;
    const char *caller;  /* the caller's user id */
    const char *role;    /* the caller's role text in the project; NULL for a non-member admin */
    bool admin;
    int64_t version;     /* the gated project's (task's) version */
    json_t *body;        /* the validated request body (borrowed), or NULL */
    int page, limit;
    bool rebalanced;     /* a move already rebalanced its column once */
    bool passed;         /* the gate let the request through (route->ahead) */
    json_t *events;      /* queued by op_event, emitted by op_finish */
    json_t *members;     /* the project's members after the change, when its statement read
                          * them (op_finish: no query of its own); taken by op_finish */
    int answer_status;   /* op_finish: the answer's status ... */
    json_t *answer;      /* ... and body (NULL for 204) */
    json_t *hooked;      /* the body a Lua hook gave back (op->body then borrows it) */
    void *extra;         /* a handler's own state (request memory) */
    task_step_fn step;   /* what runs when the query in flight answers */
};

/* The handler of every route: runs the pipeline `ud` (a const task_route_t *) names. */
int op_route(px_req_t *req, void *ud);
/* The pipeline's first part, for a handler that does something before the gate: a new
 * op for `req` and `route` with the path ids, page and body read. 0, or PX_DONE / a PX_E*
 * code (answered, or for the handler to return). */
int op_prepare(px_req_t *req, const task_route_t *route, task_op_t **out);
/* The rest: opens the transaction, gates, runs route->then. PX_ASYNC, or PX_DONE / a
 * PX_E* code. */
int op_gate(task_op_t *op);
/* A new op for `req` with the caller filled in (routes without the gate). */
task_op_t *op_new(px_req_t *req);
/* Commit and answer `body` (taken). */
int op_commit(task_op_t *op, int status, json_t *body);
/* Commits and answers 200 with the resource (JSON text in column 0 of row 0) and its
 * ETag; a GET whose If-None-Match names the version gets 304. */
int op_answer_versioned(task_op_t *op, const px_pg_result_t *res);
/* Commit, then answer 204 (no body). */
int op_commit_204(task_op_t *op);
/* Query inside the op's transaction (alone when it has none) with px_pg_txn_run /
 * px_pg_run: `step` runs with the result, a failure is answered by the host (the rollback
 * happens when the request ends; what the op holds is dropped when it does). Returns
 * like px_pg_run: 0 once queued, else a code that was not answered (return it). */
int op_query(task_op_t *op, const char *name, const char *sql, int n, const char *const *values,
             task_step_fn step);
/* The JSON object in column `col` of row `row` (text from SQL), new reference or NULL. */
json_t *op_json(const px_pg_result_t *res, int row, int col);
/* A `then` for the plain lists: route->list with the path's id and the page, answered by
 * op_answer_list (the statement is prepared under the name route->items). */
int op_list(task_op_t *op);
/* The step that answers a list (named route->items) from rows of (total, item JSON
 * text); an empty page is one row whose item is NULL. */
int op_answer_list(task_op_t *op, const px_pg_result_t *res);
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
int op_finish(task_op_t *op, int status, json_t *body);

/* ---- hooks.c ---- */
/* Runs the Lua hook `hook` on op->body with its context (see hooks.c); what comes back,
 * checked by `schema`, becomes op->body (held by op->hooked). 0 to go on, else PX_DONE or
 * a code to return. `priority`: the task's current priority (updates). */
int op_hook(task_op_t *op, const char *hook, const char *schema, const char *priority);

/* ---- rank.c ---- */
/* A key made only of the 62 digits, not empty, not ending in '0'. */
bool rank_valid(const char *key);
/* The key strictly between `lo` and `hi` (NULL: open end) into `out` of `cap` bytes.
 * 0; PX_EINVAL for an invalid key or lo >= hi; PX_EOVERFLOW when `out` is too small. */
int rank_between(const char *lo, const char *hi, char *out, size_t cap);
/* [plugin:task] rank_max_length: a longer key makes a move rebalance its column. */
extern int64_t task_rank_max;

/* ---- listcache.c ---- */
/* The task-list pages this worker keeps (see listcache.c). listcache_get: the kept
 * page's list version and its body (`body_len` bytes, borrowed until the next put),
 * marked as used; -1 when none. listcache_put keeps a copy of `body` as the answer of
 * `key` at `version` (unless a newer one is kept, or it is too large); listcache_served
 * counts an answer (kept: from a kept page). listcache_config: the list_cache_size
 * setting, the metrics, the worker-stop cleanup (init only). */
int64_t listcache_get(const char *key, size_t len, const char **body, size_t *body_len);
/* listcache_put also stamps the copy with `gen`, the generation read before the
 * statement that rendered it; listcache_stamp stamps the kept entry of `key` when it is
 * still of `version` (PostgreSQL showed it current, under `gen`). listcache_fresh: like
 * listcache_get, but only an entry stamped with `gen`, within list_cache_ttl and while
 * the channel is up (generation.c), else -1: what may be answered without PostgreSQL. */
void listcache_put(const char *key, size_t len, int64_t version, uint64_t gen,
                   const char *body, size_t body_len);
void listcache_stamp(const char *key, size_t len, int64_t version, uint64_t gen);
int64_t listcache_fresh(const char *key, size_t len, uint64_t gen, const char **body,
                        size_t *body_len);
/* `memory`: answered without PostgreSQL. */
void listcache_served(bool kept, bool memory);
int listcache_config(px_plugin_t *self);
extern uint64_t task_list_cache_size, task_list_cache_ttl_ms;

/* ---- generation.c ---- */
/* The host's generation (read it before the statement whose answer is stamped with it),
 * whether memory stamped with it may answer now (this worker hears other hosts' bumps),
 * the bump every writing transaction gets on commit (access.c), and init (after
 * listcache_config). */
uint64_t generation_now(void);
bool generation_heard(void);
int generation_on_commit(px_pg_txn_t *txn);
int generation_init(px_plugin_t *self);

/* ---- store.c ---- */
extern const char sql_gate_read[], sql_gate_write[], sql_event_members[], sql_lock_users[];
extern const char sql_project_insert[], sql_project_list[], sql_project_get[],
    sql_project_update[], sql_project_delete[];
extern const char sql_member_list[], sql_member_add[], sql_member_role[], sql_member_remove[];
extern const char sql_activity_list[];
extern const char sql_gate_task_read[], sql_gate_task_write[];
extern const char sql_task_check[], sql_task_insert[], sql_task_get[], sql_task_update[],
    sql_task_delete[], sql_task_list_updated[], sql_task_list_rank[], sql_task_list_due[],
    sql_task_list_priority[], sql_task_find_updated[], sql_task_find_rank[],
    sql_task_find_due[], sql_task_find_priority[];
extern const char sql_move_check[], sql_rank_rebalance[], sql_task_move[];
extern const char sql_gate_attachment_read[], sql_gate_attachment_write[],
    sql_attachment_list[], sql_attachment_insert[], sql_attachment_delete[],
    sql_release_batch[], sql_release_done[];
extern const char sql_comment_list[], sql_comment_insert[], sql_comment_lock[],
    sql_comment_update[], sql_comment_delete[];

/* ---- the routes (task.c's table) ---- */
extern const task_route_t projects_list, projects_create, projects_get, projects_update,
    projects_delete, members_list, members_add, members_update, members_remove,
    activity_list, tasks_list, tasks_create, tasks_get, tasks_update, tasks_delete,
    tasks_move, comments_list, comments_create, comments_update, comments_delete,
    attachments_list, attachments_upload, attachments_get, attachments_delete;
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

/* The step after a task's UPDATE that answers (task JSON, changes JSON): its events, then
 * the task with its ETag (tasks.c; PUT and move). */
int task_changed(task_op_t *op, const px_pg_result_t *res);
/* Queues task.updated for a non-empty `changes` ({field: [old, new]}), and task.assigned
 * / task.status_changed when those fields are among them (tasks.c). */
void task_change_events(task_op_t *op, const json_t *task, const json_t *changes);

extern const char task_schemas[];

#endif
