/*
 * redis.c — the per-worker asynchronous Redis client (hiredis 0.14 on its libuv adapter).
 *
 * Why it looks like this. Redis sits beside PostgreSQL as a cache, a rate limiter and an
 * event bus; when it is down or slow the server must keep answering, degraded. So the
 * client promises two things the rest of the server leans on: a caller is never kept
 * waiting for a connection (no queue: without a working connection a command fails at
 * once with REDIS_EUNAVAILABLE), and a caller never waits longer than its deadline for a
 * reply (REDIS_ETIMEOUT). Everything else — connecting, reconnecting, telling a hung
 * Redis from a slow command — happens in the background, in redis_conn.c, whose essay
 * also gives the rules on who owns the hiredis context.
 *
 * This file is the client as callers see it: making and closing it, the calls, scripts and
 * replies.
 *
 * Callbacks run from hiredis's reply callback (replies, and errors of commands on a
 * context being freed), from the watchdog (timeouts), or from an idle handle on the next
 * loop iteration (commands that failed fast) — never inside a redis_* call, so a callback
 * may call anything, redis_close included; redis_close itself only sets a flag and lets
 * the idle handle do the work outside every callback.
 */
#include "redis_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "log.h"
#include "util.h"

struct redis_script {
    char sha[41];
    size_t len;
    char source[];
};

/* ---- creating ---- */

static int config_value(int value, int dflt, const char *name)
{
    if (value < 0)
        log_error("redis: %s must not be negative (%d)", name, value);
    return value == 0 ? dflt : value;
}

int redis_address_parse(const char *address, redis_address_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!address || !*address) {
        log_error("redis: no address given (unix:/path/to/redis.sock or host:port)");
        return -1;
    }
    if (!strncmp(address, "unix:", 5)) {
        const char *path = address + 5;
        if (!*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            log_error("redis: bad unix socket path in '%s' (empty or longer than %zu bytes)",
                      address, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return -1;
        }
        out->unix_path = xstrdup(path);
        return 0;
    }
    const char *colon = strrchr(address, ':');
    long port = 0;
    if (!colon || colon == address || parse_int(colon + 1, 1, 65535, &port) < 0)
        goto fail;
    const char *host = address;
    size_t len = (size_t)(colon - address);
    if (host[0] == '[') {
        if (len < 3 || host[len - 1] != ']')
            goto fail;
        host++;
        len -= 2;
    } else if (memchr(host, ':', len)) {
        goto fail; /* an IPv6 address needs its brackets: "[::1]:6379" */
    }
    out->host = xstrndup(host, len);
    out->port = (int)port;
    unsigned char addr[sizeof(struct in6_addr)];
    out->host_numeric =
        inet_pton(AF_INET, out->host, addr) == 1 || inet_pton(AF_INET6, out->host, addr) == 1;
    return 0;

fail:
    log_error("redis: bad address '%s' (expected unix:/path/to/redis.sock or host:port)", address);
    return -1;
}

static int parse_address(redis_client_t *client, const char *address)
{
    redis_address_t a;
    if (redis_address_parse(address, &a) < 0)
        return -1;
    client->unix_path = a.unix_path;
    client->host = a.host;
    client->port = a.port;
    client->host_numeric = a.host_numeric;
    return 0;
}

redis_client_t *redis_new(uv_loop_t *loop, const redis_config_t *cfg)
{
    if (!loop || !cfg)
        return NULL;
    redis_client_t *client = xcalloc(1, sizeof(*client));
    client->loop = loop;
    client->command_timeout_ms = config_value(
        cfg->command_timeout_ms, REDIS_DEFAULT_COMMAND_TIMEOUT_MS, "command_timeout_ms");
    client->connect_timeout_ms = config_value(
        cfg->connect_timeout_ms, REDIS_DEFAULT_CONNECT_TIMEOUT_MS, "connect_timeout_ms");
    if (client->command_timeout_ms < 0 || client->connect_timeout_ms < 0)
        goto fail;
    if (parse_address(client, cfg->address) < 0 || cfg->database < 0 ||
        (cfg->username && !cfg->password))
        goto fail;
    client->address = xstrdup(cfg->address);
    client->username = cfg->username ? xstrdup(cfg->username) : NULL;
    client->password = cfg->password ? xstrdup(cfg->password) : NULL;
    client->database = cfg->database;
    redis_conn_start(client);
    return client;

fail:
    free(client->unix_path);
    free(client->host);
    free(client);
    return NULL;
}

bool redis_is_connected(const redis_client_t *client)
{
    return client && !client->closing && client->state == ST_READY;
}

/* ---- closing ---- */

void redis_close(redis_client_t *client, redis_close_cb done, void *ud)
{
    if (!client || client->closing)
        return;
    client->closing = true;
    client->close_cb = done;
    client->close_ud = ud;
    redis_conn_close(client);
}

/* ---- the public calls ---- */

/* Commands that would make hiredis deliver several replies to one callback, or none, or
 * that would change the shared connection under every other caller (its database, user
 * or protocol, or close it). */
static bool refused(const char *name, size_t len)
{
    static const char *const names[] = {"SUBSCRIBE",    "PSUBSCRIBE",   "SSUBSCRIBE", "UNSUBSCRIBE",
                                        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",    "SELECT",
                                        "AUTH",         "HELLO",        "RESET",      "QUIT"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strlen(names[i]) == len && !strncasecmp(names[i], name, len))
            return true;
    return false;
}

static int check_args(int argc, const char **argv)
{
    if (argc < 0 || (argc > 0 && !argv))
        return -EINVAL;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return -EINVAL;
    return 0;
}

static size_t arg_len(const char **argv, const size_t *argvlen, int i)
{
    return argvlen ? argvlen[i] : strlen(argv[i]);
}

int redis_command(redis_client_t *client, int argc, const char **argv, const size_t *argvlen,
                  redis_cb cb, void *ud, redis_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!client || argc < 1 || check_args(argc, argv) < 0 ||
        refused(argv[0], arg_len(argv, argvlen, 0)))
        return -EINVAL;
    if (client->closing)
        return -ESHUTDOWN;
    if (!cb && client->state != ST_READY)
        return 0; /* fire and forget, and nowhere to send it */
    redis_handle_t *h = redis_conn_call_new(client, REQ_COMMAND, 0, cb != NULL, ud);
    h->cb.reply = cb;
    redis_handle_t *handle = cb ? h : NULL; /* a silent one may be gone below */
    redis_conn_req_start(client, h, argc, argv, argvlen);
    if (handle_out)
        *handle_out = handle;
    return 0;
}

int redis_ping(redis_client_t *client, redis_done_cb cb, void *ud, redis_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!client)
        return -EINVAL;
    if (client->closing)
        return -ESHUTDOWN;
    if (!cb && client->state != ST_READY)
        return 0;
    redis_handle_t *h = redis_conn_call_new(client, REQ_PING, 0, cb != NULL, ud);
    h->cb.done = cb;
    redis_handle_t *handle = cb ? h : NULL;
    redis_conn_req_start(client, h, 1, (const char *[]){"PING"}, NULL);
    if (handle_out)
        *handle_out = handle;
    return 0;
}

void redis_cancel(redis_handle_t *handle)
{
    if (!handle || handle->answered)
        return;
    handle->answered = true;
    list_unlink(&handle->link); /* from timed or done */
    if (!handle->in_hiredis)
        free(handle); /* else on_reply frees it (rule 6) */
}

redis_script_t *redis_script_new(const char *source)
{
    if (!source)
        return NULL;
    size_t len = strlen(source);
    redis_script_t *script = xmalloc(sizeof(*script) + len + 1);
    memcpy(script->source, source, len + 1);
    script->len = len;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(source, len, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        log_error("redis: cannot compute a SHA1 with OpenSSL");
        free(script);
        return NULL;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(script->sha + 2 * i, 3, "%02x", md[i]);
    return script;
}

void redis_script_free(redis_script_t *script)
{
    free(script);
}

const char *redis_script_sha(const redis_script_t *script)
{
    return script ? script->sha : NULL;
}

int redis_eval(redis_client_t *client, const redis_script_t *script, int numkeys, int argc,
               const char **argv, const size_t *argvlen, redis_cb cb, void *ud,
               redis_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!client || !script || numkeys < 0 || numkeys > argc || check_args(argc, argv) < 0)
        return -EINVAL;
    if (client->closing)
        return -ESHUTDOWN;
    if (!cb && client->state != ST_READY)
        return 0;
    /* One allocation: the record, argv, argvlen, then the bytes (source, numkeys, args). */
    char nk[16];
    int nklen = snprintf(nk, sizeof(nk), "%d", numkeys);
    int n = 3 + argc;
    size_t bytes = script->len + 1 + (size_t)nklen + 1;
    for (int i = 0; i < argc; i++)
        bytes += arg_len(argv, argvlen, i) + 1;
    size_t arrays = (size_t)n * (sizeof(char *) + sizeof(size_t));
    redis_handle_t *h = redis_conn_call_new(client, REQ_EVAL, arrays + bytes, cb != NULL, ud);
    h->cb.reply = cb;
    h->argc = n;
    h->argv = (const char **)(h + 1);
    h->argvlen = (size_t *)(h->argv + n);
    char *p = (char *)(h->argvlen + n);
    memcpy(h->sha, script->sha, sizeof(h->sha));
    h->source = p;
    h->source_len = script->len;
    memcpy(p, script->source, script->len + 1);
    p += script->len + 1;
    h->argv[0] = "EVALSHA";
    h->argvlen[0] = 7;
    h->argv[1] = h->sha;
    h->argvlen[1] = 40;
    h->argv[2] = p;
    h->argvlen[2] = (size_t)nklen;
    memcpy(p, nk, (size_t)nklen + 1);
    p += nklen + 1;
    for (int i = 0; i < argc; i++) {
        size_t len = arg_len(argv, argvlen, i);
        memcpy(p, argv[i], len);
        p[len] = '\0';
        h->argv[3 + i] = p;
        h->argvlen[3 + i] = len;
        p += len + 1;
    }
    redis_handle_t *handle = cb ? h : NULL;
    redis_conn_req_start(client, h, h->argc, h->argv, h->argvlen);
    if (handle_out)
        *handle_out = handle;
    return 0;
}

/* ---- replies ---- */

static const redisReply *raw(const redis_reply_t *reply)
{
    return (const redisReply *)reply;
}

redis_reply_type_t redis_reply_type(const redis_reply_t *reply)
{
    switch (reply ? raw(reply)->type : REDIS_REPLY_NIL) {
    case REDIS_REPLY_STRING: return REDIS_TYPE_STRING;
    case REDIS_REPLY_ARRAY: return REDIS_TYPE_ARRAY;
    case REDIS_REPLY_INTEGER: return REDIS_TYPE_INTEGER;
    case REDIS_REPLY_STATUS: return REDIS_TYPE_STATUS;
    case REDIS_REPLY_ERROR: return REDIS_TYPE_ERROR;
    default: return REDIS_TYPE_NIL;
    }
}

int64_t redis_reply_integer(const redis_reply_t *reply)
{
    return reply && raw(reply)->type == REDIS_REPLY_INTEGER ? (int64_t)raw(reply)->integer : 0;
}

const char *redis_reply_string(const redis_reply_t *reply, size_t *len)
{
    int type = reply ? raw(reply)->type : REDIS_REPLY_NIL;
    bool text =
        type == REDIS_REPLY_STRING || type == REDIS_REPLY_STATUS || type == REDIS_REPLY_ERROR;
    if (len)
        *len = text ? raw(reply)->len : 0;
    return text ? raw(reply)->str : NULL;
}

size_t redis_reply_count(const redis_reply_t *reply)
{
    return reply && raw(reply)->type == REDIS_REPLY_ARRAY ? raw(reply)->elements : 0;
}

const redis_reply_t *redis_reply_element(const redis_reply_t *reply, size_t i)
{
    if (i >= redis_reply_count(reply))
        return NULL;
    return (const redis_reply_t *)raw(reply)->element[i];
}

const char *redis_errkind_name(redis_errkind_t kind)
{
    switch (kind) {
    case REDIS_EUNAVAILABLE: return "unavailable";
    case REDIS_ETIMEOUT: return "timeout";
    case REDIS_ECANCELLED: return "cancelled";
    }
    return "unknown";
}
