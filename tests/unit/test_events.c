/* test_events.c — when a worker sends the NOTIFY that wakes the event consumers
 * (events_wake_due and events_wake, events.c): at once after a quiet spell, so an idle
 * consumer waits for nothing; at most one per interval under load, the commits within it
 * sharing one sent when it ends, and never one left out. Here the worker has no pool, so
 * nothing goes to PostgreSQL; the NOTIFY itself reaching a consumer is
 * tests/api/test_events.py's. */
#include <uv.h>

#include "check.h"
#include "events.h"
#include "worker.h"

#define EVERY 10

/* The first commit a worker makes, and the first after a quiet spell, wake at once. */
static void test_quiet_commit_wakes_at_once(void)
{
    events_wake_state_t st = {0};
    CHECK(events_wake_due(0, &st, EVERY) == 0);
    CHECK(events_wake_due(123456, &st, EVERY) == 0);
    st = (events_wake_state_t){.last = 1000, .sent = true};
    CHECK(events_wake_due(1000 + EVERY, &st, EVERY) == 0);
    CHECK(events_wake_due(1000 + 5 * EVERY, &st, EVERY) == 0);
}

/* A commit soon after a NOTIFY waits for the interval's end, never longer. */
static void test_busy_commit_waits_for_the_interval(void)
{
    events_wake_state_t st = {.last = 1000, .sent = true};
    CHECK(events_wake_due(1000, &st, EVERY) == EVERY);
    CHECK(events_wake_due(1003, &st, EVERY) == EVERY - 3);
    CHECK(events_wake_due(1000 + EVERY - 1, &st, EVERY) == 1);
}

/* While one is scheduled, later commits share it: it is sent after they committed. */
static void test_scheduled_notify_covers_later_commits(void)
{
    events_wake_state_t st = {.last = 1000, .sent = true, .scheduled = true};
    CHECK(events_wake_due(1001, &st, EVERY) == -1);
    CHECK(events_wake_due(1000 + EVERY - 1, &st, EVERY) == -1);
}

/* Loop time 0 is a time like any other: a NOTIFY sent at 0 still spaces the next. */
static void test_a_notify_at_time_zero_counts(void)
{
    events_wake_state_t st = {.last = 0, .sent = true};
    CHECK(events_wake_due(1, &st, EVERY) == EVERY - 1);
}

/* The same decisions on a real loop: commits right after a NOTIFY get none of their own
 * but one sent when the interval ends, after all of them. */
static void test_events_wake_on_a_loop(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    worker_t w = {.loop = &loop};
    uint64_t base = events_wakes_sent();
    events_wake(&w); /* the first: at once */
    CHECK(events_wakes_sent() == base + 1);
    events_wake(&w); /* within the interval: scheduled, */
    events_wake(&w); /* and shared */
    CHECK(events_wakes_sent() == base + 1);
    uint64_t t0 = uv_now(&loop);
    uv_run(&loop, UV_RUN_DEFAULT); /* the scheduled one fires, then nothing keeps the loop */
    CHECK(events_wakes_sent() == base + 2);
    CHECK(uv_now(&loop) - t0 >= 1);
    events_wake(&w); /* right after that one: scheduled again */
    CHECK(events_wakes_sent() == base + 2);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(events_wakes_sent() == base + 3);
    events_worker_stop(&w); /* closes the timer */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
}

int main(void)
{
    RUN(test_quiet_commit_wakes_at_once);
    RUN(test_busy_commit_waits_for_the_interval);
    RUN(test_scheduled_notify_covers_later_commits);
    RUN(test_a_notify_at_time_zero_counts);
    RUN(test_events_wake_on_a_loop);
    return check_finish();
}
