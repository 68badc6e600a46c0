/* util.h — allocation that cannot fail, growable buffers, and config value parsing. */
#ifndef PX_UTIL_H
#define PX_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED(x) ((void)(x))

/* Allocation failure is not recoverable in a server that promised a response: abort
 * through one place, loudly, instead of scattering NULL checks. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer. `data` is always NUL-terminated for convenience. */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

void buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *data, size_t len);
void buf_appends(buf_t *b, const char *s);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append `s` as the inside of a JSON string (no quotes). */
void buf_append_json_escaped(buf_t *b, const char *s, size_t len);
void buf_free(buf_t *b);

/* Reconnect backoff, for the pools: returns the delay to wait now, *backoff_ms +-20 % (so
 * that workers retrying together do not knock in step), and doubles *backoff_ms up to
 * max_ms. `rng` is xorshift64 state: any non-zero seed. */
uint64_t backoff_next(unsigned *backoff_ms, unsigned max_ms, uint64_t *rng);

/* "8k", "1m", "512" → bytes. Returns 0 or -1 on a malformed or negative value. */
int parse_size(const char *s, uint64_t *out);
/* "75s", "500ms", "2m", "1h", "30d", bare number = seconds → milliseconds. */
int parse_duration_ms(const char *s, uint64_t *out);
/* "yes/no/on/off/true/false/1/0". */
int parse_bool(const char *s, bool *out);
/* Strict decimal integer in [min, max]. */
int parse_int(const char *s, long min, long max, long *out);

uint64_t now_ms_monotonic(void);
/* Milliseconds since the epoch (CLOCK_REALTIME): what tokens are dated with. */
int64_t wall_clock_ms(void);

#endif
