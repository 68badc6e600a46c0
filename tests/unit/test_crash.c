/* test_crash.c — server/crash.c: the record a worker leaves, and the window that switches
 * a route off (K crashes within the window, not K ever; cleared by a reload). */
#include <string.h>

#include "check.h"
#include "crash.h"
#include "request.h"
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

/* Requests one after another on a slot: each leaves its own path and id, and the route's
 * strings follow the route (copied once per route, not per request). */
static void test_requests_on_a_slot(void)
{
    crash_record_t out;
    crash_slot_reset(4);
    crash_attach(4);
    route_t a = {.method = METHOD_GET, .pattern = (char *)"/v1/a/{id}"};
    route_t b = {.method = METHOD_POST, .pattern = (char *)"/v1/b"};
    static px_req_t r1, r2, r3;
    r1 = (px_req_t){.route = &a, .plugin = "kit", .path = (char *)"/v1/a/1", .path_len = 7,
                    .start_ns = 1};
    snprintf(r1.id, sizeof(r1.id), "id-1");
    r2 = r1;
    r2.path = (char *)"/v1/a/22";
    r2.path_len = 8;
    r2.start_ns = 2;
    snprintf(r2.id, sizeof(r2.id), "id-2");
    r3 = (px_req_t){.route = &b, .plugin = "other", .path = (char *)"/v1/b", .path_len = 5,
                    .start_ns = 3};
    snprintf(r3.id, sizeof(r3.id), "id-3");
    px_req_t *seq[] = {&r1, &r2, &r3, &r1, &r3};
    const char *want[][4] = {{"kit", "GET", "/v1/a/{id}", "/v1/a/1"},
                             {"kit", "GET", "/v1/a/{id}", "/v1/a/22"},
                             {"other", "POST", "/v1/b", "/v1/b"},
                             {"kit", "GET", "/v1/a/{id}", "/v1/a/1"},
                             {"other", "POST", "/v1/b", "/v1/b"}};
    for (size_t i = 0; i < ARRAY_SIZE(seq); i++) {
        crash_enter(seq[i]);
        CHECK_OR_RETURN(crash_slot_read(4, &out));
        CHECK_STR(out.plugin, want[i][0]);
        CHECK_STR(out.method, want[i][1]);
        CHECK_STR(out.pattern, want[i][2]);
        CHECK_STR(out.path, want[i][3]);
        CHECK_STR(out.request_id, seq[i]->id);
        crash_leave();
    }
    /* A new owner of the slot (a worker forked after the last one died) starts afresh. */
    crash_attach(4);
    b.pattern = (char *)"/v1/renamed";
    crash_enter(&r3);
    CHECK_OR_RETURN(crash_slot_read(4, &out));
    CHECK_STR(out.pattern, "/v1/renamed");
    crash_leave();
    crash_slot_reset(4);
}

int main(void)
{
    RUN(test_requests_on_a_slot);
    RUN(test_window);
    RUN(test_limit_zero_and_one);
    RUN(test_slot);
    return check_finish();
}
