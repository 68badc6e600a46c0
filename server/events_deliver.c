/*
 * events_deliver.c — one delivery of one event to one consumer group's handler (the
 * why of it all is at the top of events.c).
 *
 * A delivery is a transaction on the group's consumer task: mark the row done if it is
 * still pending, hand the same transaction to the handler, and end with its ack (commit)
 * or retry (roll back, count the failure, wait). An event stays in the group's
 * in-flight list — and so out of every dispatch — until its outcome is recorded, so
 * neither its aggregate's next event nor a second copy of itself can overtake it.
 *
 * The lease. A handler that never ends its delivery (a forgotten ack, a callback that
 * never comes) would hold its aggregate forever: its event stays in flight, and the row
 * stays locked by the handler's transaction. So each delivery gets [events] lease: when
 * the timer fires first, the group steps down at the next tick (events_step_down, the
 * path a lost PostgreSQL takes): the consumer task ends, which cancels the handler's
 * pending work and rolls back its transaction, without touching the plugin's pointers
 * from inside the timer of the task being ended. The claim already counted the attempt,
 * so the next leader delivers it again, and past max_attempts dead-letters it (the
 * "delivery never finished" path of events_deliver); its aggregate then flows again.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "events.h"
#include "events_internal.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define RETRY_SLACK_MS 20 /* our clock and PostgreSQL's now() are not the same clock */

static const char sql_mark[] =
    "UPDATE panthera_event_deliveries SET state = 'done', done_at = now()"
    " WHERE group_name = $1 AND event_id = $2 AND state = 'pending'";

static const char sql_fail[] =
    "UPDATE panthera_event_deliveries SET"
    " next_at = now() + $3::bigint * interval '1 millisecond',"
    " state = CASE WHEN attempts >= $4::int THEN 'dead' ELSE 'pending' END,"
    " last_error = $5 WHERE group_name = $1 AND event_id = $2 AND state = 'pending'"
    " RETURNING state";

void events_log_error(ev_group_t *g, const char *what, const px_pg_error_t *err)
{
    log_warn("events: group \"%s\": %s: %s", g->sub->group, what,
             err ? api_pg_error_message(err) : "cannot start the query");
}

void events_release(struct px_event *ev)
{
    ev_group_t *g = ev->group;
    if (ev->lease > 0 && g->task) /* never a lease timer left pointing at freed memory */
        api_timer_stop(g->task, ev->lease);
    for (struct px_event **pp = &g->inflight; *pp; pp = &(*pp)->next) {
        if (*pp == ev) {
            *pp = ev->next;
            g->ninflight--;
            break;
        }
    }
    free(ev->type);
    free(ev->aggregate);
    free(ev->producer);
    free(ev->time);
    json_decref(ev->payload);
    free(ev);
}

/* The delivery outlived its lease (see the top of the file). */
static void lease_over(px_req_t *task, int64_t id, void *ud)
{
    UNUSED(task), UNUSED(id);
    struct px_event *ev = ud;
    ev_group_t *g = ev->group;
    ev->lease = 0;
    if (ev->ended)
        return;
    log_warn("events: group \"%s\": event %s (attempt %d of %" PRIu64 ") was neither acked "
             "nor retried within the lease of %" PRIu64 " ms; the group's deliveries are "
             "taken back and come again",
             g->sub->group, ev->id_text, ev->attempt, g->ew->cfg->max_attempts,
             g->ew->cfg->lease_ms);
    metrics_event(g->metrics_id, METRICS_EVENT_RETRIED, 1);
    g->lease_over = true;
}

/* The handler ended the delivery: its lease no longer runs. */
static void lease_end(struct px_event *ev)
{
    if (ev->lease > 0 && ev->group->task)
        api_timer_stop(ev->group->task, ev->lease);
    ev->lease = 0;
}

static void retry_due(px_req_t *task, int64_t id, void *ud)
{
    UNUSED(task), UNUSED(id);
    events_cycle(ud);
}

static void ev_failed(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                      void *ud)
{
    UNUSED(task);
    struct px_event *ev = ud;
    ev_group_t *g = ev->group;
    const char *state = err || api_pg_rows(res) != 1 ? NULL : api_pg_value(res, 0, 0);
    if (err) {
        events_log_error(g, "recording a failed delivery", err);
    } else if (state && !strcmp(state, "dead")) {
        metrics_event(g->metrics_id, METRICS_EVENT_DEAD, 1);
        log_warn("events: group \"%s\": event %s failed %d times and is dead-lettered "
                 "(pantherad events:list)",
                 g->sub->group, ev->id_text, ev->attempt);
    } else if (state) {
        metrics_event(g->metrics_id, METRICS_EVENT_RETRIED, 1);
    }
    events_release(ev);
    events_cycle(g);
}

/* Count a failed attempt (in its own statement: the handler's transaction is gone) and
 * make the event due again after `after_ms`. It stays in flight until that is recorded,
 * or the next dispatch could hand it out again at once, backoff or not. */
static void ev_fail(struct px_event *ev, uint64_t after_ms, const char *reason)
{
    ev_group_t *g = ev->group;
    char after[24], max[24];
    snprintf(after, sizeof(after), "%" PRIu64, after_ms);
    snprintf(max, sizeof(max), "%" PRIu64, g->ew->cfg->max_attempts);
    const char *params[] = {g->sub->group, ev->id_text, after, max, reason};
    api_timer_start(g->task, after_ms + RETRY_SLACK_MS, 0, retry_due, g);
    if (api_pg_query(g->task, "px_ev_fail", sql_fail, 5, params, ev_failed, ev)) {
        events_log_error(g, "recording a failed delivery", NULL);
        events_release(ev);
    }
}

static void ev_committed(px_req_t *task, const px_pg_error_t *err, void *ud)
{
    UNUSED(task);
    struct px_event *ev = ud;
    ev_group_t *g = ev->group;
    if (err) {
        char reason[300];
        snprintf(reason, sizeof(reason), "commit failed: %s", api_pg_error_message(err));
        ev_fail(ev, 1000, reason);
        return;
    }
    metrics_event(g->metrics_id, METRICS_EVENT_DELIVERED, 1);
    events_release(ev);
    events_cycle(g);
}

int api_event_ack(const px_event_t *cev)
{
    struct px_event *ev = (struct px_event *)cev;
    if (!ev || ev->ended || !ev->txn)
        return PX_ESTATE;
    ev->ended = true;
    lease_end(ev);
    px_pg_txn_t *txn = ev->txn;
    ev->txn = NULL;
    return api_pg_commit(txn, ev_committed, ev);
}

int api_event_retry(const px_event_t *cev, uint64_t after_ms, const char *reason)
{
    struct px_event *ev = (struct px_event *)cev;
    if (!ev || ev->ended || !ev->txn)
        return PX_ESTATE;
    ev->ended = true;
    lease_end(ev);
    api_pg_rollback(ev->txn, NULL, NULL);
    ev->txn = NULL;
    ev_fail(ev, after_ms, reason ? reason : "the handler asked for a retry");
    return 0;
}

static void ev_marked(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                      void *ud)
{
    struct px_event *ev = ud;
    ev_group_t *g = ev->group;
    if (err || api_pg_affected(res) != 1) {
        /* Another consumer finished it meanwhile (0 rows), or PostgreSQL failed: either
         * way nothing happened here, and a pending event comes round again. */
        if (err)
            events_log_error(g, "starting a delivery", err);
        api_pg_rollback(ev->txn, NULL, NULL);
        events_release(ev);
        events_cycle(g);
        return;
    }
    uint64_t lease = g->ew->cfg->lease_ms;
    if (lease) {
        int64_t id = api_timer_start(task, lease, 0, lease_over, ev);
        ev->lease = id > 0 ? id : 0;
    }
    g->sub->fn(task, ev->txn, ev, g->sub->userdata);
}

static void ev_begun(px_req_t *task, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    UNUSED(task);
    struct px_event *ev = ud;
    ev_group_t *g = ev->group;
    if (err) {
        events_log_error(g, "beginning a delivery", err);
        events_release(ev); /* the poll brings it back once PostgreSQL does */
        return;
    }
    ev->txn = txn;
    const char *params[] = {g->sub->group, ev->id_text};
    if (api_pg_txn_query(txn, "px_ev_mark", sql_mark, 2, params, ev_marked, ev)) {
        api_pg_rollback(txn, NULL, NULL);
        events_release(ev);
    }
}

static char *dup_value(const px_pg_result_t *res, int row, int col)
{
    const char *v = api_pg_value(res, row, col);
    return xstrdup(v ? v : "");
}

void events_deliver(ev_group_t *g, const px_pg_result_t *res, int row)
{
    struct px_event *ev = xcalloc(1, sizeof(*ev));
    ev->group = g;
    snprintf(ev->id_text, sizeof(ev->id_text), "%s", api_pg_value(res, row, 0));
    ev->id = strtoll(ev->id_text, NULL, 10);
    ev->type = dup_value(res, row, 1);
    ev->aggregate = dup_value(res, row, 2);
    ev->producer = dup_value(res, row, 3);
    const char *payload = api_pg_value(res, row, 4);
    ev->payload = payload ? json_loads(payload, JSON_DECODE_ANY, NULL) : NULL;
    if (!ev->payload)
        ev->payload = json_object();
    ev->time = dup_value(res, row, 5);
    const char *attempts = api_pg_value(res, row, 6);
    ev->attempt = attempts ? atoi(attempts) : 1;
    ev->next = g->inflight;
    g->inflight = ev;
    g->ninflight++;
    if ((uint64_t)ev->attempt > g->ew->cfg->max_attempts) {
        /* Its earlier deliveries never ended (their workers died): no more tries. */
        ev_fail(ev, 0, "delivery never finished (the consumer died)");
        return;
    }
    if (api_pg_begin(g->task, ev_begun, ev))
        events_release(ev);
}

/* ---- what a handler reads ---- */

int64_t api_event_id(const px_event_t *ev)
{
    return ev ? ev->id : 0;
}

const char *api_event_type(const px_event_t *ev)
{
    return ev ? ev->type : NULL;
}

const char *api_event_aggregate(const px_event_t *ev)
{
    return ev ? ev->aggregate : NULL;
}

const char *api_event_producer(const px_event_t *ev)
{
    return ev ? ev->producer : NULL;
}

const char *api_event_time(const px_event_t *ev)
{
    return ev ? ev->time : NULL;
}

json_t *api_event_payload(const px_event_t *ev)
{
    return ev ? ev->payload : NULL;
}

int api_event_attempt(const px_event_t *ev)
{
    return ev ? ev->attempt : 0;
}
