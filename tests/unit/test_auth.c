/* test_auth.c — server/auth.c: tokens signed by auth_jwt_sign verify; tokens crafted here,
 * independently of auth.c (OpenSSL's base64 and HMAC), are refused for the right reason. */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "auth.h"
#include "check.h"
#include "util.h"

#define NOW INT64_C(1700000000)

static const unsigned char secret[] = "test-secret-0123456789-abcdefghijklmnop";
static const unsigned char other_secret[] = "another-secret-0123456789-abcdefghijklm";
#define SECRET_LEN (sizeof(secret) - 1)

/* base64url of n bytes; '=' padding kept only when `pad`. */
static char *b64url(const void *data, size_t n, bool pad)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (!pad && len > 0 && out[len - 1] == '=')
        len--;
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[len] = '\0';
    return out;
}

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The base64url character with the lowest bit of c's value set: in the last character of
 * a segment that bit carries no data, so setting it gives a second spelling of the bytes. */
static char with_low_bit(char c)
{
    return b64url_chars[(strchr(b64url_chars, c) - b64url_chars) | 1];
}

/* "b64(header).b64(payload).b64(HMAC-md(key, first two))"; md NULL leaves the signature
 * segment empty. `pad` keeps '=' padding on all three segments. */
static char *craft_with(const unsigned char *key, size_t key_len, const char *header,
                        const char *payload, const EVP_MD *md, bool pad)
{
    char *h = b64url(header, strlen(header), pad);
    char *p = b64url(payload, strlen(payload), pad);
    char *signing_input = xasprintf("%s.%s", h, p);
    char *s = xstrdup("");
    if (md) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        HMAC(md, key, (int)key_len, (const unsigned char *)signing_input, strlen(signing_input),
             mac, &mac_len);
        free(s);
        s = b64url(mac, mac_len, pad);
    }
    char *token = xasprintf("%s.%s", signing_input, s);
    free(h);
    free(p);
    free(signing_input);
    free(s);
    return token;
}

static char *craft(const char *header, const char *payload, const EVP_MD *md)
{
    return craft_with(secret, SECRET_LEN, header, payload, md, false);
}

#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
/* sub, role and exp one hour after NOW: everything a token needs. */
#define GOOD_PAYLOAD "{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600}"

static int verify_full(const char *token, const char *issuer, int64_t now, int64_t leeway,
                       auth_caller_t *out)
{
    return auth_jwt_verify(secret, SECRET_LEN, token, strlen(token), issuer, now, leeway, out);
}

static int verify_at(const char *token, int64_t now, int64_t leeway)
{
    auth_caller_t c;
    return verify_full(token, NULL, now, leeway, &c);
}

static int verify_crafted(const char *header, const char *payload, const EVP_MD *md)
{
    char *token = craft(header, payload, md);
    int rc = verify_at(token, NOW, 0);
    free(token);
    return rc;
}

static int verify_payload(const char *payload)
{
    return verify_crafted(HS256_HEADER, payload, EVP_sha256());
}

static char *sign(const char *issuer, const char *sub, const char *role, int64_t now, int64_t ttl)
{
    return auth_jwt_sign(secret, SECRET_LEN, issuer, sub, role, now * 1000, ttl);
}

static void test_round_trip(void)
{
    char *token = sign("panthera", "user-42", "admin", NOW, 3600);
    CHECK_OR_RETURN(token);
    CHECK(!strncmp(token, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37));

    auth_caller_t c;
    CHECK_EQ_INT(verify_full(token, "panthera", NOW, 0, &c), 0);
    CHECK_STR(c.id, "user-42");
    CHECK_STR(c.role, "admin");
    CHECK_EQ_INT(c.exp, NOW + 3600);
    CHECK_EQ_INT(c.iat, NOW);
    CHECK(c.issued_ms == NOW * 1000);
    /* No issuer to check is fine too. */
    CHECK_EQ_INT(verify_full(token, NULL, NOW, 0, &c), 0);
    CHECK_STR(c.id, "user-42");
    free(token);
}

/* The crafting helper itself: a hand-built HS256 token is accepted, so the refusals below
 * are about what each test changed, not about the helper. */
static void test_crafted_control(void)
{
    CHECK_EQ_INT(verify_payload(GOOD_PAYLOAD), 0);
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"HS256\"}", GOOD_PAYLOAD, EVP_sha256()), 0);
    auth_caller_t c;
    char *token = craft(HS256_HEADER, GOOD_PAYLOAD, EVP_sha256());
    CHECK_EQ_INT(verify_full(token, NULL, NOW, 0, &c), 0);
    CHECK_STR(c.id, "u1");
    CHECK_STR(c.role, "user");
    CHECK_EQ_INT(c.exp, 1700003600);
    CHECK_EQ_INT(c.iat, 0);
    free(token);
}

static void test_expired(void)
{
    char *token = sign(NULL, "u1", "user", NOW, 60);
    CHECK_OR_RETURN(token);
    CHECK_EQ_INT(verify_at(token, NOW + 59, 0), 0);
    CHECK_EQ_INT(verify_at(token, NOW + 60, 0), AUTH_EEXPIRED);
    CHECK_EQ_INT(verify_at(token, NOW + 86400, 0), AUTH_EEXPIRED);
    /* A refusal leaves no caller behind. */
    auth_caller_t c;
    memset(&c, 'x', sizeof(c));
    CHECK_EQ_INT(verify_full(token, NULL, NOW + 60, 0, &c), AUTH_EEXPIRED);
    CHECK_STR(c.id, "");
    CHECK_STR(c.role, "");
    CHECK_EQ_INT(c.exp, 0);
    free(token);
}

static void test_expired_within_leeway(void)
{
    char *token = sign(NULL, "u1", "user", NOW, 60);
    CHECK_OR_RETURN(token);
    CHECK_EQ_INT(verify_at(token, NOW + 70, 30), 0);
    CHECK_EQ_INT(verify_at(token, NOW + 89, 30), 0);
    CHECK_EQ_INT(verify_at(token, NOW + 90, 30), AUTH_EEXPIRED);
    free(token);
}

static void test_nbf_in_future(void)
{
    char *token = craft(HS256_HEADER,
                        "{\"sub\":\"u1\",\"role\":\"user\",\"nbf\":1700000100,\"exp\":1700003600}",
                        EVP_sha256());
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_ENOTYET);
    CHECK_EQ_INT(verify_at(token, NOW, 99), AUTH_ENOTYET);
    CHECK_EQ_INT(verify_at(token, NOW, 100), 0);
    CHECK_EQ_INT(verify_at(token, NOW + 100, 0), 0);
    free(token);
}

static void test_iat_in_future(void)
{
    char *token = sign(NULL, "u1", "user", NOW + 300, 3600);
    CHECK_OR_RETURN(token);
    CHECK_EQ_INT(verify_at(token, NOW, 60), AUTH_ENOTYET);
    CHECK_EQ_INT(verify_at(token, NOW, 300), 0);
    free(token);
}

static void test_signature_flipped(void)
{
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    char *sig = strrchr(token, '.') + 1;
    CHECK_EQ_INT(strlen(sig), 43);
    sig[20] = sig[20] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_ESIGNATURE);
    free(token);
}

/* A payload changed under a signature that was valid for the original one. */
static void test_signature_payload_swapped(void)
{
    char *good = craft(HS256_HEADER, GOOD_PAYLOAD, EVP_sha256());
    char *evil =
        craft(HS256_HEADER, "{\"sub\":\"u1\",\"role\":\"admin\",\"exp\":1700003600}", EVP_sha256());
    char *mixed = xasprintf("%.*s%s", (int)(strrchr(evil, '.') - evil), evil, strrchr(good, '.'));
    CHECK_EQ_INT(verify_at(mixed, NOW, 0), AUTH_ESIGNATURE);
    free(good);
    free(evil);
    free(mixed);
}

static void test_signature_other_secret(void)
{
    char *token =
        auth_jwt_sign(other_secret, sizeof(other_secret) - 1, NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_ESIGNATURE);
    free(token);
}

/* header.payload of `token` with the right HMAC-SHA256 cut to, or zero-extended to, n
 * bytes (n <= 40). */
static char *with_mac_bytes(const char *token, size_t n)
{
    size_t signed_len = (size_t)(strrchr(token, '.') - token);
    unsigned char mac[40] = {0};
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), secret, (int)SECRET_LEN, (const unsigned char *)token, signed_len, mac,
         &mac_len);
    char *sig = b64url(mac, n, false);
    char *out = xasprintf("%.*s.%s", (int)signed_len, token, sig);
    free(sig);
    return out;
}

static void test_signature_length(void)
{
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    char *same = with_mac_bytes(token, 32);
    CHECK_STR(same, token);
    static const size_t wrong[] = {0, 1, 16, 31, 33, 36, 40};
    for (size_t i = 0; i < ARRAY_SIZE(wrong); i++) {
        char *t = with_mac_bytes(token, wrong[i]);
        int rc = verify_at(t, NOW, 0);
        if (rc != AUTH_ESIGNATURE)
            fprintf(stderr, "a %zu-byte MAC gave %d\n", wrong[i], rc);
        CHECK_EQ_INT(rc, AUTH_ESIGNATURE);
        free(t);
    }
    free(same);
    free(token);
}

/* The last of 43 characters holds 4 bits of the MAC and 2 bits that must be zero. Setting
 * one of those would give the same 32 bytes under a second spelling. */
static void test_signature_noncanonical(void)
{
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    char *last = token + strlen(token) - 1;
    CHECK_EQ_INT((strchr(b64url_chars, *last) - b64url_chars) & 3, 0);
    *last = with_low_bit(*last);
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_EMALFORMED);
    free(token);
}

/* "h.p.<the right HS256 signature over h.p>" for segments built by hand. */
static char *sign_segments(const char *h, const char *p)
{
    char *unsigned_token = xasprintf("%s.%s.", h, p);
    char *token = with_mac_bytes(unsigned_token, 32);
    free(unsigned_token);
    return token;
}

/* Correctly signed, so only the spelling of the payload segment can be at fault: a 2- or
 * 3-character tail with stray low bits, or a length no base64 encoder produces. */
static void test_payload_spelling(void)
{
    char *h = b64url(HS256_HEADER, strlen(HS256_HEADER), false);
    for (int tail = 1; tail <= 2; tail++) {
        char payload[128];
        snprintf(payload, sizeof(payload), "%s", GOOD_PAYLOAD);
        while (strlen(payload) % 3 != (size_t)tail)
            strcat(payload, " ");
        char *p = b64url(payload, strlen(payload), false);
        CHECK_EQ_INT(strlen(p) % 4, tail + 1);
        char *token = sign_segments(h, p);
        CHECK_EQ_INT(verify_at(token, NOW, 0), 0);
        free(token);

        char *last = p + strlen(p) - 1;
        *last = with_low_bit(*last);
        token = sign_segments(h, p);
        CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_EMALFORMED);
        free(token);
        free(p);
    }
    char *p = b64url(GOOD_PAYLOAD, strlen(GOOD_PAYLOAD), false);
    char *p_extra = xasprintf("%s%s", p,
                              strlen(p) % 4 == 0   ? "A"
                              : strlen(p) % 4 == 2 ? "AAA"
                                                   : "AA");
    CHECK_EQ_INT(strlen(p_extra) % 4, 1);
    char *token = sign_segments(h, p_extra);
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_EMALFORMED);
    free(token);
    char *h_extra = xasprintf("%sA", h);
    CHECK_EQ_INT(strlen(h_extra) % 4, 1);
    token = sign_segments(h_extra, p);
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_EMALFORMED);
    free(token);
    free(h_extra);
    free(p_extra);
    free(p);
    free(h);
}

static void test_alg_none_empty_signature(void)
{
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, NULL),
                 AUTH_EALG);
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"none\"}", GOOD_PAYLOAD, NULL), AUTH_EALG);
}

static void test_alg_none_with_signature(void)
{
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, EVP_sha256()),
                 AUTH_EALG);
}

/* Correctly signed with HMAC-SHA512 under the right secret: still not what we accept. */
static void test_alg_hs512(void)
{
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, EVP_sha512()),
                 AUTH_EALG);
}

static void test_alg_variants(void)
{
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, EVP_sha256()),
                 AUTH_EALG);
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"HS256 \"}", GOOD_PAYLOAD, EVP_sha256()), AUTH_EALG);
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"RS256\"}", GOOD_PAYLOAD, EVP_sha256()), AUTH_EALG);
    CHECK_EQ_INT(verify_crafted("{\"alg\":256}", GOOD_PAYLOAD, EVP_sha256()), AUTH_EALG);
    CHECK_EQ_INT(verify_crafted("{\"typ\":\"JWT\"}", GOOD_PAYLOAD, EVP_sha256()), AUTH_EALG);
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}",
                                GOOD_PAYLOAD, EVP_sha256()),
                 AUTH_EALG);
}

/* iat_ms (the host's own tokens, for revocations within a second): kept to the
 * millisecond; a token without it counts as issued at the start of iat's second; one whose
 * iat_ms is not an integer in iat's second, or has no iat, is malformed. */
static void test_issued_ms(void)
{
    char *token = auth_jwt_sign(secret, SECRET_LEN, NULL, "u1", "user", NOW * 1000 + 731, 60);
    CHECK_OR_RETURN(token);
    auth_caller_t c;
    CHECK_EQ_INT(verify_full(token, NULL, NOW, 0, &c), 0);
    CHECK_EQ_INT(c.iat, NOW);
    CHECK(c.issued_ms == NOW * 1000 + 731);
    free(token);
    CHECK(!auth_jwt_sign(secret, SECRET_LEN, NULL, "u1", "user", -1, 60));

    token = craft(HS256_HEADER,
                  "{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,\"iat\":1700000000}",
                  EVP_sha256());
    CHECK_EQ_INT(verify_full(token, NULL, NOW, 0, &c), 0);
    CHECK(c.issued_ms == 1700000000000);
    free(token);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,"
                                "\"iat\":1700000000,\"iat_ms\":1700000000000}"),
                 0);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,"
                                "\"iat\":1700000000,\"iat_ms\":1700000001000}"),
                 AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,"
                                "\"iat\":1700000000,\"iat_ms\":\"1700000000000\"}"),
                 AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,"
                                "\"iat_ms\":1700000000000}"),
                 AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,"
                                "\"iat\":0,\"iat_ms\":-1}"),
                 AUTH_EMALFORMED);
}

static void test_typ_jws(void)
{
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", GOOD_PAYLOAD, EVP_sha256()),
                 AUTH_EALG);
    CHECK_EQ_INT(verify_crafted("{\"alg\":\"HS256\",\"typ\":1}", GOOD_PAYLOAD, EVP_sha256()),
                 AUTH_EALG);
}

static void test_missing_exp(void)
{
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\"}"), AUTH_ENOEXP);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"iat\":1700000000}"),
                 AUTH_ENOEXP);
}

static void test_exp_not_integer(void)
{
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":\"1700003600\"}"),
                 AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600.5}"),
                 AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":null}"),
                 AUTH_EMALFORMED);
    CHECK_EQ_INT(
        verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,\"nbf\":\"0\"}"),
        AUTH_EMALFORMED);
    /* Beyond int64: jansson refuses the number, not an overflow in auth.c. */
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"exp\":99999999999999999999}"),
                 AUTH_EMALFORMED);
}

/* exp and leeway at the edge of int64: the sum saturates rather than wrapping to the past. */
static void test_exp_far_future(void)
{
    char *token = craft(HS256_HEADER,
                        "{\"sub\":\"u1\",\"role\":\"user\",\"exp\":9223372036854775807,"
                        "\"iat\":-9223372036854775807}",
                        EVP_sha256());
    CHECK_EQ_INT(verify_at(token, NOW, INT64_MAX), 0);
    CHECK_EQ_INT(verify_at(token, INT64_MAX, INT64_MAX), AUTH_EEXPIRED);
    free(token);
}

static void test_garbage_segments(void)
{
    CHECK_EQ_INT(verify_at("a.b.c", NOW, 0), AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_at("abcd.efgh.ijkl", NOW, 0), AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_at("...", NOW, 0), AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_at("..", NOW, 0), AUTH_EMALFORMED);
    /* Characters from the other base64 alphabet, and whitespace. */
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    char *sig = strrchr(token, '.') + 1;
    char saved = sig[5];
    sig[5] = '+';
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_EMALFORMED);
    sig[5] = ' ';
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_EMALFORMED);
    sig[5] = saved;
    CHECK_EQ_INT(verify_at(token, NOW, 0), 0);
    free(token);
}

static void test_two_segments(void)
{
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    *strrchr(token, '.') = '\0';
    CHECK_EQ_INT(verify_at(token, NOW, 0), AUTH_EMALFORMED);
    free(token);
}

static void test_four_segments(void)
{
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    char *four = xasprintf("%s.", token);
    CHECK_EQ_INT(verify_at(four, NOW, 0), AUTH_EMALFORMED);
    free(four);
    four = xasprintf("%s.AAAA", token);
    CHECK_EQ_INT(verify_at(four, NOW, 0), AUTH_EMALFORMED);
    free(four);
    free(token);
}

static void test_empty_token(void)
{
    auth_caller_t c;
    CHECK_EQ_INT(verify_at("", NOW, 0), AUTH_EMALFORMED);
    CHECK_EQ_INT(auth_jwt_verify(secret, SECRET_LEN, NULL, 0, NULL, NOW, 0, &c), AUTH_EMALFORMED);
}

/* 64 KB behind PROT_NONE: reading a single byte of it would crash the test. */
static void test_oversized_token_not_read(void)
{
    size_t size = 64 * 1024;
    void *page = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_OR_RETURN(page != MAP_FAILED);
    auth_caller_t c;
    CHECK_EQ_INT(auth_jwt_verify(secret, SECRET_LEN, page, size, NULL, NOW, 0, &c),
                 AUTH_EMALFORMED);
    CHECK_EQ_INT(auth_jwt_verify(secret, SECRET_LEN, page, AUTH_MAX_TOKEN + 1, NULL, NOW, 0, &c),
                 AUTH_EMALFORMED);
    munmap(page, size);
}

/* A correctly signed token of exactly `target` bytes, or NULL if padding cannot reach it. */
static char *token_of_length(size_t target)
{
    /* Each payload byte is 4/3 of a character; start a little short of the target. */
    size_t start = target > 400 ? (target - 81) * 3 / 4 - 80 : 0;
    for (size_t pad = start; pad < target; pad++) {
        char *filler = xmalloc(pad + 1);
        memset(filler, 'x', pad);
        filler[pad] = '\0';
        char *payload = xasprintf(
            "{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600,\"pad\":\"%s\"}", filler);
        char *token = craft(HS256_HEADER, payload, EVP_sha256());
        free(filler);
        free(payload);
        size_t len = strlen(token);
        if (len == target)
            return token;
        free(token);
        if (len > target)
            break;
    }
    return NULL;
}

static void test_token_length_limit(void)
{
    char *at_limit = token_of_length(AUTH_MAX_TOKEN);
    CHECK_OR_RETURN(at_limit);
    CHECK_EQ_INT(verify_at(at_limit, NOW, 0), 0);
    free(at_limit);

    char *over = token_of_length(AUTH_MAX_TOKEN + 1);
    CHECK_OR_RETURN(over);
    CHECK_EQ_INT(verify_at(over, NOW, 0), AUTH_EMALFORMED);
    free(over);

    /* A correctly signed 64 KB token: valid in every way but its size. */
    char *huge = token_of_length(64 * 1024);
    CHECK_OR_RETURN(huge);
    CHECK_EQ_INT(verify_at(huge, NOW, 0), AUTH_EMALFORMED);
    free(huge);
}

static void test_padding(void)
{
    /* 41 bytes of payload: base64 needs one '='; the signature (32 bytes) needs one. */
    const char *payload = "{\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600}";
    CHECK_OR_RETURN(strlen(payload) % 3 != 0);
    char *padded = craft_with(secret, SECRET_LEN, HS256_HEADER, payload, EVP_sha256(), true);
    CHECK_OR_RETURN(strchr(padded, '='));
    CHECK_EQ_INT(verify_at(padded, NOW, 0), AUTH_EMALFORMED);
    free(padded);

    /* Only the signature padded. */
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    char *sig_padded = xasprintf("%s=", token);
    CHECK_EQ_INT(verify_at(sig_padded, NOW, 0), AUTH_EMALFORMED);
    free(sig_padded);
    free(token);
}

static void test_issuer_mismatch(void)
{
    auth_caller_t c;
    char *token = sign("panthera", "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    CHECK_EQ_INT(verify_full(token, "other", NOW, 0, &c), AUTH_EISSUER);
    CHECK_EQ_INT(verify_full(token, "panther", NOW, 0, &c), AUTH_EISSUER);
    CHECK_EQ_INT(verify_full(token, "panthera2", NOW, 0, &c), AUTH_EISSUER);
    CHECK_EQ_INT(verify_full(token, "", NOW, 0, &c), AUTH_EISSUER);
    free(token);

    /* No iss at all, when one is required. */
    token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    CHECK_EQ_INT(verify_full(token, "panthera", NOW, 0, &c), AUTH_EISSUER);
    CHECK_EQ_INT(verify_full(token, NULL, NOW, 0, &c), 0);
    free(token);

    /* iss that is not a string. */
    token = craft(HS256_HEADER, "{\"iss\":1,\"sub\":\"u1\",\"role\":\"user\",\"exp\":1700003600}",
                  EVP_sha256());
    CHECK_EQ_INT(verify_full(token, "1", NOW, 0, &c), AUTH_EISSUER);
    free(token);
}

static void test_missing_sub(void)
{
    CHECK_EQ_INT(verify_payload("{\"role\":\"user\",\"exp\":1700003600}"), AUTH_ECLAIMS);
    CHECK_EQ_INT(verify_payload("{\"sub\":42,\"role\":\"user\",\"exp\":1700003600}"), AUTH_ECLAIMS);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"\",\"role\":\"user\",\"exp\":1700003600}"),
                 AUTH_ECLAIMS);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"a\\nb\",\"role\":\"user\",\"exp\":1700003600}"),
                 AUTH_ECLAIMS);
}

static void test_sub_length(void)
{
    char sub[65];
    memset(sub, 'a', 64);
    sub[64] = '\0';
    char *p64 = xasprintf("{\"sub\":\"%s\",\"role\":\"user\",\"exp\":1700003600}", sub);
    CHECK_EQ_INT(verify_payload(p64), AUTH_ECLAIMS);
    sub[63] = '\0';
    char *p63 = xasprintf("{\"sub\":\"%s\",\"role\":\"user\",\"exp\":1700003600}", sub);
    CHECK_EQ_INT(verify_payload(p63), 0);
    free(p64);
    free(p63);
}

static void test_role_bad(void)
{
    static const char *bad[] = {
        "{\"sub\":\"u1\",\"role\":\"Admin\",\"exp\":1700003600}",
        "{\"sub\":\"u1\",\"role\":\"admin!\",\"exp\":1700003600}",
        "{\"sub\":\"u1\",\"role\":\"ad min\",\"exp\":1700003600}",
        "{\"sub\":\"u1\",\"role\":\"role2\",\"exp\":1700003600}",
        "{\"sub\":\"u1\",\"role\":\"\",\"exp\":1700003600}",
        "{\"sub\":\"u1\",\"role\":\"abcdefghijklmnop\",\"exp\":1700003600}",
        "{\"sub\":\"u1\",\"role\":[\"admin\"],\"exp\":1700003600}",
        "{\"sub\":\"u1\",\"exp\":1700003600}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = verify_payload(bad[i]);
        if (rc != AUTH_ECLAIMS)
            fprintf(stderr, "payload %s gave %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, AUTH_ECLAIMS);
    }
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"abcdefghijklmno\",\"exp\":1700003600}"),
                 0);
    CHECK_EQ_INT(verify_payload("{\"sub\":\"u1\",\"role\":\"super_user\",\"exp\":1700003600}"), 0);
}

static void test_duplicate_key(void)
{
    CHECK_EQ_INT(
        verify_payload("{\"sub\":\"u1\",\"role\":\"user\",\"role\":\"admin\",\"exp\":1700003600}"),
        AUTH_EMALFORMED);
    CHECK_EQ_INT(
        verify_crafted("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", GOOD_PAYLOAD, EVP_sha256()),
        AUTH_EMALFORMED);
}

static void test_not_json_object(void)
{
    CHECK_EQ_INT(verify_payload("[\"u1\",\"user\",1700003600]"), AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload("1700003600"), AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload(GOOD_PAYLOAD "x"), AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_payload(""), AUTH_EMALFORMED);
    CHECK_EQ_INT(verify_crafted("[]", GOOD_PAYLOAD, EVP_sha256()), AUTH_EMALFORMED);
}

static void test_verify_bad_args(void)
{
    auth_caller_t c;
    char *token = sign(NULL, "u1", "user", NOW, 3600);
    CHECK_OR_RETURN(token);
    size_t len = strlen(token);
    CHECK_EQ_INT(auth_jwt_verify(secret, AUTH_MIN_SECRET - 1, token, len, NULL, NOW, 0, &c),
                 AUTH_EINVAL);
    CHECK_EQ_INT(auth_jwt_verify(NULL, SECRET_LEN, token, len, NULL, NOW, 0, &c), AUTH_EINVAL);
    CHECK_EQ_INT(auth_jwt_verify(secret, SECRET_LEN, token, len, NULL, NOW, -1, &c), AUTH_EINVAL);
    CHECK_EQ_INT(auth_jwt_verify(secret, SECRET_LEN, token, len, NULL, NOW, 0, NULL), AUTH_EINVAL);
    /* token_len is honoured: the NUL-terminated prefix of a longer buffer. */
    char *longer = xasprintf("%s.trailing", token);
    CHECK_EQ_INT(auth_jwt_verify(secret, SECRET_LEN, longer, len, NULL, NOW, 0, &c), 0);
    free(longer);
    free(token);
}

static void test_sign_bad_args(void)
{
    char long_sub[65];
    memset(long_sub, 'a', 64);
    long_sub[64] = '\0';
    CHECK(!auth_jwt_sign(secret, AUTH_MIN_SECRET - 1, NULL, "u1", "user", NOW, 60));
    CHECK(!auth_jwt_sign(NULL, SECRET_LEN, NULL, "u1", "user", NOW, 60));
    CHECK(!sign(NULL, NULL, "user", NOW, 60));
    CHECK(!sign(NULL, "", "user", NOW, 60));
    CHECK(!sign(NULL, long_sub, "user", NOW, 60));
    CHECK(!sign(NULL, "u1", NULL, NOW, 60));
    CHECK(!sign(NULL, "u1", "Admin", NOW, 60));
    CHECK(!sign(NULL, "u1", "user", NOW, 0));
    CHECK(!sign(NULL, "u1", "user", NOW, -5));
    CHECK(!auth_jwt_sign(secret, SECRET_LEN, NULL, "u1", "user", NOW * 1000, INT64_MAX));
    CHECK(!sign("\xff\xfe", "u1", "user", NOW, 60));
    CHECK(!sign(NULL, "\xc3(", "user", NOW, 60));

    char *huge_issuer = xmalloc(AUTH_MAX_TOKEN + 1);
    memset(huge_issuer, 'i', AUTH_MAX_TOKEN);
    huge_issuer[AUTH_MAX_TOKEN] = '\0';
    CHECK(!sign(huge_issuer, "u1", "user", NOW, 60));
    free(huge_issuer);

    /* UTF-8 and JSON-special characters in sub survive the round trip. */
    char *token = sign("iss \"quoted\"", "j\xc3\xb6rg\\\"", "user", NOW, 60);
    CHECK_OR_RETURN(token);
    auth_caller_t c;
    CHECK_EQ_INT(verify_full(token, "iss \"quoted\"", NOW, 0, &c), 0);
    CHECK_STR(c.id, "j\xc3\xb6rg\\\"");
    free(token);
}

static void test_strerror(void)
{
    static const int codes[] = {
        0,           AUTH_EMALFORMED, AUTH_EALG,    AUTH_ESIGNATURE, AUTH_EEXPIRED,
        AUTH_ENOEXP, AUTH_ENOTYET,    AUTH_EISSUER, AUTH_ECLAIMS,    AUTH_EINVAL, AUTH_EREVOKED};
    CHECK_STR(auth_strerror(AUTH_EEXPIRED), "token expired");
    CHECK_STR(auth_strerror(AUTH_EALG), "unsupported alg");
    CHECK(auth_strerror(12345) != NULL);
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
        for (size_t j = i + 1; j < ARRAY_SIZE(codes); j++)
            CHECK(strcmp(auth_strerror(codes[i]), auth_strerror(codes[j])) != 0);
}

static const char *bearer(const char *header, int *rc)
{
    static char copy[256];
    const char *token = (const char *)1;
    size_t len = 99;
    *rc = auth_bearer_token(header, &token, &len);
    if (*rc != 0)
        return token == NULL && len == 0 ? "(refused)" : "(refused but left output)";
    snprintf(copy, sizeof(copy), "%.*s", (int)len, token);
    return copy;
}

static void test_bearer(void)
{
    int rc;
    CHECK_STR(bearer("Bearer x", &rc), "x");
    CHECK_EQ_INT(rc, 0);
    CHECK_STR(bearer("bearer x", &rc), "x");
    CHECK_STR(bearer("BEARER x", &rc), "x");
    CHECK_STR(bearer("Bearer   x", &rc), "x");
    CHECK_STR(bearer("Bearer \t x ", &rc), "x");
    CHECK_STR(bearer("Bearer aB0-._~+/==", &rc), "aB0-._~+/==");
    CHECK_STR(bearer("Bearer eyJh.eyJz.c2ln", &rc), "eyJh.eyJz.c2ln");

    static const char *bad[] = {
        "Basic x",  "Bearer",    "Bearer ", "Bearer  x y", "Bearerx",         "Bearer x=y",
        "Bearer =", "Bearer x,", "",        "Bear x",      "Bearer\xc2\xa0x", "Bearer \"x\"",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const char *got = bearer(bad[i], &rc);
        if (rc != AUTH_EMALFORMED)
            fprintf(stderr, "bearer \"%s\" gave %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, AUTH_EMALFORMED);
        CHECK_STR(got, "(refused)");
    }
    CHECK_STR(bearer(NULL, &rc), "(refused)");
    CHECK_EQ_INT(rc, AUTH_EMALFORMED);

    /* The token points into the header, not a copy. */
    const char *header = "Bearer abc";
    const char *token;
    size_t len;
    CHECK_EQ_INT(auth_bearer_token(header, &token, &len), 0);
    CHECK(token == header + 7);
    CHECK_EQ_INT(len, 3);
}

int main(void)
{
    RUN(test_round_trip);
    RUN(test_crafted_control);
    RUN(test_expired);
    RUN(test_expired_within_leeway);
    RUN(test_nbf_in_future);
    RUN(test_iat_in_future);
    RUN(test_issued_ms);
    RUN(test_signature_flipped);
    RUN(test_signature_payload_swapped);
    RUN(test_signature_other_secret);
    RUN(test_signature_length);
    RUN(test_signature_noncanonical);
    RUN(test_payload_spelling);
    RUN(test_alg_none_empty_signature);
    RUN(test_alg_none_with_signature);
    RUN(test_alg_hs512);
    RUN(test_alg_variants);
    RUN(test_typ_jws);
    RUN(test_missing_exp);
    RUN(test_exp_not_integer);
    RUN(test_exp_far_future);
    RUN(test_garbage_segments);
    RUN(test_two_segments);
    RUN(test_four_segments);
    RUN(test_empty_token);
    RUN(test_oversized_token_not_read);
    RUN(test_token_length_limit);
    RUN(test_padding);
    RUN(test_issuer_mismatch);
    RUN(test_missing_sub);
    RUN(test_sub_length);
    RUN(test_role_bad);
    RUN(test_duplicate_key);
    RUN(test_not_json_object);
    RUN(test_verify_bad_args);
    RUN(test_sign_bad_args);
    RUN(test_strerror);
    RUN(test_bearer);
    return check_finish();
}
