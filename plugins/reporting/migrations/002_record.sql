-- How an event becomes history (001_log.sql has the tables).

CREATE FUNCTION reporting_day(t timestamptz) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT (t AT TIME ZONE 'UTC')::date
$$;

CREATE FUNCTION reporting_count(t timestamptz, m text, k integer) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO reporting_activity (day, metric, n) VALUES (reporting_day(t), m, k)
    ON CONFLICT (day, metric) DO UPDATE SET n = reporting_activity.n + EXCLUDED.n;
    UPDATE reporting_meta SET generation = generation + 1 WHERE id = 1;
$$;

-- Append one transition (once per source) and add it to its day. Returns true when new.
CREATE FUNCTION reporting_transition(src text, pid uuid, tid uuid, f text, t text,
                                     at timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reporting_transitions (source, project_id, task_id, from_status, to_status, at)
    VALUES (src, pid, tid, f, t, at) ON CONFLICT (source) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO reporting_daily (project_id, day, status, delta)
    SELECT pid, reporting_day(at), s, d FROM (VALUES (f, -1), (t, 1)) AS v(s, d)
    WHERE s IS NOT NULL
    ON CONFLICT (project_id, day, status)
    DO UPDATE SET delta = reporting_daily.delta + EXCLUDED.delta;
    RETURN true;
END
$$;

