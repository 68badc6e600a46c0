/*
 * panthera.h — the Panthera plugin SDK.
 *
 * A plugin is a shared object that exports one descriptor, built with PX_PLUGIN(), and
 * calls back into the host only through the function table the host hands it before
 * init. Plugins never link against server symbols: build with
 *
 *     cc -shared -fPIC $(pkg-config --cflags panthera-sdk) my.c -o my.so \
 *        $(pkg-config --libs panthera-sdk) -Wl,--no-undefined
 *
 * ABI rules (read these before changing this file):
 *  - PX_ABI_MAJOR changes only when something already published changes meaning or
 *    layout. The host refuses a plugin built for another major.
 *  - PX_ABI_MINOR grows when functions are appended to the table. The host refuses a
 *    plugin built for a newer minor than its own; an older one loads (the table only
 *    grows at its end, so every slot the plugin knows about is where it expects).
 *  - The first fields of px_plugin_info_t (magic, abi_major, abi_minor) never move.
 *  - The table is generated from the PX_API_* lists below: one list gives the struct
 *    field, the px_* wrapper and (in the host) the implementation slot, so a function
 *    can never be declared but left unset.
 *
 * Conventions: functions return 0 or a negative PX_E* code unless they say otherwise.
 * Strings handed to a plugin are borrowed: they stay valid until the request ends (for
 * request data) or until the plugin is unloaded (for configuration), and the plugin
 * never frees them. Strings a plugin hands to the host are copied by the host unless the
 * function says it takes ownership.
 */
#ifndef PANTHERA_H
#define PANTHERA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PX_ABI_MAJOR 1
#define PX_ABI_MINOR 1

/* "PXPL" — tells a Panthera descriptor from a random symbol of the same name. */
#define PX_PLUGIN_MAGIC 0x5058504cu

/* Handler results and error codes. A handler returns PX_OK once it has answered,
 * PX_ASYNC when it will answer later from a callback, or a negative PX_E* code, which
 * the host turns into an error response in the API's JSON error shape. */
enum {
    PX_OK = 0,
    PX_ASYNC = 1,
    PX_EINVAL = -1,    /* 400 bad_request: malformed input */
    PX_ENOTJSON = -2,  /* 415 bad_request: body is not JSON */
    PX_EAUTH = -3,     /* 401 unauthorized */
    PX_EPERM = -4,     /* 403 forbidden */
    PX_ENOENT = -5,    /* 404 not_found */
    PX_ECONFLICT = -6, /* 409 conflict */
    PX_ETOOBIG = -7,   /* 413 payload_too_large */
    PX_EUNAVAIL = -8,  /* 503 unavailable */
    PX_EINTERNAL = -9, /* 500 internal */
    PX_ESTATE = -10,   /* the call is not allowed now (e.g. a route added after init) */
    PX_EEXIST = -11,   /* already registered */
};

/* PX_DONE: "already answered" — a helper such as px_hook_run() that sent the response
 * itself returns it, and the handler simply returns it on. (Added in 1.1.) */
#define PX_DONE 2

/* Who may call a route (px_route_auth, 1.1). */
enum px_auth { PX_AUTH_NONE = 0, PX_AUTH_OPTIONAL = 1, PX_AUTH_REQUIRED = 2 };

enum px_log_level { PX_LOG_ERROR = 0, PX_LOG_WARN = 1, PX_LOG_INFO = 2, PX_LOG_DEBUG = 3 };

/* Opaque handles. px_plugin_t is the plugin's own handle, valid from init to fini.
 * px_req_t is one HTTP request, valid from the handler call until the handler (or a
 * callback it started) has sent the response. */
typedef struct px_plugin px_plugin_t;
typedef struct px_req px_req_t;

/* A route handler. Runs on a worker's event loop: it must never block. */
typedef int (*px_handler_fn)(px_req_t *req, void *userdata);

/* PostgreSQL (1.1). Results and errors are owned by the host and valid only inside the
 * callback. A transaction pins one pooled connection until committed or rolled back; if
 * the request ends first, the host rolls it back. */
typedef struct px_pg_result px_pg_result_t;
typedef struct px_pg_error px_pg_error_t;
typedef struct px_pg_txn px_pg_txn_t;
enum px_pg_errkind { PX_PG_UNAVAILABLE = 1, PX_PG_QUERY = 2, PX_PG_CANCELLED = 3 };
/* Exactly one of `res` and `err` is non-NULL. */
typedef void (*px_pg_fn)(px_req_t *req, const px_pg_result_t *res, const px_pg_error_t *err,
                         void *userdata);
typedef void (*px_pg_txn_fn)(px_req_t *req, px_pg_txn_t *txn, const px_pg_error_t *err,
                             void *userdata);
typedef void (*px_pg_done_fn)(px_req_t *req, const px_pg_error_t *err, void *userdata);

/* Redis (1.1). A transport failure (not connected, deadline passed) comes as `err`
 * (PX_REDIS_UNAVAILABLE or PX_REDIS_TIMEOUT); a Redis error reply comes as a reply of
 * type PX_REDIS_ERROR. */
typedef struct px_redis_reply px_redis_reply_t;
enum px_redis_err { PX_REDIS_UNAVAILABLE = 1, PX_REDIS_TIMEOUT = 2 };
enum px_redis_type {
    PX_REDIS_STRING = 1,
    PX_REDIS_ARRAY,
    PX_REDIS_INTEGER,
    PX_REDIS_NIL,
    PX_REDIS_STATUS,
    PX_REDIS_ERROR
};
typedef void (*px_redis_fn)(px_req_t *req, const px_redis_reply_t *reply, int err,
                            void *userdata);

/* Blocking work off the event loop (1.1), e.g. password hashing. `work` runs on a libuv
 * pool thread and may touch only `userdata` (no px_* call, no request); `done` runs back
 * on the loop, always exactly once: `req` is NULL when the request ended meanwhile (free
 * what `userdata` holds anyway), and `status` is 0, or PX_EUNAVAIL when the job never ran
 * (the worker is stopping). */
typedef void (*px_work_fn)(void *userdata);
typedef void (*px_work_done_fn)(px_req_t *req, int status, void *userdata);

/* A command line sub-command a plugin adds to pantherad (1.1):
 *   pantherad -c FILE PLUGIN:COMMAND [ARGS...]
 * runs after the configuration is loaded, the plugins initialised and their migrations
 * applied, outside any event loop (blocking is fine). Returns the process exit code. */
typedef int (*px_command_fn)(px_plugin_t *plugin, int argc, char **argv);

/* A schema migration (1.1): `name` orders them ("001_init", "002_add_index"), `sql` is
 * run as one transaction. A list ends with {NULL, NULL}. panthera-embed-sql turns a
 * plugin's migrations/NNN_what.sql files into such a list at build time, so the .so
 * carries its schema with it. */
typedef struct px_migration {
    const char *name;
    const char *sql;
} px_migration_t;

/*
 * The function table, version by version. Each entry is
 *     X(return type, name, (parameters), (arguments))
 * and becomes the table field `name`, and the wrapper `px_<name>(parameters)`.
 * PX_API_VOID_* lists hold the functions that return nothing.
 * New functions go into a NEW list for the new minor, appended after the last one.
 */

/* ---- ABI 1.0 ---- */
#define PX_API_1_0(X)                                                                         \
    /* Register `handler` for `method` ("GET", "POST", "PUT", "PATCH", "DELETE") and        \
     * `pattern` ("/v1/things/:id"; ":name" matches one path segment). Only during init.    \
     * Returns 0, PX_EINVAL for a bad method or pattern, PX_EEXIST when another plugin      \
     * already claims the same method and path shape, PX_ESTATE after init. HEAD is        \
     * served by the GET handler with the body left out. */                                 \
    X(int, route, (px_plugin_t * plugin, const char *method, const char *pattern,           \
                   px_handler_fn handler, void *userdata),                                  \
      (plugin, method, pattern, handler, userdata))                                        \
    /* Declare a key of the plugin's own config section ([plugin:NAME]) with its default    \
     * (NULL: no default). Keys present in the section but never declared during init are  \
     * configuration errors. Only during init. */                                           \
    X(int, config_declare, (px_plugin_t * plugin, const char *key, const char *default_value), \
      (plugin, key, default_value))                                                         \
    /* The value of a declared key, or its default; NULL when neither exists. Borrowed      \
     * until the plugin is unloaded. */                                                     \
    X(const char *, config_get, (px_plugin_t * plugin, const char *key), (plugin, key))     \
    /* The plugin's name as loaded. */                                                      \
    X(const char *, plugin_name, (px_plugin_t * plugin), (plugin))                          \
    /* Request accessors. All strings are borrowed until the request ends; NULL when       \
     * absent. Path params and query values are percent-decoded. */                        \
    X(const char *, req_method, (px_req_t * req), (req))                                    \
    X(const char *, req_path, (px_req_t * req), (req))                                      \
    X(const char *, req_param, (px_req_t * req, const char *name), (req, name))             \
    X(const char *, req_query, (px_req_t * req, const char *name), (req, name))             \
    /* First header with this name, compared case-insensitively. */                         \
    X(const char *, req_header, (px_req_t * req, const char *name), (req, name))            \
    X(const char *, req_id, (px_req_t * req), (req))                                        \
    /* The raw body (may be empty, never NULL) and its length. */                           \
    X(const void *, req_body, (px_req_t * req, size_t * len), (req, len))                   \
    /* Parse the body as JSON. Stores a borrowed json_t (freed with the request) in *out   \
     * and returns 0; or returns PX_ENOTJSON (Content-Type is not application/json) or     \
     * PX_EINVAL (malformed JSON) with the reason kept for the error response, so a        \
     * handler can simply `return rc;`. */                                                  \
    X(int, req_json, (px_req_t * req, json_t * *out), (req, out))                           \
    /* Request-scoped memory: freed when the request ends. Never NULL. */                   \
    X(void *, req_alloc, (px_req_t * req, size_t size), (req, size))                        \
    /* Add a response header (copied). Before a px_res_* send call only. */                 \
    X(int, res_header, (px_req_t * req, const char *name, const char *value),               \
      (req, name, value))                                                                   \
    /* Send `body` as JSON with `status`. Takes the caller's reference to `body`, even on   \
     * error. The request ends when the response is written. */                             \
    X(int, res_json, (px_req_t * req, int status, json_t * body), (req, status, body))      \
    /* Send bytes (copied) with a content type. */                                          \
    X(int, res_send, (px_req_t * req, int status, const char *content_type, const void *data, \
                      size_t len),                                                          \
      (req, status, content_type, data, len))                                               \
    /* Send the API error shape {"error":{"code","message"}}; `fields` (taken, may be NULL) \
     * becomes error.fields. */                                                             \
    X(int, res_error, (px_req_t * req, int status, const char *code, const char *message,   \
                       json_t *fields),                                                     \
      (req, status, code, message, fields))

/* ---- ABI 1.1: auth, PostgreSQL, Redis, Lua hooks ---- */
#define PX_API_1_1(X)                                                                         \
    /* px_route() with a gate: PX_AUTH_REQUIRED answers 401 (with WWW-Authenticate) without  \
     * a valid bearer token, and 403 when `role` is set and the caller lacks it ("admin"     \
     * also passes any role check). PX_AUTH_OPTIONAL lends the caller when there is one.     \
     * A present but invalid token is 401 in both modes. Only during init. */               \
    X(int, route_auth, (px_plugin_t * plugin, const char *method, const char *pattern,      \
                        px_handler_fn handler, void *userdata, int auth, const char *role), \
      (plugin, method, pattern, handler, userdata, auth, role))                             \
    /* The verified caller's id (the token's sub) and role; NULL when anonymous. */        \
    X(const char *, req_caller_id, (px_req_t * req), (req))                                 \
    X(const char *, req_caller_role, (px_req_t * req), (req))                               \
    /* A signed access token for `sub` with `role`, valid for the configured access_ttl    \
     * (its seconds in *expires_in). Request memory; NULL when no token secret is set. */   \
    X(const char *, token_issue, (px_req_t * req, const char *sub, const char *role,        \
                                  int64_t *expires_in),                                     \
      (req, sub, role, expires_in))                                                         \
    /* Run `sql` with text parameters (values[i] NULL = SQL NULL) on the worker's pool.    \
     * `name` non-NULL makes it a prepared statement, prepared once per connection.        \
     * Autocommit: `cb` gets the result only once it is committed (queries submitted in    \
     * one loop iteration may share one implicit transaction; if any of them fails the     \
     * others run again on their own, so none sees a neighbour's error). `cb` runs later,  \
     * on the loop, even if the client has gone: its answer is then dropped, and the       \
     * query may have been stopped early (PX_PG_CANCELLED, or SQLSTATE 57014). Returns 0,  \
     * or PX_EUNAVAIL when no pool is configured. */                                       \
    X(int, pg_query, (px_req_t * req, const char *name, const char *sql, int nparams,       \
                      const char *const *values, px_pg_fn cb, void *userdata),              \
      (req, name, sql, nparams, values, cb, userdata))                                      \
    X(int, pg_rows, (const px_pg_result_t *res), (res))                                     \
    X(int, pg_cols, (const px_pg_result_t *res), (res))                                     \
    /* Text of a value; NULL for SQL NULL or out of range. */                               \
    X(const char *, pg_value, (const px_pg_result_t *res, int row, int col),                \
      (res, row, col))                                                                      \
    X(int, pg_colindex, (const px_pg_result_t *res, const char *name), (res, name))         \
    /* Rows changed by INSERT/UPDATE/DELETE. */                                             \
    X(int64_t, pg_affected, (const px_pg_result_t *res), (res))                             \
    X(int, pg_error_kind, (const px_pg_error_t *err), (err))                                \
    /* Five-character SQLSTATE ("23505" is a unique violation), "" when none. */            \
    X(const char *, pg_error_sqlstate, (const px_pg_error_t *err), (err))                   \
    X(const char *, pg_error_message, (const px_pg_error_t *err), (err))                    \
    /* Answer for a failed query: 503 unavailable (with Retry-After) when PostgreSQL       \
     * cannot be reached, 409 conflict for a unique violation, else 500 (logged). */        \
    X(int, res_pg_error, (px_req_t * req, const px_pg_error_t *err), (req, err))            \
    X(int, pg_begin, (px_req_t * req, px_pg_txn_fn cb, void *userdata), (req, cb, userdata)) \
    X(int, pg_txn_query, (px_pg_txn_t * txn, const char *name, const char *sql, int nparams, \
                          const char *const *values, px_pg_fn cb, void *userdata),          \
      (txn, name, sql, nparams, values, cb, userdata))                                      \
    X(int, pg_commit, (px_pg_txn_t * txn, px_pg_done_fn cb, void *userdata),                \
      (txn, cb, userdata))                                                                  \
    X(int, pg_rollback, (px_pg_txn_t * txn, px_pg_done_fn cb, void *userdata),              \
      (txn, cb, userdata))                                                                  \
    /* Send a command (binary-safe arguments; NULL argvlen: C strings; NULL cb: fire and   \
     * forget). Returns 0 or PX_EUNAVAIL when Redis is not configured or not connected    \
     * (then `cb` is not called: fall back at once). */                                    \
    X(int, redis_command, (px_req_t * req, int argc, const char *const *argv,               \
                           const size_t *argvlen, px_redis_fn cb, void *userdata),          \
      (req, argc, argv, argvlen, cb, userdata))                                             \
    X(int, redis_type, (const px_redis_reply_t *reply), (reply))                            \
    X(long long, redis_integer, (const px_redis_reply_t *reply), (reply))                   \
    /* String, status or error text; NULL for other types. */                               \
    X(const char *, redis_string, (const px_redis_reply_t *reply, size_t *len), (reply, len)) \
    X(size_t, redis_elements, (const px_redis_reply_t *reply), (reply))                     \
    X(const px_redis_reply_t *, redis_element, (const px_redis_reply_t *reply, size_t i),   \
      (reply, i))                                                                           \
    /* Run the admins' Lua hook `name` (before_user_register, ...) on `*value`. Returns     \
     * PX_OK to go on (with *value possibly replaced by the changed value: the old         \
     * reference is released), or PX_DONE when a script denied the request or failed and   \
     * the host has already answered (the deny's status and message, or 500). */            \
    X(int, hook_run, (px_req_t * req, const char *name, json_t **value), (req, name, value)) \
    /* The plugin's schema, applied in order at start (and at reload) by the master, each  \
     * migration once per database, in its own transaction, under an advisory lock so    \
     * hosts starting together are safe. A failing one stops start-up. `list` must stay   \
     * valid while the plugin is loaded (a static array). Only during init. */            \
    X(int, migrations, (px_plugin_t * plugin, const px_migration_t *list), (plugin, list)) \
    /* px_pg_begin() for a create that is safe to retry (API.md, Idempotency-Key): when the \
     * request carries the header, the host serialises requests with the same caller and  \
     * key, and if one was already answered within 24 h it replays that answer (same       \
     * status, body and Location) or, for a different request body, answers 409 — in both \
     * cases `cb` is never called. Without the header it is a plain transaction. End it    \
     * with px_pg_commit_respond so the answer is stored in the same transaction. With an \
     * [auth] token_secret the stored answer is sealed and the fingerprint is an HMAC, so  \
     * an answer holding tokens is safe to store; without one both are stored in clear.  */ \
    X(int, pg_begin_idempotent, (px_req_t * req, px_pg_txn_fn cb, void *userdata),          \
      (req, cb, userdata))                                                                  \
    /* Commit `txn` and answer `status` with `body` (taken), recording the answer when the \
     * transaction is idempotent. If the commit fails the client gets that error instead \
     * (503 when PostgreSQL is unreachable). The txn pointer is dead afterwards. */         \
    X(int, pg_commit_respond, (px_pg_txn_t * txn, int status, json_t *body),                \
      (txn, status, body))                                                                  \
    /* Run `work` off the loop (see px_work_fn). At most [server] blocking_jobs run at once \
     * per worker, the rest wait in order; PX_EUNAVAIL when too many wait. */              \
    X(int, work, (px_req_t * req, px_work_fn work, px_work_done_fn done, void *userdata),   \
      (req, work, done, userdata))                                                          \
    /* Register PLUGIN:NAME as a pantherad sub-command; `usage` is one line for -h. Only  \
     * during init. */                                                                     \
    X(int, command, (px_plugin_t * plugin, const char *name, const char *usage,             \
                     px_command_fn fn),                                                     \
      (plugin, name, usage, fn))                                                            \
    /* In a command only: run one SQL statement with text parameters on the configured    \
     * database, blocking. Returns the rows affected or returned (>= 0), or a negative    \
     * PX_E* code with PostgreSQL's message in `err` (PX_ECONFLICT: unique violation). */  \
    X(int, command_sql, (px_plugin_t * plugin, const char *sql, int nparams,                \
                         const char *const *values, char *err, size_t errlen),              \
      (plugin, sql, nparams, values, err, errlen))                                          \
    /* Contribute to GET /openapi.json: an object with "paths" and optionally             \
     * "components" (its "schemas" are merged by name). Taken. Only during init. */        \
    X(int, openapi, (px_plugin_t * plugin, json_t *fragment), (plugin, fragment))          \
    /* The host's [auth] settings a plugin that issues tokens needs, in seconds:           \
     * "access_ttl", "refresh_ttl", "leeway"; "secret" is 1 when a token secret is set.    \
     * -1 for an unknown name. */                                                          \
    X(int64_t, auth_setting, (px_plugin_t * plugin, const char *name), (plugin, name))      \
    /* The client's address as the host's rate limiter counts it: the peer, or the        \
     * X-Forwarded-For hop a trusted proxy vouches for ([ratelimit] trusted_proxies); an  \
     * IPv6 client as its /64 ("2001:db8:1:2::/64"); "unknown" when there is none. */      \
    X(const char *, req_client, (px_req_t * req), (req))

#define PX_API_VOID_1_0(X)                                                                    \
    /* Log a line at `level` to the host's error log, prefixed with the plugin's name. */   \
    X(void, logv, (px_plugin_t * plugin, int level, const char *fmt, va_list ap),           \
      (plugin, level, fmt, ap))

/* Every list, in table order: the struct, the host's table and its test all use this. */
#define PX_API_ALL(X) PX_API_1_0(X) PX_API_VOID_1_0(X) PX_API_1_1(X)

/* The table the host hands to every plugin. `size` is sizeof the host's table: test
 * PX_HAS(name) before calling a function newer than the minor you require. */
typedef struct px_api {
    size_t size;
    uint16_t abi_major;
    uint16_t abi_minor;
#define PX__FIELD(ret, name, params, args) ret(*name) params;
    PX_API_ALL(PX__FIELD)
#undef PX__FIELD
} px_api_t;

/* The plugin descriptor. Build it with PX_PLUGIN(); the host reads it by name. */
typedef struct px_plugin_info {
    uint32_t magic;     /* PX_PLUGIN_MAGIC */
    uint16_t abi_major; /* PX_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor; /* PX_ABI_MINOR the plugin was built with */
    const char *name;
    const char *version;
    const char *const *depends; /* NULL-terminated plugin names, or NULL */
    const px_api_t **api;       /* the host stores its table here before init */
    /* Called once per worker process (and by `pantherad -t`). Register routes and
     * config keys here. Return 0, or a negative code to refuse to start. */
    int (*init)(px_plugin_t *self);
    /* Called when the worker stops; may be NULL. */
    void (*fini)(px_plugin_t *self);
} px_plugin_info_t;

#define PX_PLUGIN_SYMBOL "px_plugin_info"

#if defined(__GNUC__)
#define PX__EXPORT __attribute__((visibility("default")))
#define PX__HIDDEN __attribute__((visibility("hidden")))
#else
#define PX__EXPORT
#define PX__HIDDEN
#endif

/* The table, once the host has loaded the plugin. Defined by PX_PLUGIN(). */
extern PX__HIDDEN const px_api_t *px_api;

/*
 * PX_PLUGIN("name", "1.2.0", init, fini, depends)
 * `depends` is a NULL-terminated array of plugin names this one needs loaded first, or
 * NULL. Use it once, in one .c file of the plugin.
 */
#define PX_PLUGIN(NAME, VERSION, INIT, FINI, DEPENDS)                                         \
    PX__HIDDEN const px_api_t *px_api;                                                      \
    PX__EXPORT const px_plugin_info_t px_plugin_info = {                                    \
        PX_PLUGIN_MAGIC, PX_ABI_MAJOR, PX_ABI_MINOR, NAME, VERSION, DEPENDS, &px_api,       \
        INIT, FINI}

/* True when the host's table has `name` (it may be older than this header). */
#define PX_HAS(name) (offsetof(px_api_t, name) + sizeof(void *) <= px_api->size)

/* The wrappers plugins call: px_route(), px_req_path(), ... */
#define PX__WRAP(ret, name, params, args)                                                     \
    static inline ret px_##name params { return px_api->name args; }
PX_API_1_0(PX__WRAP)
PX_API_1_1(PX__WRAP)
#undef PX__WRAP

static inline void px_log(px_plugin_t *plugin, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void px_log(px_plugin_t *plugin, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    px_api->logv(plugin, level, fmt, ap);
    va_end(ap);
}

#ifdef __cplusplus
}
#endif
#endif /* PANTHERA_H */
