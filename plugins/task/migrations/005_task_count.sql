-- Each project's number of tasks, for the `total` of an unfiltered task list: a count(*)
-- of a 10,000-task project was most of that list's time, on every page. Kept by
-- statement-level triggers in the transaction that inserts or deletes the tasks (one
-- UPDATE per statement and project, however many rows: a bulk insert or the cascade of
-- a deleted project costs one), so the figure is exactly the rows a reader of the same
-- snapshot would count. A filtered list still counts its matches.
ALTER TABLE task_projects ADD COLUMN task_count bigint NOT NULL DEFAULT 0;
UPDATE task_projects p SET task_count = c.n
    FROM (SELECT project_id, count(*) AS n FROM task_tasks GROUP BY project_id) c
    WHERE c.project_id = p.id;

CREATE FUNCTION task_count_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_projects p SET task_count = p.task_count + c.n
        FROM (SELECT project_id, count(*) AS n FROM added GROUP BY project_id) c
        WHERE p.id = c.project_id;
    RETURN NULL;
END
$$;
CREATE FUNCTION task_count_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_projects p SET task_count = p.task_count - c.n
        FROM (SELECT project_id, count(*) AS n FROM removed GROUP BY project_id) c
        WHERE p.id = c.project_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_count_insert AFTER INSERT ON task_tasks
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION task_count_added();
CREATE TRIGGER task_count_delete AFTER DELETE ON task_tasks
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION task_count_removed();
