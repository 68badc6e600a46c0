/*
 * consumer.c — the event consumers: the task, content and project events become inbox
 * rows, once per event, in the delivery's own transaction (px_event_subscribe), together
 * with the `notification.created` event the delivery side (mail, webhooks) consumes and
 * the live hints for the streams.
 *
 * The host hands a group's events over in batches, one transaction for many events
 * (px_event_batch), and runs our batch hook (px_event_prepare) first. The hook plans every
 * event (recipients.c decides the candidates) and queues, for the whole batch:
 *   1. the inbox locks of every event, in one statement, in key order (store.c);
 *   2. one INSERT ... SELECT of the rows of every event whose recipients come from the
 *      payload alone (an assignee, a mention, a post's author, a new member), members
 *      kept, the actor dropped, each recipient's preferences joined once for all.
 *   3. the changes to the task watch table of every event whose task no event of the
 *      batch up to it reads the watchers of, in one statement (store.c).
 * When that INSERT answers, one notification.created tells the delivery side of all its
 * rows, ids and preferences; each event's handler queues one channel message per in-app
 * recipient for after the commit and acks. An event that notifies a task's watchers
 * (task.status_changed, task.commented) reads them when its own turn comes, since the
 * batch's earlier events may change them: its handler runs its own INSERT (the locks of
 * every user it could reach are among the hook's), emits its own notification.created and
 * makes its own watch changes (as do the later events of its task in the batch). So
 * within one batch the payload-only events' rows come first: a user's row for an earlier
 * task.commented can get a larger seq than one for a later task.assigned of the same
 * batch (they commit together; the inbox and the stream show them in seq order). Per
 * event that was: a lock statement, an insert with its preference lookups and the two SQL
 * functions it calls (parsed again on every execution), an emit, two watch statements,
 * and the delivery group's own delivery of the emitted event, for one row; now a batch
 * of 32 single-recipient events shares them (tests/bench/notification.sh).
 *
 * Why the locks: groups deliver different aggregates concurrently, so without them two
 * transactions could commit one user's rows out of seq order, and a stream that resumed
 * "after seq N" could skip a row committed later with a smaller seq. Each transaction
 * holds its candidates' inbox locks from before its inserts to its commit: per user, seq
 * order is commit order, which is all a stream (one user's rows) needs. All of a batch's
 * locks are taken up front in one order, so two batches never deadlock.
 *
 * Failures: the hook's rows are the batch's, outside every event's savepoint, so a
 * px_event_retry would undo the event's emit but not its rows, and its next delivery
 * (finding them) would emit nothing. So a handler that fails never asks for a retry: it
 * makes the transaction fail (sql_fail) and acks; nothing of the batch commits, and
 * the host delivers each of its events again alone, where the one that fails again
 * counts its attempts as any retry would.
 *
 * Effect once: the unique (source_event, user_id, type) makes a second delivery of the
 * same event (events:replay) insert nothing; then nothing is emitted or published either.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notification.h"

/* One inbox row made, copied out of its result (borrowed only inside the callback). */
typedef struct row {
    int64_t source;
    char *seq, *user, *id, *email, *json, *prev;
    int in_app;
} row_t;

typedef struct batch batch_t;

typedef struct delivery {
    const px_event_t *ev;
    px_pg_txn_t *txn;
    batch_t *batch;
    notif_plan_t plan;
    bool planned; /* plan holds something to do */
    bool in_set;  /* its rows come from the batch's INSERT */
    bool waiting; /* its handler ran before that INSERT's answer */
    bool watch_set; /* its watch changes are in the batch's statement (watch_in_hook) */
    bool ended;
    char event_id[24];
} delivery_t;

/* One delivery transaction: what its hook planned and the rows its INSERT made. Freed
 * when its last reference goes (each event not yet ended, the INSERT's answer while
 * due). A batch the host took back before all its handlers ran (a lease, a lost
 * connection) is freed when its transaction's address comes back in a new batch: one
 * such batch at most per transaction the worker ever opened. */
struct batch {
    px_pg_txn_t *txn;
    delivery_t *items;
    size_t n;
    row_t *rows;
    size_t nrows;
    int refs;
    bool answered;
    char *error; /* the INSERT's failure */
    batch_t *next;
};

static batch_t *batches; /* every batch not yet freed (one worker: one thread) */
static int created_metric = -1;

#define MENTION_BATCH 4 /* see consumer_init */

static void rows_free(row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].seq);
        free(rows[i].user);
        free(rows[i].id);
        free(rows[i].email);
        free(rows[i].json);
        free(rows[i].prev);
    }
    free(rows);
}

static void batch_unref(batch_t *b)
{
    if (--b->refs > 0)
        return;
    for (batch_t **pp = &batches; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    for (size_t i = 0; i < b->n; i++)
        notif_plan_free(&b->items[i].plan);
    rows_free(b->rows, b->nrows);
    free(b->items);
    free(b->error);
    free(b);
}

static char *dup(const char *s)
{
    return strdup(s ? s : "");
}

/* Copies rows of (seq, user_id, id, in_app, email, json, prev) starting at column `col`;
 * `source` is column 0 when col is 1, else the given id. NULL when out of memory. */
static row_t *copy_rows(const px_pg_result_t *res, int col, int64_t source, size_t *n)
{
    int rows = px_pg_rows(res);
    row_t *out = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*out));
    if (!out)
        return NULL;
    for (int i = 0; i < rows; i++) {
        row_t *r = &out[i];
        r->source = source;
        if (col == 1)
            px_pg_int64(res, i, 0, &r->source);
        r->seq = dup(px_pg_value(res, i, col));
        r->user = dup(px_pg_value(res, i, col + 1));
        r->id = dup(px_pg_value(res, i, col + 2));
        px_pg_bool(res, i, col + 3, &r->in_app);
        r->email = dup(px_pg_value(res, i, col + 4));
        r->json = dup(px_pg_value(res, i, col + 5));
        r->prev = dup(px_pg_value(res, i, col + 6));
        if (!r->seq || !r->user || !r->id || !r->email || !r->json || !r->prev) {
            rows_free(out, (size_t)rows);
            return NULL;
        }
    }
    *n = (size_t)(rows > 0 ? rows : 0);
    return out;
}

/* The delivery is over: ack, or (see the top) fail the batch and ack. */
static void done(delivery_t *d, const char *failure)
{
    if (d->ended)
        return;
    d->ended = true;
    if (failure) {
        px_log(notif_plugin, PX_LOG_WARN,
               "notification consumer: event %s: %s; its batch comes again, event by event",
               d->event_id, failure);
        const char *v[] = {failure};
        px_pg_txn_query(d->txn, "notif_fail", sql_fail, 1, v, NULL, NULL);
    }
    px_event_ack(d->ev);
    batch_unref(d->batch);
}

/* The watch table's changes come after the recipients were read from it: a commenter
 * is not told of their own comment, and is told of the next one. Queued without a
 * callback; a failure fails the commit and the batch comes again. */
static int queue_watch(delivery_t *d)
{
    notif_plan_t *p = &d->plan;
    if (!p->task_id || d->watch_set)
        return 0;
    int rc = 0;
    if (p->watch_forget) {
        const char *v[] = {p->task_id};
        return px_pg_txn_query(d->txn, "watch_forget", sql_watch_forget, 1, v, NULL, NULL);
    }
    if (p->watch_replace) {
        const char *v[] = {p->task_id, p->watch_add_reason};
        rc = px_pg_txn_query(d->txn, "watch_clear", sql_watch_clear, 2, v, NULL, NULL);
    }
    if (!rc && p->watch_add_reason && p->watch_add_user) {
        const char *v[] = {p->task_id, p->watch_add_user, p->watch_add_reason};
        rc = px_pg_txn_query(d->txn, "watch_add", sql_watch_add, 3, v, NULL, NULL);
    }
    return rc;
}

/* The live hint of one in-app row, as a stream sends it when it is live and the row is
 * next: {"seq", "prev", "notification"}. */
static int publish(delivery_t *d, const row_t *r)
{
    char channel[40], head[96];
    notif_user_channel(r->user, channel);
    int n = snprintf(head, sizeof(head), "{\"seq\":%s,\"prev\":%s,\"notification\":", r->seq,
                     r->prev);
    size_t jlen = strlen(r->json), len = (size_t)n + jlen + 1;
    char *msg = malloc(len + 1);
    if (!msg)
        return PX_EINTERNAL;
    memcpy(msg, head, (size_t)n);
    memcpy(msg + n, r->json, jlen);
    msg[len - 1] = '}';
    msg[len] = '\0';
    int rc = px_channel_publish_on_commit(d->txn, channel, msg, len);
    free(msg);
    return rc;
}

/* The notification.created item of one source event: its rows among `rows` (those whose
 * source it is), with each recipient's effective preferences. Sets *made to their number;
 * NULL when out of memory. */
static json_t *created_item(const delivery_t *d, const row_t *rows, size_t nrows, size_t *made)
{
    int64_t source = px_event_id(d->ev);
    json_t *recipients = json_array();
    *made = 0;
    for (size_t i = 0; i < nrows && recipients; i++) {
        const row_t *r = &rows[i];
        if (r->source != source)
            continue;
        (*made)++;
        if (json_array_append_new(recipients,
                                  json_pack("{s:s, s:s, s:s, s:b}", "userId", r->user,
                                            "notificationId", r->id, "email", r->email,
                                            "inApp", r->in_app))) {
            json_decref(recipients);
            recipients = NULL;
        }
    }
    if (!recipients)
        return NULL;
    json_t *project = d->plan.project_id ? json_string(d->plan.project_id) : json_null();
    return json_pack("{s:s, s:I, s:o, s:o}", "type", d->plan.type, "sourceEventId",
                     (json_int_t)source, "projectId", project, "recipients", recipients);
}

/* One notification.created for the items of `created` (README.md, "Events"), whose first
 * source event names its aggregate. Steals `created`. */
static int emit_created(px_pg_txn_t *txn, const char *first_event, json_t *created)
{
    if (!created)
        return PX_EINTERNAL;
    return px_event_emit(txn, "notification.created", first_event,
                         json_pack("{s:o}", "created", created));
}

/* The event's rows are made (those of `rows` whose source is this event): tell the
 * streams, update the watchers, ack; and, when `emit`, the delivery side (the batch's
 * INSERT tells it of its rows in one event for all, see batch_inserted). */
static void finish(delivery_t *d, const row_t *rows, size_t nrows, bool emit)
{
    int64_t source = px_event_id(d->ev);
    size_t made = 0;
    int rc = 0;
    for (size_t i = 0; i < nrows && !rc; i++) {
        const row_t *r = &rows[i];
        if (r->source != source)
            continue;
        made++;
        if (r->in_app)
            rc = publish(d, r);
    }
    if (!rc && made && emit) {
        size_t n;
        json_t *created = json_array();
        if (created && json_array_append_new(created, created_item(d, rows, nrows, &n))) {
            json_decref(created);
            created = NULL;
        }
        rc = emit_created(d->txn, d->event_id, created);
    }
    if (rc) {
        done(d, "could not record notification.created");
        return;
    }
    if (queue_watch(d)) {
        done(d, "could not queue the watchers' update");
        return;
    }
    if (made)
        px_metric_add(notif_plugin, created_metric, (uint64_t)made);
    done(d, NULL);
}

/* ---- an event whose recipients include a task's watchers: its own INSERT ---- */

static void inserted(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                     void *ud)
{
    (void)task;
    delivery_t *d = ud;
    if (err) {
        done(d, px_pg_error_message(err));
        return;
    }
    size_t n = 0;
    row_t *rows = copy_rows(res, 0, px_event_id(d->ev), &n);
    if (!rows) {
        done(d, "out of memory");
        return;
    }
    finish(d, rows, n, true);
    rows_free(rows, n);
}

static void insert_one(delivery_t *d)
{
    int ti = notif_type_index(d->plan.type);
    char *cand = json_dumps(d->plan.candidates, JSON_COMPACT);
    char *members = d->plan.members ? json_dumps(d->plan.members, JSON_COMPACT) : NULL;
    char *payload = json_dumps(d->plan.payload, JSON_COMPACT);
    const char *values[] = {cand,
                            d->plan.type,
                            payload,
                            d->plan.project_id,
                            d->event_id,
                            notif_cfg.in_app[ti] ? "t" : "f",
                            d->plan.task_id,
                            d->plan.watch_reasons,
                            d->plan.actor,
                            members,
                            notif_cfg.email[ti]};
    int rc = cand && payload && (!d->plan.members || members) ? 0 : PX_EINTERNAL;
    if (!rc)
        rc = px_pg_txn_query(d->txn, "inbox_insert", sql_inbox_insert, 11, values, inserted, d);
    free(cand);
    free(members);
    free(payload);
    if (rc)
        done(d, "could not queue the inbox insert");
}

/* ---- the batch hook ---- */

/* The delivery side hears of all the rows of the batch's INSERT in one event: per event
 * it cost an emit here and a delivery of its own there (tests/bench/notification.sh).
 * This runs during some handler's turn, inside its savepoint; no handler of the consumer
 * ever rolls back to one (see the top), so it commits with the batch. */
static int emit_batch(batch_t *b)
{
    json_t *created = json_array();
    const char *first = NULL;
    for (size_t i = 0; i < b->n && created; i++) {
        const delivery_t *d = &b->items[i];
        if (!d->in_set)
            continue;
        size_t made;
        json_t *item = created_item(d, b->rows, b->nrows, &made);
        if (item && !made) {
            json_decref(item);
            continue;
        }
        if (!item || json_array_append_new(created, item)) {
            json_decref(created);
            created = NULL;
        } else if (!first) {
            first = d->event_id;
        }
    }
    if (!created)
        return PX_EINTERNAL;
    if (!first) {
        json_decref(created);
        return 0;
    }
    return emit_created(b->txn, first, created);
}

static void batch_inserted(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                           void *ud)
{
    (void)task;
    batch_t *b = ud;
    b->answered = true;
    if (err)
        b->error = dup(px_pg_error_message(err));
    else if (!(b->rows = copy_rows(res, 1, 0, &b->nrows)))
        b->error = dup("out of memory");
    else if (b->nrows && emit_batch(b))
        b->error = dup("could not record notification.created");
    for (size_t i = 0; i < b->n; i++) {
        delivery_t *d = &b->items[i];
        if (!d->waiting)
            continue;
        d->waiting = false;
        if (b->error)
            done(d, b->error);
        else
            finish(d, b->rows, b->nrows, false);
    }
    batch_unref(b);
}

/* The JSON of one event for sql_inbox_insert_batch (see store.c). */
static json_t *set_item(const delivery_t *d)
{
    int ti = notif_type_index(d->plan.type);
    json_t *members = d->plan.members ? json_incref(d->plan.members) : json_array();
    return json_pack("{s:s, s:s, s:O, s:s?, s:b, s:s, s:s?, s:b, s:o, s:O}", "e", d->event_id,
                     "type", d->plan.type, "payload", d->plan.payload, "project",
                     d->plan.project_id, "inApp", notif_cfg.in_app[ti], "email",
                     notif_cfg.email[ti], "actor", d->plan.actor, "all", !d->plan.members,
                     "members", members, "cand", d->plan.candidates);
}

/* Whether an event's changes to the watch table can be made by the batch hook, in one
 * statement for the batch, ahead of every handler: when no event of its task up to it
 * (itself included) reads the task's watchers, which must see exactly the changes of the
 * events before them (and a commenter's own change comes after its read). The others are
 * made in their handler's turn, as before. */
static bool watch_in_hook(const batch_t *b, size_t i)
{
    const notif_plan_t *p = &b->items[i].plan;
    if (!b->items[i].planned || !p->task_id ||
        !(p->watch_forget || p->watch_replace || (p->watch_add_reason && p->watch_add_user)))
        return false;
    for (size_t k = 0; k <= i; k++) {
        const notif_plan_t *q = &b->items[k].plan;
        if (b->items[k].planned && q->watch_reasons && q->task_id &&
            !strcmp(q->task_id, p->task_id))
            return false;
    }
    return true;
}

static json_t *watch_op(size_t i, const notif_plan_t *p)
{
    return json_pack("{s:I, s:s, s:b, s:s?, s:s?, s:s?}", "ord", (json_int_t)i, "t", p->task_id,
                     "forget", p->watch_forget, "clear",
                     p->watch_replace ? p->watch_add_reason : NULL, "reason", p->watch_add_reason,
                     "u", p->watch_add_user);
}

static int queue_batch(batch_t *b)
{
    json_t *locks = json_array(), *added = json_array(), *set = json_array();
    json_t *watch = json_array();
    int rc = locks && added && set && watch ? 0 : PX_EINTERNAL;
    for (size_t i = 0; i < b->n && !rc; i++) {
        delivery_t *d = &b->items[i];
        if (!d->planned)
            continue;
        if (d->plan.watch_add_user)
            rc = json_array_append_new(added, json_string(d->plan.watch_add_user));
        if (!rc && (d->watch_set = watch_in_hook(b, i)))
            rc = json_array_append_new(watch, watch_op(i, &d->plan));
        if (rc || !d->plan.type)
            continue;
        rc = json_array_append_new(
            locks, json_pack("{s:I, s:O, s:s?}", "ord", (json_int_t)i, "u", d->plan.candidates,
                             "t", d->plan.watch_reasons ? d->plan.task_id : NULL));
        if (!rc && d->in_set)
            rc = json_array_append_new(set, set_item(d));
    }
    char *locks_s = NULL, *added_s = NULL, *set_s = NULL;
    if (!rc && json_array_size(locks)) {
        locks_s = json_dumps(locks, JSON_COMPACT);
        added_s = json_dumps(added, JSON_COMPACT);
        const char *v[] = {locks_s, added_s};
        rc = locks_s && added_s
                 ? px_pg_txn_query(b->txn, "inbox_lock", sql_inbox_lock, 2, v, NULL, NULL)
                 : PX_EINTERNAL;
    }
    /* After the locks, whose statement reads the watchers as they were before the batch
     * (a superset, with $2, of what any event of it reads). */
    if (!rc && json_array_size(watch)) {
        char *watch_s = json_dumps(watch, JSON_COMPACT);
        const char *v[] = {watch_s};
        rc = watch_s ? px_pg_txn_query(b->txn, "watch_apply", sql_watch_apply, 1, v, NULL, NULL)
                     : PX_EINTERNAL;
        free(watch_s);
    }
    if (!rc && json_array_size(set)) {
        set_s = json_dumps(set, JSON_COMPACT);
        const char *v[] = {set_s};
        rc = set_s ? px_pg_txn_query(b->txn, "inbox_insert_batch", sql_inbox_insert_batch, 1, v,
                                     batch_inserted, b)
                   : PX_EINTERNAL;
        if (!rc)
            b->refs++;
    }
    if (!rc && !json_array_size(set))
        b->answered = true;
    free(locks_s);
    free(added_s);
    free(set_s);
    json_decref(locks);
    json_decref(added);
    json_decref(set);
    json_decref(watch);
    return rc;
}

static int on_batch(px_req_t *task, px_pg_txn_t *txn, const px_event_t *const *events, size_t n,
                    void *ud)
{
    (void)task, (void)ud;
    /* A batch still linked with this transaction's address was taken back by the host
     * before its handlers all ran: its transaction is over, nothing of it runs again. */
    for (batch_t *o = batches; o; o = o->next) {
        if (o->txn == txn) {
            o->refs = 1;
            batch_unref(o);
            break;
        }
    }
    batch_t *b = calloc(1, sizeof(*b));
    delivery_t *items = calloc(n ? n : 1, sizeof(*items));
    if (!b || !items) {
        free(b);
        free(items);
        return PX_EINTERNAL;
    }
    b->txn = txn;
    b->items = items;
    b->n = n;
    b->refs = (int)n;
    b->next = batches;
    batches = b;
    for (size_t i = 0; i < n; i++) {
        delivery_t *d = &items[i];
        d->ev = events[i];
        d->txn = txn;
        d->batch = b;
        snprintf(d->event_id, sizeof(d->event_id), "%" PRId64, px_event_id(events[i]));
        d->planned = !notif_plan(px_event_type(events[i]), px_event_payload(events[i]), &d->plan);
        d->in_set = d->planned && d->plan.type && !d->plan.watch_reasons;
    }
    int rc = queue_batch(b);
    if (rc) {
        b->refs = 1; /* no handler will run: the host gives the batch back */
        batch_unref(b);
    }
    return rc;
}

static void on_event(px_req_t *task, px_pg_txn_t *txn, const px_event_t *ev, void *ud)
{
    (void)task, (void)ud;
    delivery_t *d = NULL;
    for (batch_t *b = batches; b && !d; b = b->next)
        for (size_t i = 0; b->txn == txn && i < b->n && !d; i++)
            if (b->items[i].ev == ev && !b->items[i].ended)
                d = &b->items[i];
    if (!d) { /* never: the hook saw every event the host hands out */
        px_event_retry(ev, 1000, "the consumer's batch hook did not see this event");
        return;
    }
    if (!d->planned) {
        done(d, NULL); /* nobody to notify, nothing to remember */
        return;
    }
    if (!d->plan.type) { /* task.created, task.deleted: the watchers only */
        done(d, queue_watch(d) ? "could not queue the watchers' update" : NULL);
        return;
    }
    if (!d->in_set) {
        insert_one(d);
        return;
    }
    batch_t *b = d->batch;
    if (!b->answered)
        d->waiting = true; /* batch_inserted finishes it */
    else if (b->error)
        done(d, b->error);
    else
        finish(d, b->rows, b->nrows, false);
}

int consumer_init(px_plugin_t *self)
{
    created_metric = px_metric_counter(self, "notification_created_total",
                                       "Inbox rows the consumer created");
    /* One group per source plugin's family: a slow one never holds the others back. Not
     * "*": the plugin's own notification.created must not come back to it. */
    static const char *const groups[][2] = {{"notification-task", "task.*"},
                                            {"notification-mention", "comment.mentioned"},
                                            {"notification-post", "post.*"},
                                            {"notification-project", "project.member_added"}};
    int rc = created_metric < 0 ? created_metric : 0;
    for (size_t i = 0; !rc && i < sizeof(groups) / sizeof(groups[0]); i++) {
        rc = px_event_subscribe(self, groups[i][0], groups[i][1], on_event, NULL);
        if (!rc)
            rc = px_event_prepare(self, groups[i][0], on_batch, NULL);
    }
    /* Mentions come in bursts on one task (its aggregate, so one batch) and often name
     * many: each such event touches the same inbox rows again, and inside one transaction
     * every touch lengthens their chain of row versions the next one walks. Small batches
     * (tests/bench/notification.sh, 1,000 recipients per event). */
    if (!rc)
        rc = px_event_batch(self, "notification-mention", MENTION_BATCH);
    return rc;
}
