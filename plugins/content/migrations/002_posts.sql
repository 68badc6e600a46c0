-- Posts and articles (API.md "Content").
CREATE TABLE content_posts (
    id uuid PRIMARY KEY,
    author_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('post', 'article')),
    title text NOT NULL,
    body text NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    status text NOT NULL CHECK (status IN ('draft', 'published')),
    published_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1,
    comment_count integer NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    like_count integer NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    -- Title weighs most, then tags, then the body (ts_rank_cd reads the weights).
    search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('content_search', title), 'A') ||
        setweight(to_tsvector('content_search', content_tags_text(tags)), 'B') ||
        setweight(to_tsvector('content_search', body), 'C')) STORED,
    CHECK ((status = 'published') = (published_at IS NOT NULL))
);

CREATE INDEX content_posts_search ON content_posts USING gin (search);
-- The feed and the default list order: newest published first, keyset on (published_at, id).
CREATE INDEX content_posts_published ON content_posts (published_at DESC, id DESC)
    WHERE status = 'published';
CREATE INDEX content_posts_author ON content_posts (author_id, updated_at DESC);
CREATE INDEX content_posts_tags ON content_posts USING gin (tags);

