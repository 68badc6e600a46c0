-- A write shaped like the task plugin's task creation (plugins/task/migrations/001, 002:
-- the row with its checks, generated column, deferred unique key and four indexes, a
-- foreign key to its project, and the activity row written in the same statement), for
-- tests/bench/events.sh emit with BENCH_EMIT_SHAPE=task: what one px_event_emit adds to
-- a write a product makes, beside what it adds to the one-column insert.
CREATE TABLE evkit_projects (id bigint PRIMARY KEY);
INSERT INTO evkit_projects SELECT generate_series(1, 1000);
CREATE TABLE evkit_tasks (
    id uuid PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES evkit_projects (id) ON DELETE CASCADE,
    title text NOT NULL,
    description text,
    status text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'done')),
    priority text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
    priority_n smallint GENERATED ALWAYS AS (
        CASE priority WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END) STORED,
    assignee_id uuid,
    due_date date,
    rank text COLLATE "C" NOT NULL,
    created_by uuid,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT evkit_tasks_rank_unique UNIQUE (project_id, status, rank) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX evkit_tasks_updated ON evkit_tasks (project_id, updated_at DESC, id);
CREATE INDEX evkit_tasks_due ON evkit_tasks (project_id, due_date, id);
CREATE INDEX evkit_tasks_priority ON evkit_tasks (project_id, priority_n DESC, updated_at DESC, id);
CREATE INDEX evkit_tasks_assignee ON evkit_tasks (assignee_id);
CREATE TABLE evkit_activity (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigserial NOT NULL,
    project_id bigint NOT NULL REFERENCES evkit_projects (id) ON DELETE CASCADE,
    actor_id uuid,
    action text NOT NULL,
    entity text NOT NULL,
    entity_id uuid NOT NULL,
    changes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evkit_activity_feed ON evkit_activity (project_id, seq DESC);
