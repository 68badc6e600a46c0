/*
 * rank.c — board order as fractional keys.
 *
 * A task's `rank` is a string over the 62 digits 0-9A-Za-z, compared byte by byte (the
 * column is COLLATE "C", whose order is the digits' ASCII order). A key is read as the
 * base-62 fraction 0.d1d2d3..., so between any two keys there is always another one and
 * moving a task between two neighbours changes only the moved task. Keys never end in
 * '0' (a trailing zero adds nothing to the fraction but would leave no key below
 * "...0"); every key this file makes keeps that. The cost is length: repeatedly inserting
 * into the same gap grows keys by about one digit per six moves, so a key past
 * [plugin:task] rank_max_length makes the caller rebalance the column (store.c,
 * task_rank_key), which spaces every key of the column evenly at a fixed short length.
 */
#include <stdlib.h>
#include <string.h>

#include "task.h"

static const char DIGITS[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
#define BASE 62

static int digit(char c)
{
    const char *p = c ? strchr(DIGITS, c) : NULL;
    return p ? (int)(p - DIGITS) : -1;
}

bool rank_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (!n || key[n - 1] == '0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (digit(key[i]) < 0)
            return false;
    return true;
}

/* The key strictly between `lo` and `hi` (NULL: the open end), written into `out`
 * (room for max(strlen(lo), strlen(hi)) + 2 bytes). Walks the common prefix, then either
 * finds a digit strictly between the two digits at that position, or keeps lo's digit and
 * goes on below an open upper end. */
int rank_between(const char *lo, const char *hi, char *out, size_t cap)
{
    if ((lo && !rank_valid(lo)) || (hi && !rank_valid(hi)) || (lo && hi && strcmp(lo, hi) >= 0))
        return PX_EINVAL;
    size_t n = 0;
    bool open_hi = hi == NULL;
    for (size_t i = 0;; i++) {
        if (n + 2 > cap)
            return PX_EOVERFLOW;
        int a = lo && i < strlen(lo) ? digit(lo[i]) : 0;
        int b = open_hi ? BASE : (i < strlen(hi) ? digit(hi[i]) : 0);
        if (b - a > 1) {
            out[n++] = DIGITS[(a + b) / 2];
            break;
        }
        /* No digit fits here: keep lo's digit (a). If it was below hi's (b == a + 1), hi
         * no longer bounds what follows; if equal, the prefix continues. */
        out[n++] = DIGITS[a];
        if (b != a)
            open_hi = true;
    }
    out[n] = '\0';
    return 0;
}
