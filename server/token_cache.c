/*
 * token_cache.c — bearer tokens this worker has verified, remembered until they expire.
 *
 * Verifying an HS256 token costs two base64url decodes, two JSON parses and an HMAC: about
 * a third of the CPU of an authenticated request served from Redis. A client sends the
 * same token on every request until it expires, and a verdict about a token never changes
 * while the secret, the issuer and the leeway stay the same — and those change only at a
 * reload, which starts new worker processes with empty caches. So the gateway asks this
 * cache first and verifies only what it has not seen.
 *
 * What keeps it as strict as verifying every time:
 *  - The key is the whole token, compared byte for byte (CRYPTO_memcmp) with what was
 *    verified; a slot's index is only a hint. No token is ever accepted that was not
 *    accepted, in full, by auth_jwt_verify in this process.
 *  - Expiry is checked on every hit with the token's own exp, by the same rule as
 *    auth_jwt_verify (expired once exp + leeway <= now). nbf and iat cannot turn a token
 *    invalid later: time only moves past them.
 *  - Refusals are never cached: a forger gains nothing from the cache, and cannot push
 *    valid entries out faster than by sending valid tokens of their own.
 *  - The index hash is keyed with random bytes per process, so which tokens share a slot
 *    cannot be arranged from outside.
 *
 * Direct-mapped, one token per slot, a newer token replaces an older one. Memory is
 * entries x ~600 bytes per worker ([auth] token_cache, default 1024 slots, 0 turns it off).
 */
#include "token_cache.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "util.h"

typedef struct slot {
    uint16_t len; /* 0: empty */
    auth_caller_t caller;
    char token[TOKEN_CACHE_MAX_TOKEN];
} slot_t;

struct token_cache {
    size_t mask;
    uint64_t seed[2];
    slot_t *slots;
};

token_cache_t *token_cache_new(size_t entries)
{
    if (entries == 0)
        return NULL;
    size_t n = 1;
    while (n < entries)
        n <<= 1;
    token_cache_t *c = xcalloc(1, sizeof(*c));
    c->mask = n - 1;
    c->slots = xcalloc(n, sizeof(slot_t));
    if (RAND_bytes((unsigned char *)c->seed, sizeof(c->seed)) != 1) {
        /* Without random bytes the index is merely predictable, never wrong. */
        c->seed[0] = (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ull;
        c->seed[1] = (uint64_t)(uintptr_t)c->slots;
    }
    return c;
}

void token_cache_free(token_cache_t *c)
{
    if (!c)
        return;
    OPENSSL_cleanse(c->slots, (c->mask + 1) * sizeof(slot_t));
    free(c->slots);
    free(c);
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* A keyed hash of the token's bytes: eight at a time through a multiply-xorshift. */
static size_t slot_index(const token_cache_t *c, const char *token, size_t len)
{
    uint64_t h = c->seed[0] ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, token + i, 8);
        h = mix(h ^ w ^ c->seed[1]);
    }
    uint64_t tail = 0;
    memcpy(&tail, token + i, len - i);
    return (size_t)(mix(h ^ tail ^ c->seed[1]) & c->mask);
}

bool token_cache_get(token_cache_t *c, const char *token, size_t len, int64_t now,
                     int64_t leeway_seconds, auth_caller_t *out)
{
    if (!c || len == 0 || len > TOKEN_CACHE_MAX_TOKEN)
        return false;
    slot_t *s = &c->slots[slot_index(c, token, len)];
    if (s->len != len || CRYPTO_memcmp(s->token, token, len) != 0)
        return false;
    int64_t until = s->caller.exp > INT64_MAX - leeway_seconds ? INT64_MAX
                                                               : s->caller.exp + leeway_seconds;
    if (until <= now) {
        s->len = 0;
        return false;
    }
    *out = s->caller;
    return true;
}

void token_cache_put(token_cache_t *c, const char *token, size_t len, const auth_caller_t *caller)
{
    if (!c || len == 0 || len > TOKEN_CACHE_MAX_TOKEN)
        return;
    slot_t *s = &c->slots[slot_index(c, token, len)];
    memcpy(s->token, token, len);
    s->len = (uint16_t)len;
    s->caller = *caller;
}
