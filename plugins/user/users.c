/*
 * users.c — GET /v1/users/me, GET and POST /v1/users (admins), and GET, PUT, DELETE
 * /v1/users/{userId} (the user themself or an admin).
 *
 * Every route here first loads the caller's own row (caller_load, through the profile
 * cache): a token whose user was deleted is refused with 401 at once rather than when it
 * expires, and the rules use the caller's current role, not the one frozen in the token
 * (the gateway's role check on the admin routes is a first filter; a demoted admin's
 * still-valid token is refused here).
 *
 * Order of the answers: what the host checks by the route's spec first (malformed JSON and
 * validation 400, 404 for an id that is not a uuid), then 401 (no such caller), 403 (not
 * yours), then 404/409 from the database.
 */
#include <stdlib.h>
#include <string.h>

#include "user.h"

static bool is_admin(const json_t *user)
{
    const char *role = json_string_value(json_object_get(user, "role"));
    return role && !strcmp(role, "admin");
}

static bool is_self(const json_t *caller, const char *id)
{
    const char *caller_id = json_string_value(json_object_get(caller, "id"));
    return caller_id && !strcmp(caller_id, id);
}

static int no_such_user(px_req_t *req)
{
    return px_res_error(req, 404, "not_found", "no such user", NULL);
}

static int not_yours(px_req_t *req)
{
    return px_res_error(req, 403, "forbidden", "only the user themself or an admin may do this",
                        NULL);
}

/* What a chain of this file carries from callback to callback. */
typedef struct op {
    char id[37];     /* the path's user id, lower case as PostgreSQL prints uuids (and so as
                      * cache keys and tokens carry them) */
    json_t *body;    /* borrowed from the request */
    json_t *user;    /* the answer, once known */
    user_input_t in; /* update */
    bool admin;
    int page, limit;  /* list */
    px_pg_txn_t *txn; /* update, delete */
    const char *hash; /* update: the new password's */
} op_t;

/* How every route of this file but /me starts: the op, the body and the path's id when
 * the route has them (their checks by the route's spec have passed), then the caller's
 * own row, handed to `then` with the op. */
static int op_start(px_req_t *req, bool body, bool id, profile_fn then)
{
    op_t *op = px_req_alloc(req, sizeof(*op));
    memset(op, 0, sizeof(*op));
    int rc = body ? px_req_json(req, &op->body) : 0;
    if (!rc && id)
        rc = px_req_uuid(req, "userId", op->id);
    if (!rc)
        rc = caller_load(req, then, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- GET /v1/users/me ---- */

int users_me(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = caller_answer(req);
    return rc ? rc : PX_ASYNC;
}

/* ---- GET /v1/users ---- */

static int listed(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    json_t *users = json_array();
    for (int i = 0; i < px_pg_rows(res); i++)
        if (px_pg_value(res, i, 1))
            json_array_append_new(users, store_user_json(res, i, 1));
    int64_t total = 0;
    px_pg_int64(res, 0, 0, &total);
    return px_res_list(req, "users", users, total, op->page, op->limit);
}

static int list_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    bool admin = is_admin(caller);
    json_decref(caller);
    if (!admin)
        return px_res_error(req, 403, "forbidden", "only an admin may list users", NULL);
    /* page, limit and search passed the route's query schemas. */
    int rc = px_req_page(req, &op->page, &op->limit);
    return rc ? rc
              : store_user_list(req, px_req_query(req, "search"), op->page, op->limit, listed, op);
}

int users_list(px_req_t *req, void *ud)
{
    (void)ud;
    return op_start(req, false, false, list_caller);
}

/* ---- POST /v1/users ---- */

static int create_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    bool admin = is_admin(caller);
    json_decref(caller);
    if (!admin)
        return px_res_error(req, 403, "forbidden", "only an admin may create users", NULL);
    return auth_create_account(req, op->body, false);
}

int users_create(px_req_t *req, void *ud)
{
    (void)ud;
    return op_start(req, true, false, create_caller);
}

/* ---- GET /v1/users/{userId} ---- */

static int get_found(px_req_t *req, json_t *user, void *ud)
{
    (void)ud;
    return user ? px_res_json(req, 200, user) : no_such_user(req);
}

static int get_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    if (is_self(caller, op->id))
        return px_res_json(req, 200, caller);
    bool admin = is_admin(caller);
    json_decref(caller);
    return admin ? profile_load(req, op->id, get_found, op) : not_yours(req);
}

int users_get(px_req_t *req, void *ud)
{
    (void)ud;
    return op_start(req, false, true, get_caller);
}

/* ---- PUT /v1/users/{userId} ---- */

#define UPDATE_FIELDS (IN_EMAIL | IN_PASSWORD | IN_FIRST_NAME | IN_LAST_NAME)

static int update_answer(px_req_t *req, void *ud)
{
    return px_res_json(req, 200, ((op_t *)ud)->user);
}

static void update_committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    op_t *op = ud;
    /* Answer only once the cached profile is gone: the client's next read is fresh. */
    int rc = err ? px_res_pg_error(req, err) : profile_forget(req, op->id, update_answer, op);
    user_fail(req, rc);
}

/* An email taken meanwhile is a 23505, answered with the message user.c declared. A new
 * password or another role ends the user's access tokens with the change (px_token_revoke):
 * a stolen token dies with the old password, and a demoted admin keeps no admin token on
 * the other plugins' routes, whose gate reads the role in the token. A client refreshes
 * into a token with the new role; after a new password it signs in again (its refresh
 * tokens went in the same statement). */
static int updated(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    if (px_pg_rows(res) == 0)
        return no_such_user(req);
    op->user = store_user_json(res, 0, 0);
    bool role_changed = !strcmp(px_pg_value(res, 0, USER_NCOLS), "t");
    int rc = op->hash || role_changed ? px_token_revoke(op->txn, op->id) : 0;
    return rc ? rc : px_pg_commit(op->txn, update_committed, op);
}

static int update_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    (void)req;
    op_t *op = ud;
    op->txn = txn;
    return store_user_update(txn, op->id, &op->in, op->hash, updated, op);
}

static int update_hashed(px_req_t *req, const password_result_t *res, void *ud)
{
    op_t *op = ud;
    if (res->status)
        return res->status;
    op->hash = px_req_strdup(req, res->new_hash);
    return px_pg_begin_run(req, 0, update_begun, op);
}

static int update_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    bool self = is_self(caller, op->id);
    op->admin = is_admin(caller);
    json_decref(caller);
    if (!self && !op->admin)
        return not_yours(req);
    /* The body passed UpdateUserRequest; role is the admins' alone, before and after the
     * admins' hook, which sees the changed fields and the id of the user they belong to. */
    if (!op->admin && json_object_get(op->body, "role"))
        return user_invalid(req, json_pack("{s:s}", "role", "only an admin may change it"));
    unsigned allowed = UPDATE_FIELDS | (op->admin ? IN_ROLE : 0);
    user_input_t in;
    input_read(req, op->body, &in);
    json_t *value = input_to_json(&in, allowed, 0);
    json_object_set_new(value, "id", json_string(op->id));
    if (px_hook_run(req, "before_user_update", &value) != PX_OK) {
        json_decref(value);
        return PX_DONE;
    }
    if (json_is_object(value))
        json_object_del(value, "id");
    bool role_refused = !op->admin && json_object_get(value, "role");
    int rc = role_refused ? PX_DONE : input_check(req, "UpdateUserRequest", value, &op->in);
    json_decref(value);
    if (role_refused)
        return user_invalid(req, json_pack("{s:s}", "role", "only an admin may change it"));
    if (rc)
        return rc;
    return (op->in.present & IN_PASSWORD)
               ? password_hash_async(req, op->in.password, update_hashed, op)
               : px_pg_begin_run(req, 0, update_begun, op);
}

int users_update(px_req_t *req, void *ud)
{
    (void)ud;
    return op_start(req, true, true, update_caller);
}

/* ---- DELETE /v1/users/{userId} ---- */

static int delete_answer(px_req_t *req, void *ud)
{
    (void)ud;
    return px_res_send(req, 204, NULL, "", 0);
}

/* Forgotten only after the commit: a read in between would cache the row again. */
static void delete_committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    op_t *op = ud;
    int rc = err ? px_res_pg_error(req, err) : profile_forget(req, op->id, delete_answer, op);
    user_fail(req, rc);
}

/* No row: 404, and answering with the transaction open rolls it back, so a user that did
 * not exist emits nothing. Otherwise user.deleted commits with the deletion (README.md,
 * "Events"): the content plugin removes what the user owned when it hears of it. And the
 * user's access tokens stop working with it (px_token_revoke), on every plugin's routes:
 * else, until they expired, they could still write what nobody would clean up. */
static int deleted(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    op_t *op = ud;
    if (px_pg_rows(res) == 0)
        return no_such_user(req);
    int rc = px_event_emit(op->txn, "user.deleted", op->id, json_pack("{s:s}", "userId", op->id));
    if (rc == 0)
        rc = px_token_revoke(op->txn, op->id);
    return rc ? rc : px_pg_commit(op->txn, delete_committed, op);
}

static int delete_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    (void)req;
    op_t *op = ud;
    op->txn = txn;
    return store_user_delete(txn, op->id, deleted, op);
}

static int delete_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    bool allowed = is_self(caller, op->id) || is_admin(caller);
    json_decref(caller);
    return allowed ? px_pg_begin_run(req, 0, delete_begun, op) : not_yours(req);
}

int users_delete(px_req_t *req, void *ud)
{
    (void)ud;
    return op_start(req, false, true, delete_caller);
}
