/*
 * channel_internal.h — what channel.c (names, entries, subscribers, publishing) and
 * channel_conn.c (the subscriber connection's life) share; nothing else includes it. The
 * essay atop channel.c explains the design.
 */
#ifndef PX_CHANNEL_INTERNAL_H
#define PX_CHANNEL_INTERNAL_H

#include <hiredis/read.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "channel.h"
#include "list.h"
#include "redis.h"

struct worker;
struct redisReply;

#define NAMES_PER_COMMAND 256
#define NAME_MAX_LEN 1024
#define PREFIX_MAX 128

enum hub_state { HUB_IDLE, HUB_DOWN, HUB_CONNECTING, HUB_READY };

typedef struct chan_entry {
    struct chan_entry *hnext;
    link_t subs;
    size_t nsubs;   /* live subscriptions */
    unsigned acks;  /* (un)subscribe commands sent on this connection, not acknowledged */
    bool pattern;
    bool active;    /* Redis confirmed it on the current connection */
    uint32_t hash;
    size_t len;
    char name[];
} chan_entry_t;

struct px_channel_sub {
    struct px_channel_sub *rnext; /* the owner's list */
    struct px_channel_sub *rprev;
    link_t elink;                 /* the entry's list */
    link_t dirty;                 /* hub->dirty: status to tell */
    struct px_channel_sub *grave; /* hub->graveyard while a delivery is under way */
    chan_entry_t *entry;
    channel_hub_t *hub;
    px_req_t *owner;
    px_channel_fn fn;
    px_channel_status_fn status;
    void *userdata;
    size_t prefix_len;
    int told;          /* the last status told, 0 before the first */
    uint32_t told_gen; /* the connection generation UP was told for */
    bool dead;
};

typedef struct sub_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_connect_t connect;
    channel_hub_t *hub; /* NULL once the hub let go of it */
} sub_conn_t;

typedef struct out_cmd {
    uv_write_t wr;
    char *text;
} out_cmd_t;

struct channel_hub {
    struct worker *worker;
    uv_loop_t *loop;
    redis_address_t addr;
    char *address;
    char *username, *password;
    int database;
    uint64_t connect_timeout_ms;

    enum hub_state state;
    sub_conn_t *conn;
    redisReader *reader;
    uv_getaddrinfo_t lookup;
    bool looking_up;
    uint32_t gen; /* connections made so far: the current one's generation */
    unsigned handshake; /* replies owed before the PONG that makes us ready */
    uint64_t last_heard;
    uv_timer_t timer; /* DOWN: backoff; CONNECTING: deadline; READY: ping */
    uv_timer_t notify;
    unsigned backoff_ms;
    uint64_t rng;
    bool down_logged;

    chan_entry_t **buckets;
    size_t nbuckets;
    size_t nentries;
    size_t unacked; /* (un)subscribes sent on this connection, not acknowledged */
    link_t dirty;
    int delivering;
    struct px_channel_sub *graveyard;
    bool closing;
    int handles_open;

    /* On-commit publishes made while this worker's Redis client was down, oldest first
     * (channel.c, "publishing"). */
    struct held_msg *held;
    struct held_msg **held_tail;
    size_t nheld, held_bytes;
    uv_timer_t held_timer; /* while something is held: try to send it */
    char readbuf[16 * 1024];
};

/* channel_conn.c */

/* Send one command on the subscriber connection (nothing when there is none). */
void channel_send(channel_hub_t *hub, int argc, const char **argv, const size_t *lens);
/* Connect now (the first subscription). */
void channel_connect(channel_hub_t *hub);

/* channel.c, called by channel_conn.c */

/* The connection is ready: every wanted name goes to Redis again. */
void channel_entries_subscribe(channel_hub_t *hub);
/* The connection is gone: nothing is confirmed any more; tell the subscribers. */
void channel_entries_reset(channel_hub_t *hub);
/* The hub closes: free every entry; subscriptions stay with their owners, inert. */
void channel_entries_free(channel_hub_t *hub);
/* The hub opens and closes: the held publishes' timer and list. */
void channel_held_init(channel_hub_t *hub);
void channel_held_free(channel_hub_t *hub);
/* A push or reply from Redis on a ready connection (not an error reply). */
void channel_on_push(channel_hub_t *hub, struct redisReply *reply);

#endif
