-- Deleting a user locks the user's row, and then, through the foreign keys of 001-004
-- (ON DELETE CASCADE / SET NULL), the memberships, tasks, comments and attachments that
-- name them; the tasks' triggers (005, 006) then update their projects' rows. Every write
-- of this plugin locks the other way round: the users it names (access.c), then the
-- project, then the task (the gate's FOR UPDATE). A deletion racing a write in one of the
-- user's projects closed a cycle -- the deletion holding a task and waiting for its
-- project, the write holding the project and waiting for the task -- and PostgreSQL broke
-- it after deadlock_timeout by failing one side (tests/api/test_task_user_deletion.py).
-- Before the cascades run, the deletion now locks every project it will touch, in id
-- order, as a write would: users, projects, tasks, in one order for both.
CREATE FUNCTION task_user_leaving() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM task_projects p
        WHERE p.id IN (SELECT m.project_id FROM task_members m WHERE m.user_id = OLD.id
                       UNION SELECT t.project_id FROM task_tasks t WHERE t.assignee_id = OLD.id
                       UNION SELECT t.project_id FROM task_comments c
                             JOIN task_tasks t ON t.id = c.task_id WHERE c.author_id = OLD.id
                       UNION SELECT t.project_id FROM task_attachments a
                             JOIN task_tasks t ON t.id = a.task_id WHERE a.uploader_id = OLD.id)
        ORDER BY p.id FOR NO KEY UPDATE;
    RETURN OLD;
END
$$;
CREATE TRIGGER task_user_leaving BEFORE DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION task_user_leaving();
