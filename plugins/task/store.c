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
    "(SELECT task_project_json(to_jsonb(o), $7) FROM o))::text";

/* $1 project. Members and activity go by ON DELETE CASCADE. */
const char sql_project_delete[] = "DELETE FROM task_projects WHERE id = $1::uuid";

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

/* $1 project, $2 user, $3 role, $4 caller -> (user exists, member JSON or NULL when he
 * was a member already). */
const char sql_member_add[] =
    "WITH u AS (SELECT id, username FROM users WHERE id = $2::uuid), "
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
