/* config.h — the main INI file plus conf.d drop-ins, parsed into one immutable config.
 * Every value remembers the file:line it came from, so every error can name it. */
#ifndef PX_CONFIG_H
#define PX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct config_entry {
    char *key;
    char *value;
    char *file;
    int line;
} config_entry_t;

/* A [plugin:NAME] section: the plugin is enabled by its presence. */
typedef struct config_plugin {
    char *name;
    char *file;
    int line;
    config_entry_t *entries;
    size_t nentries;
} config_plugin_t;

typedef struct http_limits {
    uint64_t max_header_size;   /* bytes of request line + headers → 431 */
    uint64_t max_headers;       /* header count → 431 */
    uint64_t max_body_size;     /* → 413, checked before the body is read */
    uint64_t header_timeout_ms; /* from a request's first byte to the end of its headers */
    uint64_t body_timeout_ms;   /* longest gap between body reads */
    uint64_t min_body_rate;     /* bytes/s a body must average once body_timeout has passed */
    uint64_t keepalive_timeout_ms;
    uint64_t keepalive_requests;
    uint64_t send_timeout_ms;
    uint64_t max_connections; /* per worker */
    uint64_t max_connections_per_client; /* per worker and address; 0: max_connections / 8 */
    uint64_t first_byte_timeout_ms; /* from accept until a first byte (at most header_timeout) */
    uint64_t stream_backlog;  /* bytes a stream may queue for a client that is behind */
    uint64_t stream_retry_ms; /* the retry: a drained SSE stream ends with */
} http_limits_t;

/* [postgres]: the per-worker pool; disabled when conninfo is empty. */
typedef struct pg_settings {
    char *conninfo;
    uint64_t pool_size;
    uint64_t statement_timeout_ms;
    uint64_t queue_max;
    uint64_t wait_timeout_ms;
    uint64_t connect_timeout_ms;
} pg_settings_t;

/* [redis]: disabled when address is empty. */
typedef struct redis_settings {
    char *address; /* unix:/path or host:port */
    char *username; /* AUTH username password (Redis 6 ACL users); needs password */
    char *password; /* AUTH password; none: no AUTH */
    char *password_file; /* read at load into password, trailing newline dropped */
    uint64_t database; /* SELECT; 0, Redis's default, sends none */
    uint64_t command_timeout_ms;
    uint64_t connect_timeout_ms;
} redis_settings_t;

/* [auth]: how the gateway checks bearer tokens and how plugins issue them. */
typedef struct auth_settings {
    char *token_secret;
    char *token_secret_file; /* read at load, trailing newline dropped */
    char *issuer;
    uint64_t access_ttl_ms;
    uint64_t refresh_ttl_ms;
    uint64_t leeway_ms;
    uint64_t token_cache; /* verified tokens remembered per worker; 0: verify every time */
    uint64_t revocation_poll_ms; /* revocation.c: how often a worker rereads the record */
} auth_settings_t;

/* [lua]: admin hook scripts; disabled when dir is empty. */
typedef struct lua_settings {
    char *dir;
    uint64_t instruction_budget;
    uint64_t memory_limit;
} lua_settings_t;

/* [storage]: the blob store (blob.c) and where request bodies are spooled (spool.c). */
typedef struct storage_settings {
    char *backend;              /* "dir" or "postgres" */
    char *dir;                  /* blobs for "dir"; default PX_DEFAULT_STATE_DIR/blobs */
    char *spool_dir;            /* temporary files; default <dir>/.spool */
    uint64_t sweep_grace_ms;    /* an unreferenced blob younger than this is kept */
    uint64_t sweep_interval_ms; /* 0: never sweep */
} storage_settings_t;
/* [events]: the host's event log and its consumers (events.c). */
/* Each handler of a batch runs in a subtransaction: past 64 of them in one transaction,
 * PostgreSQL's per-backend cache of subtransaction ids overflows and every session's
 * snapshots get slower (events_deliver.c). */
#define EVENTS_BATCH_MAX 64
typedef struct events_settings {
    uint64_t max_attempts;     /* failed deliveries before an event is dead-lettered */
    uint64_t retention_ms;     /* events every group is done with are pruned after this */
    uint64_t poll_interval_ms; /* fallback when no NOTIFY comes; also the leader election */
    uint64_t concurrency;      /* delivery transactions in flight per group */
    uint64_t batch;            /* events handled in one delivery transaction, at most */
    uint64_t lease_ms;         /* a delivery not acked or retried by then is taken back */
} events_settings_t;
/* What a listener speaks: `listen = ADDRESS ssl` or `ADDRESS redirect` (config.c). */
enum listen_mode {
    LISTEN_PLAIN = 0,
    LISTEN_SSL,      /* HTTPS with [tls]'s certificate */
    LISTEN_REDIRECT, /* plain HTTP that answers everything with 308 to the https:// URL */
};

/* [tls:NAME]: another certificate for the `ssl` listeners, chosen when a client's server
 * name (SNI) is one of `server_names` (tls_names.c); [tls]'s is the default. */
typedef struct tls_name {
    char *name;          /* NAME of the section */
    char *file;          /* where the section starts, for errors */
    int line;
    char **server_names; /* "example.org" or "*.example.org", lower case */
    size_t nserver_names;
    char *certificate;
    char *key;
    /* Loaded by config_load from the files above. */
    char *cert_pem;
    size_t cert_pem_len;
    char *key_pem;
    size_t key_pem_len;
} tls_name_t;

/* [tls]: the certificate of every `ssl` listener (tls.c). The files are read when the
 * configuration is loaded, so that `-t`, a start and a reload all check the same bytes the
 * workers then use, and a bad certificate at reload is refused before any worker starts. */
typedef struct tls_settings {
    char *certificate;     /* PEM: the leaf, then its intermediates */
    char *key;             /* PEM private key */
    char *ciphers;         /* TLS 1.2 cipher list; TLS 1.3 suites are OpenSSL's */
    char *ticket_key_file; /* >= 32 bytes shared by every host; none: random per start */
    uint64_t ticket_rotation_ms;
    char *ocsp_response; /* DER OCSP response stapled as is */
    char *hsts;          /* Strict-Transport-Security value; none: not sent */
    /* Loaded by config_load from the files above. */
    char *cert_pem;
    size_t cert_pem_len;
    char *key_pem;
    size_t key_pem_len;
    unsigned char *ocsp_der;
    size_t ocsp_der_len;
    unsigned char ticket_secret[32];
    bool ticket_secret_set;
    tls_name_t *names; /* the [tls:NAME] sections, in the order they appear */
    size_t nnames;
} tls_settings_t;

typedef struct config {
    char *path;
    char **listen;
    uint8_t *listen_mode; /* enum listen_mode, one per listen address */
    size_t nlisten;
    long workers; /* 0 = auto */
    char *plugin_path;
    char *conf_dir;
    char *pid_file;
    char *error_log;
    char *access_log;
    int log_level;
    uint64_t shutdown_timeout_ms;
    uint64_t blocking_jobs;  /* px_work jobs running at once per worker */
    uint64_t blocking_queue; /* px_work jobs that may wait */
    uint64_t crash_limit;     /* crashes of one route within crash_window that switch it off */
    uint64_t crash_window_ms;
    http_limits_t http;
    pg_settings_t pg;
    redis_settings_t redis;
    auth_settings_t auth;
    lua_settings_t lua;
    storage_settings_t storage;
    events_settings_t events;
    tls_settings_t tls;
    struct ratelimit_config *ratelimit; /* [ratelimit] (ratelimit.h); NULL when it sets nothing */
    config_plugin_t *plugins;
    size_t nplugins;
} config_t;

/* A list of "file:line: message" strings. */
typedef struct config_errors {
    char **items;
    size_t n;
} config_errors_t;

void config_error(config_errors_t *errs, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void config_errors_print(const config_errors_t *errs);
void config_errors_free(config_errors_t *errs);

/* Parse `path` and the drop-ins of its conf_dir. Returns NULL (errors filled) on any
 * error; every error found is reported, not just the first. */
config_t *config_load(const char *path, config_errors_t *errs);
config_t *config_new_defaults(void);
void config_free(config_t *cfg);

const config_plugin_t *config_plugin_find(const config_t *cfg, const char *name);
const config_entry_t *config_plugin_entry(const config_plugin_t *p, const char *key);
long config_workers_effective(const config_t *cfg);

/* Every key the host's sections accept, from the tables the parser itself uses, so that
 * the manual can be checked against them (tests/unit/test_manpage.c and pantherad.conf(5)).
 * A key standing for a family ends in '*' ("route*": any key starting with "route"). */
typedef void (*config_key_fn)(const char *section, const char *key, void *ud);
void config_foreach_key(config_key_fn fn, void *ud);

#endif
