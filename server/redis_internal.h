/*
 * redis_internal.h — what redis.c (the client as callers see it: creating it, the calls,
 * scripts, replies) and redis_conn.c (the connection's life: connecting, reconnecting, the
 * deadlines and the watchdog, closing) share. Nothing outside those two files includes it.
 *
 * The records and the client below are kept by the rules on the hiredis context written
 * atop redis_conn.c; "rule N" in either file means one of those.
 */
#ifndef PX_REDIS_INTERNAL_H
#define PX_REDIS_INTERNAL_H

#include <hiredis/async.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "list.h"
#include "redis.h"

#define WHY_MAX 200

enum req_kind { REQ_COMMAND, REQ_EVAL, REQ_PING, REQ_AUTH, REQ_SELECT, REQ_HELLO };
enum state { ST_DOWN, ST_LOOKUP, ST_HANDSHAKE, ST_READY };

struct redis_handle {
    /* client->timed while its caller waits for Redis, client->done while its failure waits
     * for delivery, unlinked otherwise */
    link_t link;
    link_t owed; /* client->owed while hiredis holds it (rule 6) */
    redis_client_t *client;
    enum req_kind kind;
    bool answered; /* the callback has run or never will */
    bool in_hiredis;
    redis_errkind_t errkind; /* why it failed fast, while in client->done */
    uint64_t deadline;
    uint64_t sent_at;
    union {
        redis_cb reply;
        redis_done_cb done;
    } cb;
    void *ud;
    /* REQ_EVAL: the EVALSHA command, kept to be sent again as EVAL on NOSCRIPT. argv[1] is
     * the SHA1; the source, the arguments and the arrays follow the struct. */
    int argc;
    const char **argv;
    size_t *argvlen;
    const char *source;
    size_t source_len;
    char sha[41];
};

struct redis_client {
    uv_loop_t *loop;
    char *address; /* as configured, for log lines and messages */
    char *unix_path;
    char *host;
    char *username, *password; /* AUTH, see redis_config_t */
    int database;              /* SELECT */
    int port;
    bool host_numeric;
    int command_timeout_ms;
    int connect_timeout_ms;
    uint64_t stall_ms;

    enum state state;
    redisAsyncContext *ac; /* the current context, NULL when there is none (rule 1) */
    uv_getaddrinfo_t lookup;
    bool looking_up;       /* `lookup` is in flight */
    bool lookup_abandoned; /* ... but the attempt timed out */
    unsigned attempt;      /* picks the address of a looked-up name */
    uv_timer_t conn_timer; /* ST_DOWN: backoff; ST_LOOKUP, ST_HANDSHAKE: attempt deadline */
    unsigned backoff_ms;
    uint64_t rng;
    bool down_logged;  /* said once that Redis is unreachable: later failures are quiet */
    char why[WHY_MAX]; /* why there is no connection, for messages and log lines */

    uv_timer_t watchdog;   /* deadlines, stalls and requested drops */
    uint64_t watchdog_due; /* monotonic ms it is armed for, 0 when stopped */
    int timeouts_in_row;
    char drop_why[WHY_MAX]; /* set: the watchdog drops the connection (rule 3) */

    link_t timed; /* commands waiting for a reply, by deadline */
    link_t owed;  /* commands hiredis holds, in send order */
    link_t done;  /* failed fast, waiting for the idle handle */
    uv_idle_t deliver;

    bool closing;
    bool handles_closing;
    redis_close_cb close_cb;
    void *close_ud;
};

/* Sets up the timers, lists and backoff of a client whose configuration redis_new has
 * filled in, and starts the first connection attempt. */
void redis_conn_start(redis_client_t *client);
/* A record for a public call: its deadline starts now; `has_cb` false means fire and
 * forget (nobody to call back). */
redis_handle_t *redis_conn_call_new(redis_client_t *client, enum req_kind kind, size_t extra,
                                    bool has_cb, void *ud);
/* Sends the record's command now, or fails it on the next loop iteration
 * (REDIS_EUNAVAILABLE). A fire-and-forget record may be freed before this returns. */
void redis_conn_req_start(redis_client_t *client, redis_handle_t *h, int argc, const char **argv,
                          const size_t *argvlen);
/* redis_close's work, once it has set client->closing and the close callback: the idle
 * handle closes everything from outside every hiredis callback (rule 3). */
void redis_conn_close(redis_client_t *client);

#endif
