/*
 * redis_conn.c — the life of the Redis client's connection (see redis.c and redis.h for
 * what callers are promised): connecting, reconnecting with backoff, the records of the
 * commands it carries, their deadlines, the watchdog that tells a hung Redis from a slow
 * command, and closing.
 *
 * Who owns the hiredis context. hiredis 0.14 has firm but unwritten rules about who frees
 * a redisAsyncContext and when; breaking them is the classic hiredis crash (a context
 * freed inside a callback, or used after hiredis freed it). The rules this file keeps:
 *
 *  1. A context is ours from redisAsyncConnect* until it is freed, which happens in
 *     exactly one of two ways. (a) We call redisAsyncFree. (b) hiredis frees it itself:
 *     when the connection cannot be made (it calls onConnect with REDIS_ERR, then frees;
 *     onDisconnect is NOT called because the context never connected), and on a read or
 *     write error or EOF (it calls onDisconnect with REDIS_ERR, then frees). In (b) the
 *     pointer is dead as soon as that callback returns: we forget it there (client->ac =
 *     NULL) and never hand it to hiredis again.
 *  2. Whichever way, before freeing, hiredis calls every pending reply callback with a
 *     NULL reply, and only then onDisconnect. So the first NULL reply is our earliest
 *     notice that the context is going away: on_reply forgets the context right there, and
 *     a command a user issues from that callback fails fast instead of being appended to a
 *     dying context.
 *  3. We never call redisAsyncFree (nor redisAsyncDisconnect, which we do not use at all)
 *     inside a hiredis callback, nor in a function a user may call from one (redis_close,
 *     redis_command, redis_cancel). In 0.14 a free from a reply callback is merely deferred
 *     by the REDIS_IN_CALLBACK flag, but one from onConnect frees the memory that
 *     redisAsyncHandleWrite goes on using, and one from onDisconnect frees it twice. We
 *     free contexts only from our own timer and idle callbacks, where no hiredis frame is
 *     on the stack. Code that decides inside a callback that the connection must go (an
 *     error answer to the handshake PING) asks the watchdog timer to do it.
 *  4. redisAsyncFree is synchronous: before it returns it runs every pending reply
 *     callback (NULL reply, so callers get their errors from inside it) and, if the context
 *     had connected, onDisconnect (REDIS_OK). So we forget the context before calling it,
 *     and our disconnect callback ignores contexts that are no longer current.
 *  5. A new context is made only from a timer or from the name lookup's callback, never
 *     from a hiredis callback: the old context is completely gone by then, so the two can
 *     never be confused (malloc may well hand out the same address again).
 *  6. Each command's record (redis_handle_t) is hiredis's privdata; hiredis calls on_reply
 *     exactly once per command sent — with the reply, or with NULL when the context is
 *     freed. The record must stay allocated until then even when its caller has been
 *     answered (timeout) or has cancelled: such a record is "answered" but still "in
 *     hiredis", and on_reply frees it, throwing the late reply away.
 *  7. Replies belong to hiredis, which frees them when the reply callback returns: a
 *     redis_reply_t is only valid during the user's callback.
 *  8. The adapter's uv_poll_t belongs to the adapter: hiredis's cleanup hook (called while
 *     freeing a context) uv_closes it, and the adapter frees it in a close callback we do
 *     not see. redis_close therefore waits for one more closing pass of the loop after the
 *     last context is gone before calling `done`, so a caller may uv_loop_close from there.
 *
 * What the 0.14 libuv adapter does not do. When epoll reports an error on the socket
 * (POLLERR: a refused TCP connect, a reset connection), libuv stops the poll handle and
 * reports UV_EBADF, which the adapter ignores: hiredis never hears of it. Our timers cover
 * for it: a refused TCP connect fails at connect_timeout_ms instead of at once, and a reset
 * connection is dropped by the watchdog (below) instead of at once; drop() then reads the
 * socket's pending error (SO_ERROR) so the log says "Connection refused", not "timeout".
 * Unix sockets, the usual setup, are not affected: a missing or refused socket fails inside
 * redisAsyncConnectUnix, and a Redis that goes away gives EOF, which hiredis does see.
 * (redisLibuvAttach also leaks its small struct if uv_poll_init fails; it cannot on a
 * valid socket.)
 *
 * Deadlines: one timer over a deadline-ordered list. Every command waiting for a reply is
 * in client->timed, ordered by deadline (call time + command_timeout_ms; with a single
 * timeout for all commands, that is call order, so inserting is appending). One uv_timer,
 * the watchdog, is armed for the earliest deadline; when it fires, every command past its
 * deadline gets REDIS_ETIMEOUT at once and becomes a zombie (rule 6). A command that is
 * answered early only makes the watchdog fire once for nothing. Deadlines use the
 * monotonic clock at the time of the call, not the loop's cached time, so a busy loop
 * iteration does not shorten them.
 *
 * Telling a hung Redis from a slow command. Redis answers in order, so when it stops
 * answering every command behind the first times out too. The connection is considered
 * broken, dropped (redisAsyncFree from the watchdog: the commands still owed fail with
 * REDIS_EUNAVAILABLE) and made again, when DROP_AFTER_TIMEOUTS (3) commands in a row timed
 * out with no reply in between, or when the oldest command Redis owes us (client->owed,
 * in send order, mirrors hiredis's own callback list) has gone unanswered for
 * max(STALL_MS = 1 s, command_timeout_ms) — that catches a hang when traffic is too thin
 * for three timeouts. So with the defaults, a SIGSTOPped Redis costs callers three 100 ms
 * timeouts, then fast REDIS_EUNAVAILABLE until it answers again.
 *
 * Connecting. An attempt is: a name lookup (uv_getaddrinfo, only for a host name: hiredis
 * would call getaddrinfo itself and block the loop), redisAsyncConnect*, then a PING. The
 * client counts as connected only once the PING is answered — a socket that accepts
 * connections is not a Redis that answers (a stopped Redis still completes connects from
 * its listen backlog). The whole attempt has connect_timeout_ms. A failed attempt, a lost
 * connection or a dropped one schedules the next attempt after a backoff of 100 ms
 * doubling to 5 s (+-20 % jitter so workers do not knock in step), reset by a PONG.
 *
 * Every caller's callback runs from this file, through deliver(): from on_reply, the
 * watchdog or the idle handle, never inside the redis_* call that started the work.
 */
#include "redis_internal.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DROP_AFTER_TIMEOUTS 3
#define STALL_MS 1000

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);
static void on_conn_timer(uv_timer_t *timer);
static void on_watchdog(uv_timer_t *timer);
static void watchdog_arm(redis_client_t *client, uint64_t when);

static redis_handle_t *first(const link_t *head, size_t offset)
{
    return (redis_handle_t *)((char *)head->next - offset);
}

#define FIRST_TIMED(c) first(&(c)->timed, offsetof(redis_handle_t, link))
#define FIRST_OWED(c) first(&(c)->owed, offsetof(redis_handle_t, owed))
#define FIRST_DONE(l) first((l), offsetof(redis_handle_t, link))

/* ---- records and callbacks ---- */

static redis_handle_t *req_new(redis_client_t *client, enum req_kind kind, size_t extra)
{
    redis_handle_t *h = xcalloc(1, sizeof(*h) + extra);
    list_init(&h->link);
    list_init(&h->owed);
    h->client = client;
    h->kind = kind;
    return h;
}

redis_handle_t *redis_conn_call_new(redis_client_t *client, enum req_kind kind, size_t extra,
                                    bool has_cb, void *ud)
{
    redis_handle_t *h = req_new(client, kind, extra);
    h->ud = ud;
    h->answered = !has_cb; /* fire and forget: nobody to call back */
    h->deadline = now_ms_monotonic() + (uint64_t)client->command_timeout_ms;
    return h;
}

/* Calls the caller back, once; the record stays for hiredis if it still holds it. */
static void deliver(redis_handle_t *h, const redisReply *reply, redis_errkind_t kind,
                    const char *message)
{
    if (h->answered)
        return;
    h->answered = true;
    redis_error_t err = {.kind = kind, .message = message};
    const redis_error_t *e = reply ? NULL : &err;
    switch (h->kind) {
    case REQ_COMMAND:
    case REQ_EVAL:
        if (h->cb.reply)
            h->cb.reply((const redis_reply_t *)reply, e, h->ud);
        break;
    case REQ_PING:
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            err.kind = REDIS_EUNAVAILABLE;
            err.message = reply->str;
            e = &err;
        }
        if (h->cb.done)
            h->cb.done(e, h->ud);
        break;
    case REQ_AUTH:
    case REQ_SELECT:
    case REQ_HELLO: break;
    }
}

static void on_deliver(uv_idle_t *idle);

/* The command cannot be sent: it fails on the next loop iteration (never inside the call
 * that started it). */
static void fail_later(redis_handle_t *h, redis_errkind_t kind)
{
    redis_client_t *client = h->client;
    if (h->answered) {
        free(h);
        return;
    }
    h->errkind = kind;
    list_push(&client->done, &h->link);
    uv_idle_start(&client->deliver, on_deliver);
}

static void unavailable_message(const redis_client_t *client, char *buf, size_t size)
{
    snprintf(buf, size, "Redis at %s is unavailable: %s", client->address,
             client->why[0] ? client->why : "connecting");
}

/* Hands the command to hiredis. 0, or -1 when hiredis refuses it (the context is being
 * torn down, or out of memory). */
static int send_req(redis_client_t *client, redis_handle_t *h, int argc, const char **argv,
                    const size_t *argvlen)
{
    if (!client->ac ||
        redisAsyncCommandArgv(client->ac, on_reply, h, argc, argv, argvlen) != REDIS_OK)
        return -1;
    h->in_hiredis = true;
    h->sent_at = now_ms_monotonic();
    list_push(&client->owed, &h->owed);
    if (client->state == ST_READY)
        watchdog_arm(client, h->sent_at + client->stall_ms);
    return 0;
}

static void timed_insert(redis_client_t *client, redis_handle_t *h)
{
    link_t *pos = client->timed.prev;
    while (pos != &client->timed &&
           ((redis_handle_t *)((char *)pos - offsetof(redis_handle_t, link)))->deadline >
               h->deadline)
        pos = pos->prev;
    list_insert_after(pos, &h->link);
    watchdog_arm(client, h->deadline);
}

/* The common path of every public call: send now, or fail fast. */
void redis_conn_req_start(redis_client_t *client, redis_handle_t *h, int argc, const char **argv,
                          const size_t *argvlen)
{
    if (client->state == ST_READY && send_req(client, h, argc, argv, argvlen) == 0) {
        if (!h->answered)
            timed_insert(client, h);
        return;
    }
    fail_later(h, REDIS_EUNAVAILABLE);
}

/* ---- connecting ---- */

static void set_why(redis_client_t *client, const char *why)
{
    char line[WHY_MAX];
    snprintf(line, sizeof(line), "%s", why && *why ? why : "unknown error");
    for (char *p = line; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    memcpy(client->why, line, sizeof(line));
}

static void retry_later(redis_client_t *client)
{
    client->state = ST_DOWN;
    if (client->closing)
        return;
    uv_timer_start(&client->conn_timer, on_conn_timer,
                   backoff_next(&client->backoff_ms, BACKOFF_MAX_MS, &client->rng), 0);
}

/* An attempt failed before the connection was up. */
static void attempt_failed(redis_client_t *client, const char *why)
{
    set_why(client, why);
    if (!client->down_logged && !client->closing)
        log_warn("redis: cannot connect to %s, retrying in the background: %s", client->address,
                 client->why);
    else
        log_debug("redis: connection attempt to %s failed: %s", client->address, client->why);
    client->down_logged = true;
    uv_timer_stop(&client->conn_timer);
    retry_later(client);
}

/* The current context is going or gone (rules 1, 2, 4): forget it, try again later. */
static void context_gone(redis_client_t *client, const char *why)
{
    bool was_ready = client->state == ST_READY;
    client->ac = NULL;
    client->timeouts_in_row = 0;
    client->drop_why[0] = '\0';
    if (!was_ready) {
        attempt_failed(client, why);
        return;
    }
    set_why(client, why);
    if (!client->closing && !client->down_logged)
        log_warn("redis: connection to %s lost: %s", client->address, client->why);
    client->down_logged = true;
    uv_timer_stop(&client->conn_timer);
    retry_later(client);
}

/* Frees the current context ourselves. Only from our timer and idle callbacks (rule 3). */
static void drop(redis_client_t *client, const char *why)
{
    redisAsyncContext *ac = client->ac;
    char line[WHY_MAX];
    /* A socket error the adapter did not pass on (see above) says more than a timeout. */
    int err = 0;
    socklen_t len = sizeof(err);
    if (!client->closing && ac->c.fd >= 0 &&
        getsockopt(ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
        snprintf(line, sizeof(line), "%s", strerror(err));
    else
        snprintf(line, sizeof(line), "%s", why);
    if (client->state == ST_READY && !client->closing) {
        log_warn("redis: dropping the connection to %s: %s", client->address, line);
        client->down_logged = true;
    }
    context_gone(client, line);
    redisAsyncFree(ac); /* runs on_reply(NULL) for what it holds, then on_disconnect */
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_client_t *client = ac->data;
    if (status == REDIS_OK) {
        log_debug("redis: connected to %s, waiting for PONG", client->address);
        return;
    }
    /* hiredis frees the context when this returns (rule 1b): on_disconnect will not run. */
    if (client->ac == ac)
        context_gone(client, ac->errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_client_t *client = ac->data;
    UNUSED(status);
    if (client->ac == ac) /* not our own redisAsyncFree (rule 4) */
        context_gone(client, ac->err ? ac->errstr : "connection closed");
}

static void ready(redis_client_t *client)
{
    uv_timer_stop(&client->conn_timer);
    client->state = ST_READY;
    client->backoff_ms = BACKOFF_MIN_MS;
    client->timeouts_in_row = 0;
    if (client->down_logged)
        log_info("redis: connected to %s again", client->address);
    else
        log_info("redis: connected to %s", client->address);
    client->down_logged = false;
    client->why[0] = '\0';
}

/* A handshake command whose reply nobody is called back with. */
static int send_setup(redis_client_t *client, enum req_kind kind, int argc, const char **argv)
{
    redis_handle_t *h = req_new(client, kind, 0);
    h->answered = true;
    if (send_req(client, h, argc, argv, NULL) < 0) {
        free(h);
        return -1;
    }
    return 0;
}

/* Makes a context for `ip` (NULL: the unix socket) and sends the handshake: AUTH and
 * SELECT when configured, then PING. They go out together; replies come in order, so by
 * the PONG every earlier answer is in (see on_reply). */
static void context_open(redis_client_t *client, const char *ip)
{
    redisAsyncContext *ac =
        ip ? redisAsyncConnect(ip, client->port) : redisAsyncConnectUnix(client->unix_path);
    if (!ac) {
        attempt_failed(client, "out of memory");
        return;
    }
    if (ac->err) {
        char why[WHY_MAX];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac); /* not attached, no callbacks: frees at once */
        attempt_failed(client, why);
        return;
    }
    if (redisLibuvAttach(ac, client->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        attempt_failed(client, "cannot watch the socket");
        return;
    }
    ac->data = client;
    /* After the attach: setting the connect callback asks the adapter to watch writes. */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    client->ac = ac;
    client->state = ST_HANDSHAKE;
    char db[16];
    snprintf(db, sizeof(db), "%d", client->database);
    const char *auth[] = {"AUTH", client->username ? client->username : client->password,
                          client->password};
    const char *select[] = {"SELECT", db};
    if ((client->password && send_setup(client, REQ_AUTH, client->username ? 3 : 2, auth)) ||
        (client->database > 0 && send_setup(client, REQ_SELECT, 2, select)) ||
        send_setup(client, REQ_HELLO, 1, (const char *[]){"PING"}))
        drop(client, "cannot send the handshake");
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    redis_client_t *client = req->data;
    client->looking_up = false;
    char ip[INET6_ADDRSTRLEN] = "";
    if (status == 0) {
        int n = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
            n++;
        struct addrinfo *ai = res;
        for (unsigned i = n ? client->attempt % (unsigned)n : 0; ai && i > 0; i--)
            ai = ai->ai_next;
        if (ai && ai->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip));
        else if (ai && ai->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
    }
    uv_freeaddrinfo(res);
    if (client->closing) {
        uv_idle_start(&client->deliver, on_deliver); /* close_step goes on */
        return;
    }
    if (client->lookup_abandoned) {
        char why[WHY_MAX];
        snprintf(why, sizeof(why), "looking up %s took longer than %d ms", client->host,
                 client->connect_timeout_ms);
        attempt_failed(client, why);
        return;
    }
    if (status < 0 || !ip[0]) {
        char why[WHY_MAX];
        snprintf(why, sizeof(why), "cannot look up %s: %s", client->host,
                 status < 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
        attempt_failed(client, why);
        return;
    }
    context_open(client, ip);
}

static void connect_start(redis_client_t *client)
{
    client->attempt++;
    uv_timer_start(&client->conn_timer, on_conn_timer, (uint64_t)client->connect_timeout_ms, 0);
    if (client->unix_path || client->host_numeric) {
        context_open(client, client->unix_path ? NULL : client->host);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    client->lookup.data = client;
    int rc = uv_getaddrinfo(client->loop, &client->lookup, on_lookup, client->host, NULL, &hints);
    if (rc < 0) {
        char why[WHY_MAX];
        snprintf(why, sizeof(why), "cannot look up %s: %s", client->host, uv_strerror(rc));
        attempt_failed(client, why);
        return;
    }
    client->state = ST_LOOKUP;
    client->looking_up = true;
    client->lookup_abandoned = false;
}

static void on_conn_timer(uv_timer_t *timer)
{
    redis_client_t *client = timer->data;
    char why[WHY_MAX];
    switch (client->state) {
    case ST_DOWN: connect_start(client); break;
    case ST_LOOKUP:
        /* on_lookup still runs (with UV_EAI_CANCELED if the lookup had not started). */
        client->lookup_abandoned = true;
        uv_cancel((uv_req_t *)&client->lookup);
        break;
    case ST_HANDSHAKE:
        snprintf(why, sizeof(why), "no answer to PING within %d ms", client->connect_timeout_ms);
        drop(client, why);
        break;
    case ST_READY: break;
    }
}

void redis_conn_start(redis_client_t *client)
{
    client->stall_ms =
        client->command_timeout_ms > STALL_MS ? (uint64_t)client->command_timeout_ms : STALL_MS;
    client->backoff_ms = BACKOFF_MIN_MS;
    client->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)client;
    if (!client->rng)
        client->rng = 1;
    list_init(&client->timed);
    list_init(&client->owed);
    list_init(&client->done);
    uv_timer_init(client->loop, &client->conn_timer);
    client->conn_timer.data = client;
    uv_timer_init(client->loop, &client->watchdog);
    client->watchdog.data = client;
    uv_idle_init(client->loop, &client->deliver);
    client->deliver.data = client;
    connect_start(client);
}

/* ---- replies, deadlines and the watchdog ---- */

static bool is_noscript(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR && reply->len >= 8 &&
           !strncmp(reply->str, "NOSCRIPT", 8);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redis_handle_t *h = privdata;
    redis_client_t *client = h->client;
    const redisReply *reply = r;
    list_unlink(&h->owed);
    h->in_hiredis = false;
    char msg[WHY_MAX + 64];
    if (!reply) {
        /* The context is being freed (rule 2). If hiredis does it on its own, this is the
         * first we hear of it. */
        if (ac == client->ac)
            context_gone(client, ac->err ? ac->errstr : "connection closed");
        if (client->closing)
            snprintf(msg, sizeof(msg), "the Redis client is closing");
        else
            snprintf(msg, sizeof(msg), "connection to Redis at %s lost: %s", client->address,
                     client->why);
        list_unlink(&h->link);
        deliver(h, NULL, client->closing ? REDIS_ECANCELLED : REDIS_EUNAVAILABLE, msg);
        free(h);
        return;
    }
    client->timeouts_in_row = 0;
    if (h->kind == REQ_AUTH || h->kind == REQ_SELECT) {
        if (ac == client->ac && client->state == ST_HANDSHAKE && !client->closing &&
            reply->type == REDIS_REPLY_ERROR && !client->drop_why[0]) {
            snprintf(client->drop_why, sizeof(client->drop_why), "Redis refused %s: %s",
                     h->kind == REQ_AUTH ? "AUTH" : "SELECT", reply->str);
            watchdog_arm(client, now_ms_monotonic());
        }
        free(h);
        return;
    }
    if (h->kind == REQ_HELLO) {
        if (ac == client->ac && client->state == ST_HANDSHAKE && !client->closing) {
            if (client->drop_why[0]) {
                /* AUTH or SELECT was refused: that is the reason, not the NOAUTH after it. */
            } else if (reply->type != REDIS_REPLY_ERROR) {
                ready(client);
            } else {
                snprintf(client->drop_why, sizeof(client->drop_why), "Redis answered PING with: %s",
                         reply->str);
                watchdog_arm(client, now_ms_monotonic());
            }
        }
        free(h);
        return;
    }
    bool resend_failed = false;
    if (h->kind == REQ_EVAL && (!h->answered || !h->cb.reply) && h->argv[1] == h->sha &&
        !client->closing && ac == client->ac && is_noscript(reply)) {
        /* Redis does not know the script (yet, or since a restart): EVAL loads it. Same
         * record, same deadline, same place in client->timed. Not for a caller who has
         * given up (timeout, cancel): EVALSHA did not run the script, so nothing did. */
        h->argv[0] = "EVAL";
        h->argv[1] = h->source;
        h->argvlen[0] = 4;
        h->argvlen[1] = h->source_len;
        if (send_req(client, h, h->argc, h->argv, h->argvlen) == 0)
            return;
        resend_failed = true;
    }
    list_unlink(&h->link);
    if (client->closing) {
        deliver(h, NULL, REDIS_ECANCELLED, "the Redis client is closing");
    } else if (resend_failed) {
        unavailable_message(client, msg, sizeof(msg));
        deliver(h, NULL, REDIS_EUNAVAILABLE, msg);
    } else {
        deliver(h, reply, 0, NULL);
    }
    free(h);
}

/* Makes sure the watchdog fires no later than `when` (monotonic ms). */
static void watchdog_arm(redis_client_t *client, uint64_t when)
{
    if (client->handles_closing || (client->watchdog_due && client->watchdog_due <= when))
        return;
    /* The loop's clock is never ahead of the monotonic clock: it cannot fire early. */
    uint64_t now = uv_now(client->loop);
    uv_timer_start(&client->watchdog, on_watchdog, when > now ? when - now : 0, 0);
    client->watchdog_due = when;
}

static void on_watchdog(uv_timer_t *timer)
{
    redis_client_t *client = timer->data;
    client->watchdog_due = 0;
    if (client->closing)
        return; /* close_step cancels everything on this iteration or the next */
    uint64_t now = now_ms_monotonic();
    char msg[96];
    snprintf(msg, sizeof(msg), "no reply from Redis within %d ms", client->command_timeout_ms);
    /* Pop one at a time: a callback may cancel other commands. */
    while (!list_empty(&client->timed) && FIRST_TIMED(client)->deadline <= now) {
        redis_handle_t *h = FIRST_TIMED(client);
        list_unlink(&h->link);
        if (h->in_hiredis)
            client->timeouts_in_row++;
        deliver(h, NULL, REDIS_ETIMEOUT, msg);
        if (!h->in_hiredis)
            free(h);
    }
    if (client->ac && !client->closing) {
        char why[WHY_MAX];
        why[0] = '\0';
        if (client->drop_why[0]) {
            snprintf(why, sizeof(why), "%s", client->drop_why);
        } else if (client->state == ST_READY && client->timeouts_in_row >= DROP_AFTER_TIMEOUTS) {
            snprintf(why, sizeof(why), "%d commands in a row got no reply within %d ms",
                     client->timeouts_in_row, client->command_timeout_ms);
        } else if (client->state == ST_READY && !list_empty(&client->owed) &&
                   now - FIRST_OWED(client)->sent_at >= client->stall_ms) {
            snprintf(why, sizeof(why), "no reply from Redis for %" PRIu64 " ms",
                     now - FIRST_OWED(client)->sent_at);
        }
        if (why[0])
            drop(client, why);
    }
    if (!list_empty(&client->timed))
        watchdog_arm(client, FIRST_TIMED(client)->deadline);
    if (client->state == ST_READY && !list_empty(&client->owed))
        watchdog_arm(client, FIRST_OWED(client)->sent_at + client->stall_ms);
}

/* ---- closing ---- */

static void on_last_closed(uv_handle_t *handle)
{
    redis_client_t *client = handle->data;
    redis_close_cb cb = client->close_cb;
    void *ud = client->close_ud;
    free(client->address);
    free(client->unix_path);
    free(client->host);
    free(client->username);
    free(client->password);
    free(client);
    if (cb)
        cb(ud);
}

/* A closing pass after the one that ran the adapter's close callback, if any (rule 8). */
static void on_timers_closed(uv_handle_t *handle)
{
    redis_client_t *client = handle->data;
    uv_close((uv_handle_t *)&client->deliver, on_last_closed);
}

/* Runs from the idle handle (outside every hiredis callback) until everything is done. */
static void close_step(redis_client_t *client)
{
    if (client->handles_closing)
        return;
    if (client->ac)
        drop(client, "the Redis client is closing"); /* owed commands: REDIS_ECANCELLED */
    uv_timer_stop(&client->conn_timer);
    if (client->looking_up) {
        uv_cancel((uv_req_t *)&client->lookup);
        uv_idle_stop(&client->deliver); /* on_lookup starts it again */
        return;
    }
    if (!list_empty(&client->done))
        return; /* failures queued meanwhile: delivered on the next iteration */
    /* Every command waiting for a reply was in hiredis and got its NULL reply above. */
    client->handles_closing = true;
    uv_idle_stop(&client->deliver);
    uv_timer_stop(&client->watchdog);
    uv_close((uv_handle_t *)&client->conn_timer, NULL);
    uv_close((uv_handle_t *)&client->watchdog, on_timers_closed);
}

/* Delivers what failed fast before this iteration; what the callbacks start or fail waits
 * for the next one, so a caller retrying in a tight loop cannot starve the loop. */
static void on_deliver(uv_idle_t *idle)
{
    redis_client_t *client = idle->data;
    link_t batch;
    list_move(&batch, &client->done);
    while (!list_empty(&batch)) {
        redis_handle_t *h = FIRST_DONE(&batch);
        list_unlink(&h->link); /* redis_cancel may unlink other entries meanwhile */
        char msg[WHY_MAX + 64];
        redis_errkind_t kind = client->closing ? REDIS_ECANCELLED : h->errkind;
        if (kind == REDIS_ECANCELLED)
            snprintf(msg, sizeof(msg), "the Redis client is closing");
        else
            unavailable_message(client, msg, sizeof(msg));
        deliver(h, NULL, kind, msg);
        free(h);
    }
    if (client->closing)
        close_step(client);
    else if (list_empty(&client->done))
        uv_idle_stop(idle);
}

void redis_conn_close(redis_client_t *client)
{
    uv_idle_start(&client->deliver, on_deliver);
}
