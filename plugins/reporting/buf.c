/*
 * buf.c — a growable byte buffer for the CSV and SVG renderings.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reporting.h"

static void reserve(rbuf_t *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        abort();
    b->p = p;
    b->cap = cap;
}

void rbuf_put(rbuf_t *b, const void *data, size_t n)
{
    reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void rbuf_puts(rbuf_t *b, const char *s)
{
    rbuf_put(b, s, strlen(s));
}

void rbuf_printf(rbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void rbuf_xml(rbuf_t *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': rbuf_puts(b, "&amp;"); break;
        case '<': rbuf_puts(b, "&lt;"); break;
        case '>': rbuf_puts(b, "&gt;"); break;
        case '"': rbuf_puts(b, "&quot;"); break;
        case '\'': rbuf_puts(b, "&apos;"); break;
        default:
            /* XML 1.0 has no place for other C0 controls, even escaped. */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n' && *s != '\r')
                rbuf_put(b, " ", 1);
            else
                rbuf_put(b, s, 1);
        }
    }
}

void rbuf_free(rbuf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
