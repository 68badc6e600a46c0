/*
 * pdf.c — metadata out of PDF uploads, in place.
 *
 * A PDF says who made it, when and with what in its document information dictionary (the
 * trailer's /Info) and in XMP metadata streams (/Metadata, on the catalog, pages or
 * images); a photo placed in it is often a whole JPEG (a DCTDecode stream) with its own
 * Exif and GPS. The cross-reference table holds the byte offset of every object, so
 * nothing may move: each piece is overwritten where it stands, with the same length.
 *
 *   - /Info (every trailer's and xref stream's, incremental updates included): the
 *     dictionary's contents become spaces (`<<   >>`, an empty dictionary), and objects it
 *     referred to (a string written as its own object) become `null`.
 *   - /Metadata streams: their data become spaces. One with a /Filter (compressed XMP)
 *     cannot be blanked in place: the file is refused (-2), as when the Info dictionary
 *     is not written out where we can find it (inside a compressed object stream).
 *   - Any other `<x:xmpmeta ... </x:xmpmeta>` in the bytes (an orphan packet) becomes
 *     spaces.
 *   - Every stream whose data begin as a JPEG gets image_jpeg_blank (image.c): its
 *     metadata segments zeroed, lengths kept.
 *
 * Objects are found as written by every common writer, "N G obj" with single spaces. This
 * is not a PDF parser: what it cannot find it refuses rather than passes on, and so a
 * file that names more metadata objects than PDF_SEARCHES searches can afford.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

static bool ws(unsigned char c)
{
    return c == 0 || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' ';
}

static bool boundary(unsigned char c)
{
    return ws(c) || (c && strchr("()<>[]{}/%", c));
}

/* The first `needle` at or after `from`, or n. */
static size_t find(const unsigned char *o, size_t n, size_t from, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = from; k <= n && i <= n - k; i++)
        if (o[i] == (unsigned char)needle[0] && !memcmp(o + i, needle, k))
            return i;
    return n;
}

static size_t skip_ws(const unsigned char *o, size_t n, size_t at)
{
    while (at < n && ws(o[at]))
        at++;
    return at;
}

/* "N G R" at `at` (after whitespace): 0 and the numbers, and *end after the R; else -1. */
static int parse_ref(const unsigned char *o, size_t n, size_t at, unsigned long *num,
                     unsigned long *gen, size_t *end)
{
    unsigned long v[2];
    for (int k = 0; k < 2; k++) {
        at = skip_ws(o, n, at);
        size_t start = at;
        v[k] = 0;
        while (at < n && o[at] >= '0' && o[at] <= '9' && at - start < 10)
            v[k] = v[k] * 10 + (unsigned long)(o[at++] - '0');
        if (at == start || at >= n || !ws(o[at]))
            return -1;
    }
    at = skip_ws(o, n, at);
    if (at >= n || o[at] != 'R' || (at + 1 < n && !boundary(o[at + 1])))
        return -1;
    *num = v[0];
    *gen = v[1];
    *end = at + 1;
    return 0;
}

/* Each object search reads the file once: a hostile PDF naming thousands of metadata
 * objects would make the walk quadratic. Past this many searches the file is refused. */
#define PDF_SEARCHES 256

/* Where object N G's value starts (after "N G obj"), searching from `from`; n if none, or
 * when the budget of searches is spent (then *budget < 0 and the file is refused). */
static size_t find_obj(const unsigned char *o, size_t n, size_t from, unsigned long num,
                       unsigned long gen, int *budget)
{
    if (--*budget < 0)
        return n;
    char needle[48];
    snprintf(needle, sizeof(needle), "%lu %lu obj", num, gen);
    size_t k = strlen(needle);
    for (size_t at = from; (at = find(o, n, at, needle)) < n; at++) {
        bool before = at == 0 || boundary(o[at - 1]);
        bool after = at + k == n || boundary(o[at + k]);
        if (before && after)
            return at + k;
    }
    return n;
}

/* The end (after ">>") of the dictionary starting at `at` ("<<"), or 0 if it never ends:
 * literal strings (nested parentheses, backslash escapes), hex strings and comments are
 * skipped, so a ">>" inside them does not count. */
static size_t dict_end(const unsigned char *o, size_t n, size_t at)
{
    int depth = 0;
    while (at < n) {
        if (o[at] == '<' && at + 1 < n && o[at + 1] == '<') {
            depth++;
            at += 2;
        } else if (o[at] == '>' && at + 1 < n && o[at + 1] == '>') {
            at += 2;
            if (--depth == 0)
                return at;
        } else if (o[at] == '(') {
            int paren = 0;
            for (; at < n; at++) {
                if (o[at] == '\\')
                    at++;
                else if (o[at] == '(')
                    paren++;
                else if (o[at] == ')' && --paren == 0)
                    break;
            }
            at++;
        } else if (o[at] == '<') {
            while (at < n && o[at] != '>')
                at++;
            at++;
        } else if (o[at] == '%') {
            while (at < n && o[at] != '\n' && o[at] != '\r')
                at++;
        } else {
            at++;
        }
    }
    return 0;
}

/* Every definition of object N G (an incremental update may write it again) becomes
 * "null". 0, or -2 when there is none to find. */
static int null_object(unsigned char *o, size_t n, unsigned long num, unsigned long gen,
                       int *budget)
{
    int found = 0;
    for (size_t at = 0; (at = find_obj(o, n, at, num, gen, budget)) < n;) {
        size_t end = find(o, n, at, "endobj");
        if (end == n)
            return -2;
        memset(o + at, ' ', end - at);
        if (end - at >= 6)
            memcpy(o + at + 1, "null", 4);
        found = 1;
        at = end;
    }
    return found ? 0 : -2;
}

/* Every definition of the Info dictionary N G: emptied, and what it referred to nulled. */
static int blank_info(unsigned char *o, size_t n, unsigned long num, unsigned long gen,
                      int *budget)
{
    int found = 0;
    for (size_t at = 0; (at = find_obj(o, n, at, num, gen, budget)) < n;) {
        size_t start = skip_ws(o, n, at), end;
        if (start + 1 >= n || o[start] != '<' || o[start + 1] != '<' ||
            !(end = dict_end(o, n, start)))
            return -2;
        for (size_t i = start + 2; i + 2 < end; i++) {
            unsigned long rn, rg;
            size_t after;
            if (o[i] >= '0' && o[i] <= '9' && boundary(o[i - 1]) &&
                !parse_ref(o, end - 2, i, &rn, &rg, &after)) {
                if (!(rn == num && rg == gen) && null_object(o, n, rn, rg, budget))
                    return -2;
                i = after;
            }
        }
        memset(o + start + 2, ' ', end - 2 - (start + 2));
        found = 1;
        at = end;
    }
    return found ? 0 : -2;
}

/* The data of every definition of stream N G become spaces; -2 for a compressed one or
 * one that cannot be found. */
static int blank_metadata(unsigned char *o, size_t n, unsigned long num, unsigned long gen,
                          int *budget)
{
    int found = 0;
    for (size_t at = 0; (at = find_obj(o, n, at, num, gen, budget)) < n;) {
        size_t start = skip_ws(o, n, at), end;
        if (start + 1 >= n || o[start] != '<' || o[start + 1] != '<' ||
            !(end = dict_end(o, n, start)))
            return -2;
        if (find(o, end, start, "/Filter") < end)
            return -2;
        size_t data = skip_ws(o, n, end);
        if (n - data < 6 || memcmp(o + data, "stream", 6))
            return -2;
        data += 6;
        if (data < n && o[data] == '\r')
            data++;
        if (data < n && o[data] == '\n')
            data++;
        size_t stop = find(o, n, data, "endstream");
        if (stop == n)
            return -2;
        memset(o + data, ' ', stop - data);
        found = 1;
        at = stop;
    }
    return found ? 0 : -2;
}

/* Each "/Key N G R" in the file: `fn` on N G. */
static int each_ref(unsigned char *o, size_t n, const char *key,
                    int (*fn)(unsigned char *, size_t, unsigned long, unsigned long, int *),
                    int *budget)
{
    size_t k = strlen(key);
    for (size_t at = 0; (at = find(o, n, at, key)) < n; at += k) {
        unsigned long num, gen;
        size_t end;
        if (at + k < n && !boundary(o[at + k]))
            continue; /* /InfoX, /MetadataFoo */
        if (!parse_ref(o, n, at + k, &num, &gen, &end)) {
            int rc = fn(o, n, num, gen, budget);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int pdf_clean(const unsigned char *p, size_t n, unsigned char **out)
{
    unsigned char *o = malloc(n ? n : 1);
    if (!o)
        abort();
    memcpy(o, p, n);
    int budget = PDF_SEARCHES;
    int rc = each_ref(o, n, "/Info", blank_info, &budget);
    if (!rc)
        rc = each_ref(o, n, "/Metadata", blank_metadata, &budget);
    if (budget < 0)
        rc = -2; /* a definition may have gone unsearched */
    for (size_t at = 0; !rc && (at = find(o, n, at, "<x:xmpmeta")) < n;) {
        size_t end = find(o, n, at, "</x:xmpmeta>");
        end = end == n ? n : end + strlen("</x:xmpmeta>");
        memset(o + at, ' ', end - at);
        at = end;
    }
    for (size_t at = 0; !rc && (at = find(o, n, at, "stream")) < n; at += 6) {
        if (at >= 3 && !memcmp(o + at - 3, "end", 3))
            continue;
        size_t data = at + 6;
        if (data < n && o[data] == '\r')
            data++;
        if (data < n && o[data] == '\n')
            data++;
        if (n - data >= 3 && o[data] == 0xFF && o[data + 1] == 0xD8 && o[data + 2] == 0xFF)
            image_jpeg_blank(o + data, n - data);
    }
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}
