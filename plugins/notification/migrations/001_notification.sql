-- The inbox (API.md "Notifications"): one row per recipient per source event. PostgreSQL
-- is the record; the live stream and email are built from these rows.
--
-- seq grows with every row; for one user it is also commit order (the consumer locks its
-- recipients' stripes from before the insert to the commit, see consumer.c), so "this
-- user's rows after seq N" is a gapless resume point for the stream.
CREATE TABLE notification (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    type text NOT NULL,
    payload jsonb NOT NULL,
    project_id uuid NULL,
    source_event bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at timestamptz NULL,
    -- The recipient's inApp preference when the row was made: false rows exist for email
    -- and digests only; the inbox, the unread count and the stream never show them.
    in_app boolean NOT NULL DEFAULT true,
    UNIQUE (source_event, user_id, type)
);
-- The inbox page and the stream's replay: a user's rows in seq order.
CREATE INDEX notification_user_seq ON notification (user_id, seq) WHERE in_app;
CREATE INDEX notification_unread ON notification (user_id, seq) WHERE in_app AND read_at IS NULL;
-- The retention sweep.
CREATE INDEX notification_created ON notification (created_at);

-- Per type preferences; a missing row means the [plugin:notification] defaults.
CREATE TABLE notification_preference (
    user_id uuid NOT NULL,
    type text NOT NULL,
    in_app boolean NOT NULL,
    email text NOT NULL CHECK (email IN ('off', 'instant', 'daily')),
    PRIMARY KEY (user_id, type)
);

-- When a user's inbox last changed (a new row, a read, a sweep), for Last-Modified. It
-- moves by at least a whole second on every change (see notification_touch), so an
-- If-Modified-Since with HTTP's one-second precision never hides a change made in the
-- same second as the copy the client holds.
CREATE TABLE notification_inbox_state (
    user_id uuid PRIMARY KEY,
    modified_at timestamptz NOT NULL
);

CREATE FUNCTION notification_touch(users uuid[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO notification_inbox_state AS s (user_id, modified_at)
    SELECT DISTINCT u, date_trunc('second', now()) FROM unnest(users) AS u
    ON CONFLICT (user_id) DO UPDATE
    SET modified_at = greatest(date_trunc('second', now()), s.modified_at + interval '1 second')
$$;

-- Who follows a task, learnt from the task plugin's events (its payloads do not say who
-- created a task on a status change, nor who commented before): the consumer keeps this
-- in the same transaction as the events it reads, in the order the aggregate's events
-- come. Recipients are still filtered by the event's members.
CREATE TABLE notification_task_watch (
    task_id uuid NOT NULL,
    user_id uuid NOT NULL,
    reason text NOT NULL CHECK (reason IN ('creator', 'assignee', 'commenter')),
    PRIMARY KEY (task_id, reason, user_id)
);

-- The public shape of a notification (API.md): {id, type, payload, read, createdAt}.
CREATE FUNCTION notification_json(id uuid, type text, payload jsonb, read_at timestamptz,
                                  created_at timestamptz) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', id, 'type', type, 'payload', payload, 'read', read_at IS NOT NULL,
        'createdAt', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
$$;
