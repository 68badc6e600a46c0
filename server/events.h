/* events.h — the host's event log in PostgreSQL: emit inside a transaction, consumer
 * groups fed in commit order, dead letters. */
#ifndef PX_EVENTS_H
#define PX_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "panthera.h"

struct plugin_set;
struct worker;

/* The host migration that creates the log (migrate.c applies it as "host"). */
extern const char events_schema_sql[];
/* The next one: the prune finds old events by id, not by an index on created_at. */
extern const char events_schema_prune_by_id_sql[];
/* And the next: delivery rows leave room on their pages for their claim's version; a
 * batch's rows are marked and held by functions whose plans look each row up by id. */
extern const char events_schema_deliveries_sql[];
/* And the next: the relay's frontier is an event id, and the log loses its xid index. */
extern const char events_schema_frontier_by_id_sql[];

void events_registry_free(struct plugin_set *set);
/* The migrator: record the groups `set` subscribed to (new ones start at the log's
 * present). Blocking, on the connected PGconn `pg`. Returns 0 or -1 (logged). */
int events_register_groups(void *pg, const struct plugin_set *set);

/* The worker's pools are up: open the listening session and start competing for the
 * groups its plugins subscribed to. Nothing when there are none. */
void events_worker_start(struct worker *w);
/* Draining or exiting: step down from every group, close the session. */
void events_worker_stop(struct worker *w);

/* A transaction with events committed in this worker: NOTIFY the consumers, at once if
 * this worker sent no NOTIFY in the last EVENTS_WAKE_MS, else when that interval ends (one
 * for all the commits in it). */
void events_wake(struct worker *w);

/* What events_wake decides, apart from the loop so that it can be tested: the NOTIFY
 * last sent (at `last`, in ms of the loop's clock, if `sent`), and whether one is already
 * scheduled. */
typedef struct events_wake_state {
    uint64_t last;
    bool sent;
    bool scheduled;
} events_wake_state_t;
/* For a commit at `now`: -1 when the NOTIFY already scheduled covers it, 0 to send one
 * now, else the ms until one may be sent (at most one per `every` ms). */
int64_t events_wake_due(uint64_t now, const events_wake_state_t *st, uint64_t every);
/* The wake-ups this process has sent so far (each a NOTIFY on its pool, when it has one),
 * for tests. */
uint64_t events_wakes_sent(void);

/* pantherad events:list|replay ...: blocking, in a command process. Returns the exit
 * code. `pg` is a connected PGconn. */
int events_command(void *pg, const events_settings_t *cfg, int argc, char **argv);

#endif
