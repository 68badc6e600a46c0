-- The failed-login throttle's counters while Redis is away (limit.c): one row per
-- account (the SHA-256 key Redis would use), the attempts in the current window and when
-- it ends. Rows whose window ended are reused or removed by the next attempts.
CREATE TABLE user_login_attempts (
    key        text        PRIMARY KEY,
    count      integer     NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX user_login_attempts_expires_idx ON user_login_attempts (expires_at);
