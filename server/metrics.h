/* metrics.h — counters every worker writes into its own slot of a shared mapping, so
 * that /metrics, answered by any one worker, can add up all of them. */
#ifndef PX_METRICS_H
#define PX_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "plugin.h"

#define METRICS_MAX_SLOTS 256
#define METRICS_MAX_PLUGINS 64
#define METRICS_MAX_TASKS 64

/* Create the shared mapping (the master, before forking) or, when never called, a
 * private one made on first use (tests, the fuzzer). Returns 0 or -errno. */
int metrics_init(void);
/* Index of a plugin name in the shared table, adding it when missing (0 = "host"). */
int metrics_plugin_id(const char *name);

/* Master side: hand a free slot to a new worker, take it back when it exits. */
int metrics_slot_acquire(pid_t pid);
void metrics_slot_release(int slot);
void metrics_worker_restarted(void);

/* Worker side. */
void metrics_attach(int slot);
void metrics_request(int plugin_id, int status, uint64_t duration_ns);
void metrics_connection_opened(void);
void metrics_connection_closed(void);
/* A connection closed to protect the others (http_admit.c), by reason. */
enum metrics_shed { METRICS_SHED_IDLE, METRICS_SHED_PER_CLIENT, METRICS_SHED_COUNT };
void metrics_connection_shed(enum metrics_shed reason);
/* Publishes made after a commit while Redis was away (channel.c): sent late, or dropped. */
enum metrics_held { METRICS_HELD_SENT, METRICS_HELD_DROPPED, METRICS_HELD_COUNT };
void metrics_channel_held(enum metrics_held outcome, uint64_t n);
/* A request refused because its credential was revoked (revocation.c), by kind. */
enum metrics_revoked { METRICS_REVOKED_TOKEN, METRICS_REVOKED_TICKET, METRICS_REVOKED_COUNT };
void metrics_revoked_refused(enum metrics_revoked credential);

/* A section of /metrics some other file owns (crash counters, plugin metrics): `fn`
 * appends Prometheus text, reading shared memory of its own. Call before forking. */
struct buf;
void metrics_renderer_add(void (*fn)(struct buf *out));
/* Background tasks (tasks.c): the label id of (plugin, task name), added by whichever
 * worker first begins such a task; -1 when the table is full (then not counted). */
int metrics_task_id(const char *plugin, const char *name);
void metrics_task(int task_id, int ok, uint64_t duration_ns);
/* Events (events.c): per consumer group, what happened to deliveries in this worker. */
enum metrics_event { METRICS_EVENT_DELIVERED, METRICS_EVENT_RETRIED, METRICS_EVENT_DEAD,
                     METRICS_EVENT_KINDS };
void metrics_event(int task_id, enum metrics_event kind, uint64_t n);
/* Dead-lettered events waiting for a replay, cluster-wide, as a consumer last counted. */
void metrics_events_dead_now(int task_id, int64_t n);

/* /metrics and /healthz. */
void metrics_register_routes(plugin_set_t *set);
/* The Prometheus text exposition, malloc'd. */
char *metrics_render(size_t *len);

#endif
