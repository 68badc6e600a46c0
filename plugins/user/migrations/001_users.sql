-- The accounts. Other plugins may reference users(id) and read id, username and role.
-- Usernames and emails are unique whatever their case; they are stored as written.
CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text        NOT NULL,
    email         text        NOT NULL,
    first_name    text,
    last_name     text,
    role          text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    -- scrypt$N$r$p$salt$key (see plugins/user/password.c); never leaves the plugin
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_created_at_idx ON users (created_at, id);
