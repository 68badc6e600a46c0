CREATE TABLE IF NOT EXISTS helperkit_items (
    id bigserial PRIMARY KEY,
    name text NOT NULL CONSTRAINT helperkit_items_name_key UNIQUE,
    score int NOT NULL DEFAULT 0 CONSTRAINT helperkit_items_score_check CHECK (score >= 0)
);
