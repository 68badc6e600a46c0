-- What the consumer did: one row per handled delivery (deliberately without a unique
-- key, so a second effect of one event would show as a second row).
CREATE TABLE evkit_seen (
    n bigserial PRIMARY KEY,
    group_name text NOT NULL,
    event_id bigint NOT NULL,
    type text NOT NULL,
    aggregate_id text NOT NULL,
    seq int,
    attempt int NOT NULL,
    producer text NOT NULL,
    at text NOT NULL
);
CREATE TABLE evkit_writes (id bigserial PRIMARY KEY, aggregate_id text NOT NULL);
