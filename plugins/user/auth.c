/*
 * auth.c — POST /v1/auth/register, /login, /refresh and /logout, and the account creation
 * that register shares with the admin's POST /v1/users.
 *
 * Every handler here is a chain of callbacks: parse and validate on the loop, hash on the
 * thread pool, then PostgreSQL (and Redis for the login throttle), answering from the last
 * callback. Each chain keeps its state in request memory (px_req_alloc); a job on the
 * thread pool keeps its own copy of what it needs, since it may outlive the request. No
 * chain rolls back by hand: answering while a transaction is open ends the request, and
 * the host rolls the transaction back then (nothing of it, event included, happened).
 *
 * Login answers one message, "invalid login or password", for an unknown account and for
 * a wrong password, and spends the same work on both (one lookup, one throttle statement,
 * one password hash with the current parameters), so neither the text nor the time tells
 * them apart.
 */
#include <stdio.h>
#include <string.h>

#include "user.h"

#define BAD_LOGIN "invalid login or password"
#define BAD_REFRESH "the refresh token is invalid, expired or revoked"

/* ---- creating an account: register and the admin's create ---- */

typedef struct create {
    user_input_t in;
    bool session; /* register: also start a session and answer its tokens */
    char password_hash[PASSWORD_HASH_MAX];
    char refresh[TOKEN_TEXT_LEN + 1];
    char refresh_hash[TOKEN_HASH_LEN + 1];
    px_pg_txn_t *txn;
    const char *taken; /* "username" or "email" when the check found it taken */
} create_t;

/* `what` is "username" or "email"; the messages are the ones user.c declares for the
 * unique indexes, which decide a race the check before the hash did not see. */
static int answer_taken(px_req_t *req, const char *what)
{
    return px_res_error(req, 409, "conflict",
                        !strcmp(what, "username") ? "this username is already taken"
                                                  : "this email is already registered",
                        NULL);
}

/* A race lost to another registration of the name is a 23505 on one of the unique
 * indexes, answered by the host with the message user.c declared for it. */
static int created(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    create_t *c = ud;
    json_t *user = store_user_json(res, 0, 0);
    const char *id = json_string_value(json_object_get(user, "id"));
    /* In the transaction of the insert: the event exists exactly when the account does. */
    int rc = px_event_emit(c->txn, "user.registered", id,
                           json_pack("{s:s, s:O, s:O}", "userId", id, "username",
                                     json_object_get(user, "username"), "createdAt",
                                     json_object_get(user, "createdAt")));
    if (rc) {
        json_decref(user);
        return rc;
    }
    px_res_header(req, "Location", px_req_printf(req, "/v1/users/%s", id));
    json_t *body = user;
    if (c->session) {
        body = tokens_answer(req, id, json_string_value(json_object_get(user, "username")),
                             json_string_value(json_object_get(user, "role")), c->refresh);
        json_decref(user);
        if (!body)
            return PX_EINTERNAL;
    }
    return px_pg_commit_respond(c->txn, 201, body);
}

static int create_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    (void)req;
    create_t *c = ud;
    c->txn = txn;
    return store_user_insert(txn, &c->in, c->password_hash, c->session ? c->refresh_hash : NULL,
                             created, c);
}

static int create_hashed(px_req_t *req, const password_result_t *res, void *ud)
{
    create_t *c = ud;
    if (res->status)
        return res->status;
    snprintf(c->password_hash, sizeof(c->password_hash), "%s", res->new_hash);
    if (c->session && tokens_new(c->refresh, c->refresh_hash))
        return PX_EINTERNAL;
    /* Idempotency-Key: a retried create gets the first answer, the same id. */
    return px_pg_begin_run(req, PX_PG_IDEMPOTENT, create_begun, c);
}

/* The name was taken and the request carries an Idempotency-Key: it may be the retry of
 * the create that took it, whose first answer the host replays without calling us; a
 * new key gets here, and its 409 is not recorded. */
static int taken_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    (void)txn;
    return answer_taken(req, ((create_t *)ud)->taken);
}

/* Whether the name or the email is taken is known before any hash is made: a 409 costs
 * one indexed lookup, not a scrypt (a loop registering a taken name was a cheap way to
 * keep every hashing slot busy), and a PostgreSQL outage answers 503 without one. The
 * unique indexes still decide a race between two registrations of one name. */
static int create_checked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    create_t *c = ud;
    const char *taken = px_pg_value(res, 0, 0);
    if (!taken)
        return password_hash_async(req, c->in.password, create_hashed, c);
    c->taken = taken[0] == 'u' ? "username" : "email";
    if (!px_req_header(req, "Idempotency-Key"))
        return answer_taken(req, c->taken);
    return px_pg_begin_run(req, PX_PG_IDEMPOTENT, taken_begun, c);
}

#define CREATE_FIELDS (IN_USERNAME | IN_EMAIL | IN_PASSWORD | IN_FIRST_NAME | IN_LAST_NAME)

int auth_create_account(px_req_t *req, const json_t *body, bool session)
{
    user_input_t in;
    input_read(req, body, &in);
    /* The admins' hook sees (and may change or veto) the new account, role aside: the role
     * is the admin's decision in POST /v1/users and always "user" in register. What it
     * gives back must pass the same schema a registration does. */
    json_t *value = input_to_json(&in, CREATE_FIELDS, IN_FIRST_NAME | IN_LAST_NAME);
    int rc = px_hook_run(req, "before_user_register", &value);
    create_t *c = px_req_alloc(req, sizeof(*c));
    memset(c, 0, sizeof(*c));
    if (!rc)
        rc = input_check(req, "RegisterRequest", value, &c->in);
    json_decref(value);
    if (rc)
        return rc;
    if (in.present & IN_ROLE) {
        c->in.present |= IN_ROLE;
        c->in.role = in.role;
    }
    c->session = session;
    rc = store_user_taken(req, c->in.username, c->in.email, create_checked, c);
    return rc ? rc : PX_ASYNC;
}

/* The body passed RegisterRequest before this runs (the route's spec). */
int auth_register(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    return rc ? rc : auth_create_account(req, body, true);
}

/* ---- login ---- */

typedef struct login {
    const char *login;
    const char *password;
    const char *subject; /* what the throttle counts: the account, or the name typed */
    const char *user_id; /* NULL: no such account */
    const char *username;
    const char *role;
    const char *stored;
    char refresh[TOKEN_TEXT_LEN + 1];
    char refresh_hash[TOKEN_HASH_LEN + 1];
} login_t;

static int login_refused(px_req_t *req)
{
    return px_res_error(req, 401, "unauthorized", BAD_LOGIN, NULL);
}

static void session_started(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                            void *ud)
{
    (void)res;
    login_t *l = ud;
    if (err) {
        /* 23503: the account was deleted between the lookup and now. */
        if (!strcmp(px_pg_error_sqlstate(err), "23503"))
            login_refused(req);
        else
            px_res_pg_error(req, err);
        return;
    }
    json_t *body = tokens_answer(req, l->user_id, l->username, l->role, l->refresh);
    if (!body) {
        px_res_code(req, PX_EINTERNAL, NULL);
        return;
    }
    px_res_json(req, 200, body);
}

static int login_verified(px_req_t *req, const password_result_t *res, void *ud)
{
    login_t *l = ud;
    if (res->status)
        return res->status;
    if (!res->match || !l->user_id)
        return login_refused(req); /* the attempt it took stays counted */
    limit_release(req, l->subject);
    if (res->new_hash)
        px_log(user_plugin, PX_LOG_INFO, "user %s: password rehashed with the current parameters",
               l->user_id);
    int rc = tokens_new(l->refresh, l->refresh_hash);
    return rc ? rc
              : store_login_session(req, l->user_id, l->refresh_hash, res->new_hash, l->stored,
                                    session_started, l);
}

static int login_allowed(px_req_t *req, bool blocked, int64_t retry_after, void *ud)
{
    login_t *l = ud;
    if (blocked) {
        px_res_header(req, "Retry-After", px_req_printf(req, "%lld", (long long)retry_after));
        return px_res_error(req, 429, "rate_limited",
                            "too many failed logins for this account; retry later", NULL);
    }
    /* No account: the same hash, against the dummy. */
    return password_verify_async(req, l->stored, l->password, login_verified, l);
}

static int login_found(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    login_t *l = ud;
    if (px_pg_rows(res) == 1) {
        l->user_id = px_req_strdup(req, px_pg_value(res, 0, 0));
        l->username = px_req_strdup(req, px_pg_value(res, 0, 1));
        l->role = px_req_strdup(req, px_pg_value(res, 0, 2));
        l->stored = px_req_strdup(req, px_pg_value(res, 0, 3));
    }
    /* Failures count per account, whichever of its names was typed; for a login that names
     * no account, per the name typed. */
    l->subject = l->user_id ? px_req_printf(req, "id:%s", l->user_id)
                            : px_req_printf(req, "name:%s", l->login);
    return limit_reserve(req, l->subject, login_allowed, l);
}

/* The body passed LoginRequest (strings, no other field); one of the two names is the
 * rule a schema of this subset cannot say. */
int auth_login(px_req_t *req, void *ud)
{
    (void)ud;
    json_t *body;
    int rc = px_req_json(req, &body);
    if (rc)
        return rc;
    json_t *email = json_object_get(body, "email"), *username = json_object_get(body, "username");
    if (email && username)
        return user_invalid(req, json_pack("{s:s}", "username", "give email or username, not both"));
    if (!email && !username)
        return user_invalid(req, json_pack("{s:s}", "username", "email or username is required"));

    login_t *l = px_req_alloc(req, sizeof(*l));
    memset(l, 0, sizeof(*l));
    l->login = json_string_value(email ? email : username);
    l->password = json_string_value(json_object_get(body, "password"));
    rc = store_login_lookup(req, l->login, login_found, l);
    return rc ? rc : PX_ASYNC;
}

/* ---- refresh ---- */

typedef struct refresh {
    char hash[TOKEN_HASH_LEN + 1];
    char next[TOKEN_TEXT_LEN + 1];
    char next_hash[TOKEN_HASH_LEN + 1];
    px_pg_txn_t *txn;
    const char *user_id;
    const char *username;
    const char *role;
    const char *family;
} refresh_t;

static void reuse_committed(px_req_t *req, const px_pg_error_t *err, void *ud)
{
    (void)ud;
    if (err) {
        px_res_pg_error(req, err);
        return;
    }
    /* The same answer as for any dead token: the client only needs to sign in again. */
    px_res_error(req, 401, "unauthorized", BAD_REFRESH, NULL);
}

static int family_revoked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    (void)req;
    refresh_t *r = ud;
    /* A token revoked by a logout or a password change finds its family already dead;
     * one that still had a live successor was stolen or replayed. */
    if (px_pg_affected(res) > 0)
        px_log(user_plugin, PX_LOG_WARN,
               "user %s: a rotated refresh token was presented again; its session is revoked",
               r->user_id);
    return px_pg_commit(r->txn, reuse_committed, r);
}

static int refresh_locked(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    refresh_t *r = ud;
    if (px_pg_rows(res) == 0)
        return px_res_error(req, 401, "unauthorized", BAD_REFRESH, NULL);
    const char *token_id = px_req_strdup(req, px_pg_value(res, 0, 0));
    r->family = px_req_strdup(req, px_pg_value(res, 0, 1));
    bool revoked = !strcmp(px_pg_value(res, 0, 2), "t");
    bool expired = !strcmp(px_pg_value(res, 0, 3), "t");
    r->user_id = px_req_strdup(req, px_pg_value(res, 0, 4));
    r->username = px_req_strdup(req, px_pg_value(res, 0, 5));
    r->role = px_req_strdup(req, px_pg_value(res, 0, 6));
    /* Someone holds a token that was already rotated away: the thief or the owner. We
     * cannot tell which, so neither keeps the session. */
    if (revoked)
        return store_family_revoke(r->txn, r->family, family_revoked, r);
    if (expired)
        return px_res_error(req, 401, "unauthorized", BAD_REFRESH, NULL);
    /* The rotation is queued without a callback (SDK 1.2): if it fails, the commit answers
     * its error instead of the tokens. */
    int rc = tokens_new(r->next, r->next_hash);
    json_t *body = rc ? NULL : tokens_answer(req, r->user_id, r->username, r->role, r->next);
    if (!rc && !body)
        rc = PX_EINTERNAL;
    if (!rc)
        rc = store_refresh_rotate(r->txn, token_id, r->user_id, r->family, r->next_hash);
    if (rc) {
        json_decref(body);
        return rc;
    }
    return px_pg_commit_respond(r->txn, 200, body);
}

static int refresh_begun(px_req_t *req, px_pg_txn_t *txn, void *ud)
{
    (void)req;
    refresh_t *r = ud;
    r->txn = txn;
    return store_refresh_lock(txn, r->hash, refresh_locked, r);
}

/* The refresh token of a refresh or logout body (it passed RefreshRequest), in our own
 * tokens' shape: nothing else is worth a database round trip. Otherwise answers 401 and
 * returns NULL, with *rc what the handler returns. */
static const char *body_refresh_token(px_req_t *req, int *rc)
{
    json_t *body;
    *rc = px_req_json(req, &body);
    if (*rc)
        return NULL;
    const char *token = json_string_value(json_object_get(body, "refreshToken"));
    if (strlen(token) != TOKEN_TEXT_LEN ||
        strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
            TOKEN_TEXT_LEN) {
        *rc = PX_DONE;
        px_res_error(req, 401, "unauthorized", BAD_REFRESH, NULL);
        return NULL;
    }
    return token;
}

int auth_refresh(px_req_t *req, void *ud)
{
    (void)ud;
    int rc;
    const char *token = body_refresh_token(req, &rc);
    if (!token)
        return rc;
    refresh_t *r = px_req_alloc(req, sizeof(*r));
    memset(r, 0, sizeof(*r));
    tokens_hash(token, strlen(token), r->hash);
    rc = px_pg_begin_run(req, 0, refresh_begun, r);
    return rc ? rc : PX_ASYNC;
}

/* ---- logout ---- */

static int logged_out(px_req_t *req, const px_pg_result_t *res, void *ud)
{
    (void)ud;
    const char *count = px_pg_value(res, 0, 0);
    if (!count || !strcmp(count, "0"))
        return px_res_error(req, 401, "unauthorized", BAD_REFRESH, NULL);
    return px_res_send(req, 204, NULL, "", 0);
}

int auth_logout(px_req_t *req, void *ud)
{
    (void)ud;
    int rc;
    const char *token = body_refresh_token(req, &rc);
    if (!token)
        return rc;
    char caller[37];
    if (px_uuid_parse(px_req_caller_id(req), caller))
        return px_res_error(req, 401, "unauthorized", BAD_REFRESH, NULL);
    char hash[TOKEN_HASH_LEN + 1];
    tokens_hash(token, strlen(token), hash);
    /* The caller's token only: the whole session it belongs to ends. */
    rc = store_logout(req, caller, hash, logged_out, NULL);
    return rc ? rc : PX_ASYNC;
}
