/*
 * csv.c — RFC 4180 rows (CRLF, fields with a comma, quote, CR or LF quoted, quotes
 * doubled) for the text/csv form of every report.
 *
 * Spreadsheets run a cell that starts like a formula (= + - @, and tab, CR, LF, which
 * some of them strip first; also the full-width forms U+FF1D U+FF0B U+FF0D U+FF20, which
 * some normalise) — OWASP's "CSV injection". Text cells starting so get a leading ' and
 * are then shown as typed; numbers are never prefixed (a negative count must stay a
 * number), so the caller says which a cell is.
 */
#include <string.h>

#include "reporting.h"

static bool formula_start(const char *s)
{
    static const char *const wide[] = {"\xef\xbc\x9d", "\xef\xbc\x8b", "\xef\xbc\x8d",
                                       "\xef\xbc\xa0"};
    if (!*s)
        return false;
    if (strchr("=+-@\t\r\n", *s))
        return true;
    for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++)
        if (!strncmp(s, wide[i], 3))
            return true;
    return false;
}

void csv_text(rbuf_t *b, const char *s)
{
    if (!s)
        s = "";
    bool prefix = formula_start(s);
    bool quote = prefix || strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        rbuf_put(b, "\"", 1);
    if (prefix)
        rbuf_put(b, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            rbuf_put(b, "\"", 1);
        rbuf_put(b, p, 1);
    }
    if (quote)
        rbuf_put(b, "\"", 1);
}

void csv_number(rbuf_t *b, const json_t *v)
{
    if (json_is_integer(v))
        rbuf_printf(b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        rbuf_printf(b, "%.17g", json_real_value(v));
    /* null: an empty cell */
}

void csv_sep(rbuf_t *b)
{
    rbuf_put(b, ",", 1);
}

void csv_eol(rbuf_t *b)
{
    rbuf_put(b, "\r\n", 2);
}

void csv_days(rbuf_t *b, const json_t *days, const char *const *columns)
{
    for (int i = 0; columns[i]; i++) {
        if (i)
            csv_sep(b);
        csv_text(b, columns[i]);
    }
    csv_eol(b);
    size_t k;
    const json_t *day;
    json_array_foreach(days, k, day) {
        for (int i = 0; columns[i]; i++) {
            const json_t *v = json_object_get(day, columns[i]);
            if (i)
                csv_sep(b);
            if (json_is_string(v))
                csv_text(b, json_string_value(v));
            else
                csv_number(b, v);
        }
        csv_eol(b);
    }
}
