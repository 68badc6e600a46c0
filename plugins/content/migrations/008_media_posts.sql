-- Media belong to the post that shows them (README.md, "Media"). A post created or changed
-- with /v1/media/<id> in its body takes those of its author's uploads that no post holds
-- yet; deleting the post deletes them (and the plugin drops their blob references). A
-- media row is as visible as its post; one no post holds is its uploader's alone.
-- NO ACTION: a post is never deleted from under its media (the delete takes them first).
ALTER TABLE content_media ADD COLUMN post_id uuid REFERENCES content_posts (id);
CREATE INDEX content_media_post ON content_media (post_id) WHERE post_id IS NOT NULL;
