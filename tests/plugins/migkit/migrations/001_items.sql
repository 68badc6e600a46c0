-- Deliberately without IF NOT EXISTS: applied twice, this fails.
CREATE TABLE migkit_items (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
