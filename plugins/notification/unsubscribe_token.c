/* unsubscribe_token.c — the signed token of a one-click unsubscribe link.
 *
 * The token is the only credential of POST /v1/notifications/unsubscribe (RFC 8058: a
 * mail client posts it without any session), so it says everything the change needs —
 * whose preference, which type, until when — and an HMAC-SHA256 over exactly that
 * with the plugin's key. A purpose string is MACed in front so the key signing these
 * can never be made to vouch for anything else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "delivery.h"

#define PURPOSE "panthera unsubscribe v1\n"

static int uuid_ok(const char *s, size_t n)
{
    if (n != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* One type, or a digest's several joined by commas (no empty one). */
static int type_ok(const char *s, size_t n)
{
    if (n == 0 || n >= UNSUB_TYPES_MAX || s[0] == ',' || s[n - 1] == ',')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '.' || s[i] == '-' || (s[i] == ',' && s[i + 1] != ',')))
            return 0;
    return 1;
}

static int mac(const unsigned char *key, size_t key_len, const unsigned char *payload,
               size_t n, unsigned char out[32])
{
    unsigned char buf[UNSUB_TYPES_MAX + 128];
    size_t pl = strlen(PURPOSE);
    if (pl + n > sizeof buf)
        return -1;
    memcpy(buf, PURPOSE, pl);
    memcpy(buf + pl, payload, n);
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, buf, pl + n, out, &len) || len != 32)
        return -1;
    return 0;
}

char *unsub_token_make(const unsigned char *key, size_t key_len, const char *user_id,
                       const char *type, int64_t expires)
{
    if (!key || key_len < UNSUB_KEY_MIN || !user_id || !type ||
        !uuid_ok(user_id, strlen(user_id)) || !type_ok(type, strlen(type)) || expires <= 0)
        return NULL;
    char payload[UNSUB_TYPES_MAX + 64];
    int n = snprintf(payload, sizeof payload, "%s\n%s\n%lld", user_id, type, (long long)expires);
    if (n < 0 || (size_t)n >= sizeof payload)
        return NULL;
    unsigned char sig[32];
    if (mac(key, key_len, (const unsigned char *)payload, (size_t)n, sig) != 0)
        return NULL;
    char *p = delivery_b64((const unsigned char *)payload, (size_t)n, 1);
    char *s = delivery_b64(sig, sizeof sig, 1);
    char *tok = NULL;
    if (p && s && (tok = malloc(strlen(p) + strlen(s) + 2)))
        sprintf(tok, "%s.%s", p, s);
    free(p);
    free(s);
    return tok;
}

int unsub_token_check(const unsigned char *key, size_t key_len, const char *token,
                      int64_t now, char user_id[37], char type[UNSUB_TYPES_MAX])
{
    if (!key || key_len < UNSUB_KEY_MIN || !token || strlen(token) > 2 * UNSUB_TYPES_MAX)
        return -1;
    const char *dot = strchr(token, '.');
    if (!dot || strchr(dot + 1, '.'))
        return -1;
    char head[2 * UNSUB_TYPES_MAX + 1];
    memcpy(head, token, (size_t)(dot - token));
    head[dot - token] = '\0';
    size_t plen = 0, slen = 0;
    unsigned char *payload = delivery_b64url_decode(head, &plen);
    unsigned char *sig = delivery_b64url_decode(dot + 1, &slen);
    int rc = -1;
    unsigned char want[32];
    if (!payload || !sig || slen != 32 || mac(key, key_len, payload, plen, want) != 0 ||
        CRYPTO_memcmp(want, sig, 32) != 0)
        goto done;
    /* Authentic: now read what we wrote ourselves, still carefully. */
    char text[UNSUB_TYPES_MAX + 64];
    if (plen >= sizeof text || memchr(payload, '\0', plen))
        goto done;
    memcpy(text, payload, plen);
    text[plen] = '\0';
    char *nl1 = strchr(text, '\n'), *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
    if (!nl2)
        goto done;
    size_t ulen = (size_t)(nl1 - text), tlen = (size_t)(nl2 - nl1 - 1);
    char *end = NULL;
    long long exp = strtoll(nl2 + 1, &end, 10);
    if (!uuid_ok(text, ulen) || !type_ok(nl1 + 1, tlen) || !end || *end || exp < now)
        goto done;
    memcpy(user_id, text, 36);
    user_id[36] = '\0';
    memcpy(type, nl1 + 1, tlen);
    type[tlen] = '\0';
    rc = 0;
done:
    free(payload);
    free(sig);
    return rc;
}
