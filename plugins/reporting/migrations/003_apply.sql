-- The consumer's one call per event.

-- One event, as the consumer receives it (PLUGINS.md lists the payloads).
CREATE FUNCTION reporting_apply(ev_id bigint, ev_type text, ev_at timestamptz, p jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    pid uuid;
    tid uuid;
    ch jsonb := coalesce(p -> 'changes', '{}');
BEGIN
    CASE ev_type
    WHEN 'user.registered' THEN PERFORM reporting_count(ev_at, 'signups', 1);
    WHEN 'post.published' THEN PERFORM reporting_count(ev_at, 'posts', 1);
    WHEN 'post.commented' THEN PERFORM reporting_count(ev_at, 'comments', 1);
    WHEN 'task.created' THEN
        PERFORM reporting_count(ev_at, 'tasksCreated', 1);
        IF p ->> 'status' = 'done' THEN
            PERFORM reporting_count(ev_at, 'tasksDone', 1);
        END IF;
    WHEN 'task.status_changed' THEN
        IF p ->> 'to' = 'done' THEN
            PERFORM reporting_count(ev_at, 'tasksDone', 1);
        END IF;
    ELSE
    END CASE;
    IF ev_type NOT LIKE 'project.%' AND ev_type NOT LIKE 'task.%' OR p ->> 'projectId' IS NULL THEN
        RETURN;
    END IF;
    pid := (p ->> 'projectId')::uuid;
    IF ev_type = 'project.deleted' THEN
        DELETE FROM reporting_projects WHERE id = pid;
        INSERT INTO reporting_gone (id) VALUES (pid) ON CONFLICT DO NOTHING;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM reporting_gone WHERE id = pid) THEN
        RETURN;
    END IF;
    INSERT INTO reporting_projects AS r (id, name, members, members_event, generation)
    VALUES (pid, coalesce(ch #>> '{name,1}', CASE WHEN ev_type LIKE 'project.%' THEN p ->> 'name' END,
                          p ->> 'projectName', ''),
            coalesce(p -> 'members', '[]'), CASE WHEN p ? 'members' THEN ev_id ELSE 0 END, 1)
    ON CONFLICT (id) DO UPDATE SET
        name = CASE WHEN coalesce(ch #>> '{name,1}', CASE WHEN ev_type LIKE 'project.%'
                                  THEN p ->> 'name' END, p ->> 'projectName') IS NULL
                    OR ev_id < r.members_event AND r.name <> '' THEN r.name
                    ELSE EXCLUDED.name END,
        members = CASE WHEN p ? 'members' AND ev_id > r.members_event THEN p -> 'members'
                       ELSE r.members END,
        members_event = greatest(r.members_event, EXCLUDED.members_event),
        generation = r.generation + 1;
    IF ev_type NOT LIKE 'task.%' OR p ->> 'taskId' IS NULL THEN
        RETURN;
    END IF;
    tid := (p ->> 'taskId')::uuid;
    CASE ev_type
    WHEN 'task.created' THEN
        PERFORM reporting_transition('event:' || ev_id, pid, tid, NULL,
                                     coalesce(p ->> 'status', 'todo'), ev_at);
        INSERT INTO reporting_tasks (task_id, project_id, status, priority, assignee_id, due_date)
        VALUES (tid, pid, coalesce(p ->> 'status', 'todo'), coalesce(p ->> 'priority', 'medium'),
                (p ->> 'assigneeId')::uuid, (p ->> 'dueDate')::date)
        ON CONFLICT (task_id) DO NOTHING;
    WHEN 'task.status_changed' THEN
        PERFORM reporting_transition('event:' || ev_id, pid, tid, p ->> 'from', p ->> 'to', ev_at);
        UPDATE reporting_tasks SET status = p ->> 'to' WHERE task_id = tid;
    WHEN 'task.deleted' THEN
        PERFORM reporting_transition('event:' || ev_id, pid, tid, p ->> 'status', NULL, ev_at);
        DELETE FROM reporting_tasks WHERE task_id = tid;
    WHEN 'task.assigned' THEN
        UPDATE reporting_tasks SET assignee_id = (p ->> 'assigneeId')::uuid WHERE task_id = tid;
    WHEN 'task.updated' THEN
        UPDATE reporting_tasks SET
            priority = CASE WHEN ch ? 'priority' THEN ch #>> '{priority,1}' ELSE priority END,
            due_date = CASE WHEN ch ? 'dueDate' THEN (ch #>> '{dueDate,1}')::date ELSE due_date END,
            assignee_id = CASE WHEN ch ? 'assigneeId' THEN (ch #>> '{assigneeId,1}')::uuid
                               ELSE assignee_id END
        WHERE task_id = tid;
    ELSE
    END CASE;
END
$$;
