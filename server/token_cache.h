/* token_cache.h — bearer tokens this worker has verified, remembered until they expire. */
#ifndef PX_TOKEN_CACHE_H
#define PX_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"

/* Tokens longer than this are verified every time (ours are about 250 bytes). */
#define TOKEN_CACHE_MAX_TOKEN 512

typedef struct token_cache token_cache_t;

/* A cache of `entries` slots (rounded up to a power of two); NULL for 0 (no cache). */
token_cache_t *token_cache_new(size_t entries);
void token_cache_free(token_cache_t *c);

/* True, with *out filled, when exactly these bytes were put before and the token is still
 * unexpired at `now` with `leeway_seconds` of skew (the rule auth_jwt_verify applies). */
bool token_cache_get(token_cache_t *c, const char *token, size_t len, int64_t now,
                     int64_t leeway_seconds, auth_caller_t *out);
/* Remember a token auth_jwt_verify has just accepted, with what it said of the caller. */
void token_cache_put(token_cache_t *c, const char *token, size_t len, const auth_caller_t *caller);

#endif
