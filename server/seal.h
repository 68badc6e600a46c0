/*
 * seal.h — what the server keeps about a request in PostgreSQL, sealed with keys derived
 * from the [auth] token secret, so that a copy of the database alone gives away neither
 * the answers it stores (an idempotent register's answer holds a working refresh token)
 * nor anything that can be guessed offline about the requests (their bodies may hold
 * passwords, and a plain SHA-256 of a body is a cheap password hash).
 *
 * Keys: HKDF-SHA256 of the secret, one key per purpose and use. Fingerprints: HMAC-SHA256,
 * hex. Sealed text: AES-256-GCM with a random nonce and the caller's associated data
 * (which row it belongs to, so rows cannot be swapped), stored as SEAL_PREFIX + base64 of
 * nonce, ciphertext and tag.
 */
#ifndef PX_SEAL_H
#define PX_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#define SEAL_PREFIX "sealed:v1:"

typedef struct seal_keys {
    unsigned char enc[32]; /* AES-256-GCM */
    unsigned char mac[32]; /* HMAC-SHA256 */
} seal_keys_t;

/* Derives the keys for `purpose` (e.g. "panthera idempotency v1") from `secret`.
 * 0, or -1 when OpenSSL fails or an argument is NULL or empty. */
int seal_keys_derive(const char *secret, size_t secret_len, const char *purpose, seal_keys_t *out);

/* HMAC-SHA256 under keys->mac of the `n` pieces (fed one after the other), as 64 hex digits
 * and a NUL in `out`. 0, or -1 when OpenSSL fails. */
int seal_mac_hex(const seal_keys_t *keys, const void *const pieces[], const size_t lens[], size_t n,
                 char out[65]);

/* `len` bytes of `plain` sealed, with `aad` (a C string) bound to them: a malloc'd
 * C string that starts with SEAL_PREFIX; the caller frees it. NULL only when OpenSSL
 * fails. */
char *seal_text(const seal_keys_t *keys, const char *aad, const void *plain, size_t len);

/* Whether `text` is something seal_text made (by its prefix). */
bool seal_is_sealed(const char *text);

/* Opens what seal_text made with the same keys and aad: *plain (malloc'd, NUL-terminated
 * after *len bytes; the caller frees it). 0, or -1 when the text is malformed, was made
 * with other keys or another aad, or was changed. */
int seal_open(const seal_keys_t *keys, const char *aad, const char *text, char **plain,
              size_t *len);

#endif
