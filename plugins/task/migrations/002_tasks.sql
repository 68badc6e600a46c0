-- Tasks of a project, their dependencies and board order (API.md "Projects and tasks").
-- rank is a fractional base-62 key (rank.c), compared byte by byte: COLLATE "C". The
-- board order within a status is total: (project, status, rank) is unique, checked at
-- commit so a rebalance may rewrite a whole column in one statement.
CREATE TABLE task_tasks (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES task_projects (id) ON DELETE CASCADE,
    title text NOT NULL,
    description text,
    status text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'done')),
    priority text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
    priority_n smallint GENERATED ALWAYS AS (
        CASE priority WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END) STORED,
    assignee_id uuid REFERENCES users (id) ON DELETE SET NULL,
    due_date date,
    rank text COLLATE "C" NOT NULL,
    created_by uuid,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_tasks_rank_unique UNIQUE (project_id, status, rank) DEFERRABLE INITIALLY DEFERRED
);
-- The default list order (-updatedAt) and each other sort walk an index of the project.
CREATE INDEX task_tasks_updated ON task_tasks (project_id, updated_at DESC, id);
CREATE INDEX task_tasks_due ON task_tasks (project_id, due_date, id);
CREATE INDEX task_tasks_priority ON task_tasks (project_id, priority_n DESC, updated_at DESC, id);
CREATE INDEX task_tasks_assignee ON task_tasks (assignee_id);

-- One canonical edge per pair: task_id depends on depends_on, both in project_id.
CREATE TABLE task_dependencies (
    task_id uuid NOT NULL REFERENCES task_tasks (id) ON DELETE CASCADE,
    depends_on uuid NOT NULL REFERENCES task_tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, depends_on),
    CHECK (task_id <> depends_on)
);
CREATE INDEX task_dependencies_rev ON task_dependencies (depends_on);

-- The API's Task from to_jsonb() of a task_tasks row and its dependencies (a JSON array).
CREATE FUNCTION task_task_json(t jsonb, deps jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t -> 'id', 'projectId', t -> 'project_id', 'title', t -> 'title',
        'description', t -> 'description', 'status', t -> 'status',
        'priority', t -> 'priority', 'assigneeId', t -> 'assignee_id',
        'dueDate', t -> 'due_date', 'dependsOn', coalesce(deps, '[]'::jsonb),
        'rank', t -> 'rank',
        'createdAt', task_ts((t ->> 'created_at')::timestamptz),
        'updatedAt', task_ts((t ->> 'updated_at')::timestamptz),
        'version', t -> 'version')
$$;

-- A task's dependencies as a sorted JSON array of ids.
CREATE FUNCTION task_deps(id uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(d.depends_on ORDER BY d.depends_on), '[]'::jsonb)
    FROM task_dependencies d WHERE d.task_id = id
$$;

-- The i-th (from 1) of n evenly spaced keys of a rebalanced column: five base-62 digits
-- and a final 'V' (the middle digit), so no key ends in '0' and every gap has room.
CREATE FUNCTION task_rank_key(i bigint, n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(substr('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
                             ((i * (916132832 / (n + 1))) / (62 ^ (4 - k))::bigint % 62)::int + 1,
                             1), '' ORDER BY k) || 'V'
    FROM generate_series(0, 4) AS k
$$;
