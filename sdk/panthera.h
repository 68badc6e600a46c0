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
#define PX_ABI_MINOR 2

/* The oldest host minor this plugin runs on. A plugin that calls only 1.1 functions (or
 * tests PX_HAS() before each newer one) defines PX_MIN_MINOR 1 before including this
 * header: it then loads on a 1.1 host as well as on this one. The descriptor carries it
 * in `abi_minor`, the field every host since 1.0 compares with its own minor. */
#ifndef PX_MIN_MINOR
#define PX_MIN_MINOR PX_ABI_MINOR
#endif
#if PX_MIN_MINOR > PX_ABI_MINOR
#error "PX_MIN_MINOR is newer than this SDK header"
#endif

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
    /* 1.2 */
    PX_EBUSY = -12,    /* a stream's backlog is full: the client is not reading; stop */
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

/* ---- 1.2 types, one block per area (the lists below follow the same areas) ---- */

/* 1.2 routes: one call registers a route from a spec (px_route_add). Fill a spec with
 * PX_ROUTE_SPEC_INIT so `size` is set and every later field is zero; the host reads only
 * the fields that exist in the `size` the plugin was built with. */
enum px_route_flag {
    PX_ROUTE_STREAM = 1u << 0, /* long-lived answer (px_res_stream_*): no send deadline */
    PX_ROUTE_TICKET = 1u << 1, /* also accepts ?ticket= from px_ticket_issue for a caller */
};
typedef struct px_response_spec {
    int status;               /* 0 ends a list */
    const char *schema;       /* component schema name in the plugin's OpenAPI, or NULL */
    const char *description;
    const char *content_type; /* NULL: application/json */
} px_response_spec_t;
typedef struct px_param_spec {
    const char *name;         /* NULL ends a list */
    const char *schema;       /* JSON Schema text, e.g. {"type":"integer","minimum":1} */
    int required;
    const char *description;
} px_param_spec_t;
typedef struct px_route_spec {
    size_t size;                          /* sizeof(px_route_spec_t) */
    const char *method;
    const char *pattern;
    px_handler_fn handler;
    void *userdata;
    int auth;                             /* enum px_auth */
    const char *role;                     /* NULL: any */
    unsigned flags;                       /* enum px_route_flag */
    size_t max_body;                      /* 0: [http] max_body_size */
    size_t spool_above;                   /* 0: never; larger bodies go to a temporary file */
    const char *const *content_types;     /* NULL-terminated accepted request types, or NULL */
    const char *request_schema;           /* component name: the body is validated by it */
    const px_param_spec_t *query;         /* declared query parameters, validated */
    const px_response_spec_t *responses;
    const char *summary;
    const char *description;
    const char *tag;
} px_route_spec_t;
#define PX_ROUTE_SPEC_INIT {.size = sizeof(px_route_spec_t)}

/* 1.2 tasks: worker lifecycle, background tasks, timers, named job queues. */
/* -- TASKS TYPES -- */
/* A background task is a px_req_t with no client (px_task_begin): every call that takes
 * a request for PostgreSQL, Redis, transactions or blocking jobs takes a task too, and
 * its callbacks get the task as `req`. px_res_* on a task returns PX_ESTATE (nobody is
 * there to answer). A task lives until px_task_end; ending it cancels what it left
 * pending, exactly as the end of a request does. */
/* Run in each worker once its pools are up (start) or when it begins draining (stop). */
typedef void (*px_worker_fn)(px_plugin_t *plugin, void *userdata);
/* A timer fired; `owner` is the request or task that owns it, still alive. */
typedef void (*px_timer_fn)(px_req_t *owner, int64_t timer_id, void *userdata);

/* 1.2 events: the host's event log (px_event_emit / px_event_subscribe). */
/* -- EVENTS TYPES -- */
/* One delivery of one event to one consumer group: borrowed, valid until the handler
 * ends it with px_event_ack or px_event_retry (or the consumer's task ends). */
typedef struct px_event px_event_t;
/* A consumer's handler: runs on the group's consumer task (`task`) with `txn` already
 * open. The host has recorded, in `txn`, that the group is done with `ev`: do the
 * handler's own writes in `txn` too, then px_event_ack (commit: both happen, once) or
 * px_event_retry (roll back: neither happened; the event comes again). */
typedef void (*px_event_fn)(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev,
                            void *userdata);

/* 1.2 channels: live fan-out across hosts over Redis pub/sub. */
/* -- CHANNELS TYPES -- */

/* 1.2 streams: chunked responses, Server-Sent Events, close notification. */
/* -- STREAMS TYPES -- */

/* 1.2 files: spooled bodies, the blob store, file responses. */
/* -- FILES TYPES -- */

/* 1.2 PostgreSQL ergonomics and helpers. */
/* -- HELPERS TYPES -- */

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

/* ---- ABI 1.2 ----
 * One list per area, concatenated in PX_API_1_2 in this order (the order is the ABI). */
#define PX_API_1_2_ROUTES(X)                                                                  \
    /* Register a route from `spec` (copied; the strings it points to must live as long    \
     * as the plugin, e.g. literals). Returns what px_route_auth returns, or PX_EINVAL for  \
     * a spec the host cannot use (unknown flag, size too small). Only during init. */      \
    X(int, route_add, (px_plugin_t * plugin, const px_route_spec_t *spec), (plugin, spec))
#define PX_API_VOID_1_2_ROUTES(X)

#define PX_API_1_2_TASKS(X)                                                                   \
    /* Run `fn(plugin, userdata)` in every worker once its PostgreSQL and Redis pools      \
     * exist (they may still be connecting), before it accepts. Start background tasks   \
     * and timers from here. Only during init; PX_ESTATE after. Functions run in the     \
     * order they were registered, plugins in dependency order. */                        \
    X(int, on_worker_start, (px_plugin_t * plugin, px_worker_fn fn, void *userdata),       \
      (plugin, fn, userdata))                                                              \
    /* Run `fn(plugin, userdata)` once when the worker starts draining (SIGTERM, or a     \
     * reload replacing it): end your tasks here. Tasks still open when the worker exits \
     * are ended by the host (counted as failures). Only during init. */                  \
    X(int, on_worker_stop, (px_plugin_t * plugin, px_worker_fn fn, void *userdata),        \
      (plugin, fn, userdata))                                                              \
    /* Begin a background task named `name` (1..63 characters of a-z, 0-9, _ . : -; the   \
     * label of its metrics). Returns the task, owned by the host and valid until        \
     * px_task_end, or NULL when the worker is not running yet (during init: use         \
     * px_on_worker_start), is draining, or the name is invalid. */                       \
    X(px_req_t *, task_begin, (px_plugin_t * plugin, const char *name), (plugin, name))    \
    /* End `task`: what it left pending is cancelled (callbacks never run; blocking jobs \
     * still get their done callback with req NULL), open transactions are rolled back,  \
     * its timers are stopped. `status` 0 counts a run, negative a failure, in           \
     * panthera_task_runs_total / panthera_task_failures_total and the duration in       \
     * panthera_task_duration_seconds of /metrics. The pointer is dead afterwards (it may \
     * be called from the task's own callbacks). PX_ESTATE for a request. */               \
    X(int, task_end, (px_req_t * task, int status), (task, status))                        \
    /* 1 when `req` is a background task, 0 for a client's request. */                    \
    X(int, req_is_task, (px_req_t * req), (req))                                           \
    /* Run `fn` after `delay_ms`, then every `repeat_ms` (0: once) while `owner` (request \
     * or task) lives. Returns the timer's id (> 0, unique in the worker), PX_ESTATE when \
     * `owner` has already answered or ended, PX_EINVAL for a NULL fn. `fn` runs on the  \
     * loop and may end the owner. A one-shot timer is gone once `fn` starts. Ending the \
     * owner stops its timers, and `fn` never runs again. */                             \
    X(int64_t, timer_start, (px_req_t * owner, uint64_t delay_ms, uint64_t repeat_ms,     \
                             px_timer_fn fn, void *userdata),                              \
      (owner, delay_ms, repeat_ms, fn, userdata))                                          \
    /* Stop timer `id` of `owner`: 0, or PX_ENOENT when it is not (or no longer) there.   \
     * Its `fn` does not run afterwards; `userdata` is the caller's to free. */            \
    X(int, timer_stop, (px_req_t * owner, int64_t id), (owner, id))                        \
    /* Declare a named blocking-job queue (host-wide names, 1..63 characters): at most    \
     * `concurrency` of its jobs run at once per worker (1..64), `max_waiting` may wait   \
     * (0..100000; past it px_work_on returns PX_EUNAVAIL). Each queue has threads of its \
     * own, so a slow queue ("mail") never holds back another (password hashing on the   \
     * default queue of px_work). Only during init; PX_EEXIST when the name is taken. */   \
    X(int, work_queue, (px_plugin_t * plugin, const char *name, int concurrency,           \
                        int max_waiting),                                                  \
      (plugin, name, concurrency, max_waiting))                                            \
    /* px_work() on the queue `queue` (NULL: the default one, [server] blocking_jobs).    \
     * Same contract as px_work; PX_ENOENT for an undeclared queue. */                    \
    X(int, work_on, (px_req_t * req, const char *queue, px_work_fn work,                   \
                     px_work_done_fn done, void *userdata),                                \
      (req, queue, work, done, userdata))                                                  \
    /* Run `task`'s job on at most one worker of all hosts sharing the database: the host \
     * begins a transaction on the task and tries pg_try_advisory_xact_lock on a key made \
     * from the plugin's and the task's names. `cb(task, txn, NULL, ud)` when this worker \
     * holds it: do the job's SQL in `txn` and commit or roll back (the lock goes with   \
     * the transaction, and with the session if this worker dies). `cb(task, NULL, NULL, \
     * ud)` when another worker holds it (nothing to do now), `cb(task, NULL, err, ud)`   \
     * when PostgreSQL failed. The guarantee is mutual exclusion while the transaction   \
     * is open, not "once per period": to run a job once per hour cluster-wide, record   \
     * its last run in a row read and updated in the same `txn`. PX_EINVAL for a         \
     * request, PX_EUNAVAIL without [postgres]. */                                        \
    X(int, task_singleton, (px_req_t * task, px_pg_txn_fn cb, void *userdata),             \
      (task, cb, userdata))
#define PX_API_VOID_1_2_TASKS(X)

#define PX_API_1_2_EVENTS(X)                                                                  \
    /* Append an event to the host's log inside `txn` (plain or idempotent): it exists     \
     * exactly when the transaction commits. `type` ("task.assigned", 1..127 characters  \
     * of a-z, 0-9, _ . -), `aggregate_id` (what it is about, 1..255 bytes: events of one \
     * aggregate reach each group in commit order) and `payload` (taken, even on error;  \
     * NULL: {}) are copied. The producer is the plugin that owns the request or task.   \
     * Emitters of one aggregate take turns until commit (an advisory lock), and the      \
     * commit wakes the consumers (one NOTIFY per transaction). Returns 0 (the insert is  \
     * queued on `txn`; if it fails, the commit fails), PX_ESTATE for a NULL txn (emit    \
     * only inside a transaction), PX_EINVAL for a bad type or aggregate. */              \
    X(int, event_emit, (px_pg_txn_t * txn, const char *type, const char *aggregate_id,    \
                        json_t *payload),                                                  \
      (txn, type, aggregate_id, payload))                                                  \
    /* Deliver every event whose type matches `pattern` ("task.assigned", "task.*", "*")  \
     * to `fn`, once per consumer group `group` (1..57 characters of a-z, 0-9, _ . -,     \
     * cluster-wide) at least once, and with effect once when the handler writes in the  \
     * given transaction. One worker of all hosts consumes a group at a time; a new group \
     * starts with the events committed after it was first registered (at start-up),   \
     * and one no worker consumed for a whole [events] retention is dropped. Handlers    \
     * run on a background task of the host ("group:NAME" in /metrics). After [events]   \
     * max_attempts deliveries an event is dead-lettered: `pantherad events:list` shows  \
     * it, `events:replay` sends it again. Only during init; PX_EEXIST when the group is \
     * taken, PX_EUNAVAIL without [postgres]. */                                         \
    X(int, event_subscribe, (px_plugin_t * plugin, const char *group, const char *pattern, \
                             px_event_fn fn, void *userdata),                              \
      (plugin, group, pattern, fn, userdata))                                              \
    /* The event's fields, borrowed until it is acked or retried: its id (increasing in   \
     * the order events were emitted), type, aggregate, producing plugin, emission time   \
     * (RFC 3339 UTC), payload, and which attempt this is (1 the first time). */          \
    X(int64_t, event_id, (const px_event_t *ev), (ev))                                     \
    X(const char *, event_type, (const px_event_t *ev), (ev))                              \
    X(const char *, event_aggregate, (const px_event_t *ev), (ev))                         \
    X(const char *, event_producer, (const px_event_t *ev), (ev))                          \
    X(const char *, event_time, (const px_event_t *ev), (ev))                              \
    X(json_t *, event_payload, (const px_event_t *ev), (ev))                               \
    X(int, event_attempt, (const px_event_t *ev), (ev))                                    \
    /* Done: commit the handler's transaction with the "done" record. If the commit      \
     * fails, the event counts as failed and comes again. `ev` is dead afterwards.       \
     * Returns 0, or PX_ESTATE when `ev` was already ended. */                            \
    X(int, event_ack, (const px_event_t *ev), (ev))                                        \
    /* Not done: roll back and deliver again in `after_ms` (or later), counting a failed  \
     * attempt; `reason` (copied, may be NULL) is kept for events:list. Other aggregates \
     * keep flowing; this one waits. `ev` is dead afterwards. 0 or PX_ESTATE. */          \
    X(int, event_retry, (const px_event_t *ev, uint64_t after_ms, const char *reason),    \
      (ev, after_ms, reason))
#define PX_API_VOID_1_2_EVENTS(X)

#define PX_API_1_2_CHANNELS(X)
#define PX_API_VOID_1_2_CHANNELS(X)

#define PX_API_1_2_STREAMS(X)
#define PX_API_VOID_1_2_STREAMS(X)

#define PX_API_1_2_FILES(X)
#define PX_API_VOID_1_2_FILES(X)

#define PX_API_1_2_HELPERS(X)
#define PX_API_VOID_1_2_HELPERS(X)

#define PX_API_1_2(X)                                                                         \
    PX_API_1_2_ROUTES(X) PX_API_1_2_TASKS(X) PX_API_1_2_EVENTS(X) PX_API_1_2_CHANNELS(X)     \
    PX_API_1_2_STREAMS(X) PX_API_1_2_FILES(X) PX_API_1_2_HELPERS(X)
#define PX_API_VOID_1_2(X)                                                                    \
    PX_API_VOID_1_2_ROUTES(X) PX_API_VOID_1_2_TASKS(X) PX_API_VOID_1_2_EVENTS(X)             \
    PX_API_VOID_1_2_CHANNELS(X) PX_API_VOID_1_2_STREAMS(X) PX_API_VOID_1_2_FILES(X)          \
    PX_API_VOID_1_2_HELPERS(X)

/* Every list, in table order: the struct, the host's table and its test all use this. */
#define PX_API_ALL(X) PX_API_1_0(X) PX_API_VOID_1_0(X) PX_API_1_1(X) PX_API_1_2(X) PX_API_VOID_1_2(X)

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
    uint16_t abi_minor; /* the oldest host minor it runs on: PX_MIN_MINOR (1.2; before, the
                         * minor it was built with, which was the same thing) */
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
        PX_PLUGIN_MAGIC, PX_ABI_MAJOR, PX_MIN_MINOR, NAME, VERSION, DEPENDS, &px_api,       \
        INIT, FINI}

/* True when the host's table has `name` (it may be older than this header). */
#define PX_HAS(name) (offsetof(px_api_t, name) + sizeof(void *) <= px_api->size)

/* The wrappers plugins call: px_route(), px_req_path(), ... */
#define PX__WRAP(ret, name, params, args)                                                     \
    static inline ret px_##name params { return px_api->name args; }
#define PX__WRAP_VOID(ret, name, params, args)                                                \
    static inline void px_##name params { px_api->name args; }
PX_API_1_0(PX__WRAP)
PX_API_1_1(PX__WRAP)
PX_API_1_2(PX__WRAP)
PX_API_VOID_1_2(PX__WRAP_VOID)
#undef PX__WRAP
#undef PX__WRAP_VOID

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
