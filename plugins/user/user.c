/*
 * user — accounts, passwords and tokens (API.md, "Users and auth").
 *
 * This file holds the descriptor, the settings of [plugin:user], init and the route table;
 * the handlers are in auth.c and users.c (see user.h for the map of the folder).
 *
 * The plugin issues the tokens the host verifies: init refuses to start without an [auth]
 * token secret, because every register and login would otherwise fail at its very end.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"

px_plugin_t *user_plugin;
user_settings_t user_settings;

extern const px_migration_t user_migrations[];

int user_fail(px_req_t *req, int rc)
{
    switch (rc) {
    case PX_EINVAL: return px_res_error(req, 400, "bad_request", NULL, NULL);
    case PX_EAUTH: return px_res_error(req, 401, "unauthorized", NULL, NULL);
    case PX_EPERM: return px_res_error(req, 403, "forbidden", NULL, NULL);
    case PX_ENOENT: return px_res_error(req, 404, "not_found", NULL, NULL);
    case PX_ECONFLICT: return px_res_error(req, 409, "conflict", NULL, NULL);
    case PX_EUNAVAIL:
        return px_res_error(req, 503, "unavailable", "the service is busy or unavailable; retry",
                            NULL);
    default: return px_res_error(req, 500, "internal", NULL, NULL);
    }
}

int user_invalid(px_req_t *req, json_t *fields)
{
    return px_res_error(req, 400, "validation_failed", "the request has invalid fields", fields);
}

bool user_is_uuid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* ---- settings ---- */

/* A whole number in [min, max]. */
static int setting_int(const char *key, int64_t min, int64_t max, int64_t *out)
{
    const char *v = px_config_get(user_plugin, key);
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) {
        px_log(user_plugin, PX_LOG_ERROR,
               "[plugin:user] %s = \"%s\": expected a whole number from %" PRId64 " to %" PRId64,
               key, v, min, max);
        return PX_EINVAL;
    }
    *out = n;
    return 0;
}

/* A duration as the host writes them: "60s", "5m", "1h", "500ms", "1d"; a bare number is
 * seconds. Milliseconds in [min_ms, max_ms]. */
static int setting_duration(const char *key, int64_t min_ms, int64_t max_ms, int64_t *out_ms)
{
    const char *v = px_config_get(user_plugin, key);
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    int64_t unit = -1;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        unit = 1000;
    else if (!strcmp(end, "ms"))
        unit = 1;
    else if (!strcmp(end, "m"))
        unit = 60 * 1000;
    else if (!strcmp(end, "h"))
        unit = 3600 * 1000;
    else if (!strcmp(end, "d"))
        unit = 86400 * 1000;
    if (errno || end == v || unit < 0 || n < 0 || n > max_ms / unit || n * unit < min_ms) {
        px_log(user_plugin, PX_LOG_ERROR,
               "[plugin:user] %s = \"%s\": expected a duration such as 60s, 5m or 500ms, from "
               "%" PRId64 " ms to %" PRId64 " ms",
               key, v, min_ms, max_ms);
        return PX_EINVAL;
    }
    *out_ms = n * unit;
    return 0;
}

static int settings_load(px_plugin_t *self)
{
    static const struct {
        const char *key, *dflt;
    } keys[] = {
        {"scrypt_n", "131072"}, /* 2^17, r=8, p=1: OWASP's scrypt recommendation */
        {"scrypt_r", "8"},      {"scrypt_p", "1"},       {"cache_ttl", "60s"},
        {"login_limit", "10"},  {"login_window", "60s"},   {"hash_jobs", "1"},
        {"hash_queue", "64"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        px_config_declare(self, keys[i].key, keys[i].dflt);

    int64_t n, r, p, ttl_ms, limit, window_ms, hash_jobs, hash_queue;
    int rc = setting_int("scrypt_n", 2, (int64_t)1 << 24, &n);
    if (!rc)
        rc = setting_int("scrypt_r", 1, 64, &r);
    if (!rc)
        rc = setting_int("scrypt_p", 1, 64, &p);
    if (!rc)
        rc = setting_duration("cache_ttl", 1000, 86400 * 1000, &ttl_ms);
    if (!rc)
        rc = setting_int("login_limit", 1, 1000000, &limit);
    if (!rc)
        rc = setting_duration("login_window", 1000, 86400 * 1000, &window_ms);
    if (!rc)
        rc = setting_int("hash_jobs", 1, 1024, &hash_jobs);
    if (!rc)
        rc = setting_int("hash_queue", 0, 100000, &hash_queue);
    if (rc)
        return rc;
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
    rc = password_init();
    if (rc)
        return rc;

    static const struct {
        const char *method, *pattern;
        px_handler_fn fn;
        int auth;
        const char *role;
    } routes[] = {
        {"POST", "/v1/auth/register", auth_register, PX_AUTH_NONE, NULL},
        {"POST", "/v1/auth/login", auth_login, PX_AUTH_NONE, NULL},
        {"POST", "/v1/auth/refresh", auth_refresh, PX_AUTH_NONE, NULL},
        {"POST", "/v1/auth/logout", auth_logout, PX_AUTH_REQUIRED, NULL},
        {"GET", "/v1/users/me", users_me, PX_AUTH_REQUIRED, NULL},
        {"GET", "/v1/users", users_list, PX_AUTH_REQUIRED, "admin"},
        {"POST", "/v1/users", users_create, PX_AUTH_REQUIRED, "admin"},
        {"GET", "/v1/users/:userId", users_get, PX_AUTH_REQUIRED, NULL},
        {"PUT", "/v1/users/:userId", users_update, PX_AUTH_REQUIRED, NULL},
        {"DELETE", "/v1/users/:userId", users_delete, PX_AUTH_REQUIRED, NULL},
    };
    rc = px_migrations(self, user_migrations);
    for (size_t i = 0; !rc && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = px_route_auth(self, routes[i].method, routes[i].pattern, routes[i].fn, NULL,
                           routes[i].auth, routes[i].role);
    if (!rc)
        rc = px_command(self, "create-admin",
                        "user:create-admin USERNAME EMAIL - create an admin; the password is "
                        "read from stdin",
                        command_create_admin);
    if (!rc)
        rc = px_openapi(self, openapi_fragment());
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
