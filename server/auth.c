/*
 * auth.c — HS256 JWT bearer tokens. The gateway calls auth_jwt_verify on every request that
 * carries a token, so everything an attacker controls is distrusted in a fixed order, and
 * the cheap refusals come first:
 *
 *   1. The length, before a byte is read: a 64 KB header costs one comparison.
 *   2. The shape: exactly three segments, each strict base64url (no '=', no characters
 *      outside the alphabet, no stray bits in the last character — one signature has one
 *      spelling, so a deny list keyed by token string cannot be walked around).
 *   3. The header, which must name exactly HS256. The alg is never used to choose an
 *      algorithm: the server only speaks HS256, and anything else ("none", "HS512", an RSA
 *      alg meant to trick us into using a public key as an HMAC secret) is refused.
 *   4. The signature, compared with CRYPTO_memcmp so timing says nothing about how many
 *      bytes matched.
 *   5. Only then the payload JSON and its claims: a forger never reaches our JSON parser
 *      with a document of their choosing (the header aside, which is tiny and parsed with
 *      the same strict settings).
 *
 * JSON is parsed with JSON_REJECT_DUPLICATES: with {"role":"user","role":"admin"} two
 * parsers can disagree about who the caller is, and the signer may be one of them.
 * Time arithmetic saturates instead of overflowing, since exp comes from the wire.
 */
#include "auth.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <string.h>

#include "base64.h"
#include "util.h"

#define MAC_LEN 32
/* base64url of 32 bytes without padding. */
#define MAC_B64_LEN 43
/* base64url of {"alg":"HS256","typ":"JWT"}, the only header auth_jwt_sign writes. */
#define SIGN_HEADER "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"


static int hs256(const unsigned char *key, size_t key_len, const char *msg, size_t msg_len,
                 unsigned char mac[MAC_LEN])
{
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, msg_len, mac,
              &mac_len) ||
        mac_len != MAC_LEN)
        return -1;
    return 0;
}

static bool secret_ok(const unsigned char *secret, size_t secret_len)
{
    return secret && secret_len >= AUTH_MIN_SECRET && secret_len <= INT_MAX;
}

/* sub: 1..63 bytes, no C0 controls or DEL. UTF-8 validity is jansson's job on both the
 * parsing and the packing side. */
static bool sub_ok(const char *s, size_t len)
{
    if (len == 0 || len >= sizeof(((auth_caller_t *)0)->id))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool role_ok(const char *s, size_t len)
{
    if (len == 0 || len >= sizeof(((auth_caller_t *)0)->role))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return false;
    return true;
}

static int64_t add_saturating(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return a > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* Decodes one segment (already validated) and parses it as a JSON object. */
static json_t *segment_json(const char *seg, size_t len, unsigned char *scratch)
{
    size_t n;
    if (base64_decode(seg, len, true, scratch, &n) < 0)
        return NULL;
    json_error_t err;
    json_t *doc = json_loadb((const char *)scratch, n, JSON_REJECT_DUPLICATES, &err);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* v is a JSON string of exactly the bytes of s: case, length and all. */
static bool string_is(const json_t *v, const char *s)
{
    size_t len = strlen(s);
    return json_is_string(v) && json_string_length(v) == len &&
           memcmp(json_string_value(v), s, len) == 0;
}

static int header_check(const json_t *header)
{
    if (!string_is(json_object_get(header, "alg"), "HS256"))
        return AUTH_EALG;
    const json_t *typ = json_object_get(header, "typ");
    if (typ && !string_is(typ, "JWT"))
        return AUTH_EALG;
    /* RFC 7515 §4.1.11: extensions we do not understand must make us refuse; we
     * understand none. */
    if (json_object_get(header, "crit"))
        return AUTH_EALG;
    return 0;
}

/* A NumericDate claim: 1 and *out set when present, 0 when absent, AUTH_EMALFORMED when
 * it is anything but a JSON integer. */
static int time_claim(const json_t *payload, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(payload, name);
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return AUTH_EMALFORMED;
    *out = (int64_t)json_integer_value(v);
    return 1;
}

static int claims_check(const json_t *payload, const char *issuer, int64_t now, int64_t leeway,
                        auth_caller_t *caller)
{
    int64_t exp = 0, nbf = 0, iat = 0;
    int has_exp = time_claim(payload, "exp", &exp);
    if (has_exp == 0)
        return AUTH_ENOEXP;
    int has_nbf = time_claim(payload, "nbf", &nbf);
    int has_iat = time_claim(payload, "iat", &iat);
    int64_t iat_ms = 0;
    int has_iat_ms = time_claim(payload, "iat_ms", &iat_ms);
    if (has_exp < 0 || has_nbf < 0 || has_iat < 0 || has_iat_ms < 0)
        return AUTH_EMALFORMED;
    /* Ours only, and then within iat's second: no token says two things about its age. */
    if (has_iat_ms && (!has_iat || iat_ms < 0 || iat_ms / 1000 != iat))
        return AUTH_EMALFORMED;

    if (add_saturating(exp, leeway) <= now)
        return AUTH_EEXPIRED;
    int64_t horizon = add_saturating(now, leeway);
    if ((has_nbf && nbf > horizon) || (has_iat && iat > horizon))
        return AUTH_ENOTYET;

    if (issuer && !string_is(json_object_get(payload, "iss"), issuer))
        return AUTH_EISSUER;

    const json_t *sub = json_object_get(payload, "sub");
    const json_t *role = json_object_get(payload, "role");
    if (!json_is_string(sub) || !sub_ok(json_string_value(sub), json_string_length(sub)) ||
        !json_is_string(role) || !role_ok(json_string_value(role), json_string_length(role)))
        return AUTH_ECLAIMS;

    memcpy(caller->id, json_string_value(sub), json_string_length(sub) + 1);
    memcpy(caller->role, json_string_value(role), json_string_length(role) + 1);
    caller->exp = exp;
    caller->iat = has_iat ? iat : 0;
    if (has_iat_ms)
        caller->issued_ms = iat_ms;
    else if (has_iat) /* its second's first millisecond: a revocation in it refuses it */
        caller->issued_ms = iat >= INT64_MAX / 1000 ? INT64_MAX : iat <= 0 ? 0 : iat * 1000;
    return 0;
}

int auth_jwt_verify(const unsigned char *secret, size_t secret_len, const char *token,
                    size_t token_len, const char *issuer, int64_t now, int64_t leeway_seconds,
                    auth_caller_t *out)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (!out || !secret_ok(secret, secret_len) || leeway_seconds < 0)
        return AUTH_EINVAL;
    if (!token || token_len == 0 || token_len > AUTH_MAX_TOKEN)
        return AUTH_EMALFORMED;

    const char *dot1 = memchr(token, '.', token_len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', token_len - (size_t)(dot2 + 1 - token)))
        return AUTH_EMALFORMED;
    const char *hdr = token, *pay = dot1 + 1, *sig = dot2 + 1;
    size_t hdr_len = (size_t)(dot1 - hdr), pay_len = (size_t)(dot2 - pay);
    size_t sig_len = token_len - (size_t)(sig - token);
    size_t unused;
    if (base64_decode(hdr, hdr_len, true, NULL, &unused) < 0 ||
        base64_decode(pay, pay_len, true, NULL, &unused) < 0 ||
        base64_decode(sig, sig_len, true, NULL, &unused) < 0)
        return AUTH_EMALFORMED;

    /* Big enough for any segment of a token within AUTH_MAX_TOKEN. */
    unsigned char scratch[AUTH_MAX_TOKEN / 4 * 3 + 2];
    json_t *header = NULL, *payload = NULL;
    auth_caller_t caller;
    memset(&caller, 0, sizeof(caller));
    int rc = AUTH_EMALFORMED;

    header = segment_json(hdr, hdr_len, scratch);
    if (!header)
        goto fail;
    if ((rc = header_check(header)) < 0)
        goto fail;

    rc = AUTH_ESIGNATURE;
    unsigned char mac[MAC_LEN], expected[MAC_LEN];
    size_t mac_len;
    if (sig_len != MAC_B64_LEN || base64_decode(sig, sig_len, true, mac, &mac_len) < 0 ||
        mac_len != MAC_LEN)
        goto fail;
    if (hs256(secret, secret_len, token, (size_t)(dot2 - token), expected) < 0)
        goto fail;
    if (CRYPTO_memcmp(mac, expected, MAC_LEN) != 0)
        goto fail;

    rc = AUTH_EMALFORMED;
    payload = segment_json(pay, pay_len, scratch);
    if (!payload)
        goto fail;
    if ((rc = claims_check(payload, issuer, now, leeway_seconds, &caller)) < 0)
        goto fail;

    *out = caller;
    rc = 0;
fail:
    json_decref(payload);
    json_decref(header);
    return rc;
}

const char *auth_strerror(int code)
{
    switch (code) {
    case 0: return "ok";
    case AUTH_EMALFORMED: return "malformed token";
    case AUTH_EALG: return "unsupported alg";
    case AUTH_ESIGNATURE: return "bad signature";
    case AUTH_EEXPIRED: return "token expired";
    case AUTH_ENOEXP: return "token has no exp";
    case AUTH_ENOTYET: return "token not yet valid";
    case AUTH_EISSUER: return "wrong issuer";
    case AUTH_ECLAIMS: return "bad sub or role claim";
    case AUTH_EINVAL: return "invalid argument";
    case AUTH_EREVOKED: return "revoked";
    default: return "unknown auth error";
    }
}

char *auth_jwt_sign(const unsigned char *secret, size_t secret_len, const char *issuer,
                    const char *sub, const char *role, int64_t now_ms, int64_t ttl_seconds)
{
    int64_t now = now_ms / 1000, exp;
    if (!secret_ok(secret, secret_len) || !sub || !sub_ok(sub, strlen(sub)) || !role ||
        !role_ok(role, strlen(role)) || now_ms < 0 || ttl_seconds <= 0 ||
        __builtin_add_overflow(now, ttl_seconds, &exp))
        return NULL;

    /* "s*" leaves iss out when issuer is NULL; json_pack also refuses invalid UTF-8. */
    json_t *claims =
        json_pack("{s:s*, s:s, s:s, s:I, s:I, s:I}", "iss", issuer, "sub", sub, "role", role, "iat",
                  (json_int_t)now, "iat_ms", (json_int_t)now_ms, "exp", (json_int_t)exp);
    if (!claims)
        return NULL;
    char payload[AUTH_MAX_TOKEN];
    size_t payload_len = json_dumpb(claims, payload, sizeof(payload), JSON_COMPACT);
    json_decref(claims);
    if (payload_len == 0 || payload_len > sizeof(payload))
        return NULL;

    size_t hdr_len = sizeof(SIGN_HEADER) - 1;
    size_t signed_len = hdr_len + 1 + base64_encoded_len(payload_len, true);
    size_t token_len = signed_len + 1 + MAC_B64_LEN;
    if (token_len > AUTH_MAX_TOKEN)
        return NULL;

    char *token = xmalloc(token_len + 1);
    memcpy(token, SIGN_HEADER, hdr_len);
    token[hdr_len] = '.';
    base64_encode((const unsigned char *)payload, payload_len, true, token + hdr_len + 1);
    unsigned char mac[MAC_LEN];
    if (hs256(secret, secret_len, token, signed_len, mac) < 0) {
        free(token);
        return NULL;
    }
    token[signed_len] = '.';
    base64_encode(mac, MAC_LEN, true, token + signed_len + 1);
    token[token_len] = '\0';
    return token;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 §11.2 token68 body characters; '=' may only trail. */
static bool is_token68(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

int auth_bearer_token(const char *authorization_header, const char **token, size_t *len)
{
    if (token)
        *token = NULL;
    if (len)
        *len = 0;
    if (!authorization_header || !token || !len)
        return AUTH_EMALFORMED;

    const char *p = authorization_header;
    while (is_ows(*p))
        p++;
    static const char scheme[] = "bearer";
    for (size_t i = 0; i < sizeof(scheme) - 1; i++, p++)
        if ((*p | 0x20) != scheme[i])
            return AUTH_EMALFORMED;
    if (!is_ows(*p))
        return AUTH_EMALFORMED;
    while (is_ows(*p))
        p++;

    const char *start = p;
    while (is_token68(*p))
        p++;
    if (p == start)
        return AUTH_EMALFORMED;
    while (*p == '=')
        p++;
    const char *end = p;
    while (is_ows(*p))
        p++;
    if (*p != '\0')
        return AUTH_EMALFORMED;

    *token = start;
    *len = (size_t)(end - start);
    return 0;
}
