-- The reports (plugins/reporting/README.md gives the definitions) and the rebuild, as
-- functions of the plugin's own tables; each answers one JSON value.

-- Tasks in each status at the end of every day of first..last (UTC), from the daily
-- changes: the sum of the changes before `first`, plus the running sum within the range
-- (one pass over the project's day rows: at most three a day).
CREATE FUNCTION reporting_counts(pid uuid, first date, last date)
RETURNS TABLE (day date, todo bigint, in_progress bigint, done bigint)
LANGUAGE sql STABLE AS $$
    WITH d AS (
        SELECT r.day, sum(delta) FILTER (WHERE status = 'todo') AS t,
               sum(delta) FILTER (WHERE status = 'in_progress') AS i,
               sum(delta) FILTER (WHERE status = 'done') AS n
        FROM reporting_daily r WHERE project_id = pid AND r.day <= last GROUP BY r.day),
    b AS (SELECT coalesce(sum(t), 0) AS t, coalesce(sum(i), 0) AS i, coalesce(sum(n), 0) AS n
          FROM d WHERE d.day < first)
    SELECT g::date, (b.t + sum(coalesce(d.t, 0)) OVER w)::bigint,
           (b.i + sum(coalesce(d.i, 0)) OVER w)::bigint,
           (b.n + sum(coalesce(d.n, 0)) OVER w)::bigint
    FROM generate_series(first, last, interval '1 day') AS g
    CROSS JOIN b LEFT JOIN d ON d.day = g::date
    WINDOW w AS (ORDER BY g)
$$;

CREATE FUNCTION reporting_flow(pid uuid, first date, last date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('date', to_char(day, 'YYYY-MM-DD'),
               'todo', todo, 'in_progress', in_progress, 'done', done) ORDER BY day), '[]')
    FROM reporting_counts(pid, first, last)
$$;

-- scope: tasks that existed at the end of the day; done: of those, done; remaining: the
-- rest.
CREATE FUNCTION reporting_burndown(pid uuid, first date, last date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('date', to_char(day, 'YYYY-MM-DD'),
               'scope', todo + in_progress + done, 'done', done,
               'remaining', todo + in_progress) ORDER BY day), '[]')
    FROM reporting_counts(pid, first, last)
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

