-- `pantherad reporting:rebuild` (rebuild.c).

-- pantherad reporting:rebuild: import what the task plugin recorded before this plugin
-- was enabled (its activity rows older than enabled_at) into the log and its days, and
-- the current state of tasks the events never described. Safe to run again: every
-- imported row has its source. Returns how many transitions it added.
CREATE FUNCTION reporting_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    since timestamptz := (SELECT enabled_at FROM reporting_meta WHERE id = 1);
    imported bigint;
BEGIN
    INSERT INTO reporting_projects AS r (id, name, members)
    SELECT p.id, p.name, coalesce((SELECT jsonb_agg(jsonb_build_object('userId', m.user_id,
                                   'role', m.role) ORDER BY m.created_at, m.user_id)
                                   FROM task_members m WHERE m.project_id = p.id), '[]')
    FROM task_projects p
    ON CONFLICT (id) DO UPDATE SET
        name = CASE WHEN r.name = '' THEN EXCLUDED.name ELSE r.name END,
        members = CASE WHEN r.members_event = 0 THEN EXCLUDED.members ELSE r.members END;

    -- Each task's status after each of its activity rows: the row's own status change, or
    -- the last one before it (a deletion takes the status it had).
    CREATE TEMPORARY TABLE rebuild_rows ON COMMIT DROP AS
    SELECT a.id, a.project_id, a.entity_id AS task_id, a.action, a.created_at, a.seq,
           a.changes #>> '{status,1}' AS new_status, a.changes ? 'status' AS moves
    FROM task_activity a
    WHERE a.entity = 'task' AND a.created_at < since
      AND (a.action = 'created' OR a.action = 'deleted' OR a.changes ? 'status');
    WITH s AS (
        SELECT r.*, (SELECT r2.new_status FROM rebuild_rows r2
                     WHERE r2.task_id = r.task_id AND r2.seq < r.seq AND r2.new_status IS NOT NULL
                     ORDER BY r2.seq DESC LIMIT 1) AS before
        FROM rebuild_rows r),
    ins AS (
        SELECT reporting_transition('activity:' || s.id, s.project_id, s.task_id,
                   CASE WHEN s.action = 'created' THEN NULL ELSE s.before END,
                   CASE WHEN s.action = 'deleted' THEN NULL
                        ELSE coalesce(s.new_status, 'todo') END, s.created_at) AS new,
               s.action, s.new_status, s.created_at
        FROM s ORDER BY s.seq)
    SELECT count(*) FILTER (WHERE new) INTO imported FROM ins;

    -- The tasks as they are now, for the ones the events never described.
    INSERT INTO reporting_tasks (task_id, project_id, status, priority, assignee_id, due_date)
    SELECT t.id, t.project_id, t.status, t.priority, t.assignee_id, t.due_date
    FROM task_tasks t ON CONFLICT (task_id) DO NOTHING;

    UPDATE reporting_projects SET generation = generation + 1;
    UPDATE reporting_meta SET generation = generation + 1 WHERE id = 1;
    RETURN imported;
END
$$;
