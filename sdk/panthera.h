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
#define PX_ABI_MINOR 3

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
    PX_ENOTJSON = -2,  /* 415 unsupported_media_type: body is not JSON */
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
    PX_ERANGE = -13,          /* 416 range_not_satisfiable: a Range outside the file */
    PX_EPRECONDITION = -14,   /* 412 precondition_failed: If-Match no longer matches */
    PX_ENOTACCEPTABLE = -15,  /* 406 not_acceptable: no representation Accept allows */
    PX_EOVERFLOW = -16,       /* 400 bad_request: a number does not fit */
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
 * the fields that exist in the `size` the plugin was built with.
 *
 * The host documents every route in GET /openapi.json from its spec, and checks what the
 * spec declares before the handler runs:
 *  - `request_schema` names a schema the plugin registered with px_schema(): the body must
 *    be JSON (else 415) and well formed (else 400 bad_request), and is validated by that
 *    schema (else 400 validation_failed with `fields`, one reason per field: "email",
 *    "address.city", "tags[2]"; "body" for the body as a whole). The handler's
 *    px_req_json() then returns the parsed body at once.
 *  - `query` and `params`: each value present is read as its schema's type (integer,
 *    number, boolean or string) and validated (400 validation_failed naming the
 *    parameter; a missing `required` one is "is required"; for `params`, 404).
 * Schemas are the JSON-Schema subset OpenAPI 3.0 uses: type, nullable, enum, required,
 * properties, additionalProperties (false or a schema), minLength, maxLength, pattern
 * (ECMA-262 syntax; \d \w \s, classes, groups, anchors and quantifiers; no look-around,
 * no back-references), minimum, maximum, exclusiveMinimum/Maximum, items, minItems,
 * maxItems, format ("email", "uuid", "date", "date-time" are checked; others document),
 * "$ref": "#/components/schemas/Name" (the plugin's own schema of that name, else the
 * host's "Error"), and the documenting keywords (description, example, default, title,
 * readOnly, writeOnly, deprecated, x-...). Any other keyword is refused at init, so a
 * document never promises a check the host does not make. Lengths count characters
 * (code points); a string holding NUL is refused everywhere. */
enum px_route_flag {
    PX_ROUTE_STREAM = 1u << 0, /* long-lived answer (px_res_stream_*): no send deadline */
    PX_ROUTE_TICKET = 1u << 1, /* also accepts ?ticket= from px_ticket_issue for a caller */
};
/* One answer of a route, for GET /openapi.json. Entries with the same status make ONE
 * response there, each entry adding its media type (`content_type` with `schema`), so a
 * route that serves JSON, CSV and SVG lists three entries of status 200. The first entry's
 * description stands first; a later one's is added as a further sentence. The same media
 * type twice for one status is an init error. An entry with neither schema nor
 * content_type describes no body (a 204). */
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
    const char *const *content_types;     /* NULL-terminated accepted request types ("text/csv";
                                           * "image/" and a star for a family), or NULL; a
                                           * body of another type is 415 */
    const char *request_schema;           /* component name: the body is validated by it */
    const px_param_spec_t *query;         /* declared query parameters, validated */
    const px_response_spec_t *responses;
    const char *summary;
    const char *description;
    const char *tag;                      /* OpenAPI tag; NULL: the plugin's name */
    const px_param_spec_t *params;        /* path parameters (":name"): a value its schema
                                           * refuses is 404 not_found (the path names
                                           * nothing); a :name not listed is any string */
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
 * px_event_retry (roll back: neither happened; the event comes again). A delivery still
 * open after [events] lease (60 s) is taken back: the consumer task ends (its pending
 * callbacks never run, `txn` is rolled back, `ev` is dead), the attempt counts, and the
 * event comes again, dead-lettered after max_attempts, so no handler holds its
 * aggregate forever. */
typedef void (*px_event_fn)(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev,
                            void *userdata);
/* A group's batch hook (px_event_prepare): runs once per delivery transaction, on the
 * consumer task, after the host has recorded the batch's `n` events done in `txn` and
 * before the first handler runs; `events` (in the order the handlers will get them, the
 * same pointers) is borrowed for the call, each event until its own handler ends it.
 * What it queues on `txn` runs before every handler's statements and OUTSIDE every
 * event's savepoint: a handler's px_event_retry does not undo it. Return 0, or a
 * PX_E* code to give the whole batch back (rolled back; each event comes again in a
 * transaction of its own, its attempt counted). A failed statement of the hook fails
 * the batch the same way, at its COMMIT. */
typedef int (*px_event_prepare_fn)(px_req_t *task, px_pg_txn_t *txn,
                                   const px_event_t *const *events, size_t n, void *userdata);

/* 1.2 channels: live fan-out across hosts over Redis pub/sub. */
/* -- CHANNELS TYPES -- */
/* Channel names are the plugin's own: the host puts every name a plugin publishes or
 * subscribes to in that plugin's namespace (and the Redis database's), so two plugins, or
 * two deployments sharing one Redis on different databases, never hear each other. */
typedef struct px_channel_sub px_channel_sub_t;
enum px_channel_flag {
    PX_CHANNEL_PATTERN = 1u << 0, /* the name is a glob: * ? [abc] as Redis PSUBSCRIBE */
};
enum px_channel_status {
    /* Subscribed at Redis: everything published from now on arrives. Comes first once the
     * subscription is active and again after every outage; messages published meanwhile
     * may be lost, so this is the moment to catch up from PostgreSQL. */
    PX_CHANNEL_UP = 1,
    /* Redis is unreachable (or not configured): nothing arrives until the next
     * PX_CHANNEL_UP; poll the source of truth meanwhile. */
    PX_CHANNEL_DOWN = 2,
};
/* A message: `channel` is the name it was published to (without the host's namespace),
 * `data` its `len` bytes; both borrowed for the call. `owner` is the subscription's
 * owner. */
typedef void (*px_channel_fn)(px_req_t *owner, const char *channel, const void *data, size_t len,
                              void *userdata);
typedef void (*px_channel_status_fn)(px_req_t *owner, int status, void *userdata);

/* 1.2 streams: chunked responses, Server-Sent Events, close notification. */
/* -- STREAMS TYPES -- */
/* Why px_req_on_close's callback runs. */
enum px_close_reason {
    PX_CLOSE_END = 1,    /* the handler answered or ended its stream */
    PX_CLOSE_CLIENT = 2, /* the client left, or stopped reading and was closed */
    PX_CLOSE_DRAIN = 3,  /* the host ended it: the worker stops (reload or shutdown), or the
                          * caller's token was revoked (px_token_revoke) */
};
typedef void (*px_close_fn)(px_req_t *req, int reason, void *userdata);
/* One Server-Sent Event; NULL (or 0) fields are left out. `data` is `data_len` bytes
 * (any line ending, CR, LF or CRLF, starts a new data: line); `id` and `event` must not
 * contain CR, LF or NUL. Fill it with PX_SSE_INIT. */
typedef struct px_sse_event {
    size_t size; /* sizeof(px_sse_event_t) */
    const char *id;
    const char *event;
    const char *data;
    size_t data_len;
    int64_t retry_ms; /* > 0: a retry: field */
} px_sse_event_t;
#define PX_SSE_INIT {.size = sizeof(px_sse_event_t)}

/* 1.2 files: spooled bodies, the blob store, file responses. */
/* -- FILES TYPES -- */
/* A stored blob, as px_blob_put* and px_blob_stat report it. Borrowed: valid only inside
 * the callback it is handed to (copy `id` to keep it). The store is content-addressed, so
 * `id` is the lower-case hex SHA-256 of the content and `sha256` is the same string. */
typedef struct px_blob {
    const char *id;
    const char *sha256;
    uint64_t size;
    const char *content_type; /* sniffed from the bytes (libmagic), never the client's */
} px_blob_t;
/* Runs on the loop once the store has answered: `status` 0 with `blob`, or a negative
 * PX_E* code with `blob` NULL (PX_ENOENT: no such blob; PX_EUNAVAIL: the store failed,
 * logged). `req` is NULL when the request ended meanwhile (free what `userdata` holds). */
typedef void (*px_blob_fn)(px_req_t *req, const px_blob_t *blob, int status, void *userdata);
/* How px_res_file answers; fill with PX_FILE_RESPONSE_INIT. */
typedef struct px_file_response {
    size_t size;               /* sizeof(px_file_response_t) */
    const char *blob_id;
    const char *filename;      /* UTF-8 name for Content-Disposition, or NULL */
    const char *cache_control; /* NULL: "private, no-cache" (revalidate with the ETag) */
} px_file_response_t;
#define PX_FILE_RESPONSE_INIT {.size = sizeof(px_file_response_t)}

/* 1.2 PostgreSQL ergonomics and helpers. */
/* -- HELPERS TYPES -- */
/* A Redis Lua script the host runs by its SHA1 (px_redis_script_new). */
typedef struct px_redis_script px_redis_script_t;
/* One setting of a plugin's section for px_config_settings: declared with `dflt`, read by
 * the host's parser of `kind` into *out, and held to [min, max] (integers as written,
 * durations in milliseconds, sizes in bytes; a bool is 0 or 1 and ignores the bounds). A
 * PX_SETTING_CHOICE is one of the words of `choices` ("argon2id|scrypt"), stored as its
 * index. Lists end with an entry whose key is NULL. */
enum px_setting_kind {
    PX_SETTING_INT = 1,
    PX_SETTING_DURATION_MS,
    PX_SETTING_SIZE,
    PX_SETTING_BOOL,
    PX_SETTING_CHOICE,
};
typedef struct px_setting {
    const char *key;
    const char *dflt;
    int kind; /* enum px_setting_kind */
    int64_t min, max;
    const char *choices; /* PX_SETTING_CHOICE only */
    int64_t *out;
} px_setting_t;
/* Callbacks of px_pg_run, px_pg_txn_run and px_pg_begin_run: called only on success (the
 * host has answered a failure already), and they return what a handler returns: PX_OK or
 * PX_DONE once answered, PX_OK or PX_ASYNC when a step they started will answer, or a
 * negative PX_E* code, which the host answers as it answers a handler's (px_res_code), so
 * `return px_pg_run(...)` or `return px_res_json(...)` ends a step either way. */
typedef int (*px_pg_ok_fn)(px_req_t *req, const px_pg_result_t *res, void *userdata);
typedef int (*px_pg_txn_ok_fn)(px_req_t *req, px_pg_txn_t *txn, void *userdata);
/* px_pg_begin_run: the transaction is px_pg_begin_idempotent's. */
#define PX_PG_IDEMPOTENT 1u
/* px_cache_get's callback: `value` (binary, `len` bytes, borrowed for the call) is NULL on
 * a miss, and also when Redis is not configured, not connected, late or answered an error:
 * the cache is an accelerator, the caller then reads its source. Returns like px_pg_ok_fn.
 * px_cache_del's `then` likewise. */
typedef int (*px_cache_fn)(px_req_t *req, const char *value, size_t len, void *userdata);
typedef int (*px_cache_done_fn)(px_req_t *req, void *userdata);
/* px_base64_encode / px_base64_decode: PX_BASE64_URL is base64url without padding (RFC
 * 4648 §5, as in JWTs and URLs); without it, standard base64 with '=' padding (§4). */
#define PX_BASE64_URL 1
/* A counter every worker of this host shares (px_shared_counter). */
typedef struct px_shared_counter px_shared_counter_t;
/* px_pg_on_commit: runs once the transaction has committed, before its answer. */
typedef void (*px_pg_commit_hook_fn)(px_req_t *req, void *userdata);
/* A host generation heard across hosts (px_generation_new). */
typedef struct px_generation px_generation_t;
/* px_generation_new: publish this host's bumps but never subscribe, so px_generation_read
 * never trusts memory here (a plugin whose memory is configured off still tells the other
 * hosts of its writes). */
#define PX_GENERATION_PUBLISH_ONLY 1u

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
     * (its seconds in *expires_in); dated iat and, since 1.3, iat_ms (px_token_revoke).   \
     * Request memory; NULL when no token secret is set. */                                 \
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
    /* Register a route from `spec` (copied; the strings and lists it points to must live \
     * as long as the plugin, e.g. literals and static arrays). The host checks requests  \
     * by the spec and describes the route in /openapi.json (see "1.2 routes" above).     \
     * Returns what px_route_auth returns, or PX_EINVAL for a spec the host cannot use    \
     * (unknown flag, size too small, a parameter schema it cannot check, a :name in       \
     * `params` the pattern lacks). A request_schema or response schema never registered  \
     * by the end of init is an init error. Only during init. */                          \
    X(int, route_add, (px_plugin_t * plugin, const px_route_spec_t *spec), (plugin, spec))   \
    /* Register the component schema `name` ([A-Za-z0-9_.-]+) from `json_text`, a JSON     \
     * Schema in the subset above (copied; compiled now); with `name` NULL, `json_text` is  \
     * an object of name -> schema (an OpenAPI components.schemas; panthera-embed-schemas \
     * turns such a file into a C string at build time) and each is registered. In        \
     * /openapi.json a schema appears as "PLUGIN.name", its $refs rewritten, so two        \
     * plugins may both have a "Comment".                                                   \
     * Returns 0, PX_EEXIST for a name this plugin already registered, PX_EINVAL for text   \
     * that is not JSON or a schema the host cannot check (logged with the plugin's name   \
     * and the keyword; init then fails). A $ref to a schema that is still missing when    \
     * init returns is an init error. Only during init. */                                  \
    X(int, schema, (px_plugin_t * plugin, const char *name, const char *json_text),         \
      (plugin, name, json_text))                                                            \
    /* Validate `value` by the plugin's schema `name`, as the host validates a request     \
     * body (e.g. a value a Lua hook changed, or a command's arguments). Returns 0;         \
     * PX_EINVAL with *fields a new object of field -> reason (the caller owns it; hand it \
     * to px_res_error); PX_ENOENT when no such schema exists; PX_ESTATE during init     \
     * (references are resolved when init returns). */     \
    X(int, schema_check, (px_plugin_t * plugin, const char *name, const json_t *value,      \
                          json_t **fields),                                                 \
      (plugin, name, value, fields))
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
    /* Ask for `group` (subscribed by this plugin, earlier in its init) to be delivered in \
     * transactions of at most `max` events (1..64) instead of [events] batch. The handler \
     * runs once per event as always, one event after another, each in a savepoint of    \
     * the one transaction, which commits after the last: what a handler locks is held   \
     * until then. Ask for fewer when handlers are slow or lock what other deliveries   \
     * wait for; more when they are quick and independent. [events] batch stays the      \
     * default of the groups that do not ask and caps what one asks for (an operator's   \
     * limit). Only during init; 0, PX_EINVAL for a size out of range or a group this    \
     * plugin did not subscribe, PX_ESTATE after init. */                                \
    X(int, event_batch, (px_plugin_t * plugin, const char *group, int max),                \
      (plugin, group, max))                                                                \
    /* Run `fn` (see px_event_prepare_fn) once per delivery transaction of `group`       \
     * (subscribed by this plugin, earlier in its init), before its handlers: one place \
     * for what all of a batch's events need, e.g. taking every lock the handlers will   \
     * take, in one order, so that two concurrent batches never wait for each other in   \
     * a circle, or one set-based statement for the whole batch instead of one per event. \
     * A hook that writes what a handler's retry must undo has its handlers fail the      \
     * batch instead of retrying (a failed statement, then px_event_ack: nothing of the   \
     * batch commits and each event comes again alone). Only during init; 0, PX_EINVAL   \
     * for a NULL fn or a group this plugin did not subscribe, PX_EEXIST when the group   \
     * has a hook already, PX_ESTATE after init. */                                       \
    X(int, event_prepare, (px_plugin_t * plugin, const char *group, px_event_prepare_fn fn,  \
                           void *userdata),                                                 \
      (plugin, group, fn, userdata))                                                       \
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

#define PX_API_1_2_CHANNELS(X)                                                                \
    /* Publish `len` bytes (copied) on `channel` to every subscriber on every host, through \
     * the shared Redis connection. Delivery is at most once and only to subscriptions    \
     * active at that moment: a live hint, never the record (keep that in PostgreSQL).    \
     * Returns 0, PX_EINVAL for an empty name or one with a NUL, or PX_EUNAVAIL when Redis \
     * is not configured or not connected (nothing is sent). `ctx` is a request or a      \
     * task; it only names the plugin. */                                                  \
    X(int, channel_publish, (px_req_t * ctx, const char *channel, const void *data,         \
                             size_t len),                                                   \
      (ctx, channel, data, len))                                                            \
    /* Publish as px_channel_publish, but only once `txn` has committed: kept (copied) on  \
     * the transaction, sent right after a successful COMMIT, dropped on rollback, on a    \
     * failed commit and when the request ends first. If Redis is unavailable then, the    \
     * message is held by the worker and sent, in order, once Redis is back (at most       \
     * 10,000 messages or 8 MiB per worker; past that the oldest are dropped, counted in   \
     * /metrics). Returns 0 or PX_EINVAL. */                                                \
    X(int, channel_publish_on_commit, (px_pg_txn_t * txn, const char *channel,              \
                                       const void *data, size_t len),                       \
      (txn, channel, data, len))                                                            \
    /* Subscribe `owner` (a request or a task) to `channel` (flags: PX_CHANNEL_PATTERN).   \
     * `fn` runs on the loop for every message; `status` (may be NULL) with               \
     * PX_CHANNEL_UP once the subscription is active at Redis and again after an outage,  \
     * PX_CHANNEL_DOWN while Redis cannot be reached — never inside this call. Every      \
     * worker keeps one dedicated subscriber connection; local subscribers to one name    \
     * share one Redis subscription. The subscription ends with its owner (or with        \
     * px_channel_unsubscribe); callbacks never run after that. *out (may be NULL) gets   \
     * a handle valid until then. Returns 0, PX_EINVAL (empty name, NUL, no fn, unknown   \
     * flag) or PX_EUNAVAIL when no [redis] address is configured. */                     \
    X(int, channel_subscribe, (px_req_t * owner, const char *channel, unsigned flags,       \
                               px_channel_fn fn, px_channel_status_fn status,               \
                               void *userdata, px_channel_sub_t **out),                     \
      (owner, channel, flags, fn, status, userdata, out))
#define PX_API_VOID_1_2_CHANNELS(X)                                                           \
    /* End one subscription before its owner ends; its callbacks never run again. NULL is  \
     * accepted. */                                                                         \
    X(void, channel_unsubscribe, (px_channel_sub_t * sub), (sub))

#define PX_API_1_2_STREAMS(X)                                                                 \
    /* Start a response of unknown length: status and headers now (px_res_header before),  \
     * the body in pieces with px_res_stream_write, then px_res_stream_end. HTTP/1.1 gets  \
     * chunked encoding, HTTP/1.0 a body delimited by closing the connection. The request  \
     * lives until the stream ends, the client leaves or the worker drains (see            \
     * px_req_on_close); px_res_json, px_res_send and px_res_error are PX_ESTATE from here. \
     * A route flagged PX_ROUTE_STREAM is closed only when the client stops reading (no    \
     * progress for [http] send_timeout), never for being long. Returns 0, PX_ESTATE when  \
     * already answered or the client is gone, PX_EINVAL for a bad status. */              \
    X(int, res_stream_begin, (px_req_t * req, int status, const char *content_type),        \
      (req, status, content_type))                                                          \
    /* Queue `len` bytes (copied) of a begun stream. Returns 0; PX_EBUSY when the bytes   \
     * the client has not taken yet would pass [http] stream_backlog (nothing is queued:  \
     * the client is not reading — skip or stop; it is closed if it stays so); PX_ESTATE   \
     * when the stream was not begun, has ended, or the client is gone. */                 \
    X(int, res_stream_write, (px_req_t * req, const void *data, size_t len),                \
      (req, data, len))                                                                     \
    /* End the stream: the last bytes go out, then the request ends (PX_CLOSE_END). The    \
     * request is dead once this returns. PX_ESTATE when no stream was begun. */            \
    X(int, res_stream_end, (px_req_t * req), (req))                                         \
    /* Run `fn` exactly once when the request ends: the client leaves (at once, even      \
     * while a handler still works: PX_CLOSE_CLIENT), the worker drains (PX_CLOSE_DRAIN),  \
     * or the handler answers or ends its stream (PX_CLOSE_END, possibly inside the px_res_ \
     * call that did it). Free what userdata holds there: for a stream, `req` is dead once \
     * `fn` returns (px_* calls on it inside `fn` answer PX_ESTATE); an ordinary request   \
     * whose client left still lives until its handler answers (into the void). Runs on   \
     * the loop. Up to 8 per request. Returns 0, PX_EINVAL (no fn), PX_ESTATE (too many,   \
     * or the stream is over). */                                                          \
    X(int, req_on_close, (px_req_t * req, px_close_fn fn, void *userdata), (req, fn, userdata)) \
    /* Begin a Server-Sent Events stream: 200 text/event-stream, no caching, no proxy      \
     * buffering; with `heartbeat_ms` > 0 the host writes a ": " comment line whenever     \
     * that long passed without a write (proxies and clients then see the stream alive).   \
     * On reload and shutdown the host ends the stream with a final "retry:" so clients   \
     * reconnect (with Last-Event-ID) to the new workers. Returns as px_res_stream_begin. */ \
    X(int, res_sse_begin, (px_req_t * req, int64_t heartbeat_ms), (req, heartbeat_ms))      \
    /* Write one event (formatted by the host; see px_sse_event_t). Returns as             \
     * px_res_stream_write, or PX_EINVAL for an id or event with CR, LF or NUL, or an     \
     * event with no field at all. */                                                     \
    X(int, res_sse_send, (px_req_t * req, const px_sse_event_t *ev), (req, ev))             \
    /* Write a comment line (": text"), e.g. a heartbeat; NULL text: an empty comment.    \
     * PX_EINVAL for text with CR, LF or NUL. Returns as px_res_stream_write. */            \
    X(int, res_sse_comment, (px_req_t * req, const char *text), (req, text))                \
    /* A stream ticket for the caller (API.md, Conventions): an opaque URL-safe string,   \
     * valid `*expires_in` (60) seconds, redeemable once (across hosts, through Redis) as  \
     * ?ticket= on a route flagged PX_ROUTE_TICKET whose auth is PX_AUTH_REQUIRED or       \
     * PX_AUTH_OPTIONAL, where it stands for the caller it was issued to (a bearer header  \
     * wins; a used, expired or forged ticket is 401; while Redis is unreachable 503).     \
     * Request memory; NULL when the request has no caller or no [auth] token_secret. */   \
    X(const char *, ticket_issue, (px_req_t * req, int64_t *expires_in), (req, expires_in))
#define PX_API_VOID_1_2_STREAMS(X)

#define PX_API_1_2_FILES(X)                                                                   \
    /* The request body spooled to a temporary file (a route with spool_above, and a body  \
     * larger than that): `*fd` is readable from offset 0 with pread (do not close it or   \
     * move its offset), `*size` its length; both valid until the request ends, after     \
     * which the file is gone. Returns 0, or PX_ENOENT when the body is in memory          \
     * (px_req_body has it). */                                                            \
    X(int, req_body_file, (px_req_t * req, int *fd, uint64_t *size), (req, fd, size))      \
    /* Store the request body (spooled or in memory) in the host's blob store ([storage]).  \
     * Hashing, sniffing and writing run on the thread pool; `cb` runs later on the loop,   \
     * exactly once. Storing the same bytes twice gives the same id and stores them once.   \
     * A new blob has no references: it is swept after [storage] sweep_grace unless a      \
     * reference is added (px_blob_ref). Returns 0, PX_EINVAL without `cb`, or PX_EUNAVAIL \
     * when too many store jobs wait (then `cb` is not called). */                         \
    X(int, blob_put_body, (px_req_t * req, px_blob_fn cb, void *userdata), (req, cb, userdata)) \
    /* px_blob_put_body for `len` bytes at `data` (copied before it returns). */            \
    X(int, blob_put, (px_req_t * req, const void *data, size_t len, px_blob_fn cb,         \
                      void *userdata),                                                     \
      (req, data, len, cb, userdata))                                                      \
    /* Look a blob up by id: `cb` gets its size and type, or PX_ENOENT. */                  \
    X(int, blob_stat, (px_req_t * req, const char *id, px_blob_fn cb, void *userdata),     \
      (req, id, cb, userdata))                                                             \
    /* Record that the plugin's `ref` (its own key, e.g. "attachment:<uuid>"; namespaced   \
     * by the host under the plugin's name) uses blob `id`; a blob is swept only when no    \
     * reference is left and it is older than sweep_grace. Adding a reference that exists   \
     * is a no-op. `cb` gets the blob, or PX_ENOENT when it is not (or no longer) stored:   \
     * store it again. Take the reference before committing the row that names the blob,  \
     * and drop it if that fails: a crash in between then keeps a blob too many, never a   \
     * row without its blob. Same calling rules as px_blob_stat. */                        \
    X(int, blob_ref, (px_req_t * req, const char *id, const char *ref, px_blob_fn cb,      \
                      void *userdata),                                                     \
      (req, id, ref, cb, userdata))                                                        \
    /* Drop the plugin's reference `ref` to `id` (a missing one is not an error): `cb`     \
     * gets status 0 and `blob` NULL. The blob itself goes at the next sweep if nothing    \
     * refers to it any more. */                                                           \
    X(int, blob_unref, (px_req_t * req, const char *id, const char *ref, px_blob_fn cb,    \
                        void *userdata),                                                   \
      (req, id, ref, cb, userdata))                                                        \
    /* Answer with a stored blob: 200 with ETag (the SHA-256), If-None-Match -> 304, one    \
     * Range -> 206 (several -> 200 whole; outside the file -> 416 whose Content-Range     \
     * names the size), the sniffed Content-Type,                                          \
     * Content-Disposition (inline only for raster images; SVG, HTML and all else          \
     * attachment) with RFC 6266 filename*, X-Content-Type-Options: nosniff and            \
     * Content-Security-Policy: sandbox. The body is sent with sendfile where the backend  \
     * keeps files. Returns PX_ASYNC (the handler returns it on: the host answers, 404 when \
     * the blob is missing), or PX_EINVAL for a bad `resp`. */                             \
    X(int, res_file, (px_req_t * req, const px_file_response_t *resp), (req, resp))
#define PX_API_VOID_1_2_FILES(X)

/* HELPERS. PostgreSQL ergonomics first. What grouping means for a plugin: px_pg_query
 * statements that several requests submit in one loop iteration may share one implicit
 * transaction on one connection, which may carry other plugins' statements too. The host
 * keeps them apart: a statement never sees a neighbour's error (a failed group runs again
 * statement by statement), prepared-statement names are the plugin's own (the host
 * prefixes them with the plugin's name, so two plugins may both call theirs
 * "item_by_id"), and the session is the host's: a plugin never changes it with SQL (SET,
 * PREPARE, LISTEN, temporary tables, advisory session locks), since the next statement
 * on that connection may be another plugin's. Use a transaction (px_pg_begin) when
 * statements must see each other or fail together.
 *
 * Since 1.2, px_pg_txn_query accepts a NULL callback: the statement is queued behind the
 * others without the plugin waiting for it (a batch of inserts, then px_pg_commit). If
 * any statement of the transaction fails, the later ones are refused by PostgreSQL and
 * the commit reports the FIRST failure's own error (SQLSTATE, message, constraint,
 * detail: a 23505 stays a 23505, so px_res_pg_error answers 409), never 25P02. A 1.1
 * host refuses a NULL callback with PX_EINVAL. */
#define PX_API_1_2_HELPERS(X)                                                                 \
    /* The constraint a 23xxx error names ("users_email_key"), or NULL; and PostgreSQL's   \
     * DETAIL line ("Key (email)=(a@b.c) already exists."), or NULL. Borrowed like the     \
     * error itself: valid only inside the callback. */                                    \
    X(const char *, pg_error_constraint, (const px_pg_error_t *err), (err))                 \
    X(const char *, pg_error_detail, (const px_pg_error_t *err), (err))                     \
    /* 1 when the value is SQL NULL or out of range, else 0. */                             \
    X(int, pg_is_null, (const px_pg_result_t *res, int row, int col), (res, row, col))      \
    /* Typed values: 0 with the value in *out, PX_EINVAL when it is NULL, out of range or  \
     * not of that type as PostgreSQL prints it (integer: decimal digits; bool: "t"/"f",   \
     * stored as 1/0; double: any float8 text, "NaN" and "Infinity" included), and       \
     * PX_EOVERFLOW when an integer does not fit int64. *out is untouched on error. */       \
    X(int, pg_int64, (const px_pg_result_t *res, int row, int col, int64_t *out),            \
      (res, row, col, out))                                                                 \
    X(int, pg_bool, (const px_pg_result_t *res, int row, int col, int *out),                \
      (res, row, col, out))                                                                 \
    X(int, pg_double, (const px_pg_result_t *res, int row, int col, double *out),           \
      (res, row, col, out))                                                                 \
    /* The column's name as the query named it; NULL out of range. Borrowed like values. */ \
    X(const char *, pg_colname, (const px_pg_result_t *res, int col), (res, col))          \
    /* Answer a PX_E* code the way the host answers a handler that returns it (400         \
     * bad_request, 404 not_found, 406 not_acceptable, 409 conflict, 412                  \
     * precondition_failed, ...; an unknown code is 500 internal), with `message` (copied; \
     * NULL: the status's reason phrase). Returns 0 once answered, PX_ESTATE if the request \
     * was answered already. */                                                             \
    X(int, res_code, (px_req_t * req, int code, const char *message), (req, code, message)) \
    /* The list parameters of API.md: ?page (from 1, default 1) and ?limit (1..100,        \
     * default 10) into *page and *limit. Returns 0, or PX_DONE after answering 400          \
     * validation_failed with `fields` naming the bad parameter: return it from the handler. \
     * PX_EINVAL for NULL pointers. */                                                       \
    X(int, req_page, (px_req_t * req, int *page, int *limit), (req, page, limit))          \
    /* Answer 200 with the list shape {"total", "page", "limit", "<items_name>": items}.     \
     * Takes `items` (a JSON array), even on error. */                                      \
    X(int, res_list, (px_req_t * req, const char *items_name, json_t *items, int64_t total, \
                      int page, int limit),                                                 \
      (req, items_name, items, total, page, limit))                                         \
    /* The path parameter `name` as a canonical lowercase UUID (36 characters) in `out`.    \
     * Returns 0, or PX_DONE after answering 404 not_found when it is absent or not a UUID \
     * (a malformed id names nothing, like an unknown one: the same answer, no hint).      \
     * Accepts any case and the hyphenated form only. */                                     \
    X(int, req_uuid, (px_req_t * req, const char *name, char out[37]), (req, name, out))   \
    /* A new random (version 4) UUID, lowercase, in `out`. Returns 0, or PX_EINTERNAL when \
     * the system has no randomness to give. */                                            \
    X(int, uuid_new, (char out[37]), (out))                                                 \
    /* `s` as a canonical lowercase UUID in `out`, by px_req_uuid's rule (any case, the    \
     * hyphenated form only), for ids that come from elsewhere than the path: the caller's \
     * (px_req_caller_id: a token may carry any subject), a header, a stored value.       \
     * Returns 0, or PX_EINVAL for NULL or anything else (`out` untouched). */             \
    X(int, uuid_parse, (const char *s, char out[37]), (s, out))                             \
    /* A copy of `s` in the request's memory (freed with the request, like px_req_alloc), \
     * for strings a callback must keep past the result they are borrowed from. NULL for  \
     * a NULL `s`. */                                                                      \
    X(char *, req_strdup, (px_req_t * req, const char *s), (req, s))                        \
    /* A declared config key read with the host's own parsers (the same ones [server]     \
     * uses): integer (decimal, in int64), bool (yes/no, on/off, true/false, 1/0), duration \
     * ("500ms", "30s", "5m", "1h", "2d"; a bare number is seconds) in milliseconds, size   \
     * ("512", "8k", "16m", "1g") in bytes. Returns 0 with the value in *out; PX_ENOENT   \
     * when the key has no value and no default (or was never declared); PX_EINVAL when    \
     * the value is malformed, after logging one line naming the plugin, key and value   \
     * (call these in init and return the code: start-up and `pantherad -t` then fail). */ \
    X(int, config_int, (px_plugin_t * plugin, const char *key, int64_t *out), (plugin, key, out)) \
    X(int, config_bool, (px_plugin_t * plugin, const char *key, int *out), (plugin, key, out)) \
    X(int, config_duration_ms, (px_plugin_t * plugin, const char *key, int64_t *out),      \
      (plugin, key, out))                                                                   \
    X(int, config_size, (px_plugin_t * plugin, const char *key, uint64_t *out),            \
      (plugin, key, out))                                                                   \
    /* Declare and read a whole list of settings (see px_setting_t) in one call, in order: \
     * each key is declared with its default and parsed as above into its *out, which is \
     * written only when the value is good. Returns 0; PX_EINVAL at the first malformed or \
     * out-of-range value (or a bad entry), after logging one line naming the plugin, the  \
     * key, the value and what was expected ("1 to 64", "1s to 1d", "argon2id or scrypt"); \
     * PX_ESTATE after init, PX_EEXIST for a key declared twice. Only during init: return \
     * the code, so start-up and `pantherad -t` fail on a bad value. */                    \
    X(int, config_settings, (px_plugin_t * plugin, const px_setting_t *list), (plugin, list)) \
    /* Content negotiation: `offers` is a NULL-terminated list of media types the handler \
     * can produce, best first ("application/json", "text/csv"). Returns the index of the  \
     * offer the Accept header prefers (highest q, the most specific matching range       \
     * deciding an offer's q, ties to the earlier offer; no Accept header: 0), or          \
     * PX_ENOTACCEPTABLE when Accept allows none of them (return it: 406 not_acceptable). */ \
    X(int, req_accept, (px_req_t * req, const char *const *offers), (req, offers))        \
    /* Optimistic concurrency (API.md): `etag` is the resource's current version as text  \
     * ("3"), sent quoted. px_req_if_match returns 0 when the request has no If-Match, or \
     * one that lists "<etag>" (strong comparison) or *; else PX_EPRECONDITION (return it: \
     * 412 precondition_failed). px_res_etag adds the ETag header and, for a GET or HEAD   \
     * whose If-None-Match lists it (weak comparison) or *, answers 304 and returns        \
     * PX_DONE; otherwise it returns 0 and the handler answers as usual. */                \
    X(int, req_if_match, (px_req_t * req, const char *etag), (req, etag))                  \
    X(int, res_etag, (px_req_t * req, const char *etag), (req, etag))                      \
    /* A Redis Lua script (`source` copied), known to Redis by its SHA1. Make it once, in  \
     * init, and free it in fini with px_redis_script_free (calls in flight keep what they \
     * need). NULL for a NULL source. */                                                    \
    X(px_redis_script_t *, redis_script_new, (px_plugin_t * plugin, const char *source),    \
      (plugin, source))                                                                     \
    /* The 40 lowercase hex digits of the script's SHA1 (borrowed from the script). */     \
    X(const char *, redis_script_sha, (const px_redis_script_t *script), (script))         \
    /* Run `script` like EVAL: `numkeys` keys, then the other arguments, argc in all      \
     * (binary safe as px_redis_command). Sent as EVALSHA; when Redis does not know the   \
     * script (first use, a restart, SCRIPT FLUSH) it is sent again as EVAL, which loads  \
     * it, within the same deadline: `cb` sees one reply either way, and an error the     \
     * script raised as a PX_REDIS_ERROR reply. Returns 0, PX_EINVAL (bad counts, NULL    \
     * script or cb) or PX_EUNAVAIL (Redis not configured or not connected: `cb` is not   \
     * called). */                                                                         \
    X(int, redis_eval, (px_req_t * req, const px_redis_script_t *script, int numkeys,        \
                        int argc, const char *const *argv, const size_t *argvlen,           \
                        px_redis_fn cb, void *userdata),                                    \
      (req, script, numkeys, argc, argv, argvlen, cb, userdata))                            \
    /* Declare a Lua hook point the plugin runs with px_hook_run ("before_task_create"),  \
     * with a one-line description for admins: `pantherad -t` lists every declared hook   \
     * with its plugin. Names are [a-z_][a-z0-9_]*, at most 63 bytes, never on_request or \
     * on_response. Returns 0, PX_EINVAL for a bad name or description, PX_EEXIST when   \
     * any plugin declared it already, PX_ESTATE after init. Only during init. */         \
    X(int, hook_declare, (px_plugin_t * plugin, const char *name, const char *description), \
      (plugin, name, description))                                                          \
    /* Plugin metrics, in /metrics with a plugin="NAME" label and summed over workers.     \
     * `name` follows Prometheus ([a-zA-Z_:][a-zA-Z0-9_:]*, not starting with "panthera_"; \
     * a counter's name should end in _total), `help` is one line (copied). A name has one \
     * kind across plugins (two plugins may share a counter name: two samples). Returns  \
     * the metric's id (>= 0) for px_metric_add / px_metric_observe, PX_EINVAL for a bad \
     * name, help or bounds (or a full table), PX_EEXIST when this plugin declared it      \
     * already or another declared it with the other kind, PX_ESTATE after init. The      \
     * histogram's `bounds` (copied) are 1..32 finite upper bounds in increasing order;  \
     * +Inf is added. Only during init. */                                                 \
    X(int, metric_counter, (px_plugin_t * plugin, const char *name, const char *help),     \
      (plugin, name, help))                                                                 \
    X(int, metric_histogram, (px_plugin_t * plugin, const char *name, const char *help,    \
                              const double *bounds, int nbounds),                           \
      (plugin, name, help, bounds, nbounds))                                                \
    /* A 64-bit counter shared by every worker of this host, starting at 0: what workers  \
     * must agree on without a round trip to Redis or PostgreSQL, such as a generation    \
     * that invalidates what each worker keeps in its own memory (bump it, then answer: a \
     * request any worker reads afterwards sees the new value). It lives in memory the    \
     * master mapped before forking, so it survives a worker's crash and a reload (the    \
     * new workers find it as the old ones left it) and ends with the master; other hosts \
     * never see it. `name` (1..47 bytes, copied) is the plugin's own: every worker that  \
     * asks for it gets the same counter, two plugins never share one. Only during init.  \
     * Returns 0 with *out set (valid while the worker runs), PX_EINVAL for a bad name or \
     * a NULL out, PX_ESTATE after init, PX_EOVERFLOW when the host's 256 counters are    \
     * all taken. */                                                                       \
    X(int, shared_counter, (px_plugin_t * plugin, const char *name,                         \
                            px_shared_counter_t **out),                                     \
      (plugin, name, out))                                                                  \
    /* Add `n` to the counter atomically and return the value after it (0 reads it):      \
     * sequentially consistent across workers, lock-free, no allocation, fine on every    \
     * request. A NULL counter returns 0. */                                               \
    X(uint64_t, shared_counter_add, (px_shared_counter_t * counter, uint64_t n),           \
      (counter, n))                                                                         \
    /* px_pg_query / px_pg_txn_query for the usual case, where any failure of the query is \
     * the request's answer: `cb` (see px_pg_ok_fn) runs only with a result; a failure is   \
     * answered by the host as px_res_pg_error does (503 unavailable when PostgreSQL cannot \
     * be reached, 409 conflict for 23505 and 23503, 400 for a class 22 value, else 500     \
     * internal with a log line naming the plugin and the SQLSTATE) and `cb` never runs.    \
     * In a background task, where nobody is answered, the failure is logged instead. The \
     * code `cb` returns is answered the same way, so a chain of callbacks ends each step  \
     * with `return px_...(...)` instead of checking and answering by hand. Returns like   \
     * px_pg_query (0; PX_EUNAVAIL without a pool; PX_EINVAL for a NULL req, txn, sql or   \
     * cb): a code returned here was not answered. Tell failures apart (a 23505 that names \
     * the field, a 23503 that means "gone") with px_pg_query and its error instead. */      \
    X(int, pg_run, (px_req_t * req, const char *name, const char *sql, int nparams,         \
                    const char *const *values, px_pg_ok_fn cb, void *userdata),             \
      (req, name, sql, nparams, values, cb, userdata))                                      \
    X(int, pg_txn_run, (px_pg_txn_t * txn, const char *name, const char *sql, int nparams,  \
                        const char *const *values, px_pg_ok_fn cb, void *userdata),         \
      (txn, name, sql, nparams, values, cb, userdata))                                      \
    /* px_pg_begin (or, with PX_PG_IDEMPOTENT in `flags`, px_pg_begin_idempotent) the same \
     * way: `cb` runs with the open transaction; a failed BEGIN is answered by the host.   \
     * Returns 0, PX_DONE when the host answered already (an idempotent replay or a bad    \
     * Idempotency-Key: return it), PX_EUNAVAIL without a pool, PX_EINVAL for NULL `req` or \
     * `cb` or an unknown flag. */                                                          \
    X(int, pg_begin_run, (px_req_t * req, unsigned flags, px_pg_txn_ok_fn cb, void *userdata), \
      (req, flags, cb, userdata))                                                           \
    /* The 409 message for a unique or foreign key violation (23505, 23503) that names     \
     * `constraint` ("users_email_lower_key"): every answer the host gives for such an     \
     * error of this plugin's requests (px_res_pg_error, px_pg_run, px_pg_commit_respond)   \
     * says `message` (copied; one line, at most 200 bytes) instead of "that already       \
     * exists", so a callback need not catch 23505 to name the field. Per plugin. Returns  \
     * 0, PX_EINVAL for an empty or too long constraint (over 63 bytes) or message,        \
     * PX_EEXIST when this plugin declared that constraint already, PX_ESTATE after init.  \
     * Only during init. */                                                                 \
    X(int, pg_conflict, (px_plugin_t * plugin, const char *constraint, const char *message), \
      (plugin, constraint, message))                                                        \
    /* Cache-aside in Redis, keys per plugin: `key` (1 to 200 bytes, no NUL) is stored as   \
     * "panthera:<plugin>:<key>", so plugins cannot read or drop each other's entries.      \
     * px_cache_get reads it and calls `cb` exactly once: later on the loop, or before it   \
     * returns when Redis is not connected (fall back at once, as px_redis_command says);  \
     * a negative code `cb` returns is answered as a handler's. The host logs once per     \
     * worker that caches are bypassed while Redis is away, and once that it is back.      \
     * px_cache_set stores `value` (copied, binary) for `ttl_ms` (rounded up to whole      \
     * milliseconds by Redis' PX), fire and forget: the answer need not wait for it.       \
     * px_cache_del drops the key, then calls `then` (may be NULL) once Redis answered or  \
     * failed, or at once when it is not connected: answer after it, so a client never    \
     * reads its own write stale. Returns 0; PX_EINVAL for a NULL req, cb or value, a bad  \
     * key or ttl_ms <= 0; px_cache_set PX_EUNAVAIL when Redis is not connected (nothing  \
     * stored). A cached entry may outlive a px_cache_del made while Redis was away: keep  \
     * TTLs as short as staleness allows. */                                               \
    X(int, cache_get, (px_req_t * req, const char *key, px_cache_fn cb, void *userdata),    \
      (req, key, cb, userdata))                                                             \
    X(int, cache_set, (px_req_t * req, const char *key, const void *value, size_t len,      \
                       int64_t ttl_ms),                                                     \
      (req, key, value, len, ttl_ms))                                                       \
    X(int, cache_del, (px_req_t * req, const char *key, px_cache_done_fn then, void *userdata), \
      (req, key, then, userdata))                                                           \
    /* Base64 of `len` bytes into `out` (`outsize` bytes, NUL-terminated): standard and    \
     * padded, or with PX_BASE64_URL in `flags` base64url unpadded. Returns the characters \
     * written (without the NUL), PX_EINVAL for a NULL `in` (with len > 0) or `out` or an  \
     * unknown flag, PX_EOVERFLOW when `outsize` is too small (nothing written; padded     \
     * needs 4 * ((len + 2) / 3) + 1). Decoding is strict, so each byte string has one     \
     * accepted text: only the alphabet, padding exactly where it belongs (none in the url \
     * form), leftover bits zero. px_base64_decode writes at most `outsize` bytes and      \
     * returns their number, PX_EINVAL for malformed text or NULL pointers, PX_EOVERFLOW   \
     * when the decoded bytes do not fit (nothing written). Both are pure: unlike the rest \
     * of the SDK they may also be called from a px_work job's thread. */                   \
    X(int, base64_encode, (const void *in, size_t len, int flags, char *out, size_t outsize), \
      (in, len, flags, out, outsize))                                                       \
    X(int, base64_decode, (const char *in, size_t len, int flags, void *out, size_t outsize), \
      (in, len, flags, out, outsize))                                                       \
    /* printf into the request's memory (freed with the request, like px_req_strdup), for  \
     * the text a statement parameter, a header or a key is made of:                        \
     * px_req_printf(req, "%lld", (long long)n), px_req_printf(req, "/v1/things/%s", id).   \
     * Never NULL for a good format; NULL for a NULL req or fmt or an encoding error. Call \
     * it as px_req_printf (below); px_req_vprintf takes a va_list. */                      \
    X(char *, req_vprintf, (px_req_t * req, const char *fmt, va_list ap), (req, fmt, ap)) \
    /* Run `fn` when `txn` has committed: right after the COMMIT succeeded and before the  \
     * commit's own callback, so before the answer of px_pg_commit_respond (and of        \
     * px_pg_commit's cb) goes out — the place to tell this host's other workers (a       \
     * px_shared_counter bump) that what a client is about to be told is visible. Never   \
     * on rollback, on a failed COMMIT, or when the request ends first. Hooks run in the  \
     * order they were added, before the px_channel_publish_on_commit messages are sent;  \
     * `fn` may call px_channel_publish on `req`. Kept in request memory. Returns 0, or    \
     * PX_EINVAL for a NULL txn or fn. */                                                   \
    X(int, pg_on_commit, (px_pg_txn_t * txn, px_pg_commit_hook_fn fn, void *userdata),      \
      (txn, fn, userdata))                                                                  \
    /* A host generation heard across hosts: a px_shared_counter of this host that every  \
     * write bumps, whose bumps are published on the plugin's channel `name` for the other \
     * hosts, and whose readers learn whether a worker's memory may be trusted now. What a \
     * worker keeps is stamped with the generation px_generation_read returned before it   \
     * asked the source, and served only under that same generation, while `trusted`, and \
     * within a TTL of the plugin's own (the bound on other hosts' writes: pub/sub is     \
     * prompt, not synchronous). Each worker subscribes when it starts (a task named       \
     * "generation.<name>") and ends it when it stops; messages and status run on the     \
     * loop, never inside a plugin's call. `name` ([a-z0-9_.-], 1..47 bytes, copied) is   \
     * both the counter's and the channel's. `flags`: 0 or PX_GENERATION_PUBLISH_ONLY.   \
     * Only during init. Returns 0 with *out set (owned by the host, valid until the     \
     * plugin is unloaded), PX_EINVAL for a bad name or flag or a NULL out, PX_EEXIST when \
     * this plugin made that generation already, PX_ESTATE after init, PX_EOVERFLOW when   \
     * the host's shared counters are all taken. */                                        \
    X(int, generation_new, (px_plugin_t * plugin, const char *name, unsigned flags,          \
                            px_generation_t **out),                                          \
      (plugin, name, flags, out))                                                            \
    /* Bump now (after a write that is visible already, such as a Redis INCR that         \
     * answered) and publish it with `ctx` (a request or a task; fire and forget: a lost  \
     * message is what the TTL bounds). Answer after it. Returns 0, PX_EINVAL for a NULL   \
     * gen or ctx. */                                                                      \
    X(int, generation_bump, (px_generation_t * gen, px_req_t * ctx), (gen, ctx))            \
    /* Bump and publish when `txn` has committed, as a px_pg_on_commit hook (so before     \
     * the answer; never on rollback, a failed COMMIT or a request that ended). Call it    \
     * once per writing transaction. Returns 0, PX_EINVAL for a NULL gen or txn. */        \
    X(int, generation_bump_on_commit, (px_generation_t * gen, px_pg_txn_t * txn), (gen, txn)) \
    /* The generation now, and in *trusted (may be NULL) 1 when this worker may answer    \
     * from memory stamped with it: the worker runs and its subscription is up. 0 before  \
     * the worker started, while Redis is away (other hosts' bumps cannot arrive; when it \
     * is back the worker bumps, since what was published meanwhile is lost), with        \
     * PX_GENERATION_PUBLISH_ONLY, and for a NULL gen (which reads 0). Lock-free: fine on \
     * every request. */                                                                   \
    X(uint64_t, generation_read, (px_generation_t * gen, int *trusted), (gen, trusted))
#define PX_API_VOID_1_2_HELPERS(X)                                                            \
    /* Free a script from px_redis_script_new; NULL is accepted. */                         \
    X(void, redis_script_free, (px_redis_script_t * script), (script))                     \
    /* Add `n` to a counter / count `value` into a histogram (no locks, no allocation: fine \
     * on every request). An id that is not this plugin's metric of that kind is ignored. */ \
    X(void, metric_add, (px_plugin_t * plugin, int id, uint64_t n), (plugin, id, n))       \
    X(void, metric_observe, (px_plugin_t * plugin, int id, double value), (plugin, id, value))

#define PX_API_1_2(X)                                                                         \
    PX_API_1_2_ROUTES(X) PX_API_1_2_TASKS(X) PX_API_1_2_EVENTS(X) PX_API_1_2_CHANNELS(X)     \
    PX_API_1_2_STREAMS(X) PX_API_1_2_FILES(X) PX_API_1_2_HELPERS(X)
#define PX_API_VOID_1_2(X)                                                                    \
    PX_API_VOID_1_2_ROUTES(X) PX_API_VOID_1_2_TASKS(X) PX_API_VOID_1_2_EVENTS(X)             \
    PX_API_VOID_1_2_CHANNELS(X) PX_API_VOID_1_2_STREAMS(X) PX_API_VOID_1_2_FILES(X)          \
    PX_API_VOID_1_2_HELPERS(X)

/* ---- ABI 1.3: ending a subject's access tokens before they expire ---- */
#define PX_API_1_3(X)                                                                         \
    /* Every access token issued for `sub` (a px_req_caller_id) until now stops working on  \
     * every host once `txn` commits: the gateway answers 401 ("invalid bearer token:       \
     * revoked") to it, and a stream ticket issued for `sub` before then is refused too;    \
     * streams such a token or ticket opened end as on a reload (a retry:, then the end;    \
     * their close callbacks get PX_CLOSE_DRAIN).                                           \
     * For an account deleted, or whose password or role must no longer let old tokens in.  \
     * The record lives in the host's PostgreSQL table for as long as such a token could   \
     * be valid ([auth] access_ttl + leeway); other workers hear of it through Redis right  \
     * after the commit, else within [auth] revocation_poll. px_token_issue dates tokens  \
     * to the millisecond, so one issued right after the revocation works (a token dated  \
     * only in seconds counts from its second's start). Queued on `txn` like              \
     * px_event_emit: if it fails, the commit fails. Returns 0, PX_ESTATE for a NULL txn,  \
     * PX_EINVAL for an empty `sub` or one over 63 bytes. */                                 \
    X(int, token_revoke, (px_pg_txn_t * txn, const char *sub), (txn, sub))
#define PX_API_VOID_1_3(X)

/* Every list, in table order: the struct, the host's table and its test all use this. */
#define PX_API_ALL(X)                                                                         \
    PX_API_1_0(X) PX_API_VOID_1_0(X) PX_API_1_1(X) PX_API_1_2(X) PX_API_VOID_1_2(X)          \
    PX_API_1_3(X) PX_API_VOID_1_3(X)

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
PX_API_1_3(PX__WRAP)
PX_API_VOID_1_3(PX__WRAP_VOID)
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

/* px_req_vprintf with arguments (1.2, HELPERS). */
static inline char *px_req_printf(px_req_t *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline char *px_req_printf(px_req_t *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = px_api->req_vprintf(req, fmt, ap);
    va_end(ap);
    return out;
}

#ifdef __cplusplus
}
#endif
#endif /* PANTHERA_H */
