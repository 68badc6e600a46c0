/* test_crash.c — server/crash.c: the record a worker leaves, and the window that switches
 * a route off (K crashes within the window, not K ever; cleared by a reload). */
#include <string.h>

#include "check.h"
#include "crash.h"
#include "router.h"

static crash_record_t record(const char *plugin, const char *method, const char *pattern)
{
    crash_record_t rec;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.plugin, sizeof(rec.plugin), "%s", plugin);
    snprintf(rec.method, sizeof(rec.method), "%s", method);
    snprintf(rec.pattern, sizeof(rec.pattern), "%s", pattern);
    return rec;
}

static void test_window(void)
{
    crash_routes_enable();
    crash_record_t rec = record("kit", "GET", "/v1/a");
    route_t route = {.method = METHOD_GET, .pattern = "/v1/a", .owner = "kit"};
    route_t other = {.method = METHOD_GET, .pattern = "/v1/b", .owner = "kit"};
    /* Three crashes, but never three within 60 s: stays on. */
    CHECK(!crash_count(&rec, 1000, 3, 60000));
    CHECK(!crash_count(&rec, 50000, 3, 60000));
    CHECK(!crash_count(&rec, 110000, 3, 60000));
    CHECK(!crash_route_disabled(&route));
    /* 50000, 110000, 111000 span 61 s: still on. 110000, 111000, 112000: off, once. */
    CHECK(!crash_count(&rec, 111000, 3, 60000));
    CHECK(!crash_route_disabled(&route));
    CHECK(crash_count(&rec, 112000, 3, 60000));
    CHECK(crash_route_disabled(&route));
    CHECK(!crash_route_disabled(&other));
    CHECK(!crash_count(&rec, 113000, 3, 60000)); /* already off: not "switched off" again */
    CHECK_EQ_INT(crash_routes_enable(), 1);
    CHECK(!crash_route_disabled(&route));
    /* The window starts over after a reload. */
    CHECK(!crash_count(&rec, 114000, 3, 60000));
    CHECK(!crash_count(&rec, 115000, 3, 60000));
    CHECK(crash_count(&rec, 116000, 3, 60000));
    crash_routes_enable();
}

static void test_limit_zero_and_one(void)
{
    crash_routes_enable();
    crash_record_t rec = record("kit", "POST", "/v1/z");
    for (int i = 0; i < 10; i++)
        CHECK(!crash_count(&rec, (uint64_t)i, 0, 60000));
    crash_record_t one = record("kit", "POST", "/v1/one");
    CHECK(crash_count(&one, 5, 1, 60000));
    route_t route = {.method = METHOD_POST, .pattern = "/v1/one", .owner = "kit"};
    CHECK(crash_route_disabled(&route));
    route_t same_path_other_plugin = {.method = METHOD_POST, .pattern = "/v1/one", .owner = "x"};
    CHECK(!crash_route_disabled(&same_path_other_plugin));
    crash_routes_enable();
}

static void test_slot(void)
{
    crash_record_t out;
    crash_slot_reset(3);
    CHECK(!crash_slot_read(3, &out)); /* nothing ran */
    CHECK(!crash_slot_read(0, &out)); /* the shared overflow slot records nothing */
    crash_attach(0);
    crash_leave();
    crash_record_t none = record("kit", "GET", "/v1/none");
    CHECK_EQ_INT(crash_job_enter(&none), -1); /* slot 0 records nothing */

    /* A job on a pool thread: reported while it runs, gone once it is done. */
    crash_attach(3);
    crash_record_t job = record("kit", "POST", "/v1/job");
    snprintf(job.request_id, sizeof(job.request_id), "rid-1");
    int cells[9];
    for (int i = 0; i < 9; i++)
        cells[i] = crash_job_enter(&job);
    CHECK(cells[0] >= 0 && cells[7] >= 0 && cells[0] != cells[7]);
    CHECK_EQ_INT(cells[8], -1); /* all cells busy: that one goes unrecorded */
    CHECK_OR_RETURN(crash_slot_read(3, &out));
    CHECK_STR(out.pattern, "/v1/job");
    CHECK_STR(out.request_id, "rid-1");
    for (int i = 0; i < 8; i++)
        crash_job_leave(cells[i]);
    CHECK(!crash_slot_read(3, &out));
    crash_slot_reset(3);
}

int main(void)
{
    RUN(test_window);
    RUN(test_limit_zero_and_one);
    RUN(test_slot);
    return check_finish();
}
