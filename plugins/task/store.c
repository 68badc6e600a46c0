/*
 * store.c — every SQL statement of the plugin.
 *
 * A change, its activity row (and later its event) are one statement where they can be:
 * data-modifying CTEs run exactly once and atomically with the statement, and the whole
 * runs in the gate's transaction, after the project row was locked. Answers are built as
 * JSON by the SQL functions of migrations/ (task_project_json, task_ts, task_changes), so
 * the shape of a resource is written once.
 *
 * Lists answer rows of (total, item JSON text): the count and the page in one statement,
 * with one row of (total, NULL) when the page is empty.
 */
#include "task.h"

/* $1 project, $2 caller: the project's version and the caller's role (NULL: not a member). */
#define GATE                                                                                  \
    "SELECT p.version, m.role FROM task_projects p LEFT JOIN task_members m "                \
    "ON m.project_id = p.id AND m.user_id = $2::uuid WHERE p.id = $1::uuid"
const char sql_gate_read[] = GATE;
const char sql_gate_write[] = GATE " FOR UPDATE OF p";

/* $1 the users a write will name (text[] of UUIDs). Deleting a user locks the user's row
 * and then, through the foreign keys (ON DELETE CASCADE / SET NULL), the memberships,
 * tasks, comments and attachments naming them. A write that locked its project and task
 * first (the gate) and the user last (its foreign key's check) closed a cycle with such a
 * deletion, which PostgreSQL broke after deadlock_timeout by failing one side: a deletion
 * or a write answered 503 (tests/api/test_task_user_deletion.py). Locked before the gate,
 * the user is waited for, or the deletion waits, and the write then finds them there or
 * gone. KEY SHARE: it conflicts only with a deletion (or a change of the key). */
const char sql_lock_users[] =
    "SELECT 1 FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR KEY SHARE";


/* $1 caller, $2 admin, $3 status, $4 q, $5 limit, $6 offset. */
const char sql_project_list[] =
    "WITH f AS (SELECT p.*, m.role AS my_role FROM task_projects p LEFT JOIN task_members m "
    "ON m.project_id = p.id AND m.user_id = $1::uuid "
    "WHERE ($2::bool OR m.user_id IS NOT NULL) AND ($3::text IS NULL OR p.status = $3) "
    "AND ($4::text IS NULL OR strpos(lower(p.name), lower($4)) > 0 "
    "OR strpos(lower(coalesce(p.description, '')), lower($4)) > 0)), "
    "t AS (SELECT count(*) AS n FROM f) SELECT t.n, pg.j FROM t LEFT JOIN LATERAL "
    "(SELECT task_project_json(to_jsonb(f), f.my_role)::text AS j FROM f "
    "ORDER BY f.created_at DESC, f.id LIMIT $5::int OFFSET $6::int) pg ON true";

/* $1 name, $2 description, $3 status, $4 caller. */
const char sql_project_insert[] =
    "WITH p AS (INSERT INTO task_projects (id, name, description, status, owner_id) "
    "VALUES (gen_random_uuid(), $1, $2, coalesce($3, 'active'), $4::uuid) RETURNING *), "
    "m AS (INSERT INTO task_members (project_id, user_id, role) "
    "SELECT id, owner_id, 'owner' FROM p), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT id, owner_id, 'created', 'project', id, task_changes('{}', jsonb_strip_nulls("
    "jsonb_build_object('name', name, 'description', description, 'status', status))) FROM p) "
    "SELECT task_project_json(to_jsonb(p), 'owner')::text FROM p";

/* $1 project, $2 role of the caller. */
const char sql_project_get[] =
    "SELECT task_project_json(to_jsonb(p), $2)::text FROM task_projects p WHERE id = $1::uuid";

/* $1 project, $2 name, $3 description, $4 status, $5 description given, $6 caller,
 * $7 caller's role. Bumps the version and writes activity only when something changed. */
const char sql_project_update[] =
    "WITH o AS (SELECT * FROM task_projects WHERE id = $1::uuid), "
    "n AS (SELECT o.id, coalesce($2, o.name) AS name, "
    "CASE WHEN $5::bool THEN $3 ELSE o.description END AS description, "
    "coalesce($4, o.status) AS status FROM o), "
    "c AS (SELECT task_changes(jsonb_build_object('name', o.name, 'description', o.description, "
    "'status', o.status), jsonb_build_object('name', n.name, 'description', n.description, "
    "'status', n.status)) AS ch FROM o, n), "
    "u AS (UPDATE task_projects p SET name = n.name, description = n.description, "
    "status = n.status, version = p.version + 1, updated_at = now() FROM n, c "
    "WHERE p.id = n.id AND c.ch <> '{}' RETURNING p.*), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT u.id, $6::uuid, 'updated', 'project', u.id, c.ch FROM u, c) "
    "SELECT coalesce((SELECT task_project_json(to_jsonb(u), $7) FROM u), "
    "(SELECT task_project_json(to_jsonb(o), $7) FROM o))::text, (SELECT ch FROM c)::text";

/* $1 project -> (name, the members before, for the event). Members, tasks and activity
 * go by ON DELETE CASCADE. */
const char sql_project_delete[] =
    "WITH d AS (DELETE FROM task_projects WHERE id = $1::uuid RETURNING name) "
    "SELECT d.name, (SELECT coalesce(jsonb_agg(jsonb_build_object('userId', user_id, "
    "'role', role) ORDER BY created_at, user_id), '[]'::jsonb) FROM task_members "
    "WHERE project_id = $1::uuid)::text FROM d";

#define MEMBER_JSON(m, u)                                                                     \
    "jsonb_build_object('userId', " m ".user_id, 'username', " u ".username, 'role', " m       \
    ".role, 'addedAt', task_ts(" m ".created_at))"

/* $1 project, $2 limit, $3 offset. */
const char sql_member_list[] =
    "WITH f AS (SELECT m.*, u.username FROM task_members m JOIN users u ON u.id = m.user_id "
    "WHERE m.project_id = $1::uuid), "
    "t AS (SELECT count(*) AS n FROM f) SELECT t.n, pg.j FROM t LEFT JOIN LATERAL "
    "(SELECT " MEMBER_JSON("f", "f") "::text AS j FROM f ORDER BY f.created_at, f.user_id "
    "LIMIT $2::int OFFSET $3::int) pg ON true";

/* $1 project, $2 user id or $5 username (the other NULL), $3 role, $4 caller -> (user
 * exists, member JSON or NULL when he was a member already). */
const char sql_member_add[] =
    "WITH u AS (SELECT id, username FROM users WHERE id = $2::uuid "
    "OR lower(username) = lower($5::text)), "
    "m AS (INSERT INTO task_members (project_id, user_id, role) SELECT $1::uuid, u.id, $3 "
    "FROM u ON CONFLICT DO NOTHING RETURNING *), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $4::uuid, 'member_added', 'member', m.user_id, "
    "jsonb_build_object('role', jsonb_build_array(NULL, m.role)) FROM m) "
    "SELECT (SELECT count(*) FROM u), (SELECT " MEMBER_JSON("m", "u") "::text FROM m, u)";

/* $1 project, $2 user, $3 new role, $4 caller -> no row when not a member; else (old role,
 * owners, member JSON after). The last owner keeps his role. */
const char sql_member_role[] =
    "WITH old AS (SELECT * FROM task_members WHERE project_id = $1::uuid AND user_id = $2::uuid), "
    "own AS (SELECT count(*) AS n FROM task_members WHERE project_id = $1::uuid "
    "AND role = 'owner'), "
    "u AS (UPDATE task_members m SET role = $3 FROM old, own WHERE m.project_id = old.project_id "
    "AND m.user_id = old.user_id AND old.role <> $3 AND NOT (old.role = 'owner' AND own.n <= 1) "
    "RETURNING m.*), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $4::uuid, 'member_role_changed', 'member', u.user_id, "
    "jsonb_build_object('role', jsonb_build_array(old.role, u.role)) FROM u, old) "
    "SELECT old.role, own.n, jsonb_build_object('userId', old.user_id, 'username', us.username, "
    "'role', coalesce(u.role, old.role), 'addedAt', task_ts(old.created_at))::text "
    "FROM old CROSS JOIN own JOIN users us ON us.id = old.user_id LEFT JOIN u ON true";

/* $1 project, $2 user, $3 caller -> no row when not a member; else (old role, owners,
 * removed). */
const char sql_member_remove[] =
    "WITH old AS (SELECT * FROM task_members WHERE project_id = $1::uuid AND user_id = $2::uuid), "
    "own AS (SELECT count(*) AS n FROM task_members WHERE project_id = $1::uuid "
    "AND role = 'owner'), "
    "d AS (DELETE FROM task_members m USING old, own WHERE m.project_id = old.project_id "
    "AND m.user_id = old.user_id AND NOT (old.role = 'owner' AND own.n <= 1) RETURNING m.*), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $3::uuid, 'member_removed', 'member', d.user_id, "
    "jsonb_build_object('role', jsonb_build_array(d.role, NULL)) FROM d) "
    "SELECT old.role, own.n, (SELECT count(*) FROM d) FROM old CROSS JOIN own";

/* $1 project, $2 limit, $3 offset: newest first. */
const char sql_activity_list[] =
    "WITH f AS (SELECT * FROM task_activity WHERE project_id = $1::uuid), "
    "t AS (SELECT count(*) AS n FROM f) SELECT t.n, pg.j FROM t LEFT JOIN LATERAL "
    "(SELECT jsonb_build_object('id', f.id, 'actorId', f.actor_id, 'action', f.action, "
    "'entity', f.entity, 'entityId', f.entity_id, 'changes', f.changes, "
    "'createdAt', task_ts(f.created_at))::text AS j FROM f ORDER BY f.seq DESC "
    "LIMIT $2::int OFFSET $3::int) pg ON true";

/* ---- tasks ---- */

/* Gate by task id: $1 task, $2 caller -> (task version, role, project id, task status,
 * task priority). */
#define GATE_TASK                                                                             \
    "SELECT t.version, m.role, t.project_id::text, t.status, t.priority FROM task_tasks t "  \
    "JOIN task_projects p ON p.id = t.project_id LEFT JOIN task_members m "                   \
    "ON m.project_id = p.id AND m.user_id = $2::uuid WHERE t.id = $1::uuid"
const char sql_gate_task_read[] = GATE_TASK;
const char sql_gate_task_write[] = GATE_TASK " FOR UPDATE OF p, t";

/* What a create or update must know before it writes. $1 project, $2 task (NULL on
 * create), $3 new dependencies as a JSON array (NULL: unchanged), $4 the status after,
 * $5 assignee (NULL: none to check) -> (dependencies outside the project, would close a
 * cycle, open dependencies as JSON, the last rank of the status's column, assignee is a
 * member). The cycle check follows depends_on edges from the new dependencies: reaching
 * the task itself means the new edges close a cycle (a self-dependency included). It runs
 * under the project row lock the gate took, so two requests adding A->B and B->A are
 * decided one after the other. */
const char sql_task_check[] =
    "WITH RECURSIVE nd AS (SELECT CASE WHEN $3::jsonb IS NULL THEN ARRAY(SELECT depends_on "
    "FROM task_dependencies WHERE task_id = $2::uuid) ELSE ARRAY(SELECT DISTINCT lower(v)::uuid "
    "FROM jsonb_array_elements_text($3::jsonb) AS v) END AS ids), "
    "r(id) AS (SELECT unnest(ids) FROM nd UNION SELECT d.depends_on FROM task_dependencies d "
    "JOIN r ON d.task_id = r.id) "
    "SELECT (SELECT count(*) FROM nd, unnest(nd.ids) AS x(id) WHERE NOT EXISTS (SELECT 1 "
    "FROM task_tasks t WHERE t.id = x.id AND t.project_id = $1::uuid)), "
    "($2::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM r WHERE r.id = $2::uuid)), "
    "(SELECT jsonb_agg(t.id ORDER BY t.id) FROM nd, unnest(nd.ids) AS x(id) JOIN task_tasks t "
    "ON t.id = x.id WHERE t.status <> 'done')::text, "
    "(SELECT max(rank) FROM task_tasks WHERE project_id = $1::uuid AND status = $4 "
    "AND id IS DISTINCT FROM $2::uuid), "
    "($5::uuid IS NULL OR EXISTS (SELECT 1 FROM task_members WHERE project_id = $1::uuid "
    "AND user_id = $5::uuid))";

#define TASK_FIELDS(t)                                                                        \
    "jsonb_build_object('title', " t ".title, 'description', " t ".description, 'status', " t  \
    ".status, 'priority', " t ".priority, 'assigneeId', " t ".assignee_id, 'dueDate', " t     \
    ".due_date)"


/* The project's members as the events carry them ([{userId, role}], oldest first). */
#define TASK_MEMBERS(pid)                                                                     \
    "(SELECT coalesce(jsonb_agg(jsonb_build_object('userId', user_id, 'role', role) "         \
    "ORDER BY created_at, user_id), '[]'::jsonb) FROM task_members WHERE project_id = " pid ")"

/* $1 project -> (name, members): for the events of op_finish. */
const char sql_event_members[] =
    "SELECT (SELECT name FROM task_projects WHERE id = $1::uuid), " TASK_MEMBERS("$1::uuid")
    "::text";

/* The API's Task from a row `t` of task_tasks (or a CTE with its columns) and its
 * dependencies `deps` (a JSON array), built from the columns. Same shape as the SQL
 * function task_task_json of migrations/002, which went through to_jsonb of the whole row
 * and back: twenty times slower on a 50-task page. TASK_DEPS is the task's dependency
 * list as an inline subquery (one index probe), where the SQL function task_deps ran
 * its own plan per call. */
#define TASK_DEPS(t)                                                                          \
    "(SELECT coalesce(jsonb_agg(dep.depends_on ORDER BY dep.depends_on), '[]'::jsonb) "      \
    "FROM task_dependencies dep WHERE dep.task_id = " t ".id)"
#define TASK_JSON(t, deps) TASK_JSON_AS("jsonb_build_object", t, deps)
/* The same Task with `build` json_build_object, for text that is sent as it is (the list
 * page): a json value is its text, where a jsonb is taken apart and printed again. */
#define TASK_JSON_AS(build, t, deps)                                                          \
    build "('id', " t ".id, 'projectId', " t ".project_id, 'title', " t                    \
    ".title, 'description', " t ".description, 'status', " t ".status, 'priority', " t       \
    ".priority, 'assigneeId', " t ".assignee_id, 'dueDate', " t ".due_date, 'dependsOn', "   \
    "coalesce(" deps ", '[]'::jsonb), 'rank', " t ".rank, 'createdAt', task_ts(" t            \
    ".created_at), 'updatedAt', task_ts(" t ".updated_at), 'version', " t ".version)"

/* $1 project, $2 title, $3 description, $4 status, $5 priority, $6 assignee, $7 due date,
 * $8 rank, $9 dependencies (JSON array or NULL), $10 caller. */
const char sql_task_insert[] =
    "WITH t AS (INSERT INTO task_tasks (id, project_id, title, description, status, priority, "
    "assignee_id, due_date, rank, created_by) VALUES (gen_random_uuid(), $1::uuid, $2, $3, "
    "coalesce($4, 'todo'), coalesce($5, 'medium'), $6::uuid, $7::date, $8, $10::uuid) "
    "RETURNING *), "
    "nd AS (SELECT DISTINCT lower(v)::uuid AS id FROM jsonb_array_elements_text("
    "coalesce($9::jsonb, '[]')) AS v), "
    "d AS (INSERT INTO task_dependencies (task_id, depends_on) SELECT t.id, nd.id FROM t, nd), "
    "deps AS (SELECT coalesce(jsonb_agg(nd.id ORDER BY nd.id), '[]'::jsonb) AS j FROM nd), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT t.project_id, $10::uuid, 'created', 'task', t.id, task_changes('{}', "
    "jsonb_strip_nulls(" TASK_FIELDS("t") ") || CASE WHEN deps.j <> '[]' THEN "
    "jsonb_build_object('dependsOn', deps.j) ELSE '{}' END) FROM t, deps) "
    "SELECT " TASK_JSON("t", "deps.j") "::text FROM t, deps";

/* $1 task, $2 caller's role -> the Task. */
const char sql_task_get[] =
    "SELECT " TASK_JSON("t", TASK_DEPS("t")) "::text FROM task_tasks t WHERE t.id = $1::uuid";

/* $1 task, $2 title, $3 description, $4 description given, $5 status, $6 priority,
 * $7 assignee, $8 assignee given, $9 due date, $10 due date given, $11 rank (NULL: keep),
 * $12 dependencies (JSON array, NULL: keep), $13 caller -> (Task, changes, the project's
 * members for the events). Only a real
 * change bumps the version and writes activity. */
const char sql_task_update[] =
    "WITH o AS (SELECT t.*, " TASK_DEPS("t") " AS deps FROM task_tasks t WHERE t.id = $1::uuid), "
    "n AS (SELECT o.id, coalesce($2, o.title) AS title, "
    "CASE WHEN $4::bool THEN $3 ELSE o.description END AS description, "
    "coalesce($5, o.status) AS status, coalesce($6, o.priority) AS priority, "
    "CASE WHEN $8::bool THEN $7::uuid ELSE o.assignee_id END AS assignee_id, "
    "CASE WHEN $10::bool THEN $9::date ELSE o.due_date END AS due_date, "
    "coalesce($11, o.rank) AS rank, CASE WHEN $12::jsonb IS NULL THEN o.deps ELSE "
    "coalesce((SELECT jsonb_agg(v ORDER BY v) FROM (SELECT DISTINCT to_jsonb(lower(x)::uuid) "
    "AS v FROM jsonb_array_elements_text($12::jsonb) AS x) s), '[]'::jsonb) END AS deps FROM o), "
    "c AS (SELECT task_changes(" TASK_FIELDS("o") " || jsonb_build_object('dependsOn', o.deps), "
    TASK_FIELDS("n") " || jsonb_build_object('dependsOn', n.deps)) AS ch FROM o, n), "
    "u AS (UPDATE task_tasks t SET title = n.title, description = n.description, "
    "status = n.status, priority = n.priority, assignee_id = n.assignee_id, "
    "due_date = n.due_date, rank = n.rank, version = t.version + 1, updated_at = now() "
    "FROM n, c WHERE t.id = n.id AND c.ch <> '{}' RETURNING t.*), "
    "dd AS (DELETE FROM task_dependencies d USING n, c WHERE d.task_id = n.id "
    "AND c.ch ? 'dependsOn' AND NOT n.deps @> to_jsonb(d.depends_on)), "
    "di AS (INSERT INTO task_dependencies (task_id, depends_on) SELECT n.id, "
    "(jsonb_array_elements_text(n.deps))::uuid FROM n, c WHERE c.ch ? 'dependsOn' "
    "ON CONFLICT DO NOTHING), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT u.project_id, $13::uuid, 'updated', 'task', u.id, c.ch FROM u, c) "
    "SELECT coalesce((SELECT " TASK_JSON("u", "n.deps") " FROM u, n), "
    "(SELECT " TASK_JSON("o", "o.deps") " FROM o))::text, (SELECT ch FROM c)::text, "
    TASK_MEMBERS("(SELECT project_id FROM o)") "::text";

/* $1 task, $2 caller -> (title, status) of the deleted task. */
const char sql_task_delete[] =
    "WITH d AS (DELETE FROM task_tasks WHERE id = $1::uuid RETURNING *), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT d.project_id, $2::uuid, 'deleted', 'task', d.id, "
    "jsonb_build_object('title', jsonb_build_array(d.title, NULL)) FROM d) "
    "SELECT d.title, d.status FROM d";

/* The task list is one statement, the gate folded in: a row only when the caller may see
 * the project (a member, or an admin: $admin), so a non-member's 404 costs one round trip
 * and reads no task. It answers (list version, total, the page as a JSON array text, the
 * caller's role: NULL for an admin who is not a member; kept by the worker, generation.c):
 * the array is built by PostgreSQL and sent as it is (tasks.c), never parsed and printed
 * again. $known is the list version of the page the worker keeps for this query
 * (listcache.c; NULL: none): when the project's list_version (migrations/006) still is
 * that, total and page are NULL and never computed (CASE runs its subqueries only on
 * the branch it takes), so a kept page costs PostgreSQL two primary-key lookups. The
 * version, total and page come from one snapshot, so a page is kept under the version
 * it shows.
 *
 * Unfiltered (the board's and the bench's case): the total is the project's task_count
 * (migrations/005), and the statement is prepared once per connection: with no optional
 * filter its generic plan is the index walk. $1 project, $2 caller, $3 admin, $4 limit,
 * $5 offset, $6 known.
 *
 * Filtered: $1 project, $2 status, $3 assignee, $4 priority, $5 dueBefore, $6 dueAfter,
 * $7 q; $8 limit, $9 offset, $10 caller, $11 admin, $12 known. Sent unnamed, so planned
 * with this request's values: the "($2 IS NULL OR ...)" filters then fold away and the
 * page walks its sort's index (a prepared statement's generic plan cannot see which
 * filters are absent and sorts the whole project instead). The count and the page are
 * separate scans (no shared CTE, which PostgreSQL would materialise): the page stops
 * after `limit` rows. */
#define TASK_WHERE                                                                            \
    "project_id = $1::uuid AND ($2::text IS NULL OR status = $2) "                            \
    "AND ($3::uuid IS NULL OR assignee_id = $3::uuid) AND ($4::text IS NULL OR priority = $4) " \
    "AND ($5::date IS NULL OR due_date < $5::date) AND ($6::date IS NULL OR due_date > $6::date) " \
    "AND ($7::text IS NULL OR strpos(lower(title), lower($7)) > 0 "                           \
    "OR strpos(lower(coalesce(description, '')), lower($7)) > 0)"
/* ARRAY(subquery) keeps the subquery's order; an empty page is []. */
#define TASK_PAGE(where, order, limit, offset)                                                \
    "array_to_json(ARRAY(SELECT " TASK_JSON_AS("json_build_object", "t", TASK_DEPS("t"))     \
    " FROM task_tasks t WHERE "                                                               \
    where " ORDER BY " order " LIMIT " limit "::int OFFSET " offset "::int))::text"
/* `what` unless the kept page (version `known`) is current. */
#define TASK_UNLESS_KEPT(known, what)                                                         \
    "CASE WHEN p.list_version = " known "::bigint THEN NULL ELSE " what " END"
#define TASK_LIST_GATE(caller, admin)                                                         \
    " FROM task_projects p LEFT JOIN task_members m ON m.project_id = p.id AND m.user_id = "  \
    caller "::uuid WHERE p.id = $1::uuid AND (m.role IS NOT NULL OR " admin "::bool)"
#define TASK_LIST(order)                                                                      \
    "SELECT p.list_version, p.task_count, "                                                   \
    TASK_UNLESS_KEPT("$6", TASK_PAGE("t.project_id = $1::uuid", order, "$4", "$5"))           \
    ", m.role" TASK_LIST_GATE("$2", "$3")
#define TASK_LIST_FILTERED(order)                                                             \
    "SELECT p.list_version, "                                                                 \
    TASK_UNLESS_KEPT("$12", "(SELECT count(*) FROM task_tasks WHERE " TASK_WHERE ")") ", "    \
    TASK_UNLESS_KEPT("$12", TASK_PAGE(TASK_WHERE, order, "$8", "$9"))                         \
    ", m.role" TASK_LIST_GATE("$10", "$11")
#define ORDER_UPDATED "t.updated_at DESC, t.id"
#define ORDER_RANK "CASE t.status WHEN 'todo' THEN 0 WHEN 'in_progress' THEN 1 ELSE 2 END, t.rank, t.id"
#define ORDER_DUE "t.due_date ASC NULLS LAST, t.id"
#define ORDER_PRIORITY "t.priority_n DESC, t.updated_at DESC, t.id"
const char sql_task_list_updated[] = TASK_LIST(ORDER_UPDATED);
const char sql_task_list_rank[] = TASK_LIST(ORDER_RANK);
const char sql_task_list_due[] = TASK_LIST(ORDER_DUE);
const char sql_task_list_priority[] = TASK_LIST(ORDER_PRIORITY);
const char sql_task_find_updated[] = TASK_LIST_FILTERED(ORDER_UPDATED);
const char sql_task_find_rank[] = TASK_LIST_FILTERED(ORDER_RANK);
const char sql_task_find_due[] = TASK_LIST_FILTERED(ORDER_DUE);
const char sql_task_find_priority[] = TASK_LIST_FILTERED(ORDER_PRIORITY);

/* ---- board order ---- */

/* $1 task, $2 target status (NULL: the task's own), $3 before (NULL), $4 after (NULL) ->
 * (before's status, before's rank, the rank above before, after's status, after's rank,
 * the rank below after, the column's last rank, the task's open dependencies as JSON).
 * The project and column come from the task's row (`me`), so the statement needs nothing
 * the gate read and is sent right behind it, without waiting for its answer (move.c); it
 * still runs after the gate's FOR UPDATE, so it reads the column as the lock left it. The
 * moved task itself is left out of every neighbour. Each neighbour is one step of the
 * unique index (project_id, status, rank) — never a scan of the column (the column's
 * values are scalar subqueries, so they are index conditions): this runs under the
 * project's lock, so its time is every other move's wait. */
#define MOVE_COL                                                                              \
    "FROM task_tasks WHERE project_id = (SELECT project_id FROM me) "                         \
    "AND status = (SELECT status FROM me) AND id <> $1::uuid "
#define MOVE_NEIGHBOUR(param)                                                                 \
    "(SELECT status, rank FROM task_tasks WHERE id = " param "::uuid "                       \
    "AND project_id = (SELECT project_id FROM me) AND id <> $1::uuid)"
const char sql_move_check[] =
    "WITH me AS (SELECT project_id, coalesce($2, status) AS status FROM task_tasks "
    "WHERE id = $1::uuid), b AS " MOVE_NEIGHBOUR("$3") ", a AS " MOVE_NEIGHBOUR("$4") " "
    "SELECT (SELECT status FROM b), (SELECT rank FROM b), "
    "(SELECT rank " MOVE_COL "AND rank < (SELECT rank FROM b) ORDER BY rank DESC LIMIT 1), "
    "(SELECT status FROM a), (SELECT rank FROM a), "
    "(SELECT rank " MOVE_COL "AND rank > (SELECT rank FROM a) ORDER BY rank LIMIT 1), "
    "(SELECT rank " MOVE_COL "ORDER BY rank DESC LIMIT 1), "
    "(SELECT jsonb_agg(t.id ORDER BY t.id) FROM task_dependencies d JOIN task_tasks t "
    "ON t.id = d.depends_on WHERE d.task_id = $1::uuid AND t.status <> 'done')::text";

const char sql_rank_rebalance[] =
    "UPDATE task_tasks t SET rank = task_rank_key(o.i, o.n), version = t.version + 1 FROM "
    "(SELECT id, row_number() OVER (ORDER BY rank) AS i, count(*) OVER () AS n FROM task_tasks "
    "WHERE project_id = $1::uuid AND status = $2 AND id <> $3::uuid) o WHERE t.id = o.id";

/* $1 task, $2 status, $3 rank, $4 caller -> (Task, changes, the project's members for
 * the events). */
const char sql_task_move[] =
    "WITH o AS (SELECT * FROM task_tasks WHERE id = $1::uuid), "
    "u AS (UPDATE task_tasks t SET status = $2, rank = $3, version = t.version + 1, "
    "updated_at = now() FROM o WHERE t.id = o.id RETURNING t.*), "
    "c AS (SELECT task_changes(jsonb_build_object('status', o.status, 'rank', o.rank), "
    "jsonb_build_object('status', u.status, 'rank', u.rank)) AS ch FROM u, o), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT u.project_id, $4::uuid, 'moved', 'task', u.id, c.ch FROM u, c) "
    "SELECT " TASK_JSON("u", TASK_DEPS("u")) "::text, (SELECT ch FROM c)::text, "
    TASK_MEMBERS("u.project_id") "::text FROM u";

/* ---- comments ---- */

/* $1 task, $2 limit, $3 offset: oldest first. */
const char sql_comment_list[] =
    "SELECT (SELECT count(*) FROM task_comments WHERE task_id = $1::uuid), pg.j FROM "
    "(SELECT 1) one LEFT JOIN LATERAL (SELECT task_comment_json(to_jsonb(c))::text AS j "
    "FROM task_comments c WHERE c.task_id = $1::uuid ORDER BY c.created_at, c.id "
    "LIMIT $2::int OFFSET $3::int) pg ON true";

/* $1 project, $2 task, $3 body, $4 caller -> (Comment, task title). */
const char sql_comment_insert[] =
    "WITH c AS (INSERT INTO task_comments (id, task_id, author_id, body, mentions) "
    "VALUES (gen_random_uuid(), $2::uuid, $4::uuid, $3, task_mentions($1::uuid, $3)) "
    "RETURNING *), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $4::uuid, 'commented', 'comment', c.id, "
    "jsonb_build_object('taskId', jsonb_build_array(NULL, c.task_id)) FROM c) "
    "SELECT task_comment_json(to_jsonb(c))::text, (SELECT title FROM task_tasks "
    "WHERE id = $2::uuid) FROM c";

/* $1 comment, $2 task -> (author, version), the row locked. */
const char sql_comment_lock[] =
    "SELECT author_id::text, version FROM task_comments WHERE id = $1::uuid "
    "AND task_id = $2::uuid FOR UPDATE";

/* $1 project, $2 comment, $3 body, $4 caller -> the Comment. */
const char sql_comment_update[] =
    "WITH o AS (SELECT * FROM task_comments WHERE id = $2::uuid), "
    "u AS (UPDATE task_comments c SET body = $3, mentions = task_mentions($1::uuid, $3), "
    "version = c.version + 1, updated_at = now() FROM o WHERE c.id = o.id AND o.body <> $3 "
    "RETURNING c.*), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $4::uuid, 'comment_edited', 'comment', u.id, "
    "jsonb_build_object('body', jsonb_build_array(o.body, u.body)) FROM u, o) "
    "SELECT coalesce((SELECT task_comment_json(to_jsonb(u)) FROM u), "
    "(SELECT task_comment_json(to_jsonb(o)) FROM o))::text";

/* $1 project, $2 comment, $3 caller. */
const char sql_comment_delete[] =
    "WITH d AS (DELETE FROM task_comments WHERE id = $2::uuid RETURNING *), "
    "a AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $3::uuid, 'comment_deleted', 'comment', d.id, "
    "jsonb_build_object('body', jsonb_build_array(d.body, NULL)) FROM d) "
    "SELECT count(*) FROM d";

/* ---- attachments ---- */

/* Gate by attachment id: $1 attachment, $2 caller -> the task gate's columns (task
 * version, role, project, status, priority), then the task id, blob, uploader, filename. */
#define GATE_ATTACHMENT                                                                       \
    "SELECT t.version, m.role, t.project_id::text, t.status, t.priority, t.id::text, "       \
    "a.blob_id, a.uploader_id::text, a.filename FROM task_attachments a "                     \
    "JOIN task_tasks t ON t.id = a.task_id JOIN task_projects p ON p.id = t.project_id "     \
    "LEFT JOIN task_members m ON m.project_id = p.id AND m.user_id = $2::uuid "               \
    "WHERE a.id = $1::uuid"
const char sql_gate_attachment_read[] = GATE_ATTACHMENT;
const char sql_gate_attachment_write[] = GATE_ATTACHMENT " FOR UPDATE OF p, t, a";

/* $1 task, $2 limit, $3 offset. */
const char sql_attachment_list[] =
    "WITH t AS (SELECT count(*) AS n FROM task_attachments WHERE task_id = $1::uuid) "
    "SELECT t.n, pg.j FROM t LEFT JOIN LATERAL (SELECT task_attachment_json(a)::text AS j "
    "FROM task_attachments a WHERE a.task_id = $1::uuid ORDER BY a.created_at, a.id "
    "LIMIT $2::int OFFSET $3::int) pg ON true";

/* $1 project, $2 task, $3 id, $4 blob, $5 filename, $6 type, $7 size, $8 caller -> the
 * Attachment, the task's title. */
const char sql_attachment_insert[] =
    "WITH a AS (INSERT INTO task_attachments (id, task_id, blob_id, filename, content_type, "
    "size, uploader_id) VALUES ($3::uuid, $2::uuid, $4, $5, $6, $7::bigint, $8::uuid) "
    "RETURNING *), "
    "l AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $8::uuid, 'attached', 'attachment', a.id, "
    "jsonb_build_object('filename', jsonb_build_array(NULL, a.filename)) FROM a) "
    "SELECT task_attachment_json(a)::text, (SELECT title FROM task_tasks WHERE id = $2::uuid) "
    "FROM a";

/* $1 project, $2 attachment, $3 caller -> the task's title (the row's reference is
 * released by the trigger of migrations/004). */
const char sql_attachment_delete[] =
    "WITH a AS (DELETE FROM task_attachments WHERE id = $2::uuid RETURNING *), "
    "l AS (INSERT INTO task_activity (project_id, actor_id, action, entity, entity_id, changes) "
    "SELECT $1::uuid, $3::uuid, 'detached', 'attachment', a.id, "
    "jsonb_build_object('filename', jsonb_build_array(a.filename, NULL)) FROM a) "
    "SELECT (SELECT title FROM task_tasks WHERE id = a.task_id), a.filename FROM a";

/* The release loop (release.c): a batch of references to drop, locked so that two workers
 * never take the same rows; then the rows whose reference was dropped. */
const char sql_release_batch[] =
    "SELECT id::text, blob_id, ref FROM task_blob_releases ORDER BY id LIMIT 64 "
    "FOR UPDATE SKIP LOCKED";
const char sql_release_done[] =
    "DELETE FROM task_blob_releases WHERE id = ANY($1::bigint[])";
