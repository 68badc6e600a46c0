/*
 * delivery.h — the notification plugin's delivery half: email (instant and daily
 * digests, one-click unsubscribe) and webhooks.
 *
 * The core half (inbox, consumer, stream, preferences) emits `notification.created` in
 * the transaction that creates inbox rows; delivery subscribes to it with its own
 * consumer group and writes ledger rows (notification_mail, notification_digest_item,
 * notification_webhook_delivery) in that same consumer transaction, so a ledger row
 * exists exactly when the notification does. Senders on every worker then claim due
 * rows (FOR UPDATE SKIP LOCKED plus a lease) and do the network part on named blocking
 * queues ("notification.mail", "notification.webhook"), never on the default queue that
 * password hashing uses.
 *
 * The modules split into pure ones (no px_* call, unit tested in tests/test_delivery.c)
 * — mail_mime.c, unsubscribe_token.c, webhook_sign.c, webhook_addr.c, mail_smtp.c,
 * webhook_http.c — and the ones wired into the plugin (delivery.c, mail_queue.c,
 * digest.c, unsubscribe.c, webhook_routes.c, webhook_queue.c).
 */
#ifndef NOTIFICATION_DELIVERY_H
#define NOTIFICATION_DELIVERY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>

/* ---- mail_mime.c: composing a message whose headers cannot be injected ---- */

/* One mail. Every string is UTF-8 and may hold anything a user typed: CR, LF and other
 * controls in header values are folded into spaces and non-ASCII text is RFC 2047
 * encoded, so no field can start a header of its own. Addresses are checked instead
 * (mail_address_ok) and refused when they are not plain addr-specs. */
typedef struct mail_msg {
    const char *from_name; /* display name, or NULL */
    const char *from_addr;
    const char *to_name;   /* display name, or NULL */
    const char *to_addr;
    const char *subject;
    const char *text;      /* the text/plain body */
    const char *unsubscribe_url;      /* https URL for List-Unsubscribe, or NULL */
    const char *message_id_domain;    /* right side of Message-ID */
    const char *message_id_local;     /* left side (unique per mail), e.g. the ledger key */
    int64_t date;                     /* unix seconds for the Date header */
    const char *const *extra_headers; /* NULL-terminated "Name", "value" pairs, or NULL;
                                       * names are ours (never user input), values are
                                       * encoded like the subject */
} mail_msg_t;

/* 1 when `addr` is an addr-spec we are willing to put in a header and an SMTP envelope:
 * local@domain, printable ASCII without spaces, quotes, angle brackets, commas,
 * semicolons, backslashes or controls, at most 254 bytes. */
int mail_address_ok(const char *addr);

/* The header value for user text: controls (CR and LF included) become spaces; pure
 * printable ASCII stays as it is (folded at spaces so no line passes 78 characters);
 * anything else becomes RFC 2047 "=?UTF-8?B?...?=" words of at most 75 characters,
 * split on character boundaries, one per folded line. `name_len` is the length of
 * "Name: " already on the first line. Returns a malloc'd string or NULL (out of
 * memory). Invalid UTF-8 bytes are replaced by U+FFFD. */
char *mail_header_value(const char *text, size_t name_len);

/* The whole message (headers, blank line, base64 text/plain body) with CRLF line ends,
 * malloc'd, its length in *len. NULL with *err set ("from address", "to address", "out
 * of memory") when an address is unfit. */
char *mail_compose(const mail_msg_t *m, size_t *len, const char **err);

/* ---- unsubscribe_token.c: the signed one-click unsubscribe token ---- */

#define UNSUB_KEY_MIN 16
#define UNSUB_TYPES_MAX 512
/* base64url(user "\n" types "\n" expiry) "." base64url(HMAC-SHA256(key, "panthera
 * unsubscribe v1\n" + that payload)). `type` is one type or a digest's types joined by
 * commas. Returns a malloc'd token or NULL when a field is unfit (the user must be a
 * lowercase UUID, the types [a-z0-9_.-] joined by single commas, under 512 bytes). */
char *unsub_token_make(const unsigned char *key, size_t key_len, const char *user_id,
                       const char *type, int64_t expires);
/* Checks a token at time `now`: 0 with the user (37 bytes) and type (128 bytes) copied
 * out; -1 for anything malformed, forged or expired (one answer for all, no hint). */
int unsub_token_check(const unsigned char *key, size_t key_len, const char *token,
                      int64_t now, char user_id[37], char type[UNSUB_TYPES_MAX]);

/* ---- webhook_sign.c: the X-Panthera-Signature header ---- */

/* "t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>.<body>")>" into `out`
 * (at least WEBHOOK_SIG_MAX bytes). Returns 0 or -1. */
#define WEBHOOK_SIG_MAX 96
int webhook_signature(const char *secret, int64_t t, const char *body, size_t body_len,
                      char out[WEBHOOK_SIG_MAX]);
/* A new endpoint secret: "whsec_" and 64 hex digits of fresh randomness. 0 or -1. */
#define WEBHOOK_SECRET_LEN 70
int webhook_secret_new(char out[WEBHOOK_SECRET_LEN + 1]);

/* ---- webhook_addr.c: which addresses a webhook may reach ---- */

/* NULL when `sa` is a public unicast address a webhook may connect to; otherwise why
 * not ("loopback", "private", "link-local" (the 169.254/16 cloud metadata addresses
 * among them), "shared address space" (CGNAT), "unspecified", "multicast",
 * "reserved", "documentation", "unique local", "site-local", "benchmarking"), looking
 * through IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 forms at the IPv4 inside.
 * With `allow_loopback` (test-only configuration) loopback is allowed. */
const char *webhook_addr_refused(const struct sockaddr *sa, int allow_loopback);

/* A parsed webhook URL: scheme https (or http to loopback with the test allowance),
 * a host and port, no user info, no fragment. */
typedef struct webhook_url {
    char host[256]; /* without brackets */
    int port;
    int https;
} webhook_url_t;
/* Parse and check the URL's form. Returns 0, or -1 with *why set. */
int webhook_url_parse(const char *url, webhook_url_t *out, const char **why);
/* Resolve the URL's host (blocking: call off the loop) and check EVERY address: 0 with
 * the first address as text in `addr` (INET6_ADDRSTRLEN), or -1 with *why ("does not
 * resolve", or the refusal of the address that failed). A literal is checked as is.
 * The caller then connects to exactly `addr` (CURLOPT_RESOLVE), so a second DNS answer
 * cannot swap in another address. */
int webhook_resolve_checked(const webhook_url_t *u, int allow_loopback, char addr[64],
                            const char **why);

/* ---- mail_smtp.c: one SMTP transaction through libcurl (blocking) ---- */

typedef struct smtp_conf {
    char url[512];   /* smtp://host:port or smtps://host:port (implicit TLS) */
    int starttls;    /* 1: require STARTTLS on smtp:// */
    char user[256];  /* empty: no AUTH */
    char pass[256];
    char helo[256];  /* the domain curl says in EHLO */
    char ca_file[512]; /* empty: the system's store */
    long timeout_ms;
} smtp_conf_t;
/* Outcome of a send. */
enum { SMTP_OK = 0, SMTP_TRANSIENT = 1, SMTP_PERMANENT = 2 };
/* Send `msg` from `from` to `to`. Returns SMTP_OK, SMTP_TRANSIENT (connection failed,
 * timeout, 4xx: try again later) or SMTP_PERMANENT (5xx: the relay refused it), with a
 * one-line reason in `err`. Thread-safe once smtp_global_init ran. */
int smtp_send(const smtp_conf_t *c, const char *from, const char *to, const char *msg,
              size_t len, char *err, size_t errlen);
/* curl_global_init, once per process, before any thread uses libcurl. 0 or -1. */
int delivery_curl_init(void);

/* ---- webhook_http.c: one webhook POST through libcurl (blocking) ---- */

/* POST `body` to `url`, connecting only to `addr` (already checked), with the
 * signature header. Returns the HTTP status (> 0), or -1 with `err` for a transport
 * failure. Redirects are not followed; proxies from the environment are ignored. */
long webhook_post(const char *url, const webhook_url_t *u, const char *addr,
                  const char *signature, const char *delivery_id, const char *body,
                  long timeout_ms, char *err, size_t errlen);

/* ---- base64 (mail_mime.c) ---- */
/* Standard (url = 0, padded) or URL-safe unpadded (url = 1) base64 of `len` bytes,
 * malloc'd, NUL-terminated. */
char *delivery_b64(const unsigned char *in, size_t len, int url);
/* Decode URL-safe unpadded base64 into malloc'd bytes (*out_len). NULL when malformed. */
unsigned char *delivery_b64url_decode(const char *in, size_t *out_len);

/* ---- The plugin side (these call px_*; include panthera.h first) ---- */
#ifdef PANTHERA_H

/* The [plugin:notification] delivery settings, read once in delivery_init. */
typedef struct delivery_conf {
    int mail_enabled;              /* smtp_host set */
    smtp_conf_t smtp;
    const char *mail_from;
    const char *mail_from_name;
    const char *public_base_url;   /* unsubscribe links: <base>/v1/notifications/unsubscribe */
    int64_t unsubscribe_ttl_s;
    int64_t mail_dead_after_s;
    int64_t webhook_dead_after_s;
    int64_t retry_min_ms, retry_max_ms;
    int64_t poll_ms;
    int64_t lease_s;
    int64_t mail_concurrency, webhook_concurrency;
    int64_t digest_hour;
    int64_t digest_every_s;
    int64_t digest_check_ms;
    int64_t webhook_timeout_ms;
    int webhook_allow_loopback;    /* TEST ONLY: loopback receivers, over plain http too */
} delivery_conf_t;
extern delivery_conf_t delivery_conf;
extern px_plugin_t *delivery_plugin;

#define DELIVERY_MAIL_QUEUE "notification.mail"
#define DELIVERY_WEBHOOK_QUEUE "notification.webhook"

/* delivery.c: config keys, queues, the consumer, the unsubscribe key. Called once from
 * the plugin's init; returns 0 or the code init returns. */
int delivery_init(px_plugin_t *self);
/* The unsubscribe key (config, else the database's), or NULL while it is still being
 * loaded; its length in *len. */
const unsigned char *delivery_unsub_key(size_t *len);

/* outbox.c: the claim / work / record loop both senders share. */
typedef struct outbox outbox_t;
typedef struct outbox_job {
    outbox_t *ob;
    char id[40];
    int attempts;
    int outcome;     /* SMTP_OK, SMTP_TRANSIENT or SMTP_PERMANENT (webhooks too) */
    long status;     /* webhooks: the HTTP status, else 0 */
    char err[300];
} outbox_job_t;
typedef struct outbox_ops {
    const char *task_name;  /* the background task's name (metrics label) */
    const char *queue;      /* the blocking queue the work runs on */
    const char *claim_sql;  /* $1 how many, $2 lease seconds: due rows, now leased */
    const char *finish_sql; /* $1 id, $2 'ok'|'retry'|'dead', $3 retry delay (ms),
                             * $4 error or NULL, $5 HTTP status or NULL, $6 dead after (s) */
    int64_t *concurrency;
    int64_t *dead_after_s;
    int (*ready)(void);     /* NULL, or 0 while claiming must wait (a key loading) */
    /* Build the job for claimed row `row` (the columns the claim returns); NULL to skip
     * it (the row is then recorded dead with *why). The job starts with outbox_job_t. */
    outbox_job_t *(*prepare)(const px_pg_result_t *res, int row, const char **why);
    px_work_fn work;        /* runs on the queue: fill outcome, status, err */
    void (*release)(outbox_job_t *job);
} outbox_ops_t;
/* Start the sender in this worker (from on_worker_start) / stop it (on_worker_stop). */
outbox_t *outbox_start(px_plugin_t *self, const outbox_ops_t *ops);
void outbox_stop(outbox_t *ob);

/* mail_queue.c / webhook_queue.c: the two outboxes. */
extern const outbox_ops_t mail_outbox_ops;
extern const outbox_ops_t webhook_outbox_ops;

/* mail_render.c: subject and text of a mail (malloc'd). `items` is a JSON array of
 * {"type", "payload", "createdAt"} (one for an instant mail, several for a digest). */
int mail_render(const char *username, json_t *items, int digest, char **subject, char **text);

/* digest.c: the singleton job that opens each period's digests. */
int digest_worker_start(px_plugin_t *self);
void digest_worker_stop(void);

/* unsubscribe.c / webhook_routes.c: routes. */
int unsubscribe_routes(px_plugin_t *self);
int webhook_routes(px_plugin_t *self);

#endif /* PANTHERA_H */

#endif
