/*
 * check.h — the unit tests' only framework: a few CHECK macros that print file:line and
 * what differed, and count failures. One process per test file (libuv-style): main()
 * runs its tests with RUN() and returns check_finish(), non-zero when anything failed.
 *
 * A CHECK never stops the test it is in, so one run shows every broken expectation;
 * a test that cannot go on after a failure returns itself (CHECK_OR_RETURN).
 */
#ifndef PX_TEST_CHECK_H
#define PX_TEST_CHECK_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;
static const char *check_current = "?";

static inline bool check_report(bool ok, const char *file, int line)
{
    check_count++;
    if (!ok) {
        check_failures++;
        fprintf(stderr, "%s:%d: [%s] ", file, line, check_current);
    }
    return ok;
}

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!check_report((cond) ? true : false, __FILE__, __LINE__))                        \
            fprintf(stderr, "CHECK(%s) failed\n", #cond);                                    \
    } while (0)

/* Like CHECK, but leaves the current test function (returning void) when it fails. */
#define CHECK_OR_RETURN(cond)                                                                \
    do {                                                                                     \
        if (!check_report((cond) ? true : false, __FILE__, __LINE__)) {                      \
            fprintf(stderr, "CHECK(%s) failed; giving up on this test\n", #cond);            \
            return;                                                                          \
        }                                                                                    \
    } while (0)

#define CHECK_EQ_INT(actual, expected)                                                       \
    do {                                                                                     \
        long long check_a_ = (long long)(actual), check_e_ = (long long)(expected);          \
        if (!check_report(check_a_ == check_e_, __FILE__, __LINE__))                         \
            fprintf(stderr, "%s == %lld, expected %s == %lld\n", #actual, check_a_,          \
                    #expected, check_e_);                                                    \
    } while (0)

#define CHECK_EQ_U64(actual, expected)                                                       \
    do {                                                                                     \
        uint64_t check_a_ = (uint64_t)(actual), check_e_ = (uint64_t)(expected);             \
        if (!check_report(check_a_ == check_e_, __FILE__, __LINE__))                         \
            fprintf(stderr, "%s == %" PRIu64 ", expected %" PRIu64 "\n", #actual, check_a_,  \
                    check_e_);                                                               \
    } while (0)

/* Equal strings; NULL equals only NULL. */
#define CHECK_STR(actual, expected)                                                          \
    do {                                                                                     \
        const char *check_a_ = (actual), *check_e_ = (expected);                             \
        bool check_ok_ = check_a_ && check_e_ ? strcmp(check_a_, check_e_) == 0              \
                                              : check_a_ == check_e_;                        \
        if (!check_report(check_ok_, __FILE__, __LINE__))                                    \
            fprintf(stderr, "%s == \"%s\", expected \"%s\"\n", #actual,                      \
                    check_a_ ? check_a_ : "(null)", check_e_ ? check_e_ : "(null)");         \
    } while (0)

/* `haystack` is not NULL and contains `needle`. */
#define CHECK_CONTAINS(haystack, needle)                                                     \
    do {                                                                                     \
        const char *check_h_ = (haystack), *check_n_ = (needle);                             \
        if (!check_report(check_h_ && strstr(check_h_, check_n_), __FILE__, __LINE__))       \
            fprintf(stderr, "%s == \"%s\" does not contain \"%s\"\n", #haystack,             \
                    check_h_ ? check_h_ : "(null)", check_n_);                               \
    } while (0)

/* Run one test function (void name(void)) and say whether it added failures. */
#define RUN(test)                                                                            \
    do {                                                                                     \
        int check_before_ = check_failures;                                                  \
        check_current = #test;                                                               \
        test();                                                                              \
        fprintf(stderr, "%s %s\n", check_failures == check_before_ ? "ok  " : "FAIL",        \
                #test);                                                                      \
        check_current = "?";                                                                 \
    } while (0)

static inline int check_finish(void)
{
    fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
