-- One row per delivery transaction that ran evkit's batch hook (px_event_prepare): the
-- event ids it was given, in order. n comes from evkit_seen's sequence, so a hook's row
-- numbered below its handlers' rows ran before them.
CREATE TABLE evkit_prepared (
    n bigint PRIMARY KEY DEFAULT nextval('evkit_seen_n_seq'),
    group_name text NOT NULL,
    ids bigint[] NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
