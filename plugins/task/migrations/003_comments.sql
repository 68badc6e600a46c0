-- Comments on tasks, with the members they mention (API.md "Projects and tasks").
CREATE TABLE task_comments (
    id uuid PRIMARY KEY,
    task_id uuid NOT NULL REFERENCES task_tasks (id) ON DELETE CASCADE,
    author_id uuid REFERENCES users (id) ON DELETE SET NULL,
    body text NOT NULL,
    mentions uuid[] NOT NULL DEFAULT '{}',
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_comments_task ON task_comments (task_id, created_at, id);

-- The members of `project` that `body` mentions as @username (any case). An @ inside a
-- word (an email address) is no mention, and a sentence's final '.' is not part of the
-- name. A name that is no member of the project mentions nobody.
CREATE FUNCTION task_mentions(project uuid, body text) RETURNS uuid[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(DISTINCT m.user_id ORDER BY m.user_id), '{}')
    FROM regexp_matches(body, '(?:^|[^A-Za-z0-9_.@])@([A-Za-z0-9_.]{3,30})', 'g') AS r(x)
    JOIN users u ON lower(u.username) IN (lower(r.x[1]), lower(rtrim(r.x[1], '.')))
    JOIN task_members m ON m.project_id = project AND m.user_id = u.id
$$;

CREATE FUNCTION task_comment_json(c jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c -> 'id', 'taskId', c -> 'task_id', 'authorId', c -> 'author_id',
        'body', c -> 'body', 'mentions', c -> 'mentions',
        'createdAt', task_ts((c ->> 'created_at')::timestamptz),
        'updatedAt', task_ts((c ->> 'updated_at')::timestamptz),
        'version', c -> 'version')
$$;
