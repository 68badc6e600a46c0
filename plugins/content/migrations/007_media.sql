-- Uploaded media (API.md "Content", POST /v1/media). The bytes are in the host's blob
-- store (blob_id, referenced as "media:<id>"); this row is what the API shows.
CREATE TABLE content_media (
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL,
    blob_id text NOT NULL,
    content_type text NOT NULL,
    size bigint NOT NULL,
    width integer,
    height integer,
    filename text,
    created_at timestamptz NOT NULL DEFAULT now()
);
