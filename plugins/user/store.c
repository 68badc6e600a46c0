/*
 * store.c — every SQL statement of the plugin, and the User JSON made from a row.
 *
 * Tables (migrations/): users (the accounts; other plugins may reference users(id) and read
 * id, username and role) and user_refresh_tokens (ours alone). Usernames and emails are
 * unique case-insensitively through unique indexes on lower(...): two concurrent
 * registrations of one name are decided by PostgreSQL, the loser gets 23505 and a 409.
 *
 * Steps that must happen together are one statement where they can be (data-modifying
 * CTEs run exactly once and atomically with the statement), and one transaction where a
 * decision sits between them (the refresh rotation).
 *
 * Times are written as RFC 3339 UTC with milliseconds ("2024-05-01T09:30:00.123Z").
 */
#include <stdio.h>
#include <string.h>

#include "user.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* The columns of a User, in the order store_user_json reads them. */
#define USER_COLS                                                                                  \
    "id::text, username, email, first_name, last_name, role, " TS("created_at") ", " TS(           \
        "updated_at")

/* [auth] refresh_ttl in seconds, as a statement parameter (the same text for every
 * statement: the setting does not change after init). */
static const char *ttl_text(void)
{
    static char text[24];
    snprintf(text, sizeof(text), "%lld", (long long)user_settings.refresh_ttl);
    return text;
}

json_t *store_user_json(const px_pg_result_t *res, int row, int col)
{
    return json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s, s:s, s:s}", "id", px_pg_value(res, row, col),
                     "username", px_pg_value(res, row, col + 1), "email",
                     px_pg_value(res, row, col + 2), "firstName", px_pg_value(res, row, col + 3),
                     "lastName", px_pg_value(res, row, col + 4), "role",
                     px_pg_value(res, row, col + 5), "createdAt", px_pg_value(res, row, col + 6),
                     "updatedAt", px_pg_value(res, row, col + 7));
}

int store_user_by_id(px_req_t *req, const char *id, px_pg_ok_fn cb, void *ud)
{
    const char *values[] = {id};
    return px_pg_run(req, "user_by_id", "SELECT " USER_COLS " FROM users WHERE id = $1::uuid", 1,
                       values, cb, ud);
}

int store_login_lookup(px_req_t *req, const char *login, px_pg_ok_fn cb, void *ud)
{
    /* A username never holds '@' and an email always does, so one value cannot match two
     * accounts; either field of the login body may carry either. */
    const char *values[] = {login};
    return px_pg_run(req, "user_login_lookup",
                       "SELECT id::text, username, role, password_hash FROM users "
                       "WHERE lower(username) = lower($1) OR lower(email) = lower($1) LIMIT 1",
                       1, values, cb, ud);
}

int store_login_session(px_req_t *req, const char *user_id, const char *token_hash,
                        const char *new_hash, const char *old_hash, px_pg_fn cb, void *ud)
{
    /* The rehash only replaces the hash the password was checked against: a password
     * changed meanwhile is never overwritten with the old one. */
    const char *values[] = {user_id, token_hash, new_hash, old_hash, ttl_text()};
    return px_pg_query(
        req, NULL,
        "WITH rehash AS (UPDATE users SET password_hash = $3 "
        "  WHERE id = $1::uuid AND $3::text IS NOT NULL AND password_hash = $4), "
        "pruned AS (DELETE FROM user_refresh_tokens "
        "  WHERE user_id = $1::uuid AND expires_at < now()) "
        "INSERT INTO user_refresh_tokens (user_id, family_id, token_hash, expires_at) "
        "VALUES ($1::uuid, gen_random_uuid(), $2, now() + make_interval(secs => $5::double "
        "precision)) RETURNING id::text",
        5, values, cb, ud);
}

int store_user_taken(px_req_t *req, const char *username, const char *email, px_pg_ok_fn cb,
                     void *ud)
{
    const char *values[] = {username, email};
    return px_pg_run(req, "user_taken",
                       "SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE lower(username) = "
                       "lower($1)) THEN 'username' WHEN EXISTS (SELECT 1 FROM users WHERE "
                       "lower(email) = lower($2)) THEN 'email' END",
                       2, values, cb, ud);
}

int store_user_insert(px_pg_txn_t *txn, const user_input_t *in, const char *password_hash,
                      const char *token_hash, px_pg_ok_fn cb, void *ud)
{
    const char *values[] = {in->username, in->email,     in->first_name, in->last_name,
                            in->role,     password_hash, token_hash,     ttl_text()};
    return px_pg_txn_run(
        txn, NULL,
        "WITH u AS (INSERT INTO users (username, email, first_name, last_name, role, "
        "  password_hash) VALUES ($1, $2, $3, $4, coalesce($5, 'user'), $6) RETURNING *), "
        "t AS (INSERT INTO user_refresh_tokens (user_id, family_id, token_hash, expires_at) "
        "  SELECT id, gen_random_uuid(), $7, now() + make_interval(secs => $8::double "
        "  precision) FROM u WHERE $7::text IS NOT NULL) "
        "SELECT " USER_COLS " FROM u",
        8, values, cb, ud);
}

int store_refresh_lock(px_pg_txn_t *txn, const char *token_hash, px_pg_ok_fn cb, void *ud)
{
    const char *values[] = {token_hash};
    return px_pg_txn_run(txn, NULL,
                           "SELECT t.id::text, t.family_id::text, t.revoked_at IS NOT NULL, "
                           "t.expires_at <= now(), u.id::text, u.username, u.role "
                           "FROM user_refresh_tokens t JOIN users u ON u.id = t.user_id "
                           "WHERE t.token_hash = $1 FOR UPDATE OF t",
                           1, values, cb, ud);
}

int store_refresh_rotate(px_pg_txn_t *txn, const char *old_id, const char *user_id,
                         const char *family, const char *new_hash)
{
    const char *values[] = {old_id, user_id, family, new_hash, ttl_text()};
    return px_pg_txn_query(
        txn, NULL,
        "WITH old AS (UPDATE user_refresh_tokens SET revoked_at = now() WHERE id = $1::uuid) "
        "INSERT INTO user_refresh_tokens (user_id, family_id, token_hash, expires_at) "
        "VALUES ($2::uuid, $3::uuid, $4, now() + make_interval(secs => $5::double precision))",
        5, values, NULL, NULL);
}

int store_family_revoke(px_pg_txn_t *txn, const char *family, px_pg_ok_fn cb, void *ud)
{
    const char *values[] = {family};
    return px_pg_txn_run(txn, NULL,
                           "UPDATE user_refresh_tokens SET revoked_at = now() "
                           "WHERE family_id = $1::uuid AND revoked_at IS NULL",
                           1, values, cb, ud);
}

int store_logout(px_req_t *req, const char *user_id, const char *token_hash, px_pg_ok_fn cb,
                 void *ud)
{
    const char *values[] = {token_hash, user_id};
    return px_pg_run(req, NULL,
                       "WITH t AS (SELECT family_id FROM user_refresh_tokens "
                       "  WHERE token_hash = $1 AND user_id = $2::uuid), "
                       "r AS (UPDATE user_refresh_tokens SET revoked_at = now() "
                       "  WHERE family_id IN (SELECT family_id FROM t) AND revoked_at IS NULL) "
                       "SELECT count(*)::text FROM t",
                       2, values, cb, ud);
}

/* `search` as a LIKE pattern matching it anywhere, its own %, _ and \ taken literally. */
static char *like_pattern(px_req_t *req, const char *search)
{
    size_t len = strlen(search);
    char *out = px_req_alloc(req, 2 * len + 3), *o = out;
    *o++ = '%';
    for (size_t i = 0; i < len; i++) {
        if (search[i] == '%' || search[i] == '_' || search[i] == '\\')
            *o++ = '\\';
        *o++ = search[i];
    }
    *o++ = '%';
    *o = '\0';
    return out;
}

int store_user_list(px_req_t *req, const char *search, int64_t page, int64_t limit,
                    px_pg_ok_fn cb, void *ud)
{
    const char *values[] = {search && *search ? like_pattern(req, search) : NULL,
                            px_req_printf(req, "%lld", (long long)limit),
                            px_req_printf(req, "%lld", (long long)((page - 1) * limit))};
    return px_pg_run(
        req, "user_list",
        "WITH matched AS (SELECT * FROM users WHERE $1::text IS NULL "
        "  OR username ILIKE $1 OR email ILIKE $1 OR first_name ILIKE $1 OR last_name ILIKE $1), "
        "total AS (SELECT count(*) AS n FROM matched) "
        "SELECT total.n::text, page.* FROM total LEFT JOIN LATERAL "
        "  (SELECT " USER_COLS " FROM matched ORDER BY created_at, id "
        "   LIMIT $2::bigint OFFSET $3::bigint) page ON true",
        3, values, cb, ud);
}

int store_user_update(px_pg_txn_t *txn, const char *id, const user_input_t *in,
                      const char *password_hash, px_pg_ok_fn cb, void *ud)
{
    const char *values[] = {
        id,
        in->present & IN_FIRST_NAME ? "t" : "f",
        in->first_name,
        in->present & IN_LAST_NAME ? "t" : "f",
        in->last_name,
        in->present & IN_EMAIL ? in->email : NULL,
        password_hash,
        in->present & IN_ROLE ? in->role : NULL,
    };
    /* old is read in the statement's snapshot, before u changes the row. */
    return px_pg_txn_run(
        txn, NULL,
        "WITH old AS (SELECT role FROM users WHERE id = $1::uuid), "
        "u AS (UPDATE users SET "
        "  first_name = CASE WHEN $2::boolean THEN $3 ELSE first_name END, "
        "  last_name = CASE WHEN $4::boolean THEN $5 ELSE last_name END, "
        "  email = coalesce($6, email), password_hash = coalesce($7, password_hash), "
        "  role = coalesce($8, role), updated_at = now() "
        "  WHERE id = $1::uuid RETURNING *), "
        "revoked AS (UPDATE user_refresh_tokens SET revoked_at = now() "
        "  WHERE user_id IN (SELECT id FROM u) AND $7::text IS NOT NULL AND revoked_at IS NULL) "
        "SELECT " USER_COLS ", u.role IS DISTINCT FROM (SELECT role FROM old) FROM u",
        8, values, cb, ud);
}

int store_user_delete(px_pg_txn_t *txn, const char *id, px_pg_ok_fn cb, void *ud)
{
    /* Its refresh tokens go with it (ON DELETE CASCADE): the sessions end at once. */
    const char *values[] = {id};
    return px_pg_txn_run(txn, NULL, "DELETE FROM users WHERE id = $1::uuid RETURNING id::text",
                         1, values, cb, ud);
}

int store_admin_insert(px_plugin_t *self, const char *id, const char *username, const char *email,
                       const char *password_hash, char *err, size_t errlen)
{
    const char *values[] = {id, username, email, password_hash};
    return px_command_sql(self,
                          "INSERT INTO users (id, username, email, password_hash, role) "
                          "VALUES ($1::uuid, $2, $3, $4, 'admin')",
                          4, values, err, errlen);
}
