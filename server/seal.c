/* seal.c — see seal.h. */
#include "seal.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define NONCE_LEN 12
#define TAG_LEN 16

static int hkdf(const char *secret, size_t secret_len, const char *info, unsigned char out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!ctx)
        return -1;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(ctx, out, 32, params) == 1;
    EVP_KDF_CTX_free(ctx);
    return ok ? 0 : -1;
}

int seal_keys_derive(const char *secret, size_t secret_len, const char *purpose, seal_keys_t *out)
{
    if (!secret || !secret_len || !purpose || !out)
        return -1;
    char info[256];
    snprintf(info, sizeof(info), "%s: encryption", purpose);
    if (hkdf(secret, secret_len, info, out->enc) < 0)
        return -1;
    snprintf(info, sizeof(info), "%s: fingerprint", purpose);
    return hkdf(secret, secret_len, info, out->mac);
}

int seal_mac_hex(const seal_keys_t *keys, const void *const pieces[], const size_t lens[], size_t n,
                 char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    EVP_MAC_free(hmac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    bool ok = ctx && EVP_MAC_init(ctx, keys->mac, sizeof(keys->mac), params) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_MAC_update(ctx, pieces[i], lens[i]) == 1;
    ok = ok && EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) == 1 && mac_len == 32;
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return -1;
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

char *seal_text(const seal_keys_t *keys, const char *aad, const void *plain, size_t len)
{
    if (len > (size_t)INT32_MAX - NONCE_LEN - TAG_LEN)
        return NULL;
    size_t raw_len = NONCE_LEN + len + TAG_LEN;
    unsigned char *raw = xmalloc(raw_len);
    unsigned char *nonce = raw, *ct = raw + NONCE_LEN, *tag = raw + NONCE_LEN + len;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0;
    bool ok = ctx && RAND_bytes(nonce, NONCE_LEN) == 1 &&
              EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, keys->enc, nonce) == 1 &&
              EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
              EVP_EncryptUpdate(ctx, ct, &n, plain, (int)len) == 1 &&
              EVP_EncryptFinal_ex(ctx, ct + n, &n) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    char *out = NULL;
    if (ok) {
        size_t prefix = strlen(SEAL_PREFIX);
        out = xmalloc(prefix + 4 * ((raw_len + 2) / 3) + 1);
        memcpy(out, SEAL_PREFIX, prefix);
        EVP_EncodeBlock((unsigned char *)out + prefix, raw, (int)raw_len);
    }
    free(raw);
    return out;
}

bool seal_is_sealed(const char *text)
{
    return text && !strncmp(text, SEAL_PREFIX, strlen(SEAL_PREFIX));
}

int seal_open(const seal_keys_t *keys, const char *aad, const char *text, char **plain, size_t *len)
{
    if (!seal_is_sealed(text))
        return -1;
    const char *b64 = text + strlen(SEAL_PREFIX);
    size_t b64_len = strlen(b64);
    if (b64_len % 4 || b64_len > (size_t)INT32_MAX)
        return -1;
    unsigned char *raw = xmalloc(b64_len / 4 * 3 + 1);
    int raw_len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64_len);
    /* EVP_DecodeBlock counts '=' padding as zero bytes: take them back off. */
    for (size_t i = b64_len; raw_len > 0 && i > 0 && b64[i - 1] == '='; i--)
        raw_len--;
    if (raw_len < NONCE_LEN + TAG_LEN) {
        free(raw);
        return -1;
    }
    size_t ct_len = (size_t)raw_len - NONCE_LEN - TAG_LEN;
    unsigned char *nonce = raw, *ct = raw + NONCE_LEN, *tag = raw + NONCE_LEN + ct_len;
    char *out = xmalloc(ct_len + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;
    bool ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, keys->enc, nonce) == 1 &&
              EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
              EVP_DecryptUpdate(ctx, (unsigned char *)out, &n, ct, (int)ct_len) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
              EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n, &m) == 1;
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    if (!ok) {
        free(out);
        return -1;
    }
    out[ct_len] = '\0';
    *plain = out;
    *len = ct_len;
    return 0;
}
