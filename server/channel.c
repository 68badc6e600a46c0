/*
 * channel.c — live channels across hosts (px_channel_*): a message published on one host
 * reaches every subscriber on every host, through Redis pub/sub.
 *
 * Publishing is an ordinary command, PUBLISH, on the worker's shared Redis client
 * (redis.c). Subscribing cannot be: a connection that has sent SUBSCRIBE speaks another
 * protocol from then on (pushes instead of replies) and would hold up every command
 * behind it. So every worker keeps one more connection, the subscriber, made on the
 * first subscription and kept for the worker's life. It does not use hiredis's async
 * context (whose pub/sub mode and ownership rules, see redis_conn.c, buy nothing here):
 * it is a libuv stream, commands formatted with redisFormatCommandArgv and replies parsed
 * by hiredis's own redisReader.
 *
 * Sharing. Every local subscription to one name (a channel, or a pattern) shares one
 * entry, and the entry one SUBSCRIBE (or PSUBSCRIBE) at Redis: 10,000 streams waiting on
 * one channel cost Redis one subscription per worker, and a message is read once and
 * handed to each. An entry whose last subscriber leaves sends UNSUBSCRIBE and lives on
 * until Redis acknowledged every (un)subscribe sent for it, so a name dropped and taken
 * again at once is never believed active on a stale acknowledgement.
 *
 * Redis going away. The subscriber reads EOF when Redis stops, and pings once a second
 * to notice one that hangs (no byte for three seconds: the connection is dropped).
 * Either way every subscriber is told PX_CHANNEL_DOWN, and the hub reconnects with a
 * backoff of 100 ms doubling to 1 s (short: a subscriber waiting to hear again is a
 * stream falling back to polling), sends its whole set of names again, and tells each
 * subscriber PX_CHANNEL_UP when Redis confirmed its name: the moment to catch up from
 * PostgreSQL, since whatever was published meanwhile is gone. Status changes are told
 * from a zero timer, never inside the call that subscribed; a subscriber that saw the
 * connection drop and come back between two of them is still told UP again (the
 * connection's generation is part of what it was told).
 *
 * Names. A plugin's names live in its own namespace, "px:<database>:<plugin>:<name>":
 * two plugins cannot read or forge each other's messages by picking the same name, and
 * deployments sharing one Redis on different databases (which pub/sub ignores) do not
 * hear each other. Callbacks get the name without the prefix.
 *
 * Callbacks may do anything, including ending their own or another subscription or the
 * request that owns it: while the hub delivers, ended subscriptions are only marked and
 * are freed once the delivery is over.
 */
#include "channel.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api.h"
#include "list.h"
#include "log.h"
#include "redis.h"
#include "request.h"
#include "worker.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define PING_EVERY_MS 1000
#define SILENCE_MAX_MS 3000
#define NAMES_PER_COMMAND 256
#define NAME_MAX_LEN 1024

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
    worker_t *worker;
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
    link_t dirty;
    int delivering;
    struct px_channel_sub *graveyard;
    bool closing;
    int handles_open;
    char readbuf[16 * 1024];
};

static void hub_connect(channel_hub_t *hub);
static void on_timer(uv_timer_t *t);
static void on_notify(uv_timer_t *t);
static void hub_down(channel_hub_t *hub, const char *why);
static void entry_maybe_free(channel_hub_t *hub, chan_entry_t *e);

/* ---- names and entries ---- */

static uint32_t name_hash(const char *s, size_t len, bool pattern)
{
    uint32_t h = pattern ? 2166136261u ^ 0x9e3779b9u : 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static chan_entry_t *entry_find(channel_hub_t *hub, const char *name, size_t len, bool pattern)
{
    if (!hub->nbuckets)
        return NULL;
    uint32_t h = name_hash(name, len, pattern);
    for (chan_entry_t *e = hub->buckets[h & (hub->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->pattern == pattern && e->len == len && !memcmp(e->name, name, len))
            return e;
    return NULL;
}

static void buckets_grow(channel_hub_t *hub)
{
    size_t n = hub->nbuckets ? hub->nbuckets * 2 : 64;
    chan_entry_t **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < hub->nbuckets; i++) {
        for (chan_entry_t *e = hub->buckets[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(hub->buckets);
    hub->buckets = b;
    hub->nbuckets = n;
}

static void entry_unhash(channel_hub_t *hub, chan_entry_t *e)
{
    for (chan_entry_t **pp = &hub->buckets[e->hash & (hub->nbuckets - 1)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == e) {
            *pp = e->hnext;
            hub->nentries--;
            return;
        }
    }
}

/* "px:<db>:<plugin>:" */
static size_t name_prefix(const channel_hub_t *hub, const px_req_t *r, char *out, size_t size)
{
    int n = snprintf(out, size, "px:%d:%s:", hub ? hub->database : 0,
                     r->plugin ? r->plugin : "host");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* ---- the connection ---- */

static void on_cmd_written(uv_write_t *wr, int status)
{
    UNUSED(status); /* a failed write shows up as a read error or as silence */
    out_cmd_t *cmd = (out_cmd_t *)wr;
    redisFreeCommand(cmd->text);
    free(cmd);
}

static void send_argv(channel_hub_t *hub, int argc, const char **argv, const size_t *lens)
{
    if (!hub->conn)
        return;
    char *text = NULL;
    long long n = redisFormatCommandArgv(&text, argc, argv, lens);
    if (n <= 0)
        return;
    out_cmd_t *cmd = xmalloc(sizeof(*cmd));
    cmd->text = text;
    uv_buf_t b = uv_buf_init(text, (unsigned)n);
    if (uv_write(&cmd->wr, &hub->conn->h.stream, &b, 1, on_cmd_written) < 0) {
        redisFreeCommand(text);
        free(cmd);
        hub_down(hub, "cannot write to the subscriber connection");
    }
}

/* (P)SUBSCRIBE or (P)UNSUBSCRIBE `n` entries in one command. */
static void send_names(channel_hub_t *hub, const char *verb, chan_entry_t **list, size_t n)
{
    const char *argv[NAMES_PER_COMMAND + 1];
    size_t lens[NAMES_PER_COMMAND + 1];
    argv[0] = verb;
    lens[0] = strlen(verb);
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = list[i]->name;
        lens[i + 1] = list[i]->len;
        list[i]->acks++;
    }
    send_argv(hub, (int)n + 1, argv, lens);
}

static void send_one(channel_hub_t *hub, chan_entry_t *e, bool subscribe)
{
    const char *verb = subscribe ? (e->pattern ? "PSUBSCRIBE" : "SUBSCRIBE")
                                 : (e->pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE");
    send_names(hub, verb, &e, 1);
}

/* Ready: every name with subscribers goes to Redis again, in batches. */
static void subscribe_all(channel_hub_t *hub)
{
    chan_entry_t *batch[2][NAMES_PER_COMMAND];
    size_t n[2] = {0, 0};
    for (size_t i = 0; i < hub->nbuckets; i++) {
        for (chan_entry_t *e = hub->buckets[i]; e; e = e->hnext) {
            int k = e->pattern ? 1 : 0;
            batch[k][n[k]++] = e;
            if (n[k] == NAMES_PER_COMMAND) {
                send_names(hub, k ? "PSUBSCRIBE" : "SUBSCRIBE", batch[k], n[k]);
                n[k] = 0;
            }
        }
    }
    if (n[0])
        send_names(hub, "SUBSCRIBE", batch[0], n[0]);
    if (n[1])
        send_names(hub, "PSUBSCRIBE", batch[1], n[1]);
}

static void mark_dirty(channel_hub_t *hub, struct px_channel_sub *s)
{
    if (s->dead || !s->status || !list_empty(&s->dirty))
        return;
    list_push(&hub->dirty, &s->dirty);
    if (!hub->closing)
        uv_timer_start(&hub->notify, on_notify, 0, 0);
}

static void mark_entry_dirty(channel_hub_t *hub, chan_entry_t *e)
{
    for (link_t *l = e->subs.next; l != &e->subs; l = l->next)
        mark_dirty(hub, (struct px_channel_sub *)((char *)l - offsetof(struct px_channel_sub, elink)));
}

static void mark_all_dirty(channel_hub_t *hub)
{
    for (size_t i = 0; i < hub->nbuckets; i++)
        for (chan_entry_t *e = hub->buckets[i]; e; e = e->hnext)
            mark_entry_dirty(hub, e);
}

static void on_conn_closed(uv_handle_t *h)
{
    sub_conn_t *conn = (sub_conn_t *)h;
    channel_hub_t *hub = conn->hub;
    free(conn);
    if (hub && hub->closing && --hub->handles_open == 0)
        free(hub);
}

static void conn_release(channel_hub_t *hub)
{
    sub_conn_t *conn = hub->conn;
    if (!conn)
        return;
    hub->conn = NULL;
    if (hub->closing) {
        hub->handles_open++;
    } else {
        conn->hub = NULL;
    }
    uv_close(&conn->h.handle, on_conn_closed);
}

/* The connection is gone or never came: tell everyone, free the entries nobody wants,
 * and try again after the backoff. */
static void hub_down(channel_hub_t *hub, const char *why)
{
    bool was_ready = hub->state == HUB_READY;
    conn_release(hub);
    if (hub->reader) {
        redisReaderFree(hub->reader);
        hub->reader = NULL;
    }
    hub->state = HUB_DOWN;
    if (hub->closing)
        return;
    if (!hub->down_logged)
        log_warn("channels: %s Redis subscriber at %s: %s; retrying in the background",
                 was_ready ? "lost the" : "cannot connect the", hub->address, why);
    hub->down_logged = true;
    for (size_t i = 0; i < hub->nbuckets; i++) {
        for (chan_entry_t *e = hub->buckets[i], *next; e; e = next) {
            next = e->hnext;
            e->acks = 0;
            e->active = false;
            entry_maybe_free(hub, e);
        }
    }
    mark_all_dirty(hub);
    uv_timer_start(&hub->timer, on_timer, backoff_next(&hub->backoff_ms, BACKOFF_MAX_MS, &hub->rng),
                   0);
}

static void hub_ready(channel_hub_t *hub)
{
    hub->state = HUB_READY;
    hub->backoff_ms = BACKOFF_MIN_MS;
    if (hub->down_logged)
        log_info("channels: Redis subscriber connected to %s again", hub->address);
    hub->down_logged = false;
    subscribe_all(hub);
    uv_timer_start(&hub->timer, on_timer, PING_EVERY_MS, 0);
}

static struct px_channel_sub *sub_of(link_t *l)
{
    return (struct px_channel_sub *)((char *)l - offsetof(struct px_channel_sub, elink));
}

static void graveyard_sweep(channel_hub_t *hub);

static void deliver(channel_hub_t *hub, chan_entry_t *e, const char *channel, size_t chlen,
                    const char *data, size_t len)
{
    hub->delivering++;
    for (link_t *l = e->subs.next; l != &e->subs; l = l->next) {
        struct px_channel_sub *s = sub_of(l);
        if (s->dead || chlen < s->prefix_len)
            continue;
        s->fn(s->owner, channel + s->prefix_len, data, len, s->userdata);
    }
    if (--hub->delivering == 0)
        graveyard_sweep(hub);
}

static bool is_str(const redisReply *r, const char *s)
{
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && !strncasecmp(r->str, s, r->len);
}

static void on_push(channel_hub_t *hub, redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof(why), "Redis answered: %.*s", (int)rep->len, rep->str);
        hub_down(hub, why);
        return;
    }
    if (hub->state == HUB_CONNECTING) {
        /* AUTH's +OK, then PING's +PONG. */
        if (--hub->handshake == 0)
            hub_ready(hub);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2)
        return; /* +PONG outside subscribed mode */
    redisReply **el = rep->element;
    bool msg = is_str(el[0], "message"), pmsg = is_str(el[0], "pmessage");
    if ((msg && rep->elements == 3) || (pmsg && rep->elements == 4)) {
        redisReply *name = el[1], *ch = el[pmsg ? 2 : 1], *data = el[pmsg ? 3 : 2];
        if (name->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING ||
            data->type != REDIS_REPLY_STRING)
            return;
        chan_entry_t *e = entry_find(hub, name->str, name->len, pmsg);
        if (e && e->active)
            deliver(hub, e, ch->str, ch->len, data->str, data->len);
        return;
    }
    bool sub = is_str(el[0], "subscribe"), psub = is_str(el[0], "psubscribe");
    bool unsub = is_str(el[0], "unsubscribe"), punsub = is_str(el[0], "punsubscribe");
    if (!(sub || psub || unsub || punsub) || el[1]->type != REDIS_REPLY_STRING)
        return;
    chan_entry_t *e = entry_find(hub, el[1]->str, el[1]->len, psub || punsub);
    if (!e || e->acks == 0)
        return;
    if (--e->acks > 0)
        return;
    if (e->nsubs == 0) {
        entry_maybe_free(hub, e);
        return;
    }
    e->active = true;
    mark_entry_dirty(hub, e);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    UNUSED(suggested);
    sub_conn_t *conn = (sub_conn_t *)h;
    channel_hub_t *hub = conn->hub;
    b->base = hub->readbuf;
    b->len = sizeof(hub->readbuf);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sub_conn_t *conn = (sub_conn_t *)st;
    channel_hub_t *hub = conn->hub;
    if (!hub || hub->conn != conn || n == 0)
        return;
    if (n < 0) {
        hub_down(hub, n == UV_EOF ? "connection closed" : uv_strerror((int)n));
        return;
    }
    hub->last_heard = uv_now(hub->loop);
    if (redisReaderFeed(hub->reader, b->base, (size_t)n) != REDIS_OK) {
        hub_down(hub, "unreadable reply");
        return;
    }
    /* A callback may drop the connection (and the reader) under us. */
    while (hub->conn == conn) {
        void *reply = NULL;
        if (redisReaderGetReply(hub->reader, &reply) != REDIS_OK) {
            hub_down(hub, "unreadable reply");
            return;
        }
        if (!reply)
            break;
        on_push(hub, reply);
        freeReplyObject(reply);
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    sub_conn_t *conn = req->data;
    channel_hub_t *hub = conn->hub;
    if (!hub || hub->conn != conn)
        return;
    if (status < 0) {
        hub_down(hub, uv_strerror(status));
        return;
    }
    hub->reader = redisReaderCreate();
    hub->last_heard = uv_now(hub->loop);
    uv_read_start(&conn->h.stream, on_alloc, on_read);
    hub->handshake = 1;
    if (hub->password) {
        const char *auth[] = {"AUTH", hub->username ? hub->username : hub->password,
                              hub->password};
        send_argv(hub, hub->username ? 3 : 2, auth, NULL);
        hub->handshake++;
    }
    send_argv(hub, 1, (const char *[]){"PING"}, NULL);
}

static void connect_to(channel_hub_t *hub, const struct sockaddr *sa)
{
    sub_conn_t *conn = xcalloc(1, sizeof(*conn));
    conn->hub = hub;
    conn->connect.data = conn;
    hub->conn = conn;
    int rc;
    if (sa) {
        uv_tcp_init(hub->loop, &conn->h.tcp);
        rc = uv_tcp_connect(&conn->connect, &conn->h.tcp, sa, on_connected);
    } else {
        uv_pipe_init(hub->loop, &conn->h.pipe, 0);
        uv_pipe_connect(&conn->connect, &conn->h.pipe, hub->addr.unix_path, on_connected);
        rc = 0;
    }
    if (rc < 0)
        hub_down(hub, uv_strerror(rc));
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    channel_hub_t *hub = req->data;
    hub->looking_up = false;
    if (hub->closing) {
        uv_freeaddrinfo(res);
        if (--hub->handles_open == 0)
            free(hub);
        return;
    }
    if (hub->state != HUB_CONNECTING) {
        uv_freeaddrinfo(res); /* the attempt timed out meanwhile */
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        hub_down(hub, status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)hub->addr.port);
    uv_freeaddrinfo(res);
    connect_to(hub, (struct sockaddr *)&ss);
}

static void hub_connect(channel_hub_t *hub)
{
    hub->state = HUB_CONNECTING;
    hub->gen++;
    uv_timer_start(&hub->timer, on_timer, hub->connect_timeout_ms, 0);
    if (hub->addr.unix_path) {
        connect_to(hub, NULL);
        return;
    }
    if (hub->looking_up)
        return; /* the previous lookup still runs: its answer starts this attempt */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    hub->lookup.data = hub;
    int rc = uv_getaddrinfo(hub->loop, &hub->lookup, on_lookup, hub->addr.host, NULL, &hints);
    if (rc < 0) {
        hub_down(hub, uv_strerror(rc));
        return;
    }
    hub->looking_up = true;
}

static void on_timer(uv_timer_t *t)
{
    channel_hub_t *hub = t->data;
    switch (hub->state) {
    case HUB_DOWN: hub_connect(hub); break;
    case HUB_CONNECTING: hub_down(hub, "no answer to PING in time"); break;
    case HUB_READY:
        if (uv_now(hub->loop) - hub->last_heard >= SILENCE_MAX_MS) {
            hub_down(hub, "no answer to PING for 3 s");
            break;
        }
        send_argv(hub, 1, (const char *[]){"PING"}, NULL);
        uv_timer_start(&hub->timer, on_timer, PING_EVERY_MS, 0);
        break;
    case HUB_IDLE: break;
    }
}

/* ---- telling subscribers ---- */

static void on_notify(uv_timer_t *t)
{
    channel_hub_t *hub = t->data;
    link_t batch;
    list_move(&batch, &hub->dirty);
    hub->delivering++;
    while (!list_empty(&batch)) {
        struct px_channel_sub *s =
            (struct px_channel_sub *)((char *)batch.next - offsetof(struct px_channel_sub, dirty));
        list_unlink(&s->dirty);
        list_init(&s->dirty);
        if (s->dead)
            continue;
        int want = 0;
        if (hub->state == HUB_READY && s->entry->active)
            want = PX_CHANNEL_UP;
        else if (hub->state == HUB_DOWN)
            want = PX_CHANNEL_DOWN;
        if (!want || (want == s->told && (want == PX_CHANNEL_DOWN || s->told_gen == hub->gen)))
            continue;
        s->told = want;
        s->told_gen = hub->gen;
        s->status(s->owner, want, s->userdata);
    }
    if (--hub->delivering == 0)
        graveyard_sweep(hub);
}

/* ---- subscriptions ---- */

static void entry_maybe_free(channel_hub_t *hub, chan_entry_t *e)
{
    if (e->nsubs > 0 || e->acks > 0 || !list_empty(&e->subs))
        return;
    entry_unhash(hub, e);
    free(e);
}

static void sub_free(channel_hub_t *hub, struct px_channel_sub *s)
{
    chan_entry_t *e = s->entry;
    list_unlink(&s->elink);
    if (!list_empty(&s->dirty))
        list_unlink(&s->dirty);
    free(s);
    if (hub && e)
        entry_maybe_free(hub, e);
}

static void graveyard_sweep(channel_hub_t *hub)
{
    while (hub->graveyard) {
        struct px_channel_sub *s = hub->graveyard;
        hub->graveyard = s->grave;
        sub_free(hub, s);
    }
}

/* Ends one subscription: off its owner's list, its entry's count down (UNSUBSCRIBE at
 * the last one), freed now or once the delivery under way is over. */
static void sub_end(struct px_channel_sub *s)
{
    px_req_t *r = s->owner;
    if (s->rprev)
        s->rprev->rnext = s->rnext;
    else
        r->chan_subs = s->rnext;
    if (s->rnext)
        s->rnext->rprev = s->rprev;
    channel_hub_t *hub = r->worker->channels;
    if (!hub || hub != s->hub) {
        /* The hub closed first (worker shutdown): nothing left to tell Redis. */
        list_init(&s->elink);
        s->entry = NULL;
        sub_free(NULL, s);
        return;
    }
    s->dead = true;
    chan_entry_t *e = s->entry;
    if (--e->nsubs == 0) {
        bool subscribed = e->active || e->acks;
        e->active = false;
        if (hub->state == HUB_READY && subscribed)
            send_one(hub, e, false);
    }
    if (hub->delivering) {
        s->grave = hub->graveyard;
        hub->graveyard = s;
        return;
    }
    sub_free(hub, s);
}

int api_channel_subscribe(px_req_t *r, const char *channel, unsigned flags, px_channel_fn fn,
                          px_channel_status_fn status, void *ud, px_channel_sub_t **out)
{
    if (out)
        *out = NULL;
    if (!channel || !*channel || !fn || (flags & ~(unsigned)PX_CHANNEL_PATTERN) ||
        strlen(channel) > NAME_MAX_LEN)
        return PX_EINVAL;
    channel_hub_t *hub = r->worker->channels;
    if (!hub)
        return PX_EUNAVAIL;
    char name[NAME_MAX_LEN + 128];
    size_t plen = name_prefix(hub, r, name, sizeof(name));
    if (!plen)
        return PX_EINVAL;
    size_t len = plen + strlen(channel);
    memcpy(name + plen, channel, strlen(channel) + 1);
    bool pattern = flags & PX_CHANNEL_PATTERN;
    chan_entry_t *e = entry_find(hub, name, len, pattern);
    if (!e) {
        if (hub->nentries >= hub->nbuckets)
            buckets_grow(hub);
        e = xcalloc(1, sizeof(*e) + len + 1);
        list_init(&e->subs);
        e->pattern = pattern;
        e->len = len;
        memcpy(e->name, name, len + 1);
        e->hash = name_hash(name, len, pattern);
        e->hnext = hub->buckets[e->hash & (hub->nbuckets - 1)];
        hub->buckets[e->hash & (hub->nbuckets - 1)] = e;
        hub->nentries++;
    }
    struct px_channel_sub *s = xcalloc(1, sizeof(*s));
    list_init(&s->dirty);
    s->entry = e;
    s->hub = hub;
    s->owner = r;
    s->fn = fn;
    s->status = status;
    s->userdata = ud;
    s->prefix_len = plen;
    list_push(&e->subs, &s->elink);
    s->rnext = r->chan_subs;
    if (r->chan_subs)
        r->chan_subs->rprev = s;
    r->chan_subs = s;
    /* The first subscriber, or the first since the last one left (an UNSUBSCRIBE may
     * still be on its way: the entry is active again once both are acknowledged). */
    if (e->nsubs++ == 0 && hub->state == HUB_READY)
        send_one(hub, e, true);
    if (hub->state == HUB_IDLE)
        hub_connect(hub);
    mark_dirty(hub, s);
    if (out)
        *out = s;
    return 0;
}

void api_channel_unsubscribe(px_channel_sub_t *s)
{
    if (s && !s->dead)
        sub_end(s);
}

void channel_req_end(px_req_t *r)
{
    while (r->chan_subs)
        sub_end(r->chan_subs);
}

/* ---- publishing ---- */

static int publish(px_req_t *r, const char *channel, const void *data, size_t len)
{
    redis_client_t *client = r->worker->redis;
    if (!client || !redis_is_connected(client))
        return PX_EUNAVAIL;
    char name[NAME_MAX_LEN + 128];
    size_t plen = name_prefix(r->worker->channels, r, name, sizeof(name));
    size_t clen = strlen(channel);
    memcpy(name + plen, channel, clen + 1);
    const char *argv[] = {"PUBLISH", name, data ? data : ""};
    size_t lens[] = {7, plen + clen, data ? len : 0};
    return redis_command(client, 3, argv, lens, NULL, NULL, NULL) ? PX_EUNAVAIL : 0;
}

static bool name_ok(const char *channel)
{
    return channel && *channel && strlen(channel) <= NAME_MAX_LEN;
}

int api_channel_publish(px_req_t *r, const char *channel, const void *data, size_t len)
{
    if (!name_ok(channel) || (!data && len))
        return PX_EINVAL;
    return publish(r, channel, data, len);
}

struct channel_msg {
    channel_msg_t *next;
    const char *channel;
    const void *data;
    size_t len;
};

int channel_msg_add(px_req_t *r, channel_msg_t **list, const char *channel, const void *data,
                    size_t len)
{
    if (!name_ok(channel) || (!data && len))
        return PX_EINVAL;
    channel_msg_t *m = arena_alloc(&r->arena, sizeof(*m));
    m->channel = arena_strndup(&r->arena, channel, strlen(channel));
    m->data = len ? memcpy(arena_alloc(&r->arena, len), data, len) : "";
    m->len = len;
    /* Appended, so they go out in the order they were added. */
    while (*list)
        list = &(*list)->next;
    m->next = NULL;
    *list = m;
    return 0;
}

typedef struct commit_wrap {
    channel_msg_t *msgs;
    px_pg_done_fn cb;
    void *userdata;
} commit_wrap_t;

static void on_commit(px_req_t *r, const px_pg_error_t *err, void *ud)
{
    commit_wrap_t *cw = ud;
    if (!err) {
        for (channel_msg_t *m = cw->msgs; m; m = m->next)
            if (publish(r, m->channel, m->data, m->len) != 0)
                log_debug("channels: \"%s\" not published after commit: Redis is unavailable",
                          m->channel);
    }
    if (cw->cb)
        cw->cb(r, err, cw->userdata);
}

void channel_commit_wrap(px_req_t *r, channel_msg_t *list, px_pg_done_fn *cb, void **ud)
{
    if (!list)
        return;
    /* In the request's memory: a commit whose request ends first never calls back, and
     * this dies with the request. */
    commit_wrap_t *cw = arena_alloc(&r->arena, sizeof(*cw));
    cw->msgs = list;
    cw->cb = *cb;
    cw->userdata = *ud;
    *cb = on_commit;
    *ud = cw;
}

/* ---- the hub ---- */

channel_hub_t *channel_hub_new(worker_t *w)
{
    const config_t *cfg = w->cfg;
    if (!cfg->redis.address || !*cfg->redis.address)
        return NULL;
    channel_hub_t *hub = xcalloc(1, sizeof(*hub));
    if (redis_address_parse(cfg->redis.address, &hub->addr) < 0) {
        free(hub);
        return NULL;
    }
    hub->worker = w;
    hub->loop = w->loop;
    hub->address = xstrdup(cfg->redis.address);
    hub->username = cfg->redis.username ? xstrdup(cfg->redis.username) : NULL;
    hub->password = cfg->redis.password ? xstrdup(cfg->redis.password) : NULL;
    hub->database = (int)cfg->redis.database;
    hub->connect_timeout_ms = cfg->redis.connect_timeout_ms ? cfg->redis.connect_timeout_ms : 500;
    hub->backoff_ms = BACKOFF_MIN_MS;
    hub->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)hub;
    if (!hub->rng)
        hub->rng = 1;
    list_init(&hub->dirty);
    uv_timer_init(hub->loop, &hub->timer);
    hub->timer.data = hub;
    uv_timer_init(hub->loop, &hub->notify);
    hub->notify.data = hub;
    return hub;
}

static void on_hub_timer_closed(uv_handle_t *h)
{
    channel_hub_t *hub = h->data;
    if (--hub->handles_open == 0)
        free(hub);
}

void channel_hub_close(channel_hub_t *hub)
{
    if (!hub || hub->closing)
        return;
    hub->closing = true;
    hub->handles_open = 2; /* the two timers; the connection and a lookup add theirs */
    conn_release(hub);
    if (hub->reader)
        redisReaderFree(hub->reader);
    hub->reader = NULL;
    if (hub->looking_up) {
        hub->handles_open++;
        uv_cancel((uv_req_t *)&hub->lookup);
    }
    for (size_t i = 0; i < hub->nbuckets; i++) {
        for (chan_entry_t *e = hub->buckets[i], *next; e; e = next) {
            next = e->hnext;
            /* Subscriptions stay with their owners, which free them (sub_end). */
            for (link_t *l = e->subs.next, *ln; l != &e->subs; l = ln) {
                ln = l->next;
                list_init(l);
                struct px_channel_sub *s = sub_of(l);
                s->entry = NULL;
                s->hub = NULL;
                if (!list_empty(&s->dirty))
                    list_unlink(&s->dirty);
                list_init(&s->dirty);
            }
            free(e);
        }
    }
    free(hub->buckets);
    hub->buckets = NULL;
    hub->nbuckets = 0;
    free(hub->address);
    free(hub->username);
    free(hub->password);
    free(hub->addr.unix_path);
    free(hub->addr.host);
    uv_close((uv_handle_t *)&hub->timer, on_hub_timer_closed);
    uv_close((uv_handle_t *)&hub->notify, on_hub_timer_closed);
}
