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
#include "channel_internal.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "request.h"
#include "worker.h"

static void on_notify(uv_timer_t *t);
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

/* "px:<db>:<plugin>:" into `out` (PREFIX_MAX bytes); its length, 0 when it does not fit. */
static size_t name_prefix(const channel_hub_t *hub, const char *plugin, char *out)
{
    int n = snprintf(out, PREFIX_MAX, "px:%d:%s:", hub ? hub->database : 0,
                     plugin ? plugin : "host");
    return n > 0 && n < PREFIX_MAX ? (size_t)n : 0;
}

/* ---- (un)subscribing at Redis, and what comes back ---- */

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
    hub->unacked += n;
    channel_send(hub, (int)n + 1, argv, lens);
}

static void send_one(channel_hub_t *hub, chan_entry_t *e, bool subscribe)
{
    const char *verb = subscribe ? (e->pattern ? "PSUBSCRIBE" : "SUBSCRIBE")
                                 : (e->pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE");
    send_names(hub, verb, &e, 1);
}

/* Ready: every name with subscribers goes to Redis again, in batches. */
void channel_entries_subscribe(channel_hub_t *hub)
{
    chan_entry_t *batch[2][NAMES_PER_COMMAND];
    size_t n[2] = {0, 0};
    for (size_t i = 0; i < hub->nbuckets; i++) {
        for (chan_entry_t *e = hub->buckets[i]; e; e = e->hnext) {
            if (e->nsubs == 0)
                continue; /* only ended subscriptions not swept yet: nobody wants it */
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

void channel_on_push(channel_hub_t *hub, redisReply *rep)
{
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
    hub->unacked--;
    if (--e->acks > 0)
        return;
    if (e->nsubs == 0) {
        entry_maybe_free(hub, e);
        return;
    }
    e->active = true;
    mark_entry_dirty(hub, e);
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
    char name[NAME_MAX_LEN + PREFIX_MAX];
    size_t plen = name_prefix(hub, r->plugin, name);
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
        channel_connect(hub);
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

/* A publish made after a commit cannot be retried by its caller, and its subscribers
 * (on any host) have no way to learn it was lost while their own subscriber connection
 * stayed up: after an outage this worker's client may come back seconds after the
 * subscribers did (its backoff reaches 5 s, theirs 1 s), and a stream that started in
 * between would wait for its next message. So what finds the client down is held here,
 * in order, and sent once the client is connected again; past HELD_MAX_MSGS or
 * HELD_MAX_BYTES the oldest are dropped (and counted), as they are when the worker ends
 * with Redis still away. A plain px_channel_publish still answers PX_EUNAVAIL instead:
 * its caller can decide. While anything is held, every publish goes behind it. */
#define HELD_MAX_MSGS 10000
#define HELD_MAX_BYTES (8u << 20)
#define HELD_RETRY_MS 100

typedef struct held_msg {
    struct held_msg *next;
    size_t name_len, len;
    char bytes[]; /* the full name, then the data */
} held_msg_t;

static int send_publish(redis_client_t *client, const char *name, size_t name_len,
                        const void *data, size_t len)
{
    const char *argv[] = {"PUBLISH", name, len ? data : ""};
    size_t lens[] = {7, name_len, len};
    return redis_command(client, 3, argv, lens, NULL, NULL, NULL) ? PX_EUNAVAIL : 0;
}

static void held_drop_oldest(channel_hub_t *hub)
{
    held_msg_t *m = hub->held;
    hub->held = m->next;
    if (!hub->held)
        hub->held_tail = &hub->held;
    hub->nheld--;
    hub->held_bytes -= m->name_len + m->len;
    free(m);
}

/* Held messages go once the client is connected and this worker's own subscriptions
 * are made again (if it has any): sent before, they would miss the local subscribers,
 * whose catch-up on PX_CHANNEL_UP may already be over. */
static bool held_can_go(const channel_hub_t *hub)
{
    redis_client_t *client = hub->worker ? hub->worker->redis : NULL;
    return client && redis_is_connected(client) &&
           (hub->state == HUB_IDLE || (hub->state == HUB_READY && hub->unacked == 0));
}

/* Sends what is held, oldest first, while the client takes it. */
static void held_flush(channel_hub_t *hub)
{
    redis_client_t *client = hub->worker ? hub->worker->redis : NULL;
    uint64_t sent = 0;
    while (hub->held && held_can_go(hub)) {
        held_msg_t *m = hub->held;
        if (send_publish(client, m->bytes, m->name_len, m->bytes + m->name_len, m->len))
            break;
        held_drop_oldest(hub);
        sent++;
    }
    if (sent) {
        metrics_channel_held(METRICS_HELD_SENT, sent);
        log_info("channels: Redis is back: sent the %llu publishes held meanwhile",
                 (unsigned long long)sent);
    }
    if (!hub->held)
        uv_timer_stop(&hub->held_timer);
}

static void on_held_timer(uv_timer_t *t)
{
    held_flush(t->data);
}

static void held_add(channel_hub_t *hub, const char *name, size_t name_len, const void *data,
                     size_t len)
{
    uint64_t dropped = 0;
    while (hub->held && (hub->nheld >= HELD_MAX_MSGS ||
                         hub->held_bytes + name_len + len > HELD_MAX_BYTES)) {
        held_drop_oldest(hub);
        dropped++;
    }
    if (name_len + len > HELD_MAX_BYTES) {
        dropped++;
    } else {
        held_msg_t *m = xmalloc(sizeof(*m) + name_len + len);
        m->next = NULL;
        m->name_len = name_len;
        m->len = len;
        memcpy(m->bytes, name, name_len);
        if (len)
            memcpy(m->bytes + name_len, data, len);
        *hub->held_tail = m;
        hub->held_tail = &m->next;
        hub->nheld++;
        hub->held_bytes += name_len + len;
    }
    if (dropped) {
        metrics_channel_held(METRICS_HELD_DROPPED, dropped);
        log_warn("channels: Redis is away and %d publishes are held already: the oldest "
                 "%llu dropped", HELD_MAX_MSGS, (unsigned long long)dropped);
    }
    if (hub->held && !uv_is_active((uv_handle_t *)&hub->held_timer))
        uv_timer_start(&hub->held_timer, on_held_timer, HELD_RETRY_MS, HELD_RETRY_MS);
}

void channel_held_init(channel_hub_t *hub)
{
    hub->held = NULL;
    hub->held_tail = &hub->held;
    uv_timer_init(hub->loop, &hub->held_timer);
    hub->held_timer.data = hub;
}

void channel_held_free(channel_hub_t *hub)
{
    if (hub->nheld) {
        metrics_channel_held(METRICS_HELD_DROPPED, hub->nheld);
        log_warn("channels: the worker ends with Redis away: %zu held publishes dropped",
                 hub->nheld);
    }
    while (hub->held)
        held_drop_oldest(hub);
}

static int publish(px_req_t *r, const char *plugin, const char *channel, const void *data,
                   size_t len, bool hold)
{
    channel_hub_t *hub = r->worker->channels;
    redis_client_t *client = r->worker->redis;
    if (!client || !hub)
        return PX_EUNAVAIL;
    char name[NAME_MAX_LEN + PREFIX_MAX];
    size_t plen = name_prefix(hub, plugin, name);
    size_t clen = strlen(channel);
    if (!plen)
        return PX_EINVAL;
    memcpy(name + plen, channel, clen + 1);
    if (hub->held)
        held_flush(hub);
    if (!hub->held && redis_is_connected(client) &&
        send_publish(client, name, plen + clen, data, len) == 0)
        return 0;
    if (!hold)
        return PX_EUNAVAIL;
    held_add(hub, name, plen + clen, data, len);
    return 0;
}

static bool name_ok(const char *channel)
{
    return channel && *channel && strlen(channel) <= NAME_MAX_LEN;
}

int api_channel_publish(px_req_t *r, const char *channel, const void *data, size_t len)
{
    if (!name_ok(channel) || (!data && len))
        return PX_EINVAL;
    return publish(r, r->plugin, channel, data, len, false);
}

int channel_check(const char *channel, const void *data, size_t len)
{
    return name_ok(channel) && (data || !len) ? 0 : PX_EINVAL;
}

void channel_publish_committed(px_req_t *r, const char *channel, const void *data, size_t len)
{
    /* Held if it finds the client down (above): the caller cannot retry it. */
    publish(r, r->plugin, channel, data, len, true);
}

void channel_publish_host(px_req_t *r, const char *channel, const void *data, size_t len)
{
    if (channel_check(channel, data, len) == 0)
        publish(r, "host", channel, data, len, true);
}

/* ---- the connection's turns ---- */

void channel_entries_reset(channel_hub_t *hub)
{
    for (size_t i = 0; i < hub->nbuckets; i++) {
        for (chan_entry_t *e = hub->buckets[i], *next; e; e = next) {
            next = e->hnext;
            e->acks = 0;
            e->active = false;
            entry_maybe_free(hub, e);
        }
    }
    hub->unacked = 0;
    mark_all_dirty(hub);
}

void channel_entries_free(channel_hub_t *hub)
{
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
            }
            free(e);
        }
    }
    free(hub->buckets);
    hub->buckets = NULL;
    hub->nbuckets = 0;
}
