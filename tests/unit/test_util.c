/* test_util.c — server/util.c: size, duration and integer parsing at their edges, and
 * the JSON string escaping the access log relies on. */
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "request.h"
#include "util.h"

/* parse_size(s) as a value, or UINT64_MAX - 1 for "refused" (no valid input gives it). */
#define REFUSED (UINT64_MAX - 1)

static uint64_t size_of(const char *s)
{
    uint64_t v = 12345;
    if (parse_size(s, &v))
        return v == 12345 ? REFUSED : 0; /* a refusal must leave *out alone */
    return v;
}

static uint64_t duration_of(const char *s)
{
    uint64_t v = 12345;
    if (parse_duration_ms(s, &v))
        return v == 12345 ? REFUSED : 0;
    return v;
}

static void test_parse_size(void)
{
    CHECK_EQ_U64(size_of("0"), 0);
    CHECK_EQ_U64(size_of("512"), 512);
    CHECK_EQ_U64(size_of("512b"), 512);
    CHECK_EQ_U64(size_of("8k"), 8192);
    CHECK_EQ_U64(size_of("8K"), 8192);
    CHECK_EQ_U64(size_of("8kb"), 8192);
    CHECK_EQ_U64(size_of("8KB"), 8192);
    CHECK_EQ_U64(size_of("1m"), 1048576);
    CHECK_EQ_U64(size_of("2MB"), 2097152);
    CHECK_EQ_U64(size_of("3g"), 3ull << 30);

    /* Overflow: of the number itself and of number × unit. */
    CHECK_EQ_U64(size_of("18446744073709551615"), UINT64_MAX);
    CHECK_EQ_U64(size_of("18446744073709551616"), REFUSED);
    CHECK_EQ_U64(size_of("99999999999999999999999"), REFUSED);
    CHECK_EQ_U64(size_of("17179869183g"), 17179869183ull << 30);
    CHECK_EQ_U64(size_of("17179869184g"), REFUSED);
    CHECK_EQ_U64(size_of("18014398509481984k"), REFUSED);

    /* Malformed. */
    static const char *bad[] = {"",   "k",  "-1", "-1k", "+1",   " 1", "1 ",  "1x", "1kk",
                                "1.5k", "1t", "1e3", "0x10", "1 k", "1kib", "k1", "1b2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = size_of(bad[i]);
        if (v != REFUSED)
            fprintf(stderr, "parse_size(\"%s\") accepted as %llu\n", bad[i],
                    (unsigned long long)v);
        CHECK_EQ_U64(v, REFUSED);
    }
    uint64_t v;
    CHECK_EQ_INT(parse_size(NULL, &v), -1);
}

static void test_parse_duration(void)
{
    CHECK_EQ_U64(duration_of("0"), 0);
    CHECK_EQ_U64(duration_of("75"), 75000); /* bare number: seconds */
    CHECK_EQ_U64(duration_of("75s"), 75000);
    CHECK_EQ_U64(duration_of("500ms"), 500);
    CHECK_EQ_U64(duration_of("0ms"), 0);
    CHECK_EQ_U64(duration_of("2m"), 120000);
    CHECK_EQ_U64(duration_of("1h"), 3600000);
    CHECK_EQ_U64(duration_of("30d"), 30ull * 86400000);
    CHECK_EQ_U64(duration_of("213503982334d"), 213503982334ull * 86400000);
    CHECK_EQ_U64(duration_of("213503982335d"), REFUSED);

    CHECK_EQ_U64(duration_of("18446744073709551615ms"), UINT64_MAX);
    CHECK_EQ_U64(duration_of("18446744073709551616ms"), REFUSED);
    CHECK_EQ_U64(duration_of("18446744073709551s"), 18446744073709551000ull);
    CHECK_EQ_U64(duration_of("18446744073709552s"), REFUSED);
    CHECK_EQ_U64(duration_of("18446744073709552"), REFUSED);
    CHECK_EQ_U64(duration_of("5124095576030h"), 5124095576030ull * 3600000);
    CHECK_EQ_U64(duration_of("5124095576031h"), REFUSED);
    CHECK_EQ_U64(duration_of("307445734561825m"), 307445734561825ull * 60000);
    CHECK_EQ_U64(duration_of("307445734561826m"), REFUSED);

    static const char *bad[] = {"",    "ms",  "s",   "-1",  "-1s", "+1s", " 1s", "1s ",
                                "fast", "1dd", "1us", "1.5s", "1sec", "1 s", "1msx", "1mm"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = duration_of(bad[i]);
        if (v != REFUSED)
            fprintf(stderr, "parse_duration_ms(\"%s\") accepted as %llu\n", bad[i],
                    (unsigned long long)v);
        CHECK_EQ_U64(v, REFUSED);
    }
    uint64_t v;
    CHECK_EQ_INT(parse_duration_ms(NULL, &v), -1);
}

static void test_parse_int(void)
{
    long v = 0;
    CHECK_EQ_INT(parse_int("42", 0, 100, &v), 0);
    CHECK_EQ_INT(v, 42);
    CHECK_EQ_INT(parse_int("-5", -10, 10, &v), 0);
    CHECK_EQ_INT(v, -5);
    CHECK_EQ_INT(parse_int("0", 0, 0, &v), 0);
    CHECK_EQ_INT(v, 0);

    /* Range bounds are inclusive. */
    CHECK_EQ_INT(parse_int("1", 1, 1024, &v), 0);
    CHECK_EQ_INT(parse_int("1024", 1, 1024, &v), 0);
    CHECK_EQ_INT(parse_int("0", 1, 1024, &v), -1);
    CHECK_EQ_INT(parse_int("1025", 1, 1024, &v), -1);
    CHECK_EQ_INT(parse_int("-1", 1, 1024, &v), -1);

    /* The whole long range, and one past each end. */
    CHECK_EQ_INT(parse_int("9223372036854775807", LONG_MIN, LONG_MAX, &v), 0);
    CHECK(v == LONG_MAX);
    CHECK_EQ_INT(parse_int("-9223372036854775808", LONG_MIN, LONG_MAX, &v), 0);
    CHECK(v == LONG_MIN);
    v = 7;
    CHECK_EQ_INT(parse_int("9223372036854775808", LONG_MIN, LONG_MAX, &v), -1);
    CHECK_EQ_INT(parse_int("-9223372036854775809", LONG_MIN, LONG_MAX, &v), -1);
    CHECK_EQ_INT(parse_int("99999999999999999999", 0, 10, &v), -1);
    CHECK_EQ_INT(v, 7); /* untouched on refusal */

    /* Malformed: "strict decimal" means digits with an optional '-', nothing else. */
    static const char *bad[] = {"", "abc", "12a", "1.0", "0x10", "1e3", "12 ", "--1", "-",
                                " 12", "+12", "\t12", "\n12"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_int(bad[i], LONG_MIN, LONG_MAX, &v);
        if (rc == 0)
            fprintf(stderr, "parse_int(\"%s\") accepted as %ld\n", bad[i], v);
        CHECK_EQ_INT(rc, -1);
    }
    CHECK_EQ_INT(parse_int(NULL, 0, 10, &v), -1);
}

static void test_parse_bool(void)
{
    bool b = false;
    static const char *yes[] = {"yes", "on", "true", "1", "YES", "True"};
    static const char *no[] = {"no", "off", "false", "0", "NO", "Off"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        b = false;
        CHECK_EQ_INT(parse_bool(yes[i], &b), 0);
        CHECK(b);
        b = true;
        CHECK_EQ_INT(parse_bool(no[i], &b), 0);
        CHECK(!b);
    }
    CHECK_EQ_INT(parse_bool("", &b), -1);
    CHECK_EQ_INT(parse_bool("2", &b), -1);
    CHECK_EQ_INT(parse_bool("yess", &b), -1);
}

/* The escaped form of `s` (len bytes), malloc'd. */
static char *escaped(const char *s, size_t len, int line)
{
    buf_t b = {0};
    buf_append_json_escaped(&b, s, len);
    /* util.h: "data is always NUL-terminated" (NULL is fine for a buffer never grown). */
    if (!check_report(!b.data || b.data[b.len] == '\0', __FILE__, line))
        fprintf(stderr, "the buffer is not NUL-terminated after escaping %zu bytes\n", len);
    char *out = xstrndup(b.data ? b.data : "", b.len);
    buf_free(&b);
    return out;
}

static void check_escape(const char *in, size_t len, const char *expected, int line)
{
    char *out = escaped(in, len, line);
    bool ok = strcmp(out, expected) == 0;
    if (!check_report(ok, __FILE__, line))
        fprintf(stderr, "escaped to \"%s\", expected \"%s\"\n", out, expected);
    /* Whatever went in, the result is the inside of a valid JSON string. */
    char *doc = xasprintf("\"%s\"", out);
    json_error_t jerr;
    json_t *j = json_loads(doc, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!check_report(j != NULL, __FILE__, line))
        fprintf(stderr, "%s is not valid JSON: %s\n", doc, jerr.text);
    json_decref(j);
    free(doc);
    free(out);
}

#define CHECK_ESCAPE(in, expected) check_escape((in), sizeof(in) - 1, (expected), __LINE__)

static void test_json_escape(void)
{
    CHECK_ESCAPE("", "");
    CHECK_ESCAPE("plain /v1/users?x=1", "plain /v1/users?x=1");
    CHECK_ESCAPE("say \"hi\"", "say \\\"hi\\\"");
    CHECK_ESCAPE("back\\slash", "back\\\\slash");
    CHECK_ESCAPE("a\nb\rc\td", "a\\u000ab\\u000dc\\u0009d");
    CHECK_ESCAPE("\x01\x1f", "\\u0001\\u001f");
    CHECK_ESCAPE(" ~", " ~"); /* 0x20 and 0x7e are printable */
    CHECK_ESCAPE("\x7f", "\\u007f");
    CHECK_ESCAPE("\x80\xff", "\\u0080\\u00ff");
    CHECK_ESCAPE("caf\xc3\xa9", "caf\\u00c3\\u00a9"); /* bytes, not code points */
    CHECK_ESCAPE("nul\0byte", "nul\\u0000byte");       /* len, not strlen */

    /* It appends: what was in the buffer stays. */
    buf_t b = {0};
    buf_appends(&b, "{\"path\":\"");
    buf_append_json_escaped(&b, "/a\"b", 4);
    buf_appends(&b, "\"}");
    CHECK_STR(b.data, "{\"path\":\"/a\\\"b\"}");
    CHECK_EQ_INT(b.len, strlen(b.data));

    /* A long input of the worst kind grows the buffer correctly. */
    char worst[3000];
    memset(worst, 0x01, sizeof(worst));
    b.len = 0;
    buf_append_json_escaped(&b, worst, sizeof(worst));
    CHECK_EQ_INT(b.len, sizeof(worst) * 6);
    CHECK_EQ_INT(strlen(b.data), b.len);
    buf_free(&b);
    buf_free(NULL);
}

static void test_buf(void)
{
    buf_t b = {0};
    buf_append(&b, "", 0);
    CHECK(b.data != NULL);
    CHECK_STR(b.data, "");
    buf_printf(&b, "%d-%s", 42, "x");
    buf_appends(&b, "!");
    CHECK_STR(b.data, "42-x!");
    CHECK_EQ_INT(b.len, 5);
    char big[1000];
    memset(big, 'z', sizeof(big));
    buf_append(&b, big, sizeof(big));
    CHECK_EQ_INT(b.len, 1005);
    CHECK(b.cap > b.len);
    CHECK_EQ_INT(b.data[b.len], '\0');
    buf_free(&b);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.len, 0);

    char *s = xasprintf("%s:%d", "file", 12);
    CHECK_STR(s, "file:12");
    free(s);
    s = xstrndup("abcdef", 3);
    CHECK_STR(s, "abc");
    free(s);
}

static void test_backoff(void)
{
    uint64_t rng = 42;
    unsigned backoff = 100;
    unsigned expect[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
    bool spread = false;
    for (size_t i = 0; i < ARRAY_SIZE(expect); i++) {
        CHECK_EQ_INT((int)backoff, (int)expect[i]);
        uint64_t delay = backoff_next(&backoff, 5000, &rng);
        CHECK(delay >= expect[i] * 80 / 100 && delay <= expect[i] * 120 / 100);
        spread |= delay != expect[i];
    }
    CHECK(spread); /* jittered, not the bare value every time */
    /* Two workers seeded differently do not wait the same. */
    uint64_t a = 1, b = 2;
    unsigned ba = 1000, bb = 1000;
    CHECK(backoff_next(&ba, 5000, &a) != backoff_next(&bb, 5000, &b));
}

/* The arena keeps its first block and one grown block across resets, so a pooled request
 * that needs a few KiB does not go to malloc each time; an open stream drops the spare. */
static void test_arena_spare(void)
{
    check_current = "arena spare";
    arena_t a = {0};
    char *small = arena_strndup(&a, "path", 4);
    CHECK(small && !strcmp(small, "path"));
    arena_block_t *first = a.head;
    CHECK_OR_RETURN(first && !first->next && !a.spare);
    char *big = arena_alloc(&a, 1000); /* past the first block: a grown one */
    memset(big, 'x', 1000);
    arena_block_t *grown = a.head;
    CHECK(grown != first && grown->next == first);
    arena_reset(&a);
    CHECK(a.head == first && first->used == 0 && !first->next);
    CHECK(a.spare == grown);
    /* The next growth takes the spare instead of a new block. */
    (void)arena_alloc(&a, 200);
    char *again = arena_alloc(&a, 1000);
    CHECK(a.head == grown && !a.spare && again == grown->data);
    CHECK(arena_strndup(&a, "still", 5) != NULL);
    arena_reset(&a);
    CHECK(a.spare == grown);
    arena_drop_spare(&a);
    CHECK(a.spare == NULL && a.head == first);
    /* An oversized allocation is never kept. */
    (void)arena_alloc(&a, 100000);
    arena_reset(&a);
    CHECK(a.head == first && a.spare == NULL);
    arena_free(&a);
    CHECK(a.head == NULL && a.spare == NULL);
}

int main(void)
{
    RUN(test_arena_spare);
    RUN(test_parse_size);
    RUN(test_parse_duration);
    RUN(test_parse_int);
    RUN(test_parse_bool);
    RUN(test_json_escape);
    RUN(test_buf);
    RUN(test_backoff);
    return check_finish();
}
