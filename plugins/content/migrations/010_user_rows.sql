-- A deleted user's likes and comments are found by the user (user_deleted.c): without
-- these, each of those statements reads the whole table. Posts have content_posts_author.
CREATE INDEX content_likes_user ON content_likes (user_id);
CREATE INDEX content_comments_author ON content_comments (author_id);
