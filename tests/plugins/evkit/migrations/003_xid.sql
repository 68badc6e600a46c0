-- The transaction that handled each event, so a test can tell which events one delivery
-- batch handled together.
ALTER TABLE evkit_seen ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
