/*
 * user.h — what the files of the user plugin share. Not part of any public interface: the
 * plugin talks to the host only through <panthera/panthera.h>.
 *
 *   user.c      descriptor, settings, init/fini, the route table
 *   auth.c      POST /v1/auth/register, login, refresh, logout
 *   users.c     GET /v1/users/me, the admin list and create, get/update/delete by id
 *   input.c     a validated body read into user_input_t, and the hook values made of it
 *   password.c  Argon2id hashes (libargon2; scrypt ones still verify), off the loop
 *   tokens.c    refresh tokens and the {userId, username, accessToken, ...} answer
 *   cache.c     profiles cached in Redis (px_cache_*) and the caller's own row
 *   limit.c     failed-login throttle per account, counted in PostgreSQL
 *   store.c     every SQL statement and the User JSON made from a row
 *   command.c   pantherad user:create-admin
 *   schemas.json the bodies' JSON schemas (embedded at build time): the host validates by
 *               them before a handler runs and serves them in /openapi.json as user.*
 */
#ifndef USER_PLUGIN_H
#define USER_PLUGIN_H

#include <panthera/panthera.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- settings (user.c): read once in init, read-only afterwards, also from the thread
 * pool's password jobs ---- */

enum password_scheme { PASSWORD_ARGON2ID, PASSWORD_SCRYPT };

typedef struct user_settings {
    int scheme;        /* enum password_scheme: what new hashes are made with */
    uint64_t argon2_m; /* KiB */
    uint64_t argon2_t;
    uint64_t argon2_p;
    uint64_t scrypt_n;
    uint32_t scrypt_r;
    uint32_t scrypt_p;
    int64_t cache_ttl;   /* seconds a cached profile lives */
    int64_t login_limit; /* failed logins per account per window */
    int64_t login_window_ms;
    int64_t refresh_ttl; /* seconds, [auth] refresh_ttl */
    int64_t hash_jobs;   /* new-hash jobs (not logins) running at once per worker */
    int64_t hash_queue;  /* new-hash jobs that may wait for one of those; then 503 */
} user_settings_t;

extern px_plugin_t *user_plugin;
extern user_settings_t user_settings;

/* What a callback of the plugin's own chains (password jobs, profiles, the throttle)
 * returned, handled as the host handles a handler's: a negative PX_E* code is answered in
 * the API's error shape. The callbacks return like px_pg_ok_fn. */
void user_fail(px_req_t *req, int rc);
/* Answers 400 validation_failed with `fields` (taken). */
int user_invalid(px_req_t *req, json_t *fields);

/* ---- input.c ---- */

enum {
    IN_USERNAME = 1 << 0,
    IN_EMAIL = 1 << 1,
    IN_PASSWORD = 1 << 2,
    IN_FIRST_NAME = 1 << 3,
    IN_LAST_NAME = 1 << 4,
    IN_ROLE = 1 << 5,
};

/* The fields of a user body. Strings live in the request's memory. A name field may be
 * present with a NULL value (JSON null: clear it). */
typedef struct user_input {
    unsigned present; /* IN_* bits */
    const char *username;
    const char *email;
    const char *password;
    const char *first_name;
    const char *last_name;
    const char *role;
} user_input_t;

/* Reads a body already validated by one of the schemas of schemas.json into `in`. */
void input_read(px_req_t *req, const json_t *body, user_input_t *in);
/* Validates `value` (what a Lua hook gave back) by `schema`, then reads it: 0; or PX_DONE
 * once it answered 400 with the fields; or another PX_E* code, not answered. */
int input_check(px_req_t *req, const char *schema, const json_t *value, user_input_t *in);
/* The hook value of `in`: the fields of `which` that are present (names as null when
 * absent and listed in `with_nulls`). New reference. */
json_t *input_to_json(const user_input_t *in, unsigned which, unsigned with_nulls);

/* ---- password.c ---- */

#define PASSWORD_HASH_MAX 192

/* Also declares the new hashes' job queue (hash_jobs, hash_queue). Only during init. */
int password_init(px_plugin_t *self);
void password_fini(void);
/* Hashes with the current settings into `out` (PASSWORD_HASH_MAX bytes). Blocking: for
 * the thread pool and the command line only. 0 or PX_EINTERNAL. */
int password_hash(const char *pw, size_t len, char *out);

typedef struct password_result {
    int status;           /* 0, PX_EUNAVAIL (the job never ran) or PX_EINTERNAL */
    bool match;           /* verify: the password matched */
    const char *new_hash; /* hash: the hash; verify: a rehash when the match was stale;
                           * valid during the callback only */
} password_result_t;

/* Called on the loop, only while the request lives; returns like px_pg_ok_fn. */
typedef int (*password_done_fn)(px_req_t *req, const password_result_t *res, void *ctx);

/* Hash `pw` on the plugin's job queue, after the new hashes ahead of it (hash_jobs at once
 * per worker, hash_queue waiting, see password.c). 0 or a PX_E* code (PX_EUNAVAIL: too
 * many wait; then `done` is never called). */
int password_hash_async(px_req_t *req, const char *pw, password_done_fn done, void *ctx);
/* Verify `pw` against `stored` on the thread pool; `stored` NULL verifies against a dummy
 * hash of the current parameters, so an unknown account costs what a known one does. */
int password_verify_async(px_req_t *req, const char *stored, const char *pw, password_done_fn done,
                          void *ctx);

/* ---- tokens.c ---- */

#define TOKEN_TEXT_LEN 43 /* base64url of 32 random bytes, unpadded */
#define TOKEN_HASH_LEN 64 /* hex SHA-256 */

/* A new refresh token and the hash kept in the database. 0 or PX_EINTERNAL. */
int tokens_new(char text[TOKEN_TEXT_LEN + 1], char hash[TOKEN_HASH_LEN + 1]);
/* The database hash of a token a client presented. */
void tokens_hash(const char *text, size_t len, char hash[TOKEN_HASH_LEN + 1]);
/* {userId, username, accessToken, refreshToken, expiresIn}, or NULL when no access token
 * could be signed. */
json_t *tokens_answer(px_req_t *req, const char *user_id, const char *username, const char *role,
                      const char *refresh);

/* ---- store.c ---- */

/* The callbacks: px_pg_ok_fn where any failure is the answer (px_pg_run; a 23505 on the
 * username or email index says which, see user_init), px_pg_fn where the caller tells a
 * failure apart (a 23503 at login). */
int store_user_by_id(px_req_t *req, const char *id, px_pg_ok_fn cb, void *ud);
/* id, username, role, password_hash of the account whose username or email is `login`. */
int store_login_lookup(px_req_t *req, const char *login, px_pg_ok_fn cb, void *ud);
/* One row, one column: "username" or "email" when an account holds that one already
 * (case-insensitively), else NULL. */
int store_user_taken(px_req_t *req, const char *username, const char *email, px_pg_ok_fn cb,
                     void *ud);
/* After a good password: a new refresh token family (and the rehash, when `new_hash` is
 * not NULL, only if the hash is still `old_hash`); expired tokens of the user go. */
int store_login_session(px_req_t *req, const char *user_id, const char *token_hash,
                        const char *new_hash, const char *old_hash, px_pg_fn cb, void *ud);
/* INSERT a user (role NULL: "user"); with `token_hash` also its first refresh token.
 * Returns the user's columns. */
int store_user_insert(px_pg_txn_t *txn, const user_input_t *in, const char *password_hash,
                      const char *token_hash, px_pg_ok_fn cb, void *ud);
/* The presented refresh token, locked: token id, family, revoked, expired, user columns. */
int store_refresh_lock(px_pg_txn_t *txn, const char *token_hash, px_pg_ok_fn cb, void *ud);
/* Revokes the old token and inserts its successor, queued without a callback (SDK 1.2):
 * a failure is the commit's. */
int store_refresh_rotate(px_pg_txn_t *txn, const char *old_id, const char *user_id,
                         const char *family, const char *new_hash);
int store_family_revoke(px_pg_txn_t *txn, const char *family, px_pg_ok_fn cb, void *ud);
/* Revokes the family of the caller's token; one row (count) of matching tokens. */
int store_logout(px_req_t *req, const char *user_id, const char *token_hash, px_pg_ok_fn cb,
                 void *ud);
/* One row per user of the page, each led by the total; one row of NULLs but the total when
 * the page is empty. */
int store_user_list(px_req_t *req, const char *search, int64_t page, int64_t limit,
                    px_pg_ok_fn cb, void *ud);
/* UPDATE the present fields (and revoke refresh tokens when the password changes): no
 * row when there is no such user, else the User's columns and then whether its role
 * changed ("t"/"f", column USER_NCOLS). */
int store_user_update(px_pg_txn_t *txn, const char *id, const user_input_t *in,
                      const char *password_hash, px_pg_ok_fn cb, void *ud);
/* DELETE the user: one row (id) when there was one. In a transaction, so user.deleted
 * commits with it. */
int store_user_delete(px_pg_txn_t *txn, const char *id, px_pg_ok_fn cb, void *ud);
/* The User JSON of row `row` (columns as every store_user_* returns them, from `col`:
 * USER_NCOLS of them). */
#define USER_NCOLS 8
json_t *store_user_json(const px_pg_result_t *res, int row, int col);
/* For the command line. */
int store_admin_insert(px_plugin_t *self, const char *id, const char *username, const char *email,
                       const char *password_hash, char *err, size_t errlen);

/* ---- cache.c ---- */

/* `user` is a new reference the callback owns; NULL when there is no such user. Returns
 * like px_pg_ok_fn. */
typedef int (*profile_fn)(px_req_t *req, json_t *user, void *ctx);

/* The User of `id`: from Redis when cached, else from PostgreSQL (then cached for
 * cache_ttl). A database failure is answered here and `cb` is not called. 0 or PX_E*. */
int profile_load(px_req_t *req, const char *id, profile_fn cb, void *ctx);
/* Drops the cached profile of `id`, then calls `then` (also when Redis is down). */
int profile_forget(px_req_t *req, const char *id, px_cache_done_fn then, void *ctx);
/* The caller's own User, or 401 when the account no longer exists (a token outlives its
 * user by at most access_ttl; this check closes that window). */
int caller_load(px_req_t *req, profile_fn cb, void *ctx);
/* Answers 200 with the caller's own User (the cached bytes as they are when cached), or
 * 401 as caller_load. 0 or PX_E*. */
int caller_answer(px_req_t *req);

/* ---- limit.c ---- */

/* `blocked` with the seconds until the window ends; otherwise `retry_after` is 0. Returns
 * like px_pg_ok_fn. */
typedef int (*limit_fn)(px_req_t *req, bool blocked, int64_t retry_after, void *ctx);

/* Takes one login attempt of `subject` (see limit.c), or finds the account over its limit;
 * calls `cb` (allowing when PostgreSQL does not answer). */
int limit_reserve(px_req_t *req, const char *subject, limit_fn cb, void *ctx);
/* A successful login gives its attempt back (fire and forget). */
void limit_release(px_req_t *req, const char *subject);

/* ---- handlers ---- */

int auth_register(px_req_t *req, void *ud);
int auth_login(px_req_t *req, void *ud);
int auth_refresh(px_req_t *req, void *ud);
int auth_logout(px_req_t *req, void *ud);
/* Creates the account of `body` (already validated): runs before_user_register, hashes,
 * inserts under px_pg_begin_idempotent and answers 201 with Location — the tokens of a
 * new session when `session` (register), else the User (the admin's create). Returns
 * PX_ASYNC, PX_DONE, or a PX_E* code not yet answered. */
int auth_create_account(px_req_t *req, const json_t *body, bool session);

int users_me(px_req_t *req, void *ud);
int users_list(px_req_t *req, void *ud);
int users_create(px_req_t *req, void *ud);
int users_get(px_req_t *req, void *ud);
int users_update(px_req_t *req, void *ud);
int users_delete(px_req_t *req, void *ud);

/* ---- command.c, schemas.json ---- */

int command_create_admin(px_plugin_t *self, int argc, char **argv);
/* schemas.json as text, for px_schema(self, NULL, user_schemas). */
extern const char user_schemas[];

#endif
