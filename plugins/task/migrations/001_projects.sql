-- Projects, their members with a role each, and the activity feed (API.md "Projects and
-- tasks"). owner_id is who created the project; who may act is what task_members says
-- (several owners are allowed; the last one cannot leave or be demoted).
CREATE TABLE task_projects (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    description text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived', 'completed')),
    owner_id uuid NOT NULL,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_projects_created ON task_projects (created_at DESC, id);

CREATE TABLE task_members (
    project_id uuid NOT NULL REFERENCES task_projects (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
-- "the projects I am a member of" starts from the user.
CREATE INDEX task_members_user ON task_members (user_id);

-- Written in the same statement as the change it records. seq orders the feed (two rows
-- of one transaction share now()).
CREATE TABLE task_activity (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigserial NOT NULL,
    project_id uuid NOT NULL REFERENCES task_projects (id) ON DELETE CASCADE,
    actor_id uuid,
    action text NOT NULL,
    entity text NOT NULL,
    entity_id uuid NOT NULL,
    changes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_activity_feed ON task_activity (project_id, seq DESC);

-- RFC 3339 UTC with milliseconds, as every Panthera plugin writes times.
CREATE FUNCTION task_ts(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- {field: [old, new]} for every key of `n` whose value differs in `o`.
CREATE FUNCTION task_changes(o jsonb, n jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, jsonb_build_array(o -> k, n -> k)), '{}'::jsonb)
    FROM jsonb_object_keys(n) AS k
    WHERE (o -> k) IS DISTINCT FROM (n -> k)
$$;

-- The API's Project from to_jsonb() of a task_projects row (or any record with its
-- columns) and the caller's role (NULL for an admin who is not a member).
CREATE FUNCTION task_project_json(p jsonb, role text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p -> 'id', 'name', p -> 'name', 'description', p -> 'description',
        'status', p -> 'status', 'ownerId', p -> 'owner_id', 'role', role,
        'createdAt', task_ts((p ->> 'created_at')::timestamptz),
        'updatedAt', task_ts((p ->> 'updated_at')::timestamptz),
        'version', p -> 'version')
$$;
