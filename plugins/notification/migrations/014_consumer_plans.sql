-- What the consumer's statements call, made cheap to call (tests/bench/notification.sh,
-- part (b): the SQL parser was PostgreSQL's top symbol there). A LANGUAGE sql function
-- that PostgreSQL does not inline is parsed and planned again on every execution of the
-- statement that calls it; a plpgsql one keeps its plans for the session (the pool's
-- connections live long).
--
-- notification_json was declared IMMUTABLE over to_char, which is only STABLE: such a
-- function is never inlined. STABLE is what it is, and then every statement that calls it
-- (the consumer's inserts, the inbox page, the stream's replay) has its expression in
-- place of the call.
ALTER FUNCTION notification_json(uuid, text, jsonb, timestamptz, timestamptz) STABLE;

-- The same statement as migration 001's, in plpgsql: an INSERT is never inlined.
CREATE OR REPLACE FUNCTION notification_touch(users uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notification_inbox_state AS s (user_id, modified_at)
    SELECT DISTINCT u, date_trunc('second', now()) FROM unnest(users) AS u
    ON CONFLICT (user_id) DO UPDATE
    SET modified_at = greatest(date_trunc('second', now()), s.modified_at + interval '1 second');
END
$$;
