-- When the handler ran, for the commit-to-handler latency of tests/bench/events.sh.
ALTER TABLE evkit_seen ADD COLUMN handled_at timestamptz NOT NULL DEFAULT clock_timestamp();
