-- The reporting plugin's own history (plugins/reporting/README.md). Reports are answered
-- from these tables only, never from the task plugin's: they are written by the consumer
-- of the task, content and user events (reporting_apply, one call per event, in the
-- consumer's transaction) and by `pantherad reporting:rebuild` (reporting_rebuild).
-- Days are UTC days.

-- One row. enabled_at: when the plugin's schema appeared; activity rows older than this
-- are what reporting:rebuild imports (newer ones arrived as events). generation: bumped
-- by every event that changes the site-wide activity report (its cache key).
CREATE TABLE reporting_meta (
    id integer PRIMARY KEY CHECK (id = 1),
    enabled_at timestamptz NOT NULL DEFAULT now(),
    generation bigint NOT NULL DEFAULT 0
);
INSERT INTO reporting_meta (id) VALUES (1);

-- The projects reports are about, with who may see them (the "members" of the latest
-- event that carried them: members_event orders them, since events of different
-- aggregates may be delivered out of order). generation is bumped by every event that
-- changes one of the project's reports: cached answers are keyed by it.
CREATE TABLE reporting_projects (
    id uuid PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    members jsonb NOT NULL DEFAULT '[]',
    members_event bigint NOT NULL DEFAULT 0,
    generation bigint NOT NULL DEFAULT 0
);

-- The append-only state-transition log: a task went from `from_status` to `to_status`
-- at `at` (the event's commit time). from NULL: created; to NULL: deleted. source names
-- where the row came from ("event:<id>" or "activity:<task_activity id>") so neither a
-- redelivery nor a second rebuild can write it twice.
CREATE TABLE reporting_transitions (
    id bigserial PRIMARY KEY,
    source text NOT NULL UNIQUE,
    project_id uuid NOT NULL REFERENCES reporting_projects (id) ON DELETE CASCADE,
    task_id uuid NOT NULL,
    from_status text,
    to_status text,
    at timestamptz NOT NULL
);
CREATE INDEX reporting_transitions_task ON reporting_transitions (task_id, at);
CREATE INDEX reporting_transitions_project ON reporting_transitions (project_id, at);

-- Daily snapshots, kept as each day's net change per status: a day's count of tasks in a
-- status is the running sum up to that day. A transition only ever adds to its own day,
-- so a later change never alters an earlier day.
CREATE TABLE reporting_daily (
    project_id uuid NOT NULL REFERENCES reporting_projects (id) ON DELETE CASCADE,
    day date NOT NULL,
    status text NOT NULL,
    delta integer NOT NULL,
    PRIMARY KEY (project_id, day, status)
);

-- The tasks as they are now (for the summary): kept from the events, not read from the
-- task plugin.
CREATE TABLE reporting_tasks (
    task_id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES reporting_projects (id) ON DELETE CASCADE,
    status text NOT NULL,
    priority text NOT NULL DEFAULT 'medium',
    assignee_id uuid,
    due_date date
);
CREATE INDEX reporting_tasks_project ON reporting_tasks (project_id);

-- Site-wide counters per UTC day: signups, posts, comments, tasksCreated, tasksDone.
CREATE TABLE reporting_activity (
    day date NOT NULL,
    metric text NOT NULL,
    n integer NOT NULL,
    PRIMARY KEY (day, metric)
);


-- Projects deleted (project.deleted): events of their tasks may still arrive after it
-- (different aggregates are not ordered), and must not bring the project back.
CREATE TABLE reporting_gone (
    id uuid PRIMARY KEY
);
