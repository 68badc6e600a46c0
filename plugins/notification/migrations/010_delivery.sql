-- Delivery (plugins/notification/delivery.h): the mail ledger, daily digests, webhooks.
-- Rows are written by the delivery consumer of notification.created, in the consumer's
-- transaction, so a ledger row exists exactly when its notification does.

-- One row per mail to send: an instant mail per notification (notification_id unique:
-- never two), or one digest per user per period (the partial unique index: never two,
-- whichever host's singleton job gets there). A sender claims a due row by moving
-- next_attempt_at past a lease, so a crashed sender's row comes back when the lease ends.
CREATE TABLE notification_mail (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('instant', 'digest')),
    notification_id uuid        UNIQUE,
    user_id         uuid        NOT NULL,
    type            text,
    period          timestamptz,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sent', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CHECK ((kind = 'instant') = (notification_id IS NOT NULL)),
    CHECK ((kind = 'digest') = (period IS NOT NULL))
);
CREATE UNIQUE INDEX notification_mail_digest_key ON notification_mail (user_id, period)
    WHERE kind = 'digest';
CREATE INDEX notification_mail_due_idx ON notification_mail (next_attempt_at)
    WHERE state = 'pending';

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
