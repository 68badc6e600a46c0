/*
 * channel_conn.c — the life of a worker's Redis subscriber connection (see the essay atop
 * channel.c for why it exists and what rides on it): connecting by [redis] address (a unix
 * socket, or a host looked up off the loop), AUTH when configured, the PING that makes it
 * ready, a PING every second while ready (no byte for SILENCE_MAX_MS and it is dropped),
 * and reconnecting after a backoff of 100 ms doubling to 1 s. It owns no subscription:
 * once ready, or once lost, it hands over to channel.c.
 *
 * Each attempt gets a fresh handle (sub_conn_t), closed and freed on its own, so a late
 * callback of an abandoned attempt is recognised (conn->hub NULL, or not hub->conn) and
 * ignored instead of touching the next one. Commands are formatted by hiredis
 * (redisFormatCommandArgv) and replies parsed by its redisReader: the protocol is
 * hiredis's, the connection ours.
 */
#include "channel_internal.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "worker.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define PING_EVERY_MS 1000
#define SILENCE_MAX_MS 3000

static void on_timer(uv_timer_t *t);
static void hub_down(channel_hub_t *hub, const char *why);

static void on_cmd_written(uv_write_t *wr, int status)
{
    UNUSED(status); /* a failed write shows up as a read error or as silence */
    out_cmd_t *cmd = (out_cmd_t *)wr;
    redisFreeCommand(cmd->text);
    free(cmd);
}

void channel_send(channel_hub_t *hub, int argc, const char **argv, const size_t *lens)
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
    channel_entries_reset(hub);
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
    channel_entries_subscribe(hub);
    uv_timer_start(&hub->timer, on_timer, PING_EVERY_MS, 0);
}

/* Errors end the connection; during the handshake the replies only count down to the
 * PONG; after it everything is channel.c's. */
static void on_reply(channel_hub_t *hub, redisReply *rep)
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
    channel_on_push(hub, rep);
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
        on_reply(hub, reply);
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
        channel_send(hub, hub->username ? 3 : 2, auth, NULL);
        hub->handshake++;
    }
    channel_send(hub, 1, (const char *[]){"PING"}, NULL);
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

void channel_connect(channel_hub_t *hub)
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
    case HUB_DOWN: channel_connect(hub); break;
    case HUB_CONNECTING: hub_down(hub, "no answer to PING in time"); break;
    case HUB_READY:
        if (uv_now(hub->loop) - hub->last_heard >= SILENCE_MAX_MS) {
            hub_down(hub, "no answer to PING for 3 s");
            break;
        }
        channel_send(hub, 1, (const char *[]){"PING"}, NULL);
        uv_timer_start(&hub->timer, on_timer, PING_EVERY_MS, 0);
        break;
    case HUB_IDLE: break;
    }
}

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
    channel_held_init(hub);
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
    hub->handles_open = 3; /* the three timers; the connection and a lookup add theirs */
    conn_release(hub);
    if (hub->reader)
        redisReaderFree(hub->reader);
    hub->reader = NULL;
    if (hub->looking_up) {
        hub->handles_open++;
        uv_cancel((uv_req_t *)&hub->lookup);
    }
    channel_entries_free(hub);
    channel_held_free(hub);
    free(hub->address);
    free(hub->username);
    free(hub->password);
    free(hub->addr.unix_path);
    free(hub->addr.host);
    uv_close((uv_handle_t *)&hub->timer, on_hub_timer_closed);
    uv_close((uv_handle_t *)&hub->notify, on_hub_timer_closed);
    uv_close((uv_handle_t *)&hub->held_timer, on_hub_timer_closed);
}
