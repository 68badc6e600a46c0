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
