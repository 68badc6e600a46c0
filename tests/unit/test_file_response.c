/* test_file_response.c — server/file_response.c's decisions: Range parsing (one, several,
 * suffix, open-ended, unsatisfiable, malformed), If-None-Match matching, which types are
 * shown inline, and Content-Disposition with hostile file names. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "file_response.h"

static uint64_t first, last;

static int range(const char *h, uint64_t size)
{
    first = last = 12345;
    return file_range_parse(h, size, &first, &last);
}

static void test_range_one(void)
{
    CHECK_EQ_INT(range("bytes=0-99", 1000), FILE_RANGE_ONE);
    CHECK_EQ_U64(first, 0);
    CHECK_EQ_U64(last, 99);
    CHECK_EQ_INT(range("bytes=500-", 1000), FILE_RANGE_ONE);
    CHECK_EQ_U64(first, 500);
    CHECK_EQ_U64(last, 999);
    CHECK_EQ_INT(range("bytes=-10", 1000), FILE_RANGE_ONE);
    CHECK_EQ_U64(first, 990);
    CHECK_EQ_U64(last, 999);
    CHECK_EQ_INT(range("bytes=-5000", 1000), FILE_RANGE_ONE); /* longer suffix: all of it */
    CHECK_EQ_U64(first, 0);
    CHECK_EQ_U64(last, 999);
    CHECK_EQ_INT(range("bytes=10-99999999999999999999999", 1000), FILE_RANGE_ONE);
    CHECK_EQ_U64(last, 999);
    CHECK_EQ_INT(range("BYTES=1-1", 1000), FILE_RANGE_ONE);
    CHECK_EQ_U64(first, 1);
    CHECK_EQ_U64(last, 1);
    CHECK_EQ_INT(range("bytes=999-999", 1000), FILE_RANGE_ONE);
}

static void test_range_unsatisfiable(void)
{
    CHECK_EQ_INT(range("bytes=1000-", 1000), FILE_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(range("bytes=5000-6000", 1000), FILE_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(range("bytes=-0", 1000), FILE_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(range("bytes=0-", 0), FILE_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(range("bytes=-1", 0), FILE_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(range("bytes=99999999999999999999999-", 1000), FILE_RANGE_UNSATISFIABLE);
}

/* Ignored: the whole file, 200. */
static void test_range_ignored(void)
{
    CHECK_EQ_INT(range(NULL, 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=0-1,5-6", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=0-1,", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("items=0-1", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=5-1", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=-", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=a-b", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=1-2x", 1000), FILE_RANGE_NONE);
    CHECK_EQ_INT(range("bytes=--1", 1000), FILE_RANGE_NONE);
    CHECK_EQ_U64(first, 12345); /* untouched when ignored */
}

static void test_etag(void)
{
    const char *e = "\"abc\"";
    CHECK(file_etag_matches("\"abc\"", e));
    CHECK(file_etag_matches("W/\"abc\"", e));
    CHECK(file_etag_matches("\"x\", \"abc\"", e));
    CHECK(file_etag_matches("*", e));
    CHECK(!file_etag_matches(NULL, e));
    CHECK(!file_etag_matches("\"abcd\"", e));
    CHECK(!file_etag_matches("\"ab\"", e));
    CHECK(!file_etag_matches("abc", e));
    CHECK(!file_etag_matches("\"abc", e));
    CHECK(!file_etag_matches("", e));
}

static void test_inline_types(void)
{
    CHECK(file_type_inline("image/png"));
    CHECK(file_type_inline("image/jpeg"));
    CHECK(file_type_inline("image/gif"));
    CHECK(file_type_inline("image/webp"));
    CHECK(!file_type_inline("image/svg+xml"));
    CHECK(!file_type_inline("text/html"));
    CHECK(!file_type_inline("application/pdf"));
    CHECK(!file_type_inline("text/plain"));
    CHECK(!file_type_inline(NULL));
}

static char *disposition(const char *name, bool inline_)
{
    static buf_t b;
    b.len = 0;
    buf_reserve(&b, 1);
    b.data[0] = '\0';
    file_disposition(&b, name, inline_);
    return b.data;
}

static void test_disposition(void)
{
    CHECK_STR(disposition(NULL, false), "attachment");
    CHECK_STR(disposition("", true), "inline");
    CHECK_STR(disposition("cat.png", true),
              "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png");
    CHECK_STR(disposition("a b.txt", false),
              "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt");
    /* A quote, a backslash, CR/LF and % never reach the quoted fallback; filename* is
     * all attr-char and escapes. */
    CHECK_STR(disposition("x\"y\r\nSet-Cookie: a=b%", false),
              "attachment; filename=\"x_y__Set-Cookie: a=b_\"; "
              "filename*=UTF-8''x%22y%0D%0ASet-Cookie%3A%20a%3Db%25");
    CHECK_STR(disposition("r\xc3\xa9sum\xc3\xa9.pdf", false),
              "attachment; filename=\"r__sum__.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf");
    /* Only the last part of a path. */
    CHECK_STR(disposition("../../etc/passwd", false),
              "attachment; filename=\"passwd\"; filename*=UTF-8''passwd");
    CHECK_STR(disposition("C:\\Users\\me\\a.txt", false),
              "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt");
    CHECK_STR(disposition("dir/", false), "attachment");
    /* A very long name is cut, not refused. */
    char longname[600];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK(strlen(disposition(longname, false)) < 600);
}

int main(void)
{
    RUN(test_range_one);
    RUN(test_range_unsatisfiable);
    RUN(test_range_ignored);
    RUN(test_etag);
    RUN(test_inline_types);
    RUN(test_disposition);
    return check_finish();
}
