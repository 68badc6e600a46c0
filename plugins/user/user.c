/*
 * user — accounts, passwords and tokens (API.md, "Users and auth").
 *
 * This file holds the descriptor, the settings of [plugin:user], init and the route table;
 * the handlers are in auth.c and users.c (see user.h for the map of the folder).
 *
 * The plugin issues the tokens the host verifies: init refuses to start without an [auth]
 * token secret, because every register and login would otherwise fail at its very end.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"

px_plugin_t *user_plugin;
user_settings_t user_settings;

extern const px_migration_t user_migrations[];

void user_fail(px_req_t *req, int rc)
{
    if (rc < 0)
        px_res_code(req, rc, NULL);
}

int user_invalid(px_req_t *req, json_t *fields)
{
    return px_res_error(req, 400, "validation_failed", "the request has invalid fields", fields);
}

/* ---- settings ---- */

static int settings_load(px_plugin_t *self)
{
    int64_t scheme, am, at, ap, n, r, p, ttl_ms, limit, window_ms, hash_jobs, hash_queue;
    /* OWASP's first choice, Argon2id with m=19 MiB, t=2, p=1; and its scrypt
     * recommendation, 2^17, r=8, p=1, for password_scheme = scrypt. Argon2 needs at least
     * 8 KiB per lane (checked below); more than 1 GiB per job is a typo. */
    const px_setting_t settings[] = {
        {"password_scheme", "argon2id", PX_SETTING_CHOICE, 0, 0, "argon2id|scrypt", &scheme},
        {"argon2_p", "1", PX_SETTING_INT, 1, 64, NULL, &ap},
        {"argon2_m", "19456", PX_SETTING_INT, 8, (int64_t)1 << 20, NULL, &am},
        {"argon2_t", "2", PX_SETTING_INT, 1, 64, NULL, &at},
        {"scrypt_n", "131072", PX_SETTING_INT, 2, (int64_t)1 << 24, NULL, &n},
        {"scrypt_r", "8", PX_SETTING_INT, 1, 64, NULL, &r},
        {"scrypt_p", "1", PX_SETTING_INT, 1, 64, NULL, &p},
        {"cache_ttl", "60s", PX_SETTING_DURATION_MS, 1000, 86400 * 1000, NULL, &ttl_ms},
        {"login_limit", "10", PX_SETTING_INT, 1, 1000000, NULL, &limit},
        {"login_window", "60s", PX_SETTING_DURATION_MS, 1000, 86400 * 1000, NULL, &window_ms},
        {"hash_jobs", "1", PX_SETTING_INT, 1, 64, NULL, &hash_jobs},
        {"hash_queue", "64", PX_SETTING_INT, 0, 100000, NULL, &hash_queue},
        {NULL, NULL, 0, 0, 0, NULL, NULL},
    };
    int rc = px_config_settings(self, settings);
    if (rc)
        return rc;
    if (am < 8 * ap) {
        px_log(self, PX_LOG_ERROR,
               "[plugin:user] argon2_m = %" PRId64 ": expected at least 8 KiB per lane (%" PRId64
               ")", am, 8 * ap);
        return PX_EINVAL;
    }
    if (n & (n - 1)) {
        px_log(self, PX_LOG_ERROR, "[plugin:user] scrypt_n = %" PRId64 ": must be a power of 2", n);
        return PX_EINVAL;
    }
    /* scrypt needs 128 * r * N bytes per hash; more than 1 GiB per job is a typo. */
    if ((uint64_t)n * (uint64_t)r * 128 > (1ull << 30)) {
        px_log(self, PX_LOG_ERROR,
               "[plugin:user] scrypt_n * scrypt_r * 128 = %" PRIu64 " bytes per hash; keep it "
               "at most 1 GiB",
               (uint64_t)n * (uint64_t)r * 128);
        return PX_EINVAL;
    }
    user_settings = (user_settings_t){
        .scheme = scheme == 0 ? PASSWORD_ARGON2ID : PASSWORD_SCRYPT,
        .argon2_m = (uint64_t)am,
        .argon2_t = (uint64_t)at,
        .argon2_p = (uint64_t)ap,
        .scrypt_n = (uint64_t)n,
        .scrypt_r = (uint32_t)r,
        .scrypt_p = (uint32_t)p,
        .cache_ttl = ttl_ms / 1000,
        .login_limit = limit,
        .login_window_ms = window_ms,
        .refresh_ttl = px_auth_setting(self, "refresh_ttl"),
        .hash_jobs = hash_jobs,
        .hash_queue = hash_queue,
    };
    return 0;
}

/* ---- init ---- */

static int user_init(px_plugin_t *self)
{
    user_plugin = self;
    int rc = settings_load(self);
    if (rc)
        return rc;
    if (px_auth_setting(self, "secret") != 1) {
        px_log(self, PX_LOG_ERROR,
               "the user plugin signs access tokens but no token secret is set: add "
               "token_secret_file (or token_secret) to [auth]");
        return PX_EINVAL;
    }
    if (user_settings.refresh_ttl <= 0) {
        px_log(self, PX_LOG_ERROR, "[auth] refresh_ttl must be at least one second");
        return PX_EINVAL;
    }
    rc = password_init(self);
    /* A registration that loses a race for a name, or an update to a taken email. */
    if (!rc)
        rc = px_pg_conflict(self, "users_username_lower_key", "this username is already taken");
    if (!rc)
        rc = px_pg_conflict(self, "users_email_lower_key", "this email is already registered");
    if (!rc)
        rc = px_hook_declare(self, "before_user_register",
                             "checks or changes a registration or an admin's create "
                             "{username, email, firstName, lastName, password}");
    if (!rc)
        rc = px_hook_declare(self, "before_user_update",
                             "checks or changes the fields of a PUT /v1/users/{userId}, with id");
    if (rc)
        return rc;

    /* Each route from its spec: the host validates what the spec names before the
     * handler runs and describes the route in /openapi.json from it. */
#define ERRORS(...) {__VA_ARGS__, {409, "Error", TAKEN, NULL}, {0}}
#define TAKEN "The username or email is taken, or the Idempotency-Key was used for another request"
#define ROUTE(m, p, fn, a, r, body, resp, text, q, pp)                                        \
    {.size = sizeof(px_route_spec_t), .method = m, .pattern = p, .handler = fn, .auth = a,   \
     .role = r, .request_schema = body, .responses = resp, .summary = text, .tag = "users",  \
     .query = q, .params = pp}
    static const px_response_spec_t tokens_201[] = ERRORS({201, "AuthTokens", NULL, NULL});
    static const px_response_spec_t tokens_200[] = {
        {200, "AuthTokens", NULL, NULL},
        {429, "Error", "Too many failed logins (rate_limited), with Retry-After", NULL}, {0}};
    static const px_response_spec_t user_201[] = ERRORS({201, "User", NULL, NULL});
    static const px_response_spec_t user_200[] = {{200, "User", NULL, NULL}, {0}};
    static const px_response_spec_t user_put[] = ERRORS({200, "User", NULL, NULL});
    static const px_response_spec_t list_200[] = {{200, "UserList", NULL, NULL}, {0}};
    static const px_response_spec_t done_204[] = {{204, NULL, NULL, NULL}, {0}};
    static const px_param_spec_t list_query[] = {
        {"page", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1000000000, "
                 "\"default\": 1}", 0, NULL},
        {"limit", "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100, \"default\": 10}",
         0, NULL},
        {"search", "{\"type\": \"string\", \"maxLength\": 200}", 0,
         "matches username, email and names, case-insensitively"},
        {NULL, NULL, 0, NULL}};
    /* An id that is not a uuid names no user: 404, as for one that does not exist. */
    static const px_param_spec_t user_id[] = {
        {"userId", "{\"type\": \"string\", \"format\": \"uuid\"}", 1, NULL},
        {NULL, NULL, 0, NULL}};
    static const px_route_spec_t routes[] = {
        ROUTE("POST", "/v1/auth/register", auth_register, PX_AUTH_NONE, NULL, "RegisterRequest",
              tokens_201, "Register (before_user_register may veto; Idempotency-Key)", NULL, NULL),
        ROUTE("POST", "/v1/auth/login", auth_login, PX_AUTH_NONE, NULL, "LoginRequest",
              tokens_200, "Log in by email or username", NULL, NULL),
        ROUTE("POST", "/v1/auth/refresh", auth_refresh, PX_AUTH_NONE, NULL, "RefreshRequest",
              tokens_200, "Rotate the refresh token for new tokens", NULL, NULL),
        ROUTE("POST", "/v1/auth/logout", auth_logout, PX_AUTH_REQUIRED, NULL, "RefreshRequest",
              done_204, "End the session the refresh token belongs to", NULL, NULL),
        ROUTE("GET", "/v1/users/me", users_me, PX_AUTH_REQUIRED, NULL, NULL, user_200,
              "The caller's own account", NULL, NULL),
        ROUTE("POST", "/v1/users", users_create, PX_AUTH_REQUIRED, "admin", "CreateUserRequest",
              user_201, "Create a user of any role (admin; Idempotency-Key)", NULL, NULL),
        ROUTE("GET", "/v1/users", users_list, PX_AUTH_REQUIRED, "admin", NULL, list_200,
              "List users (admin)", list_query, NULL),
        ROUTE("GET", "/v1/users/:userId", users_get, PX_AUTH_REQUIRED, NULL, NULL, user_200,
              "Get a user (self or admin)", NULL, user_id),
        ROUTE("PUT", "/v1/users/:userId", users_update, PX_AUTH_REQUIRED, NULL,
              "UpdateUserRequest", user_put, "Update a user (self or admin; role by admins)",
              NULL, user_id),
        ROUTE("DELETE", "/v1/users/:userId", users_delete, PX_AUTH_REQUIRED, NULL, NULL,
              done_204, "Delete a user and end their sessions (self or admin)",
              NULL, user_id),
    };
    rc = px_migrations(self, user_migrations);
    if (!rc)
        rc = px_schema(self, NULL, user_schemas);
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = px_route_add(self, &routes[i]);
    if (!rc)
        rc = px_command(self, "create-admin",
                        "user:create-admin USERNAME EMAIL - create an admin; the password is "
                        "read from stdin",
                        command_create_admin);
    if (rc) {
        password_fini();
        return rc;
    }
    px_log(self, PX_LOG_DEBUG,
           "ready: scrypt N=%" PRIu64 " r=%u p=%u, cache %" PRId64 " s, %" PRId64
           " failed logins per %" PRId64 " ms",
           user_settings.scrypt_n, user_settings.scrypt_r, user_settings.scrypt_p,
           user_settings.cache_ttl, user_settings.login_limit, user_settings.login_window_ms);
    return 0;
}

static void user_fini(px_plugin_t *self)
{
    (void)self;
    password_fini();
}

PX_PLUGIN("user", "1.0.0", user_init, user_fini, NULL);
