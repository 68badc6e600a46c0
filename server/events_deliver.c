/*
 * events_deliver.c — handing claimed events to one consumer group's handler, in batches
 * (the why of it all is at the top of events.c).
 *
 * A batch is one transaction on the group's consumer task for up to the group's batch
 * size: [events] batch, or fewer when its plugin asked (px_event_batch: a handler that
 * locks what other events of its group lock, in no fixed order, would otherwise hold those
 * locks across a whole batch and deadlock with the group's other batches). A dispatch's
 * events of one aggregate always go to the same batch, in id order.
 * It first marks them all done in one statement (only those still pending: the row lock
 * also serialises any duplicate consumer), then hands them to the handler one after
 * another, each inside a savepoint of its own (px_ev_ID), and the handler ends each with:
 *   - ack: the next handler starts at once; its savepoint's RELEASE goes with that
 *     handler's SAVEPOINT and first statement (none before the COMMIT, which releases
 *     them all); the effect and its "done" commit with the batch.
 *   - retry: ROLLBACK TO SAVEPOINT undoes its effect; the failure is recorded in the batch
 *     (done becomes pending again until next_at, or dead past max_attempts), and every
 *     later event of its aggregate in the batch is held — not handed out, given back as
 *     pending with its claim undone — so it waits for the retried one: commit order per
 *     aggregate is the contract.
 *   - an ack after a failed statement of its own leaves the transaction failed: the
 *     RELEASE fails, and so does everything after it, the next handlers' savepoints too
 *     (hence a name per event: a retry can only roll back to its own savepoint, never to
 *     an earlier event's). Nothing of the batch commits, and its events come again
 *     alone, where the culprit's COMMIT fails and is counted as its retry after 1 s.
 * A group with a batch hook (px_event_prepare) has it run once, after the mark and before
 * the first savepoint: what it queues is the batch's, outside every event's savepoint.
 * One COMMIT ends the batch. The effects and the "done" rows of its acked events commit
 * together, so a worker killed mid-batch loses the whole transaction: every event of it is
 * still pending, and the next consumer delivers each again, with its effect once. Those
 * come back alone (sql_dispatch in events.c hands out an event claimed before as a batch
 * of its own), so an event whose handler kills its worker costs its neighbours one attempt,
 * not max_attempts. A batch whose COMMIT fails is given back the same way; a batch of one
 * records its own failure (sql_fail), as every delivery did before batches.
 *
 * The savepoints' statements never have a sync point of their own (pg_txn_query_joined):
 * each would cost an answer, a flush of the backend and a wake-up of the worker, and with a
 * handler of one statement and its answer that was half of what a delivery sent.
 *
 * Why batches: a transaction per event cost each event a BEGIN, a COMMIT with its WAL
 * flush, a "mark done" and its share of a dispatch, and one group drained under a
 * thousand events a second (tests/bench/events.sh). A batch shares all of those. The
 * price: the handlers of one batch run one after another (one transaction, one
 * connection), so a slow handler delays the rest of its batch; the other batches
 * ([events] concurrency) go on meanwhile. Each handler runs in a subtransaction, and
 * released ones still fill the backend's cache of 64 subtransaction ids, past which every
 * session's snapshots get slower: hence [events] batch is at most 64.
 *
 * The lease. A handler that never ends its delivery (a forgotten ack, a callback that
 * never comes) would hold its batch forever: the transaction stays open and its rows
 * locked. So each handler gets [events] lease: when the timer fires first, the group
 * steps down at the next tick (events_step_down, the path a lost PostgreSQL takes): the
 * consumer task ends, which cancels the handler's pending work and rolls back every
 * batch's transaction, without touching the plugin's pointers from inside the timer of
 * the task being ended. The claim already counted the attempt, so the next leader
 * delivers it again, and past max_attempts dead-letters it (the "delivery never
 * finished" path of events_deliver); its aggregate then flows again.
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
#define COMMIT_FAILED_RETRY_MS 1000

/* Marks those of the ids still pending done, returning them (events_schema_deliveries_sql
 * in events.c says why it is a function). */
static const char sql_mark[] = "SELECT panthera_event_mark($1, $2::bigint[])";

/* A failed delivery outside any batch (its batch is gone): counts and waits. */
static const char sql_fail[] =
    "UPDATE panthera_event_deliveries SET"
    " next_at = now() + $3::bigint * interval '1 millisecond',"
    " state = CASE WHEN attempts >= $4::int THEN 'dead' ELSE 'pending' END,"
    " last_error = $5 WHERE group_name = $1 AND event_id = $2 AND state = 'pending'"
    " RETURNING state";

/* The same inside the batch, after the savepoint was rolled back: this transaction had
 * marked it done. */
static const char sql_fail_in_batch[] =
    "UPDATE panthera_event_deliveries SET done_at = NULL,"
    " next_at = now() + $3::bigint * interval '1 millisecond',"
    " state = CASE WHEN attempts >= $4::int THEN 'dead' ELSE 'pending' END,"
    " last_error = $5 WHERE group_name = $1 AND event_id = $2 AND state = 'done'"
    " RETURNING state";

/* Held events were never handed out: pending again, and their claim does not count. */
static const char sql_hold[] = "SELECT panthera_event_hold($1, $2::bigint[])";

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

/* ---- batches ---- */

static ev_batch_t *batch_new(ev_group_t *g)
{
    ev_batch_t *b = xcalloc(1, sizeof(*b));
    b->group = g;
    b->next = g->batches;
    g->batches = b;
    g->nbatches++;
    return b;
}

static void batch_add(ev_batch_t *b, struct px_event *ev)
{
    ev->batch = b;
    if (b->last)
        b->last->bnext = ev;
    else
        b->events = ev;
    b->last = ev;
    b->n++;
}

/* Out of its batch (not freed): for the events the batch no longer delivers. */
static void batch_remove(ev_batch_t *b, struct px_event *ev)
{
    struct px_event *prev = NULL;
    for (struct px_event *e = b->events; e; prev = e, e = e->bnext) {
        if (e != ev)
            continue;
        if (prev)
            prev->bnext = e->bnext;
        else
            b->events = e->bnext;
        if (b->last == e)
            b->last = prev;
        b->n--;
        break;
    }
    ev->batch = NULL;
    ev->bnext = NULL;
}

/* The batch and its events, freed; its transaction must be ended already. */
static void batch_free(ev_batch_t *b)
{
    ev_group_t *g = b->group;
    for (ev_batch_t **pp = &g->batches; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            g->nbatches--;
            break;
        }
    }
    while (b->events) {
        struct px_event *ev = b->events;
        b->events = ev->bnext;
        events_release(ev);
    }
    free(b);
}

void events_batches_drop(ev_group_t *g)
{
    while (g->batches)
        batch_free(g->batches);
}

/* Something failed between handlers: roll the batch back. Its events stay pending in the
 * database (their attempts counted) and come again, each alone. */
static void batch_abort(ev_batch_t *b, bool cycle)
{
    ev_group_t *g = b->group;
    if (b->txn)
        api_pg_rollback(b->txn, NULL, NULL);
    b->txn = NULL;
    batch_free(b);
    if (cycle)
        events_cycle(g);
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

static void count_failure(ev_group_t *g, const struct px_event *ev, bool dead)
{
    if (dead) {
        metrics_event(g->metrics_id, METRICS_EVENT_DEAD, 1);
        log_warn("events: group \"%s\": event %s failed %d times and is dead-lettered "
                 "(pantherad events:list)",
                 g->sub->group, ev->id_text, ev->attempt);
    } else {
        metrics_event(g->metrics_id, METRICS_EVENT_RETRIED, 1);
    }
}

static void ev_failed(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                      void *ud)
{
    UNUSED(task);
    struct px_event *ev = ud;
    ev_group_t *g = ev->group;
    const char *state = err || api_pg_rows(res) != 1 ? NULL : api_pg_value(res, 0, 0);
    if (err)
        events_log_error(g, "recording a failed delivery", err);
    else if (state)
        count_failure(g, ev, !strcmp(state, "dead"));
    events_release(ev);
    events_cycle(g);
}

/* Count a failed attempt of an event outside any batch (in its own statement) and make
 * it due again after `after_ms`. It stays in flight until that is recorded, or the next
 * dispatch could hand it out again at once, backoff or not. */
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

static void ids_of(buf_t *ids, const ev_batch_t *b, enum ev_state only, bool any)
{
    buf_appends(ids, "{");
    bool first = true;
    for (const struct px_event *ev = b->events; ev; ev = ev->bnext) {
        if (!any && ev->state != only)
            continue;
        buf_printf(ids, "%s%s", first ? "" : ",", ev->id_text);
        first = false;
    }
    buf_appends(ids, "}");
}

static void batch_committed(px_req_t *task, const px_pg_error_t *err, void *ud)
{
    UNUSED(task);
    ev_batch_t *b = ud;
    ev_group_t *g = b->group;
    if (err && b->n == 1) {
        struct px_event *ev = b->events;
        batch_remove(b, ev);
        batch_free(b);
        char reason[300];
        snprintf(reason, sizeof(reason), "commit failed: %s", api_pg_error_message(err));
        ev_fail(ev, COMMIT_FAILED_RETRY_MS, reason);
        return;
    }
    if (err) {
        log_warn("events: group \"%s\": a batch of %zu events did not commit (%s); each "
                 "comes again alone",
                 g->sub->group, b->n, api_pg_error_message(err));
        for (struct px_event *ev = b->events; ev; ev = ev->bnext)
            if (ev->state != EV_HELD)
                metrics_event(g->metrics_id, METRICS_EVENT_RETRIED, 1);
        batch_free(b);
        events_cycle(g);
        return;
    }
    uint64_t delivered = 0;
    for (struct px_event *ev = b->events; ev; ev = ev->bnext) {
        if (ev->state == EV_ACKED) {
            delivered++;
        } else if (ev->state == EV_RETRIED) {
            count_failure(g, ev, ev->dead);
            if (!ev->dead)
                api_timer_start(g->task, ev->retry_ms + RETRY_SLACK_MS, 0, retry_due, g);
        }
    }
    if (delivered)
        metrics_event(g->metrics_id, METRICS_EVENT_DELIVERED, delivered);
    batch_free(b);
    events_cycle(g);
}

static void batch_commit(ev_batch_t *b)
{
    ev_group_t *g = b->group;
    bool held = false;
    for (struct px_event *ev = b->events; ev; ev = ev->bnext)
        held = held || ev->state == EV_HELD;
    if (held) {
        buf_t ids = {0};
        ids_of(&ids, b, EV_HELD, false);
        const char *params[] = {g->sub->group, ids.data};
        /* No callback: a failure fails the COMMIT, which gives the whole batch back. */
        int rc = api_pg_txn_query(b->txn, "px_ev_hold", sql_hold, 2, params, NULL, NULL);
        buf_free(&ids);
        if (rc) {
            batch_abort(b, true);
            return;
        }
    }
    px_pg_txn_t *txn = b->txn;
    b->txn = NULL;
    if (api_pg_commit(txn, batch_committed, b)) {
        events_log_error(g, "committing a batch", NULL);
        batch_free(b);
    }
}

/* Was an earlier event of ev's aggregate in this batch retried (or held behind one)? */
static bool held_back(const ev_batch_t *b, const struct px_event *ev)
{
    for (const struct px_event *e = b->events; e && e != ev; e = e->bnext)
        if ((e->state == EV_RETRIED || e->state == EV_HELD) && !strcmp(e->aggregate, ev->aggregate))
            return true;
    return false;
}

static void savepoint_sql(char *out, size_t size, const char *verb, const struct px_event *ev)
{
    snprintf(out, size, "%s px_ev_%s", verb, ev->id_text);
}

/* Hand the next event to the handler, or commit when none is left. */
static void batch_next(ev_batch_t *b)
{
    ev_group_t *g = b->group;
    struct px_event *ev = b->events;
    for (; ev; ev = ev->bnext) {
        if (ev->state != EV_WAITING)
            continue;
        if (!held_back(b, ev))
            break;
        ev->state = EV_HELD;
    }
    struct px_event *acked = b->unreleased;
    b->unreleased = NULL;
    if (!ev) {
        batch_commit(b);
        return;
    }
    /* No callbacks, and joined to the handler's first statement: if one fails, so do the
     * handler's statements and the COMMIT. */
    char release[64], sql[64];
    if (acked)
        savepoint_sql(release, sizeof(release), "RELEASE SAVEPOINT", acked);
    savepoint_sql(sql, sizeof(sql), "SAVEPOINT", ev);
    if ((acked && api_pg_txn_query_joined(b->txn, NULL, release, 0, NULL, NULL, NULL)) ||
        api_pg_txn_query_joined(b->txn, NULL, sql, 0, NULL, NULL, NULL)) {
        batch_abort(b, true);
        return;
    }
    ev->state = EV_RUNNING;
    ev->txn = b->txn;
    uint64_t lease = g->ew->cfg->lease_ms;
    if (lease) {
        int64_t id = api_timer_start(g->task, lease, 0, lease_over, ev);
        ev->lease = id > 0 ? id : 0;
    }
    g->sub->fn(g->task, b->txn, ev, g->sub->userdata);
}

static void ev_failed_in_batch(px_req_t *task, const px_pg_result_t *res,
                               const px_pg_error_t *err, void *ud)
{
    UNUSED(task);
    struct px_event *ev = ud;
    ev_batch_t *b = ev->batch;
    const char *state = err || api_pg_rows(res) != 1 ? NULL : api_pg_value(res, 0, 0);
    if (!state) {
        events_log_error(b->group, "recording a failed delivery", err);
        batch_abort(b, true);
        return;
    }
    ev->dead = !strcmp(state, "dead");
    batch_next(b);
}

/* Undo the handler's effect, record the failure in the batch, go on with the next. */
static void batch_retry(struct px_event *ev, uint64_t after_ms, const char *reason)
{
    ev_batch_t *b = ev->batch;
    ev_group_t *g = b->group;
    ev->state = EV_RETRIED;
    ev->retry_ms = after_ms;
    char after[24], max[24];
    snprintf(after, sizeof(after), "%" PRIu64, after_ms);
    snprintf(max, sizeof(max), "%" PRIu64, g->ew->cfg->max_attempts);
    const char *params[] = {g->sub->group, ev->id_text, after, max, reason};
    char undo[64], release[64];
    savepoint_sql(undo, sizeof(undo), "ROLLBACK TO SAVEPOINT", ev);
    savepoint_sql(release, sizeof(release), "RELEASE SAVEPOINT", ev);
    if (api_pg_txn_query_joined(b->txn, NULL, undo, 0, NULL, NULL, NULL) ||
        api_pg_txn_query_joined(b->txn, NULL, release, 0, NULL, NULL, NULL) ||
        api_pg_txn_query(b->txn, "px_ev_fail_batch", sql_fail_in_batch, 5, params,
                         ev_failed_in_batch, ev))
        batch_abort(b, true);
}

/* After an ack: the next handler, from the loop rather than from inside the handler
 * that acked (which may go on after px_event_ack returns). */
static void batch_advance(px_req_t *task, int64_t id, void *ud)
{
    UNUSED(task), UNUSED(id);
    batch_next(ud);
}

int api_event_ack(const px_event_t *cev)
{
    struct px_event *ev = (struct px_event *)cev;
    if (!ev || ev->ended || !ev->txn)
        return PX_ESTATE;
    ev_batch_t *b = ev->batch;
    ev->ended = true;
    lease_end(ev);
    ev->txn = NULL;
    ev->state = EV_ACKED;
    /* Released with the next handler's first statement (batch_next); a failed statement
     * of this handler fails that, and the rest of the batch (see the top of the file). */
    b->unreleased = ev;
    int rc = 0;
    if (api_timer_start(b->group->task, 0, 0, batch_advance, b) <= 0)
        rc = PX_ESTATE;
    if (rc) { /* the batch cannot go on: taken back at the next tick, as by a lease */
        events_log_error(b->group, "ending a delivery", NULL);
        b->group->lease_over = true;
    }
    return rc;
}

int api_event_retry(const px_event_t *cev, uint64_t after_ms, const char *reason)
{
    struct px_event *ev = (struct px_event *)cev;
    if (!ev || ev->ended || !ev->txn)
        return PX_ESTATE;
    ev->ended = true;
    lease_end(ev);
    ev->txn = NULL;
    batch_retry(ev, after_ms, reason ? reason : "the handler asked for a retry");
    return 0;
}

/* The group's px_event_prepare hook, once per batch, before its first handler: its
 * statements come first in the transaction, outside every savepoint. Nonzero: the batch
 * is given back. */
static int batch_prepare(ev_batch_t *b)
{
    ev_group_t *g = b->group;
    const px_event_t **events = xcalloc(b->n, sizeof(*events));
    size_t n = 0;
    for (struct px_event *ev = b->events; ev; ev = ev->bnext)
        events[n++] = ev;
    int rc = g->sub->prepare(g->task, b->txn, events, n, g->sub->prepare_userdata);
    free(events);
    if (rc)
        log_warn("events: group \"%s\": the plugin's batch hook refused a batch of %zu (%d); "
                 "each event comes again alone",
                 g->sub->group, n, rc);
    return rc;
}

static void batch_marked(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                         void *ud)
{
    UNUSED(task);
    ev_batch_t *b = ud;
    if (err) {
        events_log_error(b->group, "starting a delivery", err);
        batch_abort(b, true);
        return;
    }
    /* Not marked: another consumer finished it meanwhile. Nothing happens to it here. */
    int rows = api_pg_rows(res);
    for (struct px_event *ev = b->events, *next; ev; ev = next) {
        next = ev->bnext;
        bool marked = false;
        for (int i = 0; i < rows && !marked; i++)
            marked = !strcmp(api_pg_value(res, i, 0), ev->id_text);
        if (!marked) {
            batch_remove(b, ev);
            events_release(ev);
        }
    }
    if (!b->events) {
        batch_abort(b, true);
        return;
    }
    if (b->group->sub->prepare && batch_prepare(b)) {
        batch_abort(b, true);
        return;
    }
    batch_next(b);
}

static void batch_begun(px_req_t *task, px_pg_txn_t *txn, const px_pg_error_t *err, void *ud)
{
    UNUSED(task);
    ev_batch_t *b = ud;
    ev_group_t *g = b->group;
    if (err) {
        events_log_error(g, "beginning a delivery", err);
        batch_free(b); /* the poll brings its events back once PostgreSQL does */
        return;
    }
    b->txn = txn;
    buf_t ids = {0};
    ids_of(&ids, b, EV_WAITING, true);
    const char *params[] = {g->sub->group, ids.data};
    int rc = api_pg_txn_query(txn, "px_ev_mark", sql_mark, 2, params, batch_marked, b);
    buf_free(&ids);
    if (rc)
        batch_abort(b, false);
}

static char *dup_value(const px_pg_result_t *res, int row, int col)
{
    const char *v = api_pg_value(res, row, col);
    return xstrdup(v ? v : "");
}

static struct px_event *event_new(ev_group_t *g, const px_pg_result_t *res, int row)
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
    return ev;
}

/* Which of this dispatch's batches a new event joins: its aggregate's, or the last one
 * with room, or a new one while transactions are free, or the smallest. An event claimed
 * before (attempt > 1) starts a batch of its own (see the top of the file). */
static ev_batch_t *batch_for(ev_group_t *g, ev_batch_t **made, size_t *nmade, size_t slots,
                             const struct px_event *ev)
{
    size_t size = events_batch_size(g);
    for (size_t i = 0; i < *nmade; i++)
        for (const struct px_event *e = made[i]->events; e; e = e->bnext)
            if (!strcmp(e->aggregate, ev->aggregate))
                return made[i];
    ev_batch_t *open = NULL, *small = NULL;
    for (size_t i = 0; i < *nmade; i++) {
        if (made[i]->events->attempt > 1)
            continue; /* a single */
        if (made[i]->n < size)
            open = made[i];
        if (!small || made[i]->n < small->n)
            small = made[i];
    }
    if (ev->attempt <= 1 && open)
        return open;
    if (ev->attempt <= 1 && small && *nmade >= slots)
        return small;
    return made[(*nmade)++] = batch_new(g);
}

void events_deliver(ev_group_t *g, const px_pg_result_t *res)
{
    int rows = api_pg_rows(res);
    if (rows <= 0)
        return;
    size_t cap = g->ew->cfg->concurrency;
    size_t slots = cap > g->nbatches ? cap - g->nbatches : 1;
    ev_batch_t **made = xcalloc((size_t)rows, sizeof(*made));
    size_t nmade = 0;
    for (int i = 0; i < rows; i++) {
        struct px_event *ev = event_new(g, res, i);
        if ((uint64_t)ev->attempt > g->ew->cfg->max_attempts) {
            /* Its earlier deliveries never ended (their workers died): no more tries. */
            ev_fail(ev, 0, "delivery never finished (the consumer died)");
            continue;
        }
        batch_add(batch_for(g, made, &nmade, slots, ev), ev);
    }
    for (size_t i = 0; i < nmade; i++)
        if (api_pg_begin(g->task, batch_begun, made[i]))
            batch_free(made[i]);
    free(made);
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
