-- Each project's list version: +1 in the transaction of every statement that changes what
-- a task list of the project shows (a task inserted, changed, moved, rebalanced, deleted;
-- a dependency added or dropped). A worker keeps the pages it rendered under it
-- (listcache.c), and every list request reads it from the project's row with the
-- caller's membership, in the snapshot the page would be rendered in: a version that
-- did not move means the kept page is exactly what PostgreSQL would render, and a write
-- is seen by the next list as soon as it committed. Statement-level, like task_count:
-- one UPDATE per statement and project however many rows it touched, written beside
-- task_count so an insert or delete costs one UPDATE of the project row, not two.
-- (A task list is a project's row and its tasks' rows and dependencies, nothing else:
-- no column of it depends on the caller, so one page serves every member.)
ALTER TABLE task_projects ADD COLUMN list_version bigint NOT NULL DEFAULT 1;

CREATE OR REPLACE FUNCTION task_count_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_projects p SET task_count = p.task_count + c.n,
                               list_version = p.list_version + 1
        FROM (SELECT project_id, count(*) AS n FROM added GROUP BY project_id) c
        WHERE p.id = c.project_id;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION task_count_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_projects p SET task_count = p.task_count - c.n,
                               list_version = p.list_version + 1
        FROM (SELECT project_id, count(*) AS n FROM removed GROUP BY project_id) c
        WHERE p.id = c.project_id;
    RETURN NULL;
END
$$;

-- An UPDATE of tasks (a PUT, a move, a rebalance, an assignee set to NULL when a user
-- goes): an UPDATE that matched no row (a PUT that changed nothing) bumps nothing.
CREATE FUNCTION task_list_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_projects p SET list_version = p.list_version + 1
        WHERE p.id IN (SELECT project_id FROM changed);
    RETURN NULL;
END
$$;
CREATE TRIGGER task_list_update AFTER UPDATE ON task_tasks
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION task_list_changed();

-- dependsOn is part of a listed task. Today every change of a task's dependencies also
-- updates its row (or deletes it), but a page must not depend on every future writer
-- remembering that: the edges bump their project themselves.
CREATE FUNCTION task_deps_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_projects p SET list_version = p.list_version + 1
        WHERE p.id IN (SELECT t.project_id FROM changed d JOIN task_tasks t ON t.id = d.task_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER task_deps_insert AFTER INSERT ON task_dependencies
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION task_deps_changed();
CREATE TRIGGER task_deps_delete AFTER DELETE ON task_dependencies
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION task_deps_changed();
