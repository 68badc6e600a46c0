/* base64.h — strict base64 (RFC 4648 §4, padded) and base64url (§5, unpadded), for JWTs
 * (auth.c) and the SDK's px_base64_encode / px_base64_decode (api_helpers.c). */
#ifndef PX_BASE64_H
#define PX_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Characters base64_encode writes for `n` bytes (no NUL). */
size_t base64_encoded_len(size_t n, bool url);
/* Writes base64_encoded_len(n, url) characters and no NUL. */
void base64_encode(const unsigned char *src, size_t n, bool url, char *dst);
/* Strict: only the alphabet (and, padded, the '=' that belong), leftover bits zero, so
 * every byte string has exactly one accepted text. With dst NULL it only validates (and
 * counts); dst needs room for exactly the bytes decoded, at most len / 4 * 3 + 2. Returns
 * 0 with *out_len set, or -1. */
int base64_decode(const char *src, size_t len, bool url, unsigned char *dst, size_t *out_len);

#endif
