/* test_token_cache.c — server/token_cache.c: a hit only for the very bytes that were put,
 * never past exp + leeway, never for tokens too long to keep, and nothing without a cache. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "token_cache.h"

static auth_caller_t caller(const char *id, const char *role, int64_t exp)
{
    auth_caller_t c = {.exp = exp};
    snprintf(c.id, sizeof(c.id), "%s", id);
    snprintf(c.role, sizeof(c.role), "%s", role);
    return c;
}

static void test_hit_is_exact(void)
{
    token_cache_t *c = token_cache_new(64);
    CHECK_OR_RETURN(c);
    const char *tok = "aaaa.bbbb.cccc";
    auth_caller_t in = caller("u1", "user", 1000), out;
    CHECK(!token_cache_get(c, tok, strlen(tok), 10, 0, &out));
    token_cache_put(c, tok, strlen(tok), &in);
    CHECK(token_cache_get(c, tok, strlen(tok), 10, 0, &out));
    CHECK(!strcmp(out.id, "u1") && !strcmp(out.role, "user") && out.exp == 1000);

    /* One byte different, a prefix, a longer token: misses. */
    CHECK(!token_cache_get(c, "aaaa.bbbb.cccd", 14, 10, 0, &out));
    CHECK(!token_cache_get(c, tok, strlen(tok) - 1, 10, 0, &out));
    CHECK(!token_cache_get(c, "aaaa.bbbb.cccc.", 15, 10, 0, &out));
    token_cache_free(c);
}

static void test_expiry_follows_verify(void)
{
    token_cache_t *c = token_cache_new(8);
    CHECK_OR_RETURN(c);
    const char *tok = "h.p.s";
    auth_caller_t in = caller("u2", "admin", 100), out;
    token_cache_put(c, tok, 5, &in);
    /* auth_jwt_verify: expired once exp + leeway <= now. */
    CHECK(token_cache_get(c, tok, 5, 99, 0, &out));
    CHECK(!token_cache_get(c, tok, 5, 100, 0, &out));
    token_cache_put(c, tok, 5, &in);
    CHECK(token_cache_get(c, tok, 5, 129, 30, &out));
    CHECK(!token_cache_get(c, tok, 5, 130, 30, &out));
    /* An expired entry is dropped: it does not come back with a larger leeway. */
    CHECK(!token_cache_get(c, tok, 5, 100, 1000, &out));
    token_cache_free(c);
}

static void test_many_tokens_replace_not_confuse(void)
{
    token_cache_t *c = token_cache_new(4); /* far fewer slots than tokens */
    CHECK_OR_RETURN(c);
    char tok[64];
    for (int i = 0; i < 200; i++) {
        snprintf(tok, sizeof(tok), "header.payload-%d.signature", i);
        char id[16];
        snprintf(id, sizeof(id), "user%d", i);
        auth_caller_t in = caller(id, "user", 1000);
        token_cache_put(c, tok, strlen(tok), &in);
    }
    int hits = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(tok, sizeof(tok), "header.payload-%d.signature", i);
        auth_caller_t out;
        if (token_cache_get(c, tok, strlen(tok), 1, 0, &out)) {
            char id[16];
            snprintf(id, sizeof(id), "user%d", i);
            CHECK(!strcmp(out.id, id)); /* a hit is always the token's own caller */
            hits++;
        }
    }
    CHECK(hits >= 1 && hits <= 4);
    token_cache_free(c);
}

static void test_limits(void)
{
    CHECK(token_cache_new(0) == NULL);
    auth_caller_t in = caller("u", "user", 1000), out;
    /* No cache: puts are ignored, gets miss. */
    token_cache_put(NULL, "a.b.c", 5, &in);
    CHECK(!token_cache_get(NULL, "a.b.c", 5, 1, 0, &out));
    token_cache_free(NULL);

    token_cache_t *c = token_cache_new(16);
    CHECK_OR_RETURN(c);
    static char big[TOKEN_CACHE_MAX_TOKEN + 2];
    memset(big, 'x', sizeof(big) - 1);
    token_cache_put(c, big, TOKEN_CACHE_MAX_TOKEN + 1, &in);
    CHECK(!token_cache_get(c, big, TOKEN_CACHE_MAX_TOKEN + 1, 1, 0, &out));
    token_cache_put(c, big, TOKEN_CACHE_MAX_TOKEN, &in);
    CHECK(token_cache_get(c, big, TOKEN_CACHE_MAX_TOKEN, 1, 0, &out));
    CHECK(!token_cache_get(c, "", 0, 1, 0, &out));
    token_cache_free(c);
}

int main(void)
{
    RUN(test_hit_is_exact);
    RUN(test_expiry_follows_verify);
    RUN(test_many_tokens_replace_not_confuse);
    RUN(test_limits);
    return check_finish();
}
