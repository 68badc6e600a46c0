/*
 * base64.c — strict base64 and base64url, once for the host (JWTs in auth.c) and for
 * plugins (px_base64_encode / px_base64_decode).
 *
 * Strict means one text per byte string: the decoder refuses characters outside the
 * alphabet, misplaced or missing padding (padded form), padding at all (url form), and
 * leftover low bits that are not zero. A token compared as text (a JWT signature, a
 * refresh token) can then never be presented in a second spelling that decodes the same.
 * Pure functions: safe on any thread.
 */
#include <stdint.h>

#include "base64.h"

static const char alphabet_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char alphabet_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int value(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

size_t base64_encoded_len(size_t n, bool url)
{
    return url ? n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0) : (n + 2) / 3 * 4;
}

void base64_encode(const unsigned char *src, size_t n, bool url, char *dst)
{
    const char *a = url ? alphabet_url : alphabet_std;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        *dst++ = a[v >> 18 & 63];
        *dst++ = a[v >> 12 & 63];
        *dst++ = a[v >> 6 & 63];
        *dst++ = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        *dst++ = a[v >> 18 & 63];
        *dst++ = a[v >> 12 & 63];
        if (!url) {
            *dst++ = '=';
            *dst++ = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        *dst++ = a[v >> 18 & 63];
        *dst++ = a[v >> 12 & 63];
        *dst++ = a[v >> 6 & 63];
        if (!url)
            *dst++ = '=';
    }
}

int base64_decode(const char *src, size_t len, bool url, unsigned char *dst, size_t *out_len)
{
    if (!url) {
        /* Padded: whole groups of 4, the last ending in at most two '='. */
        if (len % 4)
            return -1;
        size_t pad = 0;
        while (pad < 2 && len > pad && src[len - 1 - pad] == '=')
            pad++;
        len -= pad;
    }
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    size_t nout = 0;
    for (size_t i = 0; i < len; i++) {
        int v = value((unsigned char)src[i], url);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            if (dst) {
                dst[nout] = (unsigned char)(acc >> 16);
                dst[nout + 1] = (unsigned char)(acc >> 8);
                dst[nout + 2] = (unsigned char)acc;
            }
            nout += 3;
            acc = 0;
        }
    }
    /* A tail of 2 characters carries 12 bits for 1 byte, 3 carry 18 bits for 2 bytes;
     * the leftover low bits must be zero. */
    if (len % 4 == 2) {
        if (acc & 0xf)
            return -1;
        if (dst)
            dst[nout] = (unsigned char)(acc >> 4);
        nout += 1;
    } else if (len % 4 == 3) {
        if (acc & 0x3)
            return -1;
        if (dst) {
            dst[nout] = (unsigned char)(acc >> 10);
            dst[nout + 1] = (unsigned char)(acc >> 2);
        }
        nout += 2;
    }
    *out_len = nout;
    return 0;
}
