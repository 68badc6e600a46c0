/*
 * redis.h — the per-worker asynchronous Redis client.
 *
 * One client per worker loop, one connection to Redis (Redis runs commands one at a time,
 * so a single pipelined connection is as fast as several). Callers never see the
 * connection: they hand the client a command and get the reply in a callback on the same
 * loop. The client connects, reconnects and gives up on a slow Redis by itself.
 *
 * Redis is an accelerator here, not the source of truth: when it is down or slow the
 * server keeps working, slower. So the client never makes a caller wait for Redis to come
 * back: while it has no working connection every command fails at once with
 * REDIS_EUNAVAILABLE (nothing is queued), and every command has a deadline
 * (command_timeout_ms, 100 ms by default) after which its caller gets REDIS_ETIMEOUT and
 * can fall back. A connection that keeps timing out is dropped and made again.
 *
 * Threading: every function here must be called on the loop thread the client was made
 * for. Make the client in the worker process, after fork. Close it (redis_close) and let
 * the loop run until `done` before closing the loop's other handles wholesale (uv_walk):
 * the client closes its own handles, and only it may.
 *
 * Callbacks:
 *  - never run inside the redis_* call that started the work; they run from the loop (an
 *    immediate failure, such as REDIS_EUNAVAILABLE while disconnected, is delivered on the
 *    next loop iteration);
 *  - run exactly once for every call that returned 0 and gave a callback, unless the work
 *    was cancelled with redis_cancel: then they never run;
 *  - may call any redis_* function, including redis_close.
 *
 * Handles: every call that starts work can return a redis_handle_t through `handle_out`
 * (NULL if the caller does not want one). The handle is valid until its callback starts or
 * until redis_cancel is called on it, whichever comes first; after that it must not be
 * used.
 *
 * Errors: functions return 0 or a negative errno value (-EINVAL for bad arguments,
 * -ESHUTDOWN once redis_close was called); on error the callback never runs. What went
 * wrong with the work itself arrives in the callback: an error *reply* from Redis
 * (WRONGTYPE, NOSCRIPT, a Lua error...) is a reply of type REDIS_TYPE_ERROR; a
 * redis_error_t means there is no reply at all.
 *
 * Not for this client: commands that change the connection's protocol state (SUBSCRIBE
 * and friends, MONITOR: refused with -EINVAL; HELLO 3, CLIENT REPLY, SELECT, blocking
 * commands such as BLPOP: never send them). Every caller shares the connection, and a
 * blocking command would hold up everyone behind it until the connection is dropped.
 */
#ifndef PX_REDIS_H
#define PX_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct redis_client redis_client_t;
typedef struct redis_handle redis_handle_t;
typedef struct redis_reply redis_reply_t;
typedef struct redis_script redis_script_t;

#define REDIS_DEFAULT_COMMAND_TIMEOUT_MS 100
#define REDIS_DEFAULT_CONNECT_TIMEOUT_MS 500

/* A zero field means its default. redis_new copies what it needs; the struct and its
 * strings may be freed when it returns. */
typedef struct redis_config {
    /* "unix:/path/to/redis.sock", or "host:port" ("127.0.0.1:6379", "redis:6379",
     * "[::1]:6379"). A host name is looked up again before every connection attempt. */
    const char *address;
    int command_timeout_ms; /* from the call to the callback, default 100 */
    int connect_timeout_ms; /* name lookup, connect and the first PING, default 500 */
    const char *username;   /* with password: AUTH username password (Redis 6 ACL) */
    const char *password;   /* AUTH on every new connection, before anything else; NULL: none */
    int database;           /* SELECT on every new connection; 0: none (Redis's default) */
} redis_config_t;

typedef enum redis_errkind {
    /* No working connection: not connected yet, reconnecting (backoff 100 ms doubling to
     * 5 s), or the connection was lost or dropped while the command ran (it may or may not
     * have been executed). The client never retries on its own: the caller decides. */
    REDIS_EUNAVAILABLE = 1,
    /* No reply within command_timeout_ms. The command may still run on Redis; its reply,
     * if it ever comes, is thrown away. */
    REDIS_ETIMEOUT = 2,
    /* redis_close was called before the reply came. */
    REDIS_ECANCELLED = 3,
} redis_errkind_t;

/* Borrowed by the callback; the message is valid only while it runs. */
typedef struct redis_error {
    redis_errkind_t kind;
    const char *message; /* one line, never NULL */
} redis_error_t;

typedef enum redis_reply_type {
    REDIS_TYPE_STRING = 1,  /* bulk string: binary, see redis_reply_string */
    REDIS_TYPE_ARRAY = 2,   /* elements, see redis_reply_count / redis_reply_element */
    REDIS_TYPE_INTEGER = 3, /* see redis_reply_integer */
    REDIS_TYPE_NIL = 4,     /* a missing key (GET), a null array or a nil element */
    REDIS_TYPE_STATUS = 5,  /* "OK", "PONG", ...: text in redis_reply_string */
    REDIS_TYPE_ERROR = 6,   /* "WRONGTYPE Operation against...": text in redis_reply_string */
} redis_reply_type_t;

/* `reply` is owned by the client and valid only while the callback runs (copy what you
 * keep); exactly one of `reply` and `err` is non-NULL. */
typedef void (*redis_cb)(const redis_reply_t *reply, const redis_error_t *err, void *ud);
typedef void (*redis_done_cb)(const redis_error_t *err, void *ud);
typedef void (*redis_close_cb)(void *ud);

/* A parsed [redis] address: exactly one of unix_path and host is set (malloc'd; the
 * caller frees both). The subscriber connection (channel.c) connects by it too. */
typedef struct redis_address {
    char *unix_path;
    char *host;
    int port;
    bool host_numeric;
} redis_address_t;
/* 0, or -1 (logged) for an address redis_new would refuse. */
int redis_address_parse(const char *address, redis_address_t *out);

/* Creates the client and starts connecting (asynchronously: this never waits for Redis).
 * Returns NULL, after logging why, when the configuration is invalid (no or a malformed
 * address, a negative timeout). */
redis_client_t *redis_new(uv_loop_t *loop, const redis_config_t *cfg);

/* Closes the client; safe at any moment, from any callback. Work still waiting for Redis
 * gets REDIS_ECANCELLED (so does work whose failure was not delivered yet). When every
 * callback has run and every libuv handle is closed, `done` runs (may be NULL) and the
 * client is freed. Calling it twice does nothing. NULL is accepted. */
void redis_close(redis_client_t *client, redis_close_cb done, void *ud);

/* True when the client has a connection that answered: commands are sent at once. False
 * while connecting, reconnecting or closing: commands fail fast with REDIS_EUNAVAILABLE. */
bool redis_is_connected(const redis_client_t *client);

/* Sends the command argv[0..argc-1] (binary safe: argvlen[i] bytes of argv[i]; NULL
 * `argvlen` means NUL-terminated strings), e.g. {"SET", key, value}. The arguments are
 * copied (formatted) by this call. The callback gets the reply, or REDIS_EUNAVAILABLE
 * (next loop iteration when not connected), REDIS_ETIMEOUT, REDIS_ECANCELLED. NULL `cb`:
 * fire and forget. -EINVAL for argc < 1, a NULL argument, or a command this client
 * refuses (see above). */
int redis_command(redis_client_t *client, int argc, const char **argv, const size_t *argvlen,
                  redis_cb cb, void *ud, redis_handle_t **handle_out);

/* The caller no longer wants the answer: the callback will not run. A command already sent
 * still runs on Redis; its reply is thrown away. Must not be called on a handle whose
 * callback has started. NULL is accepted. */
void redis_cancel(redis_handle_t *handle);

/* Sends PING; `cb` gets NULL when Redis answered PONG, REDIS_EUNAVAILABLE (with Redis's
 * own message) when it answered with an error such as LOADING, or the usual errors. For
 * readiness checks. */
int redis_ping(redis_client_t *client, redis_done_cb cb, void *ud, redis_handle_t **handle_out);

/* Lua scripts. redis_script_new keeps the source and its SHA1; make one per script once
 * (at init) and free it whenever: calls in flight keep what they need. */
redis_script_t *redis_script_new(const char *source);
void redis_script_free(redis_script_t *script); /* NULL is accepted */
/* The 40 lowercase hex digits Redis knows the script by (SCRIPT EXISTS, EVALSHA). */
const char *redis_script_sha(const redis_script_t *script);

/* Runs `script` with `numkeys` keys followed by argc - numkeys arguments in argv (as in
 * EVAL; binary safe like redis_command, 0 <= numkeys <= argc, argc may be 0). Sent as
 * EVALSHA; when Redis does not know the script (NOSCRIPT: first use, or Redis restarted) it
 * is sent again as EVAL, which also loads it, within the same deadline. Errors raised by
 * the script arrive as a REDIS_TYPE_ERROR reply. */
int redis_eval(redis_client_t *client, const redis_script_t *script, int numkeys, int argc,
               const char **argv, const size_t *argvlen, redis_cb cb, void *ud,
               redis_handle_t **handle_out);

/* Replies: borrowed, valid only while the callback runs. */
redis_reply_type_t redis_reply_type(const redis_reply_t *reply);
/* The integer of a REDIS_TYPE_INTEGER reply, 0 for other types. */
int64_t redis_reply_integer(const redis_reply_t *reply);
/* The bytes of a string, status or error reply and their count in *len (if `len` is not
 * NULL). NUL-terminated for convenience, but a string may contain NUL bytes: use *len.
 * NULL (and *len = 0) for other types. */
const char *redis_reply_string(const redis_reply_t *reply, size_t *len);
/* Elements of an array reply; 0 for other types. */
size_t redis_reply_count(const redis_reply_t *reply);
/* Element i of an array reply, NULL when out of range or not an array. */
const redis_reply_t *redis_reply_element(const redis_reply_t *reply, size_t i);

/* "unavailable", "timeout", "cancelled": for log lines. */
const char *redis_errkind_name(redis_errkind_t kind);

#endif
