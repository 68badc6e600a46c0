-- Comments on posts (API.md "Content"). mentioned_user_ids holds the users an
-- `@username` in the body named when it was written (resolved against the user plugin's
-- users table, which this plugin depends on).
CREATE TABLE content_comments (
    id uuid PRIMARY KEY,
    post_id uuid NOT NULL REFERENCES content_posts (id) ON DELETE CASCADE,
    author_id uuid NOT NULL,
    body text NOT NULL,
    mentioned_user_ids uuid[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1
);
CREATE INDEX content_comments_post ON content_comments (post_id, created_at, id);

CREATE FUNCTION content_comment_json(c content_comments) RETURNS json
    LANGUAGE sql STABLE
    AS $$
    SELECT json_build_object(
        'id', c.id, 'postId', c.post_id, 'authorId', c.author_id, 'body', c.body,
        'mentionedUserIds', to_json(c.mentioned_user_ids),
        'createdAt', content_ts(c.created_at), 'updatedAt', content_ts(c.updated_at),
        'version', c.version)
    $$;
