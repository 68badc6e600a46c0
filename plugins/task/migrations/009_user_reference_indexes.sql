-- Deleting a user sets author_id and uploader_id to NULL wherever they name the user
-- (003, 004: ON DELETE SET NULL), and 008's trigger looks those rows up first. Without an
-- index each deletion read every comment and attachment of every project, twice, while
-- holding the user's and their projects' locks. Partial: the rows whose author is gone
-- are never looked up this way.
CREATE INDEX task_comments_author ON task_comments (author_id) WHERE author_id IS NOT NULL;
CREATE INDEX task_attachments_uploader ON task_attachments (uploader_id)
    WHERE uploader_id IS NOT NULL;
