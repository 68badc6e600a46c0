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

/* /metrics and /healthz. */
void metrics_register_routes(plugin_set_t *set);
/* The Prometheus text exposition, malloc'd. */
char *metrics_render(size_t *len);

#endif
