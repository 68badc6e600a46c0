#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void out_of_memory(size_t size)
{
    fprintf(stderr, "pantherad: out of memory allocating %zu bytes\n", size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        out_of_memory(size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        out_of_memory(n * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        out_of_memory(size);
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        out_of_memory(0);
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void buf_reserve(buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(buf_t *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_appends(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_append_json_escaped(buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, len + 8);
    size_t i = 0;
    while (i < len) {
        /* Runs of plain characters go in one copy: a log line is mostly those. */
        size_t run = i;
        while (run < len) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
                break;
            run++;
        }
        if (run > i) {
            buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s[i++];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_append(b, esc, 2);
        } else {
            /* Bytes from the wire are not promised to be UTF-8; escaping every
             * non-ASCII byte keeps each log line valid JSON whatever a client sent. */
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(b, esc, 6);
        }
    }
    b->data[b->len] = '\0';
}

void buf_free(buf_t *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int parse_number_suffix(const char *s, uint64_t *num, const char **suffix)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    *num = v;
    *suffix = end;
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *suf;
    if (parse_number_suffix(s, &v, &suf))
        return -1;
    uint64_t mult = 1;
    if (!strcasecmp(suf, "") || !strcasecmp(suf, "b"))
        mult = 1;
    else if (!strcasecmp(suf, "k") || !strcasecmp(suf, "kb"))
        mult = 1024;
    else if (!strcasecmp(suf, "m") || !strcasecmp(suf, "mb"))
        mult = 1024 * 1024;
    else if (!strcasecmp(suf, "g") || !strcasecmp(suf, "gb"))
        mult = 1024ull * 1024 * 1024;
    else
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *suf;
    if (parse_number_suffix(s, &v, &suf))
        return -1;
    uint64_t mult;
    if (!strcmp(suf, "") || !strcmp(suf, "s"))
        mult = 1000;
    else if (!strcmp(suf, "ms"))
        mult = 1;
    else if (!strcmp(suf, "m"))
        mult = 60 * 1000;
    else if (!strcmp(suf, "h"))
        mult = 3600 * 1000;
    else if (!strcmp(suf, "d"))
        mult = 86400 * 1000; /* refresh tokens and retention are said in days */
    else
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"yes", "on", "true", "1"};
    static const char *no[] = {"no", "off", "false", "0"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int parse_int(const char *s, long min, long max, long *out)
{
    /* strtol would also take leading blanks and a '+': a config value is digits. */
    if (!s || !*s || !(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

uint64_t now_ms_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t backoff_next(unsigned *backoff_ms, unsigned max_ms, uint64_t *rng)
{
    uint64_t x = *rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *rng = x;
    uint64_t delay = (uint64_t)*backoff_ms * (80 + x % 41) / 100;
    *backoff_ms = *backoff_ms > max_ms / 2 ? max_ms : *backoff_ms * 2;
    return delay;
}
