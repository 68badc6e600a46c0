/* events_internal.h — what events.c (the log, relay, dispatch, leadership) and
 * events_deliver.c (batches of deliveries to a handler) share. */
#ifndef PX_EVENTS_INTERNAL_H
#define PX_EVENTS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "events_listen.h"
#include "panthera.h"

struct worker;

#define GROUP_NAME_MAX 57 /* "group:" + name is the consumer task's name (63) */

/* A subscription, as registered during init. */
typedef struct ev_sub {
    px_plugin_t *plugin;
    char group[GROUP_NAME_MAX + 1];
    char like[260]; /* the pattern as SQL LIKE */
    char pattern[128];
    px_event_fn fn;
    void *userdata;
    size_t batch; /* what the plugin asked for (px_event_batch), 0: [events] batch */
    px_event_prepare_fn prepare; /* px_event_prepare, or NULL */
    void *prepare_userdata;
} ev_sub_t;

typedef struct ev_group ev_group_t;
typedef struct events_worker events_worker_t;
typedef struct ev_batch ev_batch_t;

/* Where one event of a batch stands. */
enum ev_state {
    EV_WAITING, /* its handler has not run yet */
    EV_RUNNING, /* its handler has the transaction */
    EV_ACKED,   /* done, commits with the batch */
    EV_RETRIED, /* rolled back to its savepoint, its failure recorded in the batch */
    EV_HELD,    /* not handed out: an earlier event of its aggregate was retried */
};

struct px_event {
    ev_group_t *group;
    px_pg_txn_t *txn;
    int64_t id;
    char id_text[24];
    char *type;
    char *aggregate;
    char *producer;
    char *time;
    json_t *payload;
    int attempt;
    int64_t lease; /* the timer that takes the delivery back ([events] lease), or 0 */
    bool ended; /* acked or retried: the plugin must not touch it again */
    struct px_event *next; /* the group's in-flight list */
    ev_batch_t *batch;     /* NULL until it joins one */
    struct px_event *bnext; /* the batch's events, in id order */
    enum ev_state state;
    bool dead;          /* EV_RETRIED, and that was its last attempt */
    uint64_t retry_ms;  /* EV_RETRIED: due again after this long */
};

/* One delivery transaction: its events' handlers run one after another in it, each inside
 * its own savepoint (events_deliver.c). */
struct ev_batch {
    ev_group_t *group;
    px_pg_txn_t *txn;
    struct px_event *events; /* in id order; all of an aggregate's in one batch */
    struct px_event *last;
    size_t n;
    struct px_event *unreleased; /* acked, its savepoint not released yet (batch_next) */
    struct ev_batch *next;
};

struct ev_group {
    const ev_sub_t *sub;
    events_worker_t *ew;
    px_req_t *task; /* non-NULL while this worker leads the group */
    bool locking;   /* a lock attempt is on the listening session */
    bool registered;
    int64_t frontier; /* the group's frontier_id as this worker last read it */
    bool cycling;
    bool again;
    bool lease_over; /* a delivery outlived its lease: step down at the next tick */
    struct px_event *inflight;
    size_t ninflight;
    ev_batch_t *batches; /* the delivery transactions in flight */
    size_t nbatches;
    int metrics_id;
};

struct events_worker {
    struct worker *w;
    const events_settings_t *cfg;
    ev_listen_t *listen;
    uv_timer_t tick;
    ev_group_t *groups;
    size_t ngroups;
    bool stopping;
    uint64_t last_prune;
};

/* Events per delivery transaction for this group: what its plugin asked for, at most
 * [events] batch. */
size_t events_batch_size(const ev_group_t *g);
/* Copy what became visible, then hand out what is due (coalesced). */
void events_cycle(ev_group_t *g);
void events_log_error(ev_group_t *g, const char *what, const px_pg_error_t *err);
/* Start delivering what a dispatch claimed, in batches (events_deliver.c). */
void events_deliver(ev_group_t *g, const px_pg_result_t *res);
/* The delivery is over for this worker: out of the in-flight list, freed. */
void events_release(struct px_event *ev);
/* Forget every batch in flight and its events (the task that ran them has ended). */
void events_batches_drop(ev_group_t *g);
/* Give the group up on this worker (events.c): the consumer task ends, which cancels its
 * pending work and rolls back its transactions; what was in flight stays pending in the
 * database for the next leader (this worker again, from its next tick, or another). */
void events_step_down(ev_group_t *g, int status);

#endif
