-- One row per (post, user): a like is idempotent by its primary key, and the counter on
-- the post moves only when a row really came or went (in the same statement).
CREATE TABLE content_likes (
    post_id uuid NOT NULL REFERENCES content_posts (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);

-- The post as API.md shows it, for `viewer` (NULL: anonymous; likedByMe is then false).
-- One place builds it, so every route answers the same shape.
CREATE FUNCTION content_post_json(p content_posts, viewer uuid) RETURNS json
    LANGUAGE sql STABLE
    AS $$
    SELECT json_build_object(
        'id', p.id, 'authorId', p.author_id, 'kind', p.kind, 'title', p.title,
        'body', p.body, 'tags', to_json(p.tags), 'status', p.status,
        'publishedAt', content_ts(p.published_at), 'createdAt', content_ts(p.created_at),
        'updatedAt', content_ts(p.updated_at), 'version', p.version,
        'commentCount', p.comment_count, 'likeCount', p.like_count,
        'likedByMe', viewer IS NOT NULL AND EXISTS (
            SELECT 1 FROM content_likes l WHERE l.post_id = p.id AND l.user_id = viewer))
    $$;

