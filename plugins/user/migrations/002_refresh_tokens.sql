-- Refresh tokens, kept as SHA-256 hex digests of the token the client holds. A login
-- starts a family; each refresh revokes the presented token and adds the next one of the
-- same family. Presenting a revoked token revokes the whole family. Deleting a user
-- deletes its tokens.
CREATE TABLE user_refresh_tokens (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  uuid        NOT NULL,
    token_hash text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX user_refresh_tokens_user_idx ON user_refresh_tokens (user_id);
CREATE INDEX user_refresh_tokens_family_idx ON user_refresh_tokens (family_id);
