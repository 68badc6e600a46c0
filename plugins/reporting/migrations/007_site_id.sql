-- The site-wide activity report is cached under a key naming this database's site_id:
-- "site" and a generation alone are the same in every database, so two deployments (or
-- test databases) sharing one Redis served each other's cached activity.
ALTER TABLE reporting_meta ADD COLUMN site_id uuid NOT NULL DEFAULT gen_random_uuid();
