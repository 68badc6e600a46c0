/* auth.h — HS256 JWT bearer tokens: verify, sign, and pull the token out of Authorization. */
#ifndef PX_AUTH_H
#define PX_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* A longer token is refused before a single byte of it is decoded. */
#define AUTH_MAX_TOKEN 8192
/* RFC 7518 §3.2: an HS256 key MUST be at least as long as the hash (32 bytes). Both
 * auth_jwt_verify and auth_jwt_sign refuse a shorter secret; the config loader should
 * check it at startup so the refusal is one clear line, not a 401 on every request. */
#define AUTH_MIN_SECRET 32

/* Every auth_ function that can fail returns 0 or one of these. When a token has several
 * faults, the first in this order is reported: size and shape, header, signature, payload
 * JSON, exp present, time claims well-formed, expired, not yet valid, issuer, sub and role. */
enum auth_error {
    AUTH_EMALFORMED = -1, /* over AUTH_MAX_TOKEN, not three base64url segments, '=' padding,
                             non-canonical base64url, header or payload not a JSON object,
                             duplicate JSON keys, exp/nbf/iat present but not an integer */
    AUTH_EALG = -2,       /* header alg not exactly "HS256", typ present and not "JWT", crit */
    AUTH_ESIGNATURE = -3, /* signature not 32 bytes, or the HMAC does not match */
    AUTH_EEXPIRED = -4,   /* exp + leeway <= now */
    AUTH_ENOEXP = -5,     /* no exp claim: a token that never expires is refused */
    AUTH_ENOTYET = -6,    /* nbf or iat later than now + leeway */
    AUTH_EISSUER = -7,    /* an issuer was required and iss is missing or differs */
    AUTH_ECLAIMS = -8,    /* sub or role missing, not a string, empty, too long, bad chars */
    AUTH_EINVAL = -9,     /* bad arguments: NULL pointer, short secret, negative leeway */
    AUTH_EREVOKED = -10,  /* valid, but revoked since it was issued (the gateway's, from
                             revocation.c: auth_jwt_verify itself never returns it) */
};

/* Longest sub is 63 bytes, longest role 15; role is [a-z_]+, sub is any UTF-8 without
 * control characters (it ends up in logs and headers). */
typedef struct auth_caller {
    char id[64];   /* the sub claim, NUL-terminated */
    char role[16]; /* the role claim, NUL-terminated */
    int64_t exp;   /* the exp claim, seconds since the epoch */
    int64_t iat;   /* the iat claim, 0 when the token has none */
    /* When it was issued, in milliseconds since the epoch: the iat_ms claim the host's own
     * tokens carry (revocation.c compares it), else the first millisecond of iat's second
     * (the earliest it can have been: a revocation in that second refuses it), else 0. */
    int64_t issued_ms;
} auth_caller_t;

/* Verifies the compact JWS `token` (token_len bytes, need not be NUL-terminated) with the
 * HMAC-SHA256 key `secret`, then its claims at time `now` (seconds since the epoch),
 * allowing `leeway_seconds` (>= 0) of clock skew on exp, nbf and iat. `issuer` NULL skips
 * the iss check; otherwise iss must equal it exactly. The signature is checked in constant
 * time before the payload is parsed. Returns 0 and fills *out, or a negative AUTH_E* code
 * with *out zeroed. Allocates nothing that outlives the call; borrows every argument. */
int auth_jwt_verify(const unsigned char *secret, size_t secret_len, const char *token,
                    size_t token_len, const char *issuer, int64_t now, int64_t leeway_seconds,
                    auth_caller_t *out);

/* A short human reason for an AUTH_E* code (or 0); a static string, never NULL. */
const char *auth_strerror(int code);

/* Issues a token with header {"alg":"HS256","typ":"JWT"} and payload
 * {"iss"?, "sub", "role", "iat": now, "iat_ms": now_ms, "exp": now + ttl_seconds}, where
 * now is now_ms's second (iat_ms dates the token finely enough for a revocation made in
 * the same second to tell it apart); iss is left out when `issuer` is NULL. The caller
 * frees the result with free(). Returns NULL only on bad arguments: secret shorter than
 * AUTH_MIN_SECRET, sub or role that auth_jwt_verify would refuse, issuer not valid UTF-8,
 * now_ms < 0, ttl_seconds <= 0 or overflowing, or a token that would be longer than
 * AUTH_MAX_TOKEN. */
char *auth_jwt_sign(const unsigned char *secret, size_t secret_len, const char *issuer,
                    const char *sub, const char *role, int64_t now_ms, int64_t ttl_seconds);

/* Parses an Authorization value "Bearer <token68>": scheme case-insensitive, one or more
 * spaces or tabs after it, optional whitespace around the whole value. On success returns
 * 0 and points *token into `authorization_header` (borrowed, not NUL-terminated at *len);
 * otherwise AUTH_EMALFORMED with *token NULL and *len 0. */
int auth_bearer_token(const char *authorization_header, const char **token, size_t *len);

#endif
