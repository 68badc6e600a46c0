CREATE TABLE IF NOT EXISTS pgkit_items (id bigserial PRIMARY KEY, name text UNIQUE NOT NULL);
