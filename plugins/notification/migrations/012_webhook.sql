-- Webhooks (delivery.h): endpoints and their delivery log.

-- A user's webhook endpoints. The secret is kept (it signs every delivery) and shown
-- once, in the answer to the create.
CREATE TABLE notification_webhook (
    id          uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL,
    url         text        NOT NULL,
    description text,
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_webhook_user_idx ON notification_webhook (user_id, created_at);

-- One delivery of one notification to one endpoint, and its log.
CREATE TABLE notification_webhook_delivery (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id      uuid        NOT NULL REFERENCES notification_webhook (id) ON DELETE CASCADE,
    notification_id uuid        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (webhook_id, notification_id)
);
CREATE INDEX notification_webhook_delivery_due_idx ON notification_webhook_delivery (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX notification_webhook_delivery_log_idx
    ON notification_webhook_delivery (webhook_id, created_at DESC);
