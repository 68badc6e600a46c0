/* crash.h — what a worker was running when it died, and the routes that keep killing
 * workers (crash.c). */
#ifndef PX_CRASH_H
#define PX_CRASH_H

#include <stdbool.h>
#include <stdint.h>

#include "request.h"
#include "router.h"

/* What the master reads from a dead worker's slot. */
typedef struct crash_record {
    char plugin[64];
    char method[16];
    char pattern[160];
    char path[256];
    char request_id[72];
    uint8_t family; /* AF_INET, AF_INET6, or 0 when unknown */
    uint8_t addr[16];
    uint64_t started_ns; /* CLOCK_MONOTONIC, for the access log's duration */
} crash_record_t;

/* Map the shared table (the master, before forking; on first use otherwise). Returns 0 or
 * -errno. */
int crash_init(void);

/* Worker side: `slot` is the metrics slot the master handed this worker. */
void crash_attach(int slot);
/* Plugin code is about to run for `r` (its handler or one of its callbacks) / is done. */
void crash_enter(px_req_t *r);
void crash_leave(void);
/* px_work jobs run plugin code on pool threads. The record is taken on the loop when the
 * job is queued (crash_record_of: false for the host's own requests, which are not
 * recorded), and the thread marks it running around the plugin's work: crash_job_enter
 * returns a cell (-1 when all are busy: that job goes unrecorded) for crash_job_leave. */
bool crash_record_of(px_req_t *r, crash_record_t *out);
int crash_job_enter(const crash_record_t *rec);
void crash_job_leave(int cell);
/* True when `route` was disabled after repeated crashes: answer 503 instead. */
bool crash_route_disabled(const route_t *route);

/* Master side. A new worker starts in `slot` with nothing recorded. */
void crash_slot_reset(int slot);
/* Copy what the worker in `slot` was running into *out; false when it ran no plugin code.
 * Plugin code on the loop is reported first, else a job running on a pool thread (the
 * master cannot tell which thread took the signal when both ran at once). */
bool crash_slot_read(int slot, crash_record_t *out);
/* Count a crash of the record's route at `now_ms`. Returns true when this crash disabled
 * the route: `limit` crashes within `window_ms` (0: never). */
bool crash_count(const crash_record_t *rec, uint64_t now_ms, uint64_t limit, uint64_t window_ms);
/* A reload: every disabled route serves again and the windows start over. Returns how
 * many routes were disabled. */
int crash_routes_enable(void);
/* One access log line for a request whose worker died under it (status 0: nothing sent). */
void crash_access_log(const crash_record_t *rec);

#endif
