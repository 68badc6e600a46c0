-- No unique constraint on purpose: only Idempotency-Key keeps retries from duplicating.
CREATE TABLE IF NOT EXISTS pgkit_notes (id bigserial PRIMARY KEY, text text NOT NULL);
