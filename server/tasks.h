/* tasks.h — work outside a request: worker lifecycle functions, background tasks,
 * timers owned by a request or a task. */
#ifndef PX_TASKS_H
#define PX_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "panthera.h"
#include "request.h"
#include "work.h"

struct plugin_set;
struct worker;

typedef struct tasks_hook {
    px_plugin_t *plugin;
    px_worker_fn fn;
    void *userdata;
} tasks_hook_t;

/* What plugins registered during init, kept by the plugin set until unload. */
typedef struct tasks_registry {
    tasks_hook_t *start;
    size_t nstart;
    tasks_hook_t *stop;
    size_t nstop;
    work_queue_decl_t *queues;
    size_t nqueues;
} tasks_registry_t;

/* The set's registry, made on first use. */
tasks_registry_t *tasks_registry(struct plugin_set *set);
void tasks_registry_free(struct plugin_set *set);

/* The worker's pools are up: run the start functions. Call once, before accepting. */
void tasks_worker_started(struct worker *w);
/* The worker starts draining: run the stop functions (once). */
void tasks_worker_draining(struct worker *w);
/* The worker is about to exit: end the tasks still open (as failures). */
void tasks_worker_finish(struct worker *w);

/* The request or task is ending (api_req_cancel_work): stop its timers. */
void tasks_req_ending(px_req_t *r);

/* Begin a task owned by the host itself (events.c's consumers), as px_task_begin. */
px_req_t *tasks_begin(struct worker *w, const char *plugin, const char *name);

#endif
