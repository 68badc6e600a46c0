-- Daily digests and the unsubscribe key (delivery.h).

-- Notifications waiting for a user's digest; `period` is set when a digest claims them.
CREATE TABLE notification_digest_item (
    notification_id uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL,
    type            text        NOT NULL,
    period          timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_digest_item_open_idx ON notification_digest_item (user_id)
    WHERE period IS NULL;
CREATE INDEX notification_digest_item_period_idx ON notification_digest_item (user_id, period);

-- The last digest period the cluster has run: the singleton job moves it forward in the
-- transaction that creates that period's digests, so a period runs once.
CREATE TABLE notification_digest_run (
    id     integer     PRIMARY KEY CHECK (id = 1),
    period timestamptz NOT NULL
);

-- The unsubscribe key when the configuration gives none: random, made once per
-- database, so every host signs and checks with the same one.
CREATE TABLE notification_delivery_key (
    id  integer PRIMARY KEY CHECK (id = 1),
    key text    NOT NULL
);
INSERT INTO notification_delivery_key (id, key)
VALUES (1, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
