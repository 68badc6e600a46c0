-- The summary report and its cycle time (README.md defines both).

-- A done task's cycle time in seconds: from its first move to in_progress (at or after
-- its last reopening, i.e. its last move out of done) to its last move to done. NULL
-- when it never went through in_progress in that span.
CREATE FUNCTION reporting_cycle_seconds(tid uuid) RETURNS double precision
LANGUAGE sql STABLE AS $$
    WITH r AS (SELECT coalesce(max(at), '-infinity') AS reopened FROM reporting_transitions
               WHERE task_id = tid AND from_status = 'done' AND to_status IS NOT NULL
                 AND to_status <> 'done'),
    s AS (SELECT min(at) AS started FROM reporting_transitions, r
          WHERE task_id = tid AND to_status = 'in_progress' AND at >= r.reopened),
    e AS (SELECT max(at) AS finished FROM reporting_transitions
          WHERE task_id = tid AND to_status = 'done')
    SELECT extract(epoch FROM e.finished - s.started)::double precision
    FROM s, e WHERE e.finished >= s.started
$$;

-- The summary as of `today` (overdue: due before today and not done).
CREATE FUNCTION reporting_summary(pid uuid, today date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH t AS (SELECT * FROM reporting_tasks WHERE project_id = pid),
    c AS (SELECT reporting_cycle_seconds(task_id) AS s FROM t WHERE status = 'done'),
    cs AS (SELECT count(s) AS n,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS median,
                  percentile_cont(0.85) WITHIN GROUP (ORDER BY s) AS p85
           FROM c WHERE s IS NOT NULL),
    a AS (SELECT coalesce(jsonb_agg(jsonb_build_object('assigneeId', assignee_id, 'count', n)
                                    ORDER BY n DESC, assignee_id NULLS LAST), '[]') AS j
          FROM (SELECT assignee_id, count(*) AS n FROM t GROUP BY assignee_id) x)
    SELECT jsonb_build_object(
        'projectId', pid,
        'name', (SELECT name FROM reporting_projects WHERE id = pid),
        'asOf', to_char(today, 'YYYY-MM-DD'),
        'total', (SELECT count(*) FROM t),
        'byStatus', jsonb_build_object(
            'todo', (SELECT count(*) FROM t WHERE status = 'todo'),
            'in_progress', (SELECT count(*) FROM t WHERE status = 'in_progress'),
            'done', (SELECT count(*) FROM t WHERE status = 'done')),
        'byPriority', jsonb_build_object(
            'low', (SELECT count(*) FROM t WHERE priority = 'low'),
            'medium', (SELECT count(*) FROM t WHERE priority = 'medium'),
            'high', (SELECT count(*) FROM t WHERE priority = 'high')),
        'byAssignee', (SELECT j FROM a),
        'overdue', (SELECT count(*) FROM t WHERE due_date < today AND status <> 'done'),
        'completionPercent', (SELECT CASE WHEN count(*) = 0 THEN 0 ELSE
            round(100.0 * count(*) FILTER (WHERE status = 'done') / count(*), 1) END FROM t),
        'cycleTime', (SELECT jsonb_build_object('tasks', n, 'medianSeconds', median,
                                                'p85Seconds', p85) FROM cs))
$$;

