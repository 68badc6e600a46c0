-- Attachments of tasks (API.md "Projects and tasks", Conventions "Files"). The bytes are
-- in the host's blob store; a row names its blob and holds the plugin's reference to it
-- ("attachment:<id>").
CREATE TABLE task_attachments (
    id uuid PRIMARY KEY,
    task_id uuid NOT NULL REFERENCES task_tasks (id) ON DELETE CASCADE,
    blob_id text NOT NULL,
    filename text NOT NULL,
    content_type text NOT NULL,
    size bigint NOT NULL,
    uploader_id uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_attachments_task ON task_attachments (task_id, created_at, id);

-- The references still to drop. A blob reference lives in the blob store, outside any
-- transaction, so a deleted row (by DELETE /v1/attachments/{id}, or with its task or
-- project through ON DELETE CASCADE) leaves a row here in the same transaction; the
-- release loop (attachments.c) drops the reference and then this row. A crash in between
-- only means the reference is dropped twice, which is harmless.
CREATE TABLE task_blob_releases (
    id bigserial PRIMARY KEY,
    blob_id text NOT NULL,
    ref text NOT NULL
);

CREATE FUNCTION task_attachment_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_blob_releases (blob_id, ref) VALUES (OLD.blob_id, 'attachment:' || OLD.id);
    RETURN OLD;
END
$$;
CREATE TRIGGER task_attachments_release AFTER DELETE ON task_attachments
    FOR EACH ROW EXECUTE FUNCTION task_attachment_released();

CREATE FUNCTION task_attachment_json(a task_attachments) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'taskId', a.task_id, 'filename', a.filename,
        'contentType', a.content_type, 'size', a.size, 'sha256', a.blob_id,
        'uploaderId', a.uploader_id, 'createdAt', task_ts(a.created_at))
$$;
