/*
 * validate_format.c — what a string must look like, for validate.c: the formats the host
 * checks (email, uuid, date, date-time; RFC 5321 and RFC 3339 as APIs use them) and the
 * translation of a schema's pattern into something libc can run.
 *
 * Patterns are ECMA-262 (what OpenAPI says) but run on POSIX extended regular expressions
 * (libc's regcomp): validate_pattern_ere() maps the common part (\d \w \s, \xHH, escapes,
 * non-capturing groups) and refuses the rest (look-around, back-references, lazy
 * quantifiers) when the schema is compiled, so a pattern the host would run differently is
 * an init error rather than a silent difference. regexec works on bytes in the C locale: a
 * pattern made of ASCII classes behaves as in ECMA; "." and a negated class match one byte
 * of a multi-byte character rather than the character, which only matters for patterns
 * that count non-ASCII characters (minLength and maxLength count code points instead).
 */
#include <stdio.h>
#include <string.h>

#include "util.h"
#include "validate.h"

/* ---- patterns: ECMA-262 to POSIX ERE ---- */

static int hex_digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The character an escape such as \n, \x41 or \u0041 stands for, and how many pattern
 * bytes it used (after the backslash); -1 when it is not such an escape or not ASCII. */
static int escaped_char(const char *p, int *used)
{
    *used = 1;
    switch (*p) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'x': *used = 3; return hex_digits(p + 1, 2);
    case 'u': *used = 5; return hex_digits(p + 1, 4);
    default: return -2;
    }
}

char *validate_pattern_ere(const char *in, char *err, size_t errlen)
{
    buf_t out = {0};
    bool in_class = false;
    for (const char *p = in; *p; p++) {
        char c = *p;
        if (c == '[' && !in_class) {
            in_class = true;
            buf_append(&out, "[", 1);
            if (p[1] == '^') {
                buf_append(&out, "^", 1);
                p++;
            }
            if (p[1] == ']') {
                snprintf(err, errlen, "an empty class \"[]\" in pattern %s", in);
                goto fail;
            }
            continue;
        }
        if (c == ']' && in_class) {
            in_class = false;
            buf_append(&out, "]", 1);
            continue;
        }
        if (c == '(' && !in_class && p[1] == '?') {
            if (p[2] != ':') {
                snprintf(err, errlen, "look-around and named groups are not supported (pattern %s)",
                         in);
                goto fail;
            }
            buf_append(&out, "(", 1);
            p += 2;
            continue;
        }
        if (!in_class && (c == '*' || c == '+' || c == '?' || c == '}') && p[1] == '?') {
            snprintf(err, errlen, "lazy quantifiers are not supported (pattern %s)", in);
            goto fail;
        }
        if (c != '\\') {
            buf_append(&out, p, 1);
            continue;
        }
        char e = *++p;
        const char *cls = NULL;
        switch (e) {
        case 'd': cls = in_class ? "0-9" : "[0-9]"; break;
        case 'w': cls = in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]"; break;
        case 's': cls = in_class ? "[:space:]" : "[[:space:]]"; break;
        case 'D': cls = in_class ? NULL : "[^0-9]"; break;
        case 'W': cls = in_class ? NULL : "[^A-Za-z0-9_]"; break;
        case 'S': cls = in_class ? NULL : "[^[:space:]]"; break;
        default: break;
        }
        if (cls) {
            buf_append(&out, cls, strlen(cls));
            continue;
        }
        if (e == 'D' || e == 'W' || e == 'S' || e == 'b' || e == 'B' || (e >= '0' && e <= '9') ||
            e == 'k' || e == 'p' || e == 'P' || e == 'c' || e == '\0') {
            snprintf(err, errlen, "\\%c is not supported%s (pattern %s)", e ? e : ' ',
                     in_class ? " inside a class" : "", in);
            goto fail;
        }
        int used;
        int ch = escaped_char(p, &used);
        /* No string with a NUL ever reaches a pattern (check_string refuses it first), so
         * a class may start its range at \x00: it is written from \x01. */
        if (ch == 0 && in_class)
            ch = 1;
        if (ch == -1 || ch == 0 || ch > 0x7f) {
            snprintf(err, errlen, "\\%c: only escapes of ASCII characters but NUL are supported "
                     "(pattern %s)", e, in);
            goto fail;
        }
        if (ch == -2)
            ch = (unsigned char)e; /* \. \/ \- ... : the character itself */
        else
            p += used - 1;
        char lit = (char)ch;
        if (in_class) {
            /* In a POSIX class a backslash is literal and ] ^ - are positional: refuse the
             * few that cannot be written plainly rather than guess. */
            if (lit == ']' || lit == '^' || lit == '-' || lit == '[') {
                snprintf(err, errlen, "an escaped '%c' inside a class is not supported "
                         "(pattern %s)", lit, in);
                goto fail;
            }
            buf_append(&out, &lit, 1);
        } else {
            if (strchr(".[]()*+?{}|^$\\", lit))
                buf_append(&out, "\\", 1);
            buf_append(&out, &lit, 1);
        }
    }
    if (in_class) {
        snprintf(err, errlen, "an unclosed class in pattern %s", in);
        goto fail;
    }
    buf_append(&out, "", 1);
    return out.data;
fail:
    buf_free(&out);
    return NULL;
}

/* ---- formats ---- */

static bool atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+/=?^_`{|}~-", c));
}

/* A practical subset of RFC 5321: a dot-atom local part of at most 64 characters, a domain
 * of at least two labels (letters, digits, inner hyphens) ending in an alphabetic
 * top-level label of two or more letters, 254 characters in all. No quoted local parts,
 * no address literals, no internationalised addresses: legal, but mostly seen in attacks. */
bool validate_is_email(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (len > 254 || !at || memchr(at + 1, '@', len - (size_t)(at - s) - 1))
        return false;
    size_t local = (size_t)(at - s);
    if (local == 0 || local > 64 || s[0] == '.' || s[local - 1] == '.')
        return false;
    for (size_t i = 0; i < local; i++)
        if (!(atext(s[i]) || (s[i] == '.' && s[i + 1] != '.')))
            return false;
    const char *d = at + 1, *end = s + len;
    int labels = 0;
    bool alpha = false;
    size_t last_len = 0;
    while (d <= end) {
        const char *dot = memchr(d, '.', (size_t)(end - d));
        const char *lend = dot ? dot : end;
        size_t n = (size_t)(lend - d);
        if (n == 0 || n > 63 || d[0] == '-' || lend[-1] == '-')
            return false;
        alpha = true;
        for (size_t i = 0; i < n; i++) {
            char c = d[i];
            bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
            if (!(letter || (c >= '0' && c <= '9') || c == '-'))
                return false;
            alpha = alpha && letter;
        }
        labels++;
        last_len = n;
        if (!dot)
            break;
        d = dot + 1;
    }
    return labels >= 2 && alpha && last_len >= 2;
}

bool validate_is_uuid(const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (dash ? c != '-' : !hex)
            return false;
    }
    return true;
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* RFC 3339 full-date: YYYY-MM-DD, a day that exists (leap years included). */
bool validate_is_date(const char *s, size_t len)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (len != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) || !digits(s + 5, 2, &m) ||
        !digits(s + 8, 2, &d) || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

/* RFC 3339 date-time: full-date "T" HH:MM:SS[.frac] then "Z" or +HH:MM / -HH:MM. */
bool validate_is_date_time(const char *s, size_t len)
{
    int h, mi, sec, oh, om;
    if (len < 20 || !validate_is_date(s, 10) || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':' || !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) ||
        !digits(s + 17, 2, &sec) || h > 23 || mi > 59 || sec > 60)
        return false;
    size_t i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z'))
        return true;
    return i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
           digits(s + i + 1, 2, &oh) && digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59;
}

