/*
 * ticket.c — stream tickets (API.md, Conventions): what a browser's EventSource, which
 * cannot send an Authorization header, passes as ?ticket= instead of a bearer token.
 *
 * A ticket is a short-lived, single-use stand-in for the caller it was issued to:
 *
 *     t1.<nonce: 32 hex>.<expiry: unix seconds>.<sub: hex>.<role>.<HMAC-SHA256: 64 hex>
 *
 * The MAC is keyed from [auth] token_secret for this one purpose (seal.h), so a ticket is
 * never a bearer token nor the reverse, and every host of the cluster can check one
 * without asking anyone. Only "used once" needs shared state: redeeming a ticket sets
 * px:ticket:<nonce> in Redis with NX and a lifetime just past the ticket's, and only the
 * request that set it gets in. While Redis is unreachable nobody can prove a ticket
 * unused, so redemption fails closed with 503 (Retry-After); a bearer token still works.
 *
 * Issued tickets live 60 s. Only the path is ever written to the access log, never the
 * query, so the ticket does not end up there; and ?access_token= is refused outright, so
 * no client is tempted to put a real token in a URL.
 */
#include "ticket.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "revocation.h"
#include "seal.h"
#include "worker.h"

#define TICKET_PURPOSE "panthera stream ticket v1"

static const char hexdigits[] = "0123456789abcdef";

static void hex_encode(char *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hexdigits[p[i] >> 4];
        out[2 * i + 1] = hexdigits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int ticket_mac(const char *secret, const char *body, size_t len, char out[65])
{
    seal_keys_t keys;
    if (seal_keys_derive(secret, strlen(secret), TICKET_PURPOSE, &keys) < 0)
        return -1;
    const void *pieces[] = {body};
    const size_t lens[] = {len};
    return seal_mac_hex(&keys, pieces, lens, 1, out);
}

char *ticket_make(const char *secret, const char *sub, const char *role, int64_t now)
{
    unsigned char nonce[16];
    if (!secret || !*secret || !sub || !role || RAND_bytes(nonce, sizeof(nonce)) != 1)
        return NULL;
    size_t sublen = strlen(sub);
    char *subhex = xmalloc(2 * sublen + 1);
    hex_encode(subhex, sub, sublen);
    char noncehex[33];
    hex_encode(noncehex, nonce, sizeof(nonce));
    char *body = xasprintf("t1.%s.%lld.%s.%s", noncehex, (long long)(now + TICKET_TTL_S),
                           subhex, role);
    free(subhex);
    char mac[65];
    if (ticket_mac(secret, body, strlen(body), mac) < 0) {
        free(body);
        return NULL;
    }
    char *ticket = xasprintf("%s.%s", body, mac);
    free(body);
    return ticket;
}

int ticket_check(const char *secret, const char *ticket, int64_t now, ticket_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!secret || !*secret || !ticket || strncmp(ticket, "t1.", 3) != 0)
        return TICKET_EMALFORMED;
    size_t len = strlen(ticket);
    const char *dot = strrchr(ticket, '.');
    if (len > 512 || !dot || (size_t)(ticket + len - dot - 1) != 64)
        return TICKET_EMALFORMED;
    char mac[65];
    if (ticket_mac(secret, ticket, (size_t)(dot - ticket), mac) < 0)
        return TICKET_EMALFORMED;
    /* Constant time: the MAC is the only secret-dependent thing a caller can probe. */
    unsigned char diff = 0;
    for (int i = 0; i < 64; i++)
        diff |= (unsigned char)(mac[i] ^ dot[1 + i]);
    if (diff)
        return TICKET_EMALFORMED;
    /* Signed by us: the fields are as we wrote them. */
    const char *p = ticket + 3;
    memcpy(out->nonce, p, 32);
    out->nonce[32] = '\0';
    p += 33;
    char *end;
    long long exp = strtoll(p, &end, 10);
    if (*end != '.')
        return TICKET_EMALFORMED;
    p = end + 1;
    const char *subend = strchr(p, '.');
    size_t subhex = (size_t)(subend - p);
    if (subhex % 2 || subhex / 2 >= sizeof(out->sub))
        return TICKET_EMALFORMED;
    for (size_t i = 0; i < subhex / 2; i++) {
        int hi = hex_value(p[2 * i]), lo = hex_value(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return TICKET_EMALFORMED;
        out->sub[i] = (char)(hi * 16 + lo);
    }
    p = subend + 1;
    size_t rolelen = (size_t)(dot - p);
    if (rolelen == 0 || rolelen >= sizeof(out->role))
        return TICKET_EMALFORMED;
    memcpy(out->role, p, rolelen);
    out->exp = exp;
    return exp > now ? 0 : TICKET_EEXPIRED;
}

const char *api_ticket_issue(px_req_t *r, int64_t *expires_in)
{
    if (!r->has_caller)
        return NULL;
    char *t = ticket_make(r->worker->cfg->auth.token_secret, r->caller_id, r->caller_role,
                          (int64_t)time(NULL));
    if (!t)
        return NULL;
    char *copy = arena_strndup(&r->arena, t, strlen(t));
    free(t);
    if (expires_in)
        *expires_in = TICKET_TTL_S;
    return copy;
}

/* ---- redemption ---- */

typedef struct redemption {
    ticket_t ticket;
    void (*resume)(px_req_t *req);
} redemption_t;

static void on_marked(px_req_t *r, const px_redis_reply_t *reply, int err, void *ud)
{
    redemption_t *rd = ud;
    if (err || api_redis_type(reply) == PX_REDIS_ERROR) {
        http_respond_error(r, 503, "unavailable", "stream tickets cannot be checked right now",
                           NULL);
        return;
    }
    if (api_redis_type(reply) == PX_REDIS_NIL) {
        http_respond_error(r, 401, "unauthorized", "this ticket was already used", NULL);
        return;
    }
    r->has_caller = true;
    r->caller_issued_ms = (rd->ticket.exp - TICKET_TTL_S) * 1000;
    snprintf(r->caller_id, sizeof(r->caller_id), "%s", rd->ticket.sub);
    snprintf(r->caller_role, sizeof(r->caller_role), "%s", rd->ticket.role);
    rd->resume(r);
}

int ticket_redeem(px_req_t *r, const char *text, void (*resume)(px_req_t *req))
{
    redemption_t *rd = arena_alloc(&r->arena, sizeof(*rd));
    rd->resume = resume;
    int64_t now = (int64_t)time(NULL);
    int rc = ticket_check(r->worker->cfg->auth.token_secret, text, now, &rd->ticket);
    if (rc) {
        http_respond_error(r, 401, "unauthorized",
                           rc == TICKET_EEXPIRED ? "the ticket has expired" : "invalid ticket",
                           NULL);
        return 1;
    }
    /* Issued TICKET_TTL_S before its expiry (say at that second's start, as a token with
     * only iat), to a caller whose tokens may since be revoked. */
    if (revocation_refused(rd->ticket.sub, (rd->ticket.exp - TICKET_TTL_S) * 1000)) {
        metrics_revoked_refused(METRICS_REVOKED_TICKET);
        http_respond_error(r, 401, "unauthorized", "invalid ticket: revoked", NULL);
        return 1;
    }
    char key[64], ttl[24];
    snprintf(key, sizeof(key), "px:ticket:%s", rd->ticket.nonce);
    /* Kept a little past the ticket's own expiry, so it cannot be used after the mark. */
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(rd->ticket.exp - now + 5) * 1000);
    const char *argv[] = {"SET", key, "1", "NX", "PX", ttl};
    if (api_redis_command(r, 6, argv, NULL, on_marked, rd) != 0)
        http_respond_error(r, 503, "unavailable", "stream tickets cannot be checked right now",
                           NULL);
    return 1;
}
