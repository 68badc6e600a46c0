-- The hot score of the feed (README.md, "Feed"): Reddit's, log10 of the engagement plus
-- the publication time over 45,000 s (12.5 h): a post needs ten times the engagement to
-- stay level with one published 12.5 hours later. It depends only on the post, never on
-- the current time, so it can be stored, indexed and kept in a Redis sorted set.
-- extract(epoch) of a timestamptz does not depend on the time zone (the function is
-- STABLE only because other fields do), so IMMUTABLE is true here.
CREATE FUNCTION content_hot(likes integer, comments integer, published timestamptz)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN published IS NOT NULL THEN
        log(greatest(likes + 2 * comments, 1)::double precision)
        + extract(epoch FROM published)::double precision / 45000 END
    $$;

ALTER TABLE content_posts ADD COLUMN hot double precision
    GENERATED ALWAYS AS (content_hot(like_count, comment_count, published_at)) STORED;
CREATE INDEX content_posts_hot ON content_posts (hot DESC, id DESC) WHERE status = 'published';
