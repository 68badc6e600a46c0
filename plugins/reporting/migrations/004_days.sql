-- The reports (plugins/reporting/README.md gives the definitions) and the rebuild, as
-- functions of the plugin's own tables; each answers one JSON value.

-- Tasks in each status at the end of every day of first..last (UTC), from the daily
-- changes: the counts before `first` plus the running sum within the range.
CREATE FUNCTION reporting_flow(pid uuid, first date, last date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH base AS (
        SELECT status, sum(delta) AS n FROM reporting_daily
        WHERE project_id = pid AND day < first GROUP BY status),
    d AS (
        SELECT day, status, sum(delta) AS n FROM reporting_daily
        WHERE project_id = pid AND day BETWEEN first AND last GROUP BY day, status),
    grid AS (
        SELECT g::date AS day, s.status, coalesce(d.n, 0) AS n
        FROM generate_series(first, last, interval '1 day') AS g
        CROSS JOIN (VALUES ('todo'), ('in_progress'), ('done')) AS s(status)
        LEFT JOIN d ON d.day = g::date AND d.status = s.status),
    cum AS (
        SELECT grid.day, grid.status, coalesce(base.n, 0)
               + sum(grid.n) OVER (PARTITION BY grid.status ORDER BY grid.day) AS c
        FROM grid LEFT JOIN base ON base.status = grid.status)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'date', to_char(day, 'YYYY-MM-DD'), 'todo', todo, 'in_progress', in_progress,
               'done', done) ORDER BY day), '[]')
    FROM (SELECT day, max(c) FILTER (WHERE status = 'todo')::bigint AS todo,
                 max(c) FILTER (WHERE status = 'in_progress')::bigint AS in_progress,
                 max(c) FILTER (WHERE status = 'done')::bigint AS done
          FROM cum GROUP BY day) AS x
$$;

-- scope: tasks that existed at the end of the day; done: of those, done; remaining: the
-- rest.
CREATE FUNCTION reporting_burndown(pid uuid, first date, last date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'date', d ->> 'date',
               'scope', (d ->> 'todo')::bigint + (d ->> 'in_progress')::bigint
                        + (d ->> 'done')::bigint,
               'done', (d ->> 'done')::bigint,
               'remaining', (d ->> 'todo')::bigint + (d ->> 'in_progress')::bigint)
               ORDER BY d ->> 'date'), '[]')
    FROM jsonb_array_elements(reporting_flow(pid, first, last)) AS d
$$;

CREATE FUNCTION reporting_activity_days(first date, last date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'date', to_char(g, 'YYYY-MM-DD'),
               'signups', coalesce((SELECT n FROM reporting_activity a
                                    WHERE a.day = g::date AND metric = 'signups'), 0),
               'posts', coalesce((SELECT n FROM reporting_activity a
                                  WHERE a.day = g::date AND metric = 'posts'), 0),
               'comments', coalesce((SELECT n FROM reporting_activity a
                                     WHERE a.day = g::date AND metric = 'comments'), 0),
               'tasksCreated', coalesce((SELECT n FROM reporting_activity a
                                         WHERE a.day = g::date AND metric = 'tasksCreated'), 0),
               'tasksDone', coalesce((SELECT n FROM reporting_activity a
                                      WHERE a.day = g::date AND metric = 'tasksDone'), 0))
               ORDER BY g), '[]')
    FROM generate_series(first, last, interval '1 day') AS g
$$;

