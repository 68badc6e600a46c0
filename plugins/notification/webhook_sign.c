/* webhook_sign.c — how a receiver knows a webhook came from us, and when.
 *
 * X-Panthera-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 * as Stripe does it: the timestamp is inside the MAC, so a receiver that refuses old
 * timestamps also refuses replays; "v1=" leaves room for another scheme (a receiver
 * ignores schemes it does not know). The secret is the endpoint's own, shown once at
 * creation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "delivery.h"

int webhook_signature(const char *secret, int64_t t, const char *body, size_t body_len,
                      char out[WEBHOOK_SIG_MAX])
{
    if (!secret || !*secret || (!body && body_len))
        return -1;
    char ts[32];
    int tl = snprintf(ts, sizeof ts, "%lld.", (long long)t);
    unsigned char mac[32];
    int rc = -1;
    /* EVP_MAC rather than one-shot HMAC(): the timestamp and the body go in as two
     * pieces, without copying a large body next to the timestamp first. */
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (!c || !EVP_MAC_init(c, (const unsigned char *)secret, strlen(secret), params) ||
        !EVP_MAC_update(c, (const unsigned char *)ts, (size_t)tl) ||
        !EVP_MAC_update(c, (const unsigned char *)body, body_len) ||
        !EVP_MAC_final(c, mac, &outl, sizeof mac) || outl != 32)
        goto done;
    char *o = out + snprintf(out, WEBHOOK_SIG_MAX, "t=%lld,v1=", (long long)t);
    for (int i = 0; i < 32; i++)
        o += sprintf(o, "%02x", mac[i]);
    rc = 0;
done:
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    return rc;
}

int webhook_secret_new(char out[WEBHOOK_SECRET_LEN + 1])
{
    unsigned char r[32];
    if (RAND_bytes(r, sizeof r) != 1)
        return -1;
    char *o = out + sprintf(out, "whsec_");
    for (size_t i = 0; i < sizeof r; i++)
        o += sprintf(o, "%02x", r[i]);
    return 0;
}
