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
#include <stdio.h>
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
} op_t;

static op_t *op_new(px_req_t *req)
{
    op_t *op = px_req_alloc(req, sizeof(*op));
    memset(op, 0, sizeof(*op));
    return op;
}

/* ---- GET /v1/users/me ---- */

int users_me(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = caller_answer(req);
    return rc ? rc : PX_ASYNC;
}

/* ---- GET /v1/users ---- */

typedef struct list {
    int page, limit;
} list_t;

static void listed(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    list_t *l = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    json_t *users = json_array();
    for (int i = 0; i < px_pg_rows(res); i++)
        if (px_pg_value(res, i, 1))
            json_array_append_new(users, store_user_json(res, i, 1));
    int64_t total = 0;
    px_pg_int64(res, 0, 0, &total);
    px_res_list(req, "users", users, total, l->page, l->limit);
}

static void list_caller(px_req_t *req, json_t *caller, void *ud)
{
    (void)ud;
    bool admin = is_admin(caller);
    json_decref(caller);
    if (!admin) {
        px_res_error(req, 403, "forbidden", "only an admin may list users", NULL);
        return;
    }
    /* page, limit and search passed the route's query schemas. */
    list_t *l = px_req_alloc(req, sizeof(*l));
    if (px_req_page(req, &l->page, &l->limit))
        return;
    int rc = store_user_list(req, px_req_query(req, "search"), l->page, l->limit, listed, l);
    if (rc)
        user_fail(req, rc);
}

int users_list(px_req_t *req, void *ud)
{
    (void)ud;
    int rc = caller_load(req, list_caller, NULL);
    return rc ? rc : PX_ASYNC;
}

/* ---- POST /v1/users ---- */

static void create_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    bool admin = is_admin(caller);
    json_decref(caller);
    if (!admin) {
        px_res_error(req, 403, "forbidden", "only an admin may create users", NULL);
        return;
    }
    user_input_t in;
    input_read(req, op->body, &in);
    int rc = auth_create_account(req, &in, false);
    if (rc < 0)
        user_fail(req, rc);
}

int users_create(px_req_t *req, void *ud)
{
    (void)ud;
    op_t *op = op_new(req);
    int rc = px_req_json(req, &op->body); /* it passed CreateUserRequest */
    if (rc)
        return rc;
    rc = caller_load(req, create_caller, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- GET /v1/users/{userId} ---- */

static void get_found(px_req_t *req, json_t *user, void *ud)
{
    (void)ud;
    if (!user) {
        no_such_user(req);
        return;
    }
    px_res_json(req, 200, user);
}

static void get_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    if (is_self(caller, op->id)) {
        px_res_json(req, 200, caller);
        return;
    }
    bool admin = is_admin(caller);
    json_decref(caller);
    if (!admin) {
        not_yours(req);
        return;
    }
    int rc = profile_load(req, op->id, get_found, op);
    if (rc)
        user_fail(req, rc);
}

int users_get(px_req_t *req, void *ud)
{
    (void)ud;
    op_t *op = op_new(req);
    int rc = px_req_uuid(req, "userId", op->id);
    if (rc)
        return rc;
    rc = caller_load(req, get_caller, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- PUT /v1/users/{userId} ---- */

#define UPDATE_FIELDS (IN_EMAIL | IN_PASSWORD | IN_FIRST_NAME | IN_LAST_NAME)

static void update_answer(px_req_t *req, void *ud)
{
    op_t *op = ud;
    px_res_json(req, 200, op->user);
}

static void updated(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    op_t *op = ud;
    if (err) {
        if (!strcmp(px_pg_error_sqlstate(err), "23505"))
            px_res_error(req, 409, "conflict", "this email is already registered", NULL);
        else
            px_res_pg_error(req, err);
        return;
    }
    if (px_pg_rows(res) == 0) {
        no_such_user(req);
        return;
    }
    op->user = store_user_json(res, 0, 0);
    /* Answer only once the cached profile is gone: the client's next read is fresh. */
    profile_forget(req, op->id, update_answer, op);
}

static void update_hashed(px_req_t *req, const password_result_t *res, void *ud)
{
    op_t *op = ud;
    if (res->status) {
        user_fail(req, res->status);
        return;
    }
    int rc = store_user_update(req, op->id, &op->in, res->new_hash, updated, op);
    if (rc)
        user_fail(req, rc);
}

static void update_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    bool self = is_self(caller, op->id);
    op->admin = is_admin(caller);
    json_decref(caller);
    if (!self && !op->admin) {
        not_yours(req);
        return;
    }
    /* The body passed UpdateUserRequest; role is the admins' alone, before and after the
     * admins' hook, which sees the changed fields and the id of the user they belong to. */
    if (!op->admin && json_object_get(op->body, "role")) {
        user_invalid(req, json_pack("{s:s}", "role", "only an admin may change it"));
        return;
    }
    unsigned allowed = UPDATE_FIELDS | (op->admin ? IN_ROLE : 0);
    user_input_t in;
    input_read(req, op->body, &in);
    json_t *value = input_to_json(&in, allowed, 0);
    json_object_set_new(value, "id", json_string(op->id));
    if (px_hook_run(req, "before_user_update", &value) != PX_OK) {
        json_decref(value);
        return;
    }
    if (json_is_object(value))
        json_object_del(value, "id");
    bool role_refused = !op->admin && json_object_get(value, "role");
    int rc = role_refused ? PX_DONE : input_check(req, "UpdateUserRequest", value, &op->in);
    json_decref(value);
    if (role_refused)
        user_invalid(req, json_pack("{s:s}", "role", "only an admin may change it"));
    else if (rc < 0)
        user_fail(req, rc);
    if (rc)
        return;
    rc = (op->in.present & IN_PASSWORD)
            ? password_hash_async(req, op->in.password, update_hashed, op)
            : store_user_update(req, op->id, &op->in, NULL, updated, op);
    if (rc)
        user_fail(req, rc);
}

int users_update(px_req_t *req, void *ud)
{
    (void)ud;
    op_t *op = op_new(req);
    int rc = px_req_json(req, &op->body);
    if (rc)
        return rc;
    rc = px_req_uuid(req, "userId", op->id);
    if (rc)
        return rc;
    rc = caller_load(req, update_caller, op);
    return rc ? rc : PX_ASYNC;
}

/* ---- DELETE /v1/users/{userId} ---- */

static void delete_answer(px_req_t *req, void *ud)
{
    (void)ud;
    px_res_send(req, 204, NULL, "", 0);
}

static void deleted(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    op_t *op = ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    if (px_pg_rows(res) == 0) {
        no_such_user(req);
        return;
    }
    profile_forget(req, op->id, delete_answer, op);
}

static void delete_caller(px_req_t *req, json_t *caller, void *ud)
{
    op_t *op = ud;
    bool allowed = is_self(caller, op->id) || is_admin(caller);
    json_decref(caller);
    if (!allowed) {
        not_yours(req);
        return;
    }
    int rc = store_user_delete(req, op->id, deleted, op);
    if (rc)
        user_fail(req, rc);
}

int users_delete(px_req_t *req, void *ud)
{
    (void)ud;
    op_t *op = op_new(req);
    int rc = px_req_uuid(req, "userId", op->id);
    if (rc)
        return rc;
    rc = caller_load(req, delete_caller, op);
    return rc ? rc : PX_ASYNC;
}
