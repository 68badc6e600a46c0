/* test_revocation.c — server/revocation.c's worker table: a token is refused only for its
 * subject, only when issued at or before the revocation and only until its end; the later
 * of two revocations wins; thousands of subjects neither collide nor get lost when the
 * table grows or is pruned; channel messages are parsed strictly; px_token_revoke outside
 * a transaction is PX_ESTATE. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "check.h"
#include "revocation.h"

static void test_refused_for_its_subject_iat_and_time_only(void)
{
    revocation_reset();
    CHECK(!revocation_refused_at("alice", 100, 100)); /* an empty table refuses nothing */
    revocation_note("alice", 1000, 2000);
    CHECK_EQ_INT((int)revocation_count(), 1);
    CHECK(revocation_refused_at("alice", 1000, 1500)); /* issued in the revocation's second */
    CHECK(revocation_refused_at("alice", 999, 1500));
    CHECK(revocation_refused_at("alice", 0, 1500));     /* a token without iat */
    CHECK(!revocation_refused_at("alice", 1001, 1500)); /* issued after */
    CHECK(revocation_refused_at("alice", 1000, 2000));  /* its last second */
    CHECK(!revocation_refused_at("alice", 1000, 2001)); /* ended */
    CHECK(!revocation_refused_at("alicf", 1000, 1500));
    CHECK(!revocation_refused_at("alic", 1000, 1500));
    CHECK(!revocation_refused_at("", 1000, 1500));
    revocation_reset();
}

static void test_the_later_revocation_and_end_win(void)
{
    revocation_reset();
    CHECK(revocation_note("bob", 1000, 2000));  /* new */
    CHECK(!revocation_note("bob", 900, 1900));  /* older news: changes nothing */
    CHECK(!revocation_note("bob", 1000, 2100)); /* the same revocation, heard again */
    CHECK(revocation_refused_at("bob", 1000, 2000));
    CHECK(revocation_note("bob", 1200, 2500)); /* a later one: streams end again */
    CHECK(revocation_refused_at("bob", 1150, 2400));
    CHECK_EQ_INT((int)revocation_count(), 1);
    /* Subjects too long for a token, and empty ones, are never kept. */
    char long_sub[80];
    memset(long_sub, 's', sizeof(long_sub) - 1);
    long_sub[sizeof(long_sub) - 1] = '\0';
    revocation_note(long_sub, 1000, 2000);
    revocation_note("", 1000, 2000);
    revocation_note(NULL, 1000, 2000);
    CHECK_EQ_INT((int)revocation_count(), 1);
    revocation_reset();
}

static void test_many_subjects_grow_and_prune(void)
{
    revocation_reset();
    char sub[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(sub, sizeof(sub), "user-%d", i);
        revocation_note(sub, 1000, i % 2 ? 3000 : 1500); /* odd ones last longer */
    }
    CHECK_EQ_INT((int)revocation_count(), 5000);
    int refused = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(sub, sizeof(sub), "user-%d", i);
        refused += revocation_refused_at(sub, 1000, 1400);
    }
    CHECK_EQ_INT(refused, 5000);
    CHECK(!revocation_refused_at("user-5000", 1000, 1400));
    revocation_prune(1501); /* the even ones ended */
    CHECK_EQ_INT((int)revocation_count(), 2500);
    refused = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(sub, sizeof(sub), "user-%d", i);
        bool r = revocation_refused_at(sub, 1000, 1600);
        CHECK(r == (i % 2 == 1));
        refused += r;
    }
    CHECK_EQ_INT(refused, 2500);
    revocation_prune(3001);
    CHECK_EQ_INT((int)revocation_count(), 0);
    CHECK(!revocation_refused_at("user-1", 1000, 1600));
    revocation_note("again", 10, 20); /* a pruned-empty table takes new ones */
    CHECK(revocation_refused_at("again", 10, 20));
    revocation_reset();
}

static void test_messages_are_parsed_strictly(void)
{
    revocation_reset();
    const char *good = "1000 2000 carol";
    CHECK_EQ_INT(revocation_note_message(good, strlen(good)), 0);
    CHECK(revocation_refused_at("carol", 1000, 1500));
    /* Only the message's own bytes count: no terminator is needed after them. */
    const char *framed = "1000 2000 dave-and-what-follows";
    CHECK_EQ_INT(revocation_note_message(framed, 14), 0);
    CHECK(revocation_refused_at("dave", 1000, 1500));
    CHECK(!revocation_refused_at("dave-and-what-follows", 1000, 1500));
    const char *bad[] = {"", "1000", "1000 2000", "1000 2000 ", "x 2000 erin", "1000 y erin"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(revocation_note_message(bad[i], strlen(bad[i])), -1);
    char nul[] = "1000 2000 fr\0ank";
    CHECK_EQ_INT(revocation_note_message(nul, sizeof(nul) - 1), -1);
    static char huge[4096];
    memset(huge, '1', sizeof(huge));
    CHECK_EQ_INT(revocation_note_message(huge, sizeof(huge)), -1);
    CHECK_EQ_INT((int)revocation_count(), 2);
    revocation_reset();
}

static void test_revoke_outside_a_transaction(void)
{
    CHECK_EQ_INT(api_token_revoke(NULL, "a"), PX_ESTATE);
    CHECK_EQ_INT(api_token_revoke(NULL, NULL), PX_ESTATE);
}

int main(void)
{
    RUN(test_refused_for_its_subject_iat_and_time_only);
    RUN(test_the_later_revocation_and_end_win);
    RUN(test_many_subjects_grow_and_prune);
    RUN(test_messages_are_parsed_strictly);
    RUN(test_revoke_outside_a_transaction);
    return check_finish();
}
