/* work.h — blocking jobs on the thread pool, in named queues with their own bounds. */
#ifndef PX_WORK_H
#define PX_WORK_H

#include <stddef.h>
#include <uv.h>

#include "panthera.h"
#include "request.h"

struct plugin_set;

typedef struct work_job work_job_t;

/* One queue in one worker: its bound, its running count and its FIFO of waiting jobs. */
typedef struct work_queue {
    char name[64]; /* "" for the default queue of px_work */
    size_t concurrency;
    size_t max_waiting;
    size_t running;
    size_t waiting;
    work_job_t *head;
    work_job_t *tail;
} work_queue_t;

/* A queue declared by a plugin during init (px_work_queue), kept until unload. */
typedef struct work_queue_decl {
    char name[64];
    int concurrency;
    int max_waiting;
    char owner[64];
} work_queue_decl_t;

/* Declare a named queue in `set` (px_work_queue). Returns 0 or a PX_E* code. */
int work_queue_declare(struct plugin_set *set, const char *owner, const char *name,
                       int concurrency, int max_waiting);

/* Whether any job of `w` runs or waits (the fuzz target turns its loop until none). */
bool work_busy(const struct worker *w);

/* The worker's queues from the config and the declarations; sizes libuv's thread pool to
 * their sum (before the first job runs: libuv reads it once). Call once per worker. */
void work_queues_open(struct worker *w);
void work_queues_free(struct worker *w);

/* px_work_on: `queue` NULL is the default queue. */
int work_submit(px_req_t *r, const char *queue, px_work_fn work, px_work_done_fn done,
                void *userdata);
/* The request ended with the job still waiting or running: its done gets req NULL. */
void work_detach(req_op_t *op);

#endif
