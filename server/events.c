/*
 * events.c — the host's event log: one path for every plugin that must tell others
 * what changed (ARCHITECTURE.md, "Events").
 *
 * Emitting. px_event_emit inserts a row into panthera_events inside the caller's own
 * transaction, so the event exists exactly when the change does. The same statement
 * takes a transaction-scoped advisory lock on the aggregate (so emitters of one
 * aggregate take turns until they commit, and id order is commit order per aggregate).
 * It is one more statement in the caller's pipeline, never one more round trip of its
 * own, and not even an answer of its own: it shares the sync point of the transaction's
 * next statement or COMMIT (pg_txn_query_joined), since its failure only has to fail the
 * commit. That mattered more than anything the statement does: run in a loop, the insert
 * with its two indexes costs about 12 us of PostgreSQL's CPU and the lock about 2 us, but
 * one more answer cost a wake-up of the backend and one of the worker each, several
 * times that on a loaded machine. (A third index, on created_at, only served the prune:
 * it is gone, see Retention.) Counted in instructions (tests/bench/emit_instr.sh: a
 * single-user backend under callgrind), the statement adds about 27k to a write's 193k:
 * the lock 7k (the shared lock table, never the fast path, and its release at commit),
 * parsing the payload into jsonb 5k more than json's mere check would (not taken: the
 * column's type change rewrites the whole log under an exclusive lock when a host
 * upgrades, and readers use jsonb's operators), the row, its primary key, the sequence
 * and the transaction id its default takes first (see "Seeing rows in commit order") the
 * rest. Each part is one a guarantee needs: the lock is per-aggregate order, the primary
 * key the deliveries' foreign key and the relay's range.
 * The wake-up is not a NOTIFY inside that transaction: PostgreSQL serialises the commits
 * of every notifying transaction on one global lock,
 * which made a write with one emit 3.5 times slower in tests/bench/events.sh. Instead,
 * once such a COMMIT has succeeded (api_async.c tells us), the worker sends a NOTIFY of
 * its own: at once when it sent none in the last EVENTS_WAKE_MS (an idle consumer is woken
 * without delay), else one when that interval ends, for every commit in it (events_wake_due).
 * At most one per transaction, and under load one per interval per worker: each is a
 * transaction with an xid and a commit record of its own, on a pool connection a request
 * could use. If it is lost (the worker dies first), the consumers' poll finds the events.
 *
 * Seeing rows in commit order. Ids come from a sequence when the INSERT runs, not when
 * the transaction commits: a relay that reads "id > last seen" skips a transaction that
 * took id 10 and committed after id 11 had been read. So each group keeps a `frontier_id`
 * below which every event is final (its transaction has ended) and copied, and each pass
 * of its relay copies the visible matching rows above it (skipping those it already has)
 * in one statement that never waits for a delivery: the only lock a batch can hold on the
 * group's row is the foreign key's KEY SHARE, which the relay's NO KEY UPDATE does not
 * conflict with (two relays of one group still take turns). The frontier moves in three
 * passes, with PostgreSQL's snapshots as the clock. A pass notes the sequence's last value
 * L and its own transaction id B. A later pass whose snapshot sees B committed was taken
 * after L was read, so every transaction that drew an id up to L had its transaction id
 * by then, below that snapshot's xmax X, which the pass notes: the id column's default
 * assigns the transaction id before it draws from the sequence (the statement's insert
 * would only do so after), which costs about 2k instructions per emit. Once a pass's xmin
 * reaches X, every such transaction has ended, its rows are visible to that very pass,
 * which copies them, and the frontier moves to L. A long transaction anywhere in the
 * cluster keeps X ahead of xmin and the frontier back, and each pass re-reads the rows
 * since (a range of the primary key, the copied ones skipped). Rows above the frontier
 * are copied as soon as they are visible, not held back until it passes them: emitters of
 * one aggregate commit in turn, so whenever a row is visible every earlier row of its
 * aggregate is too, and the later one never goes out first.
 * Until host migration 006 each row carried its transaction id, indexed, and the frontier
 * was an xmin: the relay read "xid >= frontier". That index cost each emit 9k of its
 * 34k instructions (tests/bench/emit_instr.sh), more than anything else in it; the
 * frontier costs a relay pass a write it made anyway and, in the steady state, the re-read
 * of about two passes' events.
 *
 * Delivering. panthera_event_deliveries has one row per (group, event): pending, done or
 * dead. Deliveries go in batches (events_deliver.c): one transaction on the group's
 * consumer task first marks its events done (only those still pending: the row lock also
 * serialises any duplicate), then hands them to the plugin's handler one after another,
 * each inside a savepoint, and the handler acks (release: effect and "done" commit with
 * the batch) or asks for a retry (roll back to the savepoint; the attempt is counted and
 * the row waits until its next_at; after [events] max_attempts it is dead). One COMMIT
 * ends the batch. A worker killed mid-batch loses its session, PostgreSQL rolls back, the
 * rows are still pending, and the next consumer delivers them again: at least once, with
 * effect once. Per aggregate, events are handed out from the oldest pending one on, in id
 * order, at most a batch of them in one batch, and not while any of them is in flight, so
 * order holds; a retried one holds its aggregate's later events back. Different batches
 * run concurrently, up to [events] concurrency per group. The batch size is [events]
 * batch, or less for a group whose plugin asked (px_event_batch).
 *
 * Who consumes. One worker of all hosts per group at a time, elected by a session
 * advisory lock held on the worker's listening session (events_listen.c). We chose one
 * consumer per group over partitions: per-aggregate order then needs no rebalancing
 * protocol, a lost leader is replaced as soon as its session dies (PostgreSQL drops the
 * lock), and one consumer with concurrent deliveries is far from the limits a single
 * group meets here. Correctness does not rest on the lock — the conditional "mark done"
 * does that — so a brief overlap of two leaders costs a wasted transaction, never a
 * double effect. Wake-ups come by LISTEN on the same session, with a poll every [events]
 * poll_interval as the fallback that also elects a new leader.
 *
 * Retention. Events that every group has copied past and finished are deleted after
 * [events] retention (default 7 days) by whichever worker leads a group, found by id
 * (sql_prune); dead letters stay until replayed. A group no worker has consumed for a
 * whole retention period is taken for abandoned (its plugin was removed) and dropped, or
 * it would keep every event forever. PostgreSQL is the only thing correctness depends on.
 */
#include "events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "events_internal.h"
#include "events_listen.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "tasks.h"
#include "util.h"
#include "worker.h"

#define PRUNE_EVERY_MS (60 * 1000)
/* A worker sends at most one NOTIFY per this long (events_wake_due). */
#define EVENTS_WAKE_MS 10
/* Pending rows looked at per delivery transaction, beyond its batch, to find the heads
 * of distinct aggregates. */
#define DISPATCH_WINDOW_PER_SLOT 64

const char events_schema_sql[] =
    "CREATE TABLE panthera_events ("
    " id bigserial PRIMARY KEY,"
    " xid xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    " type text NOT NULL, aggregate_id text NOT NULL, producer text NOT NULL,"
    " payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX panthera_events_xid ON panthera_events (xid);"
    "CREATE INDEX panthera_events_created ON panthera_events (created_at);"
    "CREATE TABLE panthera_event_groups ("
    " group_name text PRIMARY KEY, plugin text NOT NULL, pattern text NOT NULL,"
    " frontier xid8 NOT NULL DEFAULT '0', created_at timestamptz NOT NULL DEFAULT now(),"
    " seen_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE panthera_event_deliveries ("
    " group_name text NOT NULL REFERENCES panthera_event_groups ON DELETE CASCADE,"
    " event_id bigint NOT NULL REFERENCES panthera_events ON DELETE CASCADE,"
    " aggregate_id text NOT NULL,"
    " state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),"
    " attempts int NOT NULL DEFAULT 0, next_at timestamptz NOT NULL DEFAULT now(),"
    " last_error text, done_at timestamptz, PRIMARY KEY (group_name, event_id));"
    "CREATE INDEX panthera_event_deliveries_pending ON panthera_event_deliveries"
    " (group_name, event_id) WHERE state = 'pending';"
    "CREATE INDEX panthera_event_deliveries_event ON panthera_event_deliveries (event_id);";

/* Applied after events_schema_sql (which stays as it was: an applied migration is never
 * re-run). Each emit paid for a third index only the prune, once a minute, used: the prune
 * now finds its range by id (sql_prune). */
const char events_schema_prune_by_id_sql[] = "DROP INDEX IF EXISTS panthera_events_created";

/* Applied after the prune's. Two things a delivered event paid far more for than it
 * needs to (tests/bench/events.sh drain), and one each consumer paid every second:
 * - A delivery row is updated twice while it is delivered: its claim counts the attempt,
 *   then its batch marks it done. The claim changes no indexed column, so with room left
 *   on the row's page PostgreSQL keeps the new version there and adds no index entries (a
 *   HOT update). At the default fillfactor of 100 the relay's inserts filled each page,
 *   and every claim wrote its version elsewhere and an entry into each of the three
 *   indexes. (The mark changes `state`, which the pending index's predicate reads: it is
 *   never HOT.)
 * - The mark and the hold look a batch's rows up by id. In one statement joined to the
 *   array of ids (or testing "= ANY" of it), the plan rests on the planner's estimate of
 *   the group's pending rows, and from statistics that lag (a backlog just copied, a table
 *   analyzed while it was small) that is a row or two: it then hashed the group's whole
 *   range for every batch, or scanned it testing each row against the array, or (with
 *   those joins forbidden) ran through the array once per row of it — 15 to 300 ms a batch
 *   at a backlog of 20,000, the largest part of what a delivered event cost. These
 *   functions update one row per id by its key, which no estimate can turn into a scan;
 *   plpgsql keeps the statement's plan per session.
 * - The dead letters get an index of their own: the count every tick (sql_dead) read
 *   every delivery row of the group, done ones included, which a week's retention makes
 *   millions each second. Only dead rows enter it, so delivering pays nothing for it. */
const char events_schema_deliveries_sql[] =
    "ALTER TABLE panthera_event_deliveries SET (fillfactor = 50);"
    "CREATE FUNCTION panthera_event_mark(g text, ids bigint[]) RETURNS SETOF bigint"
    " LANGUAGE plpgsql AS $$ DECLARE i bigint; BEGIN FOREACH i IN ARRAY ids LOOP"
    " RETURN QUERY UPDATE panthera_event_deliveries SET state = 'done', done_at = now()"
    " WHERE group_name = g AND event_id = i AND state = 'pending' RETURNING event_id;"
    " END LOOP; END $$;"
    "CREATE FUNCTION panthera_event_hold(g text, ids bigint[]) RETURNS void"
    " LANGUAGE plpgsql AS $$ DECLARE i bigint; BEGIN FOREACH i IN ARRAY ids LOOP"
    " UPDATE panthera_event_deliveries SET state = 'pending', done_at = NULL,"
    " attempts = greatest(attempts - 1, 0)"
    " WHERE group_name = g AND event_id = i AND state = 'done'; END LOOP; END $$;"
    "CREATE INDEX panthera_event_deliveries_dead ON panthera_event_deliveries (group_name)"
    " WHERE state = 'dead'";

/* Applied after the deliveries' ("Seeing rows in commit order" above says why). Under
 * exclusive locks (the groups' first, in the order other hosts' relays take them), which
 * wait for every open emitter, so that each group's new frontier is
 * read from a log in which nothing is still to appear: just below its oldest row at or
 * above the old xmin frontier (the rest were all copied), or at the sequence's last value
 * when there is none. The column dropped is kept by PostgreSQL as a dropped attribute
 * (each row then stores a null for it, about 2k instructions per emit: a rewrite of a
 * week's log to drop it for good is not worth that). The id's new default takes the
 * transaction id before it draws, whoever inserts. */
const char events_schema_frontier_by_id_sql[] =
    "LOCK TABLE panthera_event_groups, panthera_events IN ACCESS EXCLUSIVE MODE;"
    "ALTER TABLE panthera_event_groups ADD COLUMN frontier_id bigint,"
    " ADD COLUMN next_id bigint, ADD COLUMN next_by xid8, ADD COLUMN next_xmax xid8;"
    "UPDATE panthera_event_groups g SET frontier_id = coalesce("
    "(SELECT min(e.id) - 1 FROM panthera_events e WHERE e.xid >= g.frontier),"
    " pg_sequence_last_value('panthera_events_id_seq'), 0);"
    "ALTER TABLE panthera_event_groups ALTER frontier_id SET NOT NULL,"
    " ALTER frontier_id SET DEFAULT 0, DROP COLUMN frontier;"
    "DROP INDEX panthera_events_xid;"
    "ALTER TABLE panthera_events DROP COLUMN xid, ALTER id SET DEFAULT CASE WHEN"
    " pg_current_xact_id() IS NOT NULL THEN nextval('panthera_events_id_seq') END";

/* The lock must be taken before the row's id is drawn (the id column's default): an emitter
 * that drew its id and then waited for the lock could commit after a later id of its
 * aggregate (test_events.py checks this). A one-time filter of the INSERT's own Result node
 * runs before that node computes its row, and costs no plan node of its own: the CTE this
 * replaced (a CTE scan over a tuplestore) cost 12 % of the statement's instructions
 * (tests/bench/README.md, "events.sh emit", branch emit9). pg_advisory_xact_lock returns
 * void, which is never null: the filter always passes. */
static const char sql_emit[] =
    "INSERT INTO panthera_events (type, aggregate_id, producer, payload)"
    " SELECT $1, $2, $3, $4::jsonb WHERE pg_advisory_xact_lock(hashtextextended("
    "'px-aggregate' || chr(10) || $2, 0)) IS NOT NULL";

/* A new group starts where the log is when it is first registered — by the migrator,
 * before any worker serves, so a group deployed with its producer misses nothing, and
 * one added later does not replay a week of history. It gets every event whose id is
 * drawn after that: ids up to the sequence's last value are its frontier. */
static const char sql_register[] =
    "INSERT INTO panthera_event_groups (group_name, plugin, pattern, frontier_id)"
    " VALUES ($1, $2, $3, coalesce(pg_sequence_last_value('panthera_events_id_seq'), 0))"
    " ON CONFLICT (group_name) DO UPDATE SET plugin = EXCLUDED.plugin,"
    " pattern = EXCLUDED.pattern RETURNING frontier_id";

/* Copies every visible matching row above the frontier (the ones already copied are
 * skipped) and moves the frontier along ("Seeing rows in commit order": `next_id` is L,
 * `next_by` B, `next_xmax` X). `ready`: X is noted and this snapshot's xmin has reached it,
 * so the frontier moves to L and a new L and B are noted; with none noted yet, an L and B
 * are noted; else X is noted once this snapshot sees B. A pass whose snapshot predates
 * another's commit (it waited for the row lock below) reads that pass's notes but sees
 * neither its B nor a later xmin: it only ever waits longer.
 * $3 is the frontier as this worker last read it (registering, or from the last pass):
 * a value the planner can see, where the locked row's is not. Planned with "above the
 * frontier" unknown, PostgreSQL estimates it at a third of the log, and for a week's log
 * hashes every delivery row the group keeps for the anti join (450 ms a pass at a million
 * events); with $3 it reads the tail and probes it. The row's frontier still bounds the
 * copy. Should $3 be above it (someone moved it back), rows between them are not copied
 * by this pass, so it does not move the frontier either; the next one, given the row's,
 * copies them.
 * FOR NO KEY UPDATE, not FOR UPDATE: a delivery transaction that writes a row of the group
 * twice (a retry or a hold after its "mark done") makes PostgreSQL check the foreign key
 * again, which locks the group row FOR KEY SHARE until that batch commits; FOR UPDATE
 * waits for that, FOR NO KEY UPDATE does not (the copy then queued behind batches stuck
 * on their handlers' locks, up to statement_timeout). It still makes two relays of one
 * group take turns. */
static const char sql_relay[] =
    "WITH g AS (SELECT frontier_id, next_id, next_by, next_xmax,"
    " next_xmax IS NOT NULL AND pg_snapshot_xmin(pg_current_snapshot()) >= next_xmax"
    " AND frontier_id >= $3::bigint AS ready"
    " FROM panthera_event_groups WHERE group_name = $1 FOR NO KEY UPDATE),"
    " ins AS (INSERT INTO panthera_event_deliveries (group_name, event_id, aggregate_id)"
    " SELECT $1, e.id, e.aggregate_id FROM panthera_events e, g"
    " WHERE e.id > $3::bigint AND e.id > g.frontier_id AND e.type LIKE $2 AND NOT EXISTS"
    " (SELECT 1 FROM panthera_event_deliveries d WHERE d.group_name = $1"
    " AND d.event_id = e.id AND d.event_id > $3::bigint) ON CONFLICT DO NOTHING RETURNING 1),"
    " up AS (UPDATE panthera_event_groups u SET"
    " frontier_id = CASE WHEN g.ready THEN greatest(g.frontier_id, g.next_id)"
    " ELSE g.frontier_id END,"
    " next_id = CASE WHEN g.ready OR g.next_id IS NULL"
    " THEN coalesce(pg_sequence_last_value('panthera_events_id_seq'), 0) ELSE g.next_id END,"
    " next_by = CASE WHEN g.ready OR g.next_id IS NULL THEN pg_current_xact_id()"
    " ELSE g.next_by END,"
    " next_xmax = CASE WHEN g.ready OR g.next_id IS NULL THEN NULL"
    " WHEN g.next_xmax IS NULL AND pg_visible_in_snapshot(g.next_by, pg_current_snapshot())"
    " THEN pg_snapshot_xmax(pg_current_snapshot()) ELSE g.next_xmax END,"
    " seen_at = now() FROM g WHERE u.group_name = $1 RETURNING u.frontier_id)"
    " SELECT (SELECT count(*) FROM ins), (SELECT frontier_id FROM up)";

/* Claims what is due, for batches of up to [events] batch events per transaction
 * (events_deliver.c). The attempt is counted when a delivery starts, so an event whose
 * handler keeps killing its worker is dead-lettered like one that keeps failing. Rows are
 * looked for among the oldest pending rows only (a window of $4): an aggregate's head is
 * its oldest pending row, so a head found in the window is a true head, and a backlog
 * costs each dispatch the window, not the whole backlog. An aggregate is due when its
 * head is (next_at passed, not in flight: $3); then its rows are taken from the head on,
 * in id order, as long as none of them was claimed before — a row with attempts is one
 * whose earlier delivery never ended (its worker died, its batch failed), and it comes
 * alone, as its aggregate's head, in a transaction of its own, so that an event that
 * kills its consumer costs only its own attempts, not its batch's. An aggregate gives at
 * most a batch ($5) of rows per dispatch: they all go to one transaction, which must stay
 * within the group's batch size (a burst of one aggregate's events waits for the next
 * dispatch, after its batch ends, instead of swelling one transaction). Such a row weighs a
 * whole batch ($5) against the limit ($2, free transactions times the batch size), so
 * the singles never take more transactions than are free. Cutting by the running weight
 * in id order leaves each aggregate a prefix of its rows: order holds. The claimed rows
 * are looked up by id from an array of the due ones: joined to `due` itself, PostgreSQL's
 * custom plan for a backlog of 20,000 re-ran the window functions once per pending row
 * (19 s per dispatch, every one cancelled by statement_timeout, 344 events/s drained). */
static const char sql_dispatch[] =
    "WITH w AS (SELECT event_id, aggregate_id, next_at, attempts FROM panthera_event_deliveries"
    " WHERE group_name = $1 AND state = 'pending' ORDER BY event_id LIMIT $4::int),"
    " r AS (SELECT event_id, attempts, first_value(event_id) OVER a AS head,"
    " first_value(next_at) OVER a AS head_next_at, bool_and(attempts = 0) OVER a AS fresh,"
    " row_number() OVER a AS nth"
    " FROM w WINDOW a AS (PARTITION BY aggregate_id ORDER BY event_id)),"
    " c AS (SELECT event_id, sum(CASE WHEN attempts > 0 THEN $5::int ELSE 1 END)"
    " OVER (ORDER BY event_id) AS weight FROM r WHERE head_next_at <= now()"
    " AND NOT (head = ANY($3::bigint[])) AND (event_id = head OR fresh) AND nth <= $5::int),"
    " due AS (SELECT event_id FROM c WHERE weight <= $2::int),"
    " claimed AS (UPDATE panthera_event_deliveries d SET attempts = d.attempts + 1"
    " FROM unnest(ARRAY(SELECT event_id FROM due)) AS due(event_id)"
    " WHERE d.group_name = $1 AND d.event_id = due.event_id RETURNING d.event_id, d.attempts)"
    " SELECT e.id, e.type, e.aggregate_id, e.producer, e.payload::text,"
    " to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " c.attempts FROM claimed c JOIN panthera_events e ON e.id = c.event_id ORDER BY e.id";

static const char sql_dead[] =
    "SELECT count(*) FROM panthera_event_deliveries WHERE group_name = $1 AND state = 'dead'";

/* A group nobody has consumed for a whole retention period (its plugin was removed) would
 * hold every event back for good: it is dropped, with its deliveries, dead letters
 * included. Then events older than the retention that every remaining group has copied
 * and finished go. */
static const char sql_prune_groups[] =
    "DELETE FROM panthera_event_groups"
    " WHERE seen_at < now() - $1::bigint * interval '1 millisecond'";

/* In batches, so one statement stays well inside statement_timeout however much is due;
 * the next prune takes the next batch. There is no index on created_at (each emit would pay
 * for it): ids grow with time, so a binary search over the id index (one probe per step,
 * about 40 at most) finds the last id whose row is older than the retention, and the rows
 * are looked for from the oldest id up to it. created_at is not strictly monotonic in id
 * (it is the emitting transaction's start), so the age condition stays on every row: the
 * search may stop short of a few old rows above a younger one, which a later prune takes
 * once that one has aged too; it never lets a young row go. */
static const char sql_prune[] =
    "WITH RECURSIVE cut AS (SELECT now() - $1::bigint * interval '1 millisecond' AS at),"
    " b (lo, hi) AS (SELECT (SELECT min(id) - 1 FROM panthera_events),"
    " (SELECT max(id) FROM panthera_events)"
    " UNION ALL SELECT CASE WHEN m.old THEN m.id ELSE b.lo END,"
    " CASE WHEN m.old THEN b.hi ELSE (b.lo + b.hi + 1) / 2 - 1 END"
    " FROM b, LATERAL (SELECT e.id, e.id <= b.hi AND e.created_at < cut.at AS old"
    " FROM panthera_events e, cut WHERE e.id >= (b.lo + b.hi + 1) / 2 ORDER BY e.id LIMIT 1) m"
    " WHERE b.lo < b.hi)"
    " DELETE FROM panthera_events WHERE id IN (SELECT e.id FROM panthera_events e, cut"
    " WHERE e.id <= (SELECT max(lo) FROM b) AND e.created_at < cut.at"
    " AND e.id <= (SELECT coalesce(min(frontier_id), 9223372036854775807)"
    " FROM panthera_event_groups)"
    " AND NOT EXISTS (SELECT 1 FROM panthera_event_deliveries d"
    " WHERE d.event_id = e.id AND d.state <> 'done') ORDER BY e.id LIMIT 5000)";

static const char sql_lock[] =
    "SELECT pg_try_advisory_lock(hashtextextended('px-events' || chr(10) || $1, 0))";

/* ---- subscriptions, registered during init ---- */

struct events_registry {
    ev_sub_t *subs;
    size_t n;
};

void events_registry_free(plugin_set_t *set)
{
    if (!set->events)
        return;
    free(set->events->subs);
    free(set->events);
    set->events = NULL;
}

static bool name_chars(const char *s, size_t max, bool star)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || (star && c == '*')))
            return false;
    }
    return true;
}

int api_event_subscribe(px_plugin_t *p, const char *group, const char *pattern, px_event_fn fn,
                        void *ud)
{
    plugin_set_t *set = p->set;
    if (set->registering != p)
        return PX_ESTATE;
    if (!fn || !name_chars(group, GROUP_NAME_MAX, false) || !name_chars(pattern, 127, true)) {
        config_error(set->errs, p->section->file, p->section->line,
                     "plugin \"%s\": px_event_subscribe(\"%s\", \"%s\"): a group is 1-%d and a "
                     "pattern 1-127 characters of a-z, 0-9, _ . - (and * in a pattern)",
                     p->name, group ? group : "(null)", pattern ? pattern : "(null)",
                     GROUP_NAME_MAX);
        return PX_EINVAL;
    }
    if (!set->cfg || !set->cfg->pg.conninfo || !*set->cfg->pg.conninfo) {
        config_error(set->errs, p->section->file, p->section->line,
                     "plugin \"%s\" subscribes to events but [postgres] conninfo is not set",
                     p->name);
        return PX_EUNAVAIL;
    }
    if (!set->events)
        set->events = xcalloc(1, sizeof(*set->events));
    struct events_registry *reg = set->events;
    for (size_t i = 0; i < reg->n; i++)
        if (!strcmp(reg->subs[i].group, group))
            return PX_EEXIST;
    reg->subs = xrealloc(reg->subs, (reg->n + 1) * sizeof(ev_sub_t));
    ev_sub_t *s = &reg->subs[reg->n++];
    memset(s, 0, sizeof(*s));
    s->plugin = p;
    snprintf(s->group, sizeof(s->group), "%s", group);
    snprintf(s->pattern, sizeof(s->pattern), "%s", pattern);
    /* '*' is the only wildcard; '_' is literal in a type, so it is escaped for LIKE. */
    char *o = s->like;
    for (const char *c = pattern; *c; c++) {
        if (*c == '*') {
            *o++ = '%';
        } else {
            if (*c == '_')
                *o++ = '\\';
            *o++ = *c;
        }
    }
    *o = '\0';
    s->fn = fn;
    s->userdata = ud;
    return 0;
}

/* The subscription `p` made to `group` earlier in its init, or NULL. */
static ev_sub_t *own_subscription(plugin_set_t *set, px_plugin_t *p, const char *group)
{
    for (size_t i = 0; set->events && group && i < set->events->n; i++)
        if (set->events->subs[i].plugin == p && !strcmp(set->events->subs[i].group, group))
            return &set->events->subs[i];
    return NULL;
}

int api_event_batch(px_plugin_t *p, const char *group, int max)
{
    plugin_set_t *set = p->set;
    if (set->registering != p)
        return PX_ESTATE;
    ev_sub_t *s = own_subscription(set, p, group);
    if (!s || max < 1 || max > EVENTS_BATCH_MAX) {
        config_error(set->errs, p->section->file, p->section->line,
                     "plugin \"%s\": px_event_batch(\"%s\", %d): the group must be one it "
                     "subscribed, the size 1-%d",
                     p->name, group ? group : "(null)", max, EVENTS_BATCH_MAX);
        return PX_EINVAL;
    }
    s->batch = (size_t)max;
    return 0;
}

int api_event_prepare(px_plugin_t *p, const char *group, px_event_prepare_fn fn, void *ud)
{
    plugin_set_t *set = p->set;
    if (set->registering != p)
        return PX_ESTATE;
    ev_sub_t *s = own_subscription(set, p, group);
    if (!s || !fn) {
        config_error(set->errs, p->section->file, p->section->line,
                     "plugin \"%s\": px_event_prepare(\"%s\"): the group must be one it "
                     "subscribed, the hook not NULL",
                     p->name, group ? group : "(null)");
        return PX_EINVAL;
    }
    if (s->prepare)
        return PX_EEXIST;
    s->prepare = fn;
    s->prepare_userdata = ud;
    return 0;
}

size_t events_batch_size(const ev_group_t *g)
{
    size_t cap = g->ew->cfg->batch;
    return g->sub->batch && g->sub->batch < cap ? g->sub->batch : cap;
}

int events_register_groups(void *conn, const plugin_set_t *set)
{
    PGconn *pg = conn;
    const struct events_registry *reg = set->events;
    for (size_t i = 0; reg && i < reg->n; i++) {
        const ev_sub_t *s = &reg->subs[i];
        const char *params[] = {s->group, s->plugin->name, s->pattern};
        PGresult *res = PQexecParams(pg, sql_register, 3, NULL, params, NULL, NULL, 0);
        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        if (!ok)
            log_error("events: cannot register group \"%s\": %s", s->group,
                      PQresultErrorMessage(res));
        PQclear(res);
        if (!ok)
            return -1;
    }
    return 0;
}

/* ---- emitting ---- */

static void emitted(px_req_t *r, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    UNUSED(r), UNUSED(res), UNUSED(ud);
    UNUSED(err); /* a failed insert fails the transaction: its commit reports it */
}

int api_event_emit(px_pg_txn_t *txn, const char *type, const char *aggregate_id, json_t *payload)
{
    int rc = PX_EINVAL;
    char *text = NULL;
    if (!txn) {
        rc = PX_ESTATE;
        goto done;
    }
    size_t alen = aggregate_id ? strlen(aggregate_id) : 0;
    if (!name_chars(type, 127, false) || alen == 0 || alen > 255)
        goto done;
    if (payload && !json_is_object(payload) && !json_is_array(payload))
        goto done;
    text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    px_req_t *r = api_txn_req(txn);
    const char *params[] = {type, aggregate_id, r->plugin ? r->plugin : "host",
                            text ? text : "{}"};
    /* Its failure fails the commit anyway: it shares the next statement's sync point
     * rather than costing an answer of its own (pg_pipeline.c). */
    rc = api_pg_txn_query_joined(txn, "px_event_emit", sql_emit, 4, params, emitted, NULL);
    if (rc == 0)
        api_txn_mark_emitted(txn);
done:
    free(text);
    json_decref(payload);
    return rc;
}

/* ---- waking the consumers ---- */

int64_t events_wake_due(uint64_t now, const events_wake_state_t *st, uint64_t every)
{
    if (st->scheduled)
        return -1; /* the NOTIFY already due covers this commit: it is sent after it */
    if (!st->sent || now - st->last >= every)
        return 0;
    return (int64_t)(st->last + every - now);
}

/* One per process (a worker is one process); made on the first commit with events. */
static uv_timer_t *wake;
static events_wake_state_t wake_state;
static uint64_t wakes_sent;

uint64_t events_wakes_sent(void)
{
    return wakes_sent;
}

static void wake_send(worker_t *w)
{
    wakes_sent++;
    wake_state.sent = true;
    wake_state.last = uv_now(w->loop);
    wake_state.scheduled = false;
    if (w->pg) /* fire and forget: if it is lost, the consumers' poll finds the events */
        pg_query(w->pg, "SELECT pg_notify('panthera_events', '')", 0, NULL, NULL, NULL, NULL);
}

static void wake_fire(uv_timer_t *t)
{
    wake_send(t->data);
}

void events_wake(worker_t *w)
{
    int64_t due = events_wake_due(uv_now(w->loop), &wake_state, EVENTS_WAKE_MS);
    if (due < 0)
        return;
    if (due == 0) {
        wake_send(w);
        return;
    }
    if (!wake) {
        wake = xmalloc(sizeof(*wake));
        uv_timer_init(w->loop, wake);
        wake->data = w;
    }
    wake_state.scheduled = true;
    uv_timer_start(wake, wake_fire, (uint64_t)due, 0);
}

static void wake_closed(uv_handle_t *h)
{
    free(h);
}

/* ---- consuming: copy, then hand out (one delivery: events_deliver.c) ---- */

/* Step down: the task's pending work is cancelled and its transactions rolled back, so
 * what was in flight is still pending in the database for the next leader. */
void events_step_down(ev_group_t *g, int status)
{
    if (!g->task)
        return;
    px_req_t *task = g->task;
    g->task = NULL;
    api_task_end(task, status);
    events_batches_drop(g);
    while (g->inflight)
        events_release(g->inflight);
    g->cycling = g->again = g->registered = g->lease_over = false;
    log_info("events: this worker no longer consumes group \"%s\"", g->sub->group);
}

static void cycle_done(ev_group_t *g)
{
    g->cycling = false;
    if (g->again)
        events_cycle(g);
}

static void dispatched(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    UNUSED(task);
    ev_group_t *g = ud;
    if (err)
        events_log_error(g, "reading due events", err);
    else
        events_deliver(g, res);
    cycle_done(g);
}

static void dispatch(ev_group_t *g)
{
    size_t cap = g->ew->cfg->concurrency, batch = events_batch_size(g);
    if (g->nbatches >= cap) {
        cycle_done(g);
        return;
    }
    /* In-flight events include their aggregates' heads: leaving those out holds each of
     * those aggregates back until its batch ends. */
    buf_t ids = {0};
    buf_appends(&ids, "{");
    for (struct px_event *ev = g->inflight; ev; ev = ev->next)
        buf_printf(&ids, "%s%s", ev == g->inflight ? "" : ",", ev->id_text);
    buf_appends(&ids, "}");
    char limit[24], window[24], weight[24];
    snprintf(limit, sizeof(limit), "%zu", (cap - g->nbatches) * batch);
    snprintf(window, sizeof(window), "%zu", cap * (batch + DISPATCH_WINDOW_PER_SLOT));
    snprintf(weight, sizeof(weight), "%zu", batch);
    const char *params[] = {g->sub->group, limit, ids.data, window, weight};
    int rc = api_pg_query(g->task, NULL, sql_dispatch, 5, params, dispatched, g);
    buf_free(&ids);
    if (rc) {
        events_log_error(g, "reading due events", NULL);
        cycle_done(g);
    }
}

/* The frontier the relay and the registration answer, in column `col` (NULL: the group's
 * row is gone, dropped as abandoned; the next registration makes it again). */
static void note_frontier(ev_group_t *g, const px_pg_result_t *res, int col)
{
    if (api_pg_int64(res, 0, col, &g->frontier) != 0)
        g->registered = false;
}

static void relayed(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                    void *ud)
{
    UNUSED(task);
    ev_group_t *g = ud;
    if (err) {
        events_log_error(g, "copying new events", err);
        cycle_done(g);
        return;
    }
    note_frontier(g, res, 1);
    dispatch(g);
}

/* The relay and the dispatch are sent unnamed, planned for their values each time: as
 * prepared statements PostgreSQL switched them to a generic plan after five runs, in which
 * the relay's "not copied yet" probe read every delivery row of the group for each new
 * event (group_name = $1 alone as its index condition) — 100-700 ms a cycle in
 * tests/bench/notification.sh, and the group's batches waited for each cycle. A plan costs
 * well under a millisecond, once per cycle. */
static void relay(ev_group_t *g)
{
    char frontier[24];
    snprintf(frontier, sizeof(frontier), "%" PRId64, g->frontier);
    const char *params[] = {g->sub->group, g->sub->like, frontier};
    if (api_pg_query(g->task, NULL, sql_relay, 3, params, relayed, g)) {
        events_log_error(g, "copying new events", NULL);
        cycle_done(g);
    }
}

static void registered(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                       void *ud)
{
    UNUSED(task);
    ev_group_t *g = ud;
    if (err) {
        events_log_error(g, "registering the group", err);
        cycle_done(g);
        return;
    }
    g->registered = true;
    note_frontier(g, res, 0);
    relay(g);
}

/* Copy what became visible, then hand out what is due. Coalesced: a wake-up during a
 * cycle runs one more cycle after it, never two at once. */
void events_cycle(ev_group_t *g)
{
    if (!g->task)
        return;
    if (g->cycling) {
        g->again = true;
        return;
    }
    g->cycling = true;
    g->again = false;
    if (g->registered) {
        relay(g);
        return;
    }
    const ev_sub_t *s = g->sub;
    const char *params[] = {s->group, s->plugin->name, s->pattern};
    if (api_pg_query(g->task, "px_ev_register", sql_register, 3, params, registered, g)) {
        events_log_error(g, "registering the group", NULL);
        cycle_done(g);
    }
}

/* ---- leadership, over the listening session ---- */

static void locked(const PGresult *res, void *ud)
{
    ev_group_t *g = ud;
    g->locking = false;
    events_worker_t *ew = g->ew;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || ew->stopping)
        return;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0 || g->task)
        return;
    char name[64];
    snprintf(name, sizeof(name), "group:%s", g->sub->group);
    g->task = tasks_begin(ew->w, g->sub->plugin->name, name);
    if (!g->task)
        return; /* draining: the lock goes with the session when it closes */
    g->metrics_id = metrics_task_id(g->sub->plugin->name, name);
    log_info("events: this worker consumes group \"%s\"", g->sub->group);
    events_cycle(g);
}

static void try_lead(events_worker_t *ew)
{
    for (size_t i = 0; i < ew->ngroups; i++) {
        ev_group_t *g = &ew->groups[i];
        if (g->task || g->locking)
            continue;
        if (ev_listen_query(ew->listen, sql_lock, g->sub->group, locked, g) == 0)
            g->locking = true;
    }
}

static void listen_up(void *ud)
{
    events_worker_t *ew = ud;
    ev_listen_query(ew->listen, "LISTEN panthera_events", NULL, NULL, NULL);
    try_lead(ew);
}

static void listen_down(void *ud)
{
    events_worker_t *ew = ud;
    for (size_t i = 0; i < ew->ngroups; i++) {
        ew->groups[i].locking = false;
        events_step_down(&ew->groups[i], PX_EUNAVAIL);
    }
}

static void listen_notify(void *ud)
{
    events_worker_t *ew = ud;
    for (size_t i = 0; i < ew->ngroups; i++)
        events_cycle(&ew->groups[i]);
}

static void dead_counted(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err,
                         void *ud)
{
    UNUSED(task);
    ev_group_t *g = ud;
    const char *n = err ? NULL : api_pg_value(res, 0, 0);
    if (n)
        metrics_events_dead_now(g->metrics_id, strtoll(n, NULL, 10));
}

static void pruned(px_req_t *task, const px_pg_result_t *res, const px_pg_error_t *err, void *ud)
{
    UNUSED(task), UNUSED(ud);
    if (err)
        log_warn("events: pruning old events: %s", api_pg_error_message(err));
    else if (api_pg_affected(res) > 0)
        log_info("events: pruned %" PRId64 " old events or abandoned groups",
                 api_pg_affected(res));
}

static void on_tick(uv_timer_t *t)
{
    events_worker_t *ew = t->data;
    uint64_t now = uv_now(ew->w->loop);
    /* Every minute, or more often for a retention shorter than two minutes. */
    uint64_t every = ew->cfg->retention_ms / 2 < PRUNE_EVERY_MS ? ew->cfg->retention_ms / 2
                                                                : PRUNE_EVERY_MS;
    bool prune = now - ew->last_prune >= every;
    for (size_t i = 0; i < ew->ngroups; i++) {
        ev_group_t *g = &ew->groups[i];
        if (g->lease_over)
            events_step_down(g, PX_EUNAVAIL);
        if (!g->task)
            continue;
        events_cycle(g);
        const char *params[] = {g->sub->group};
        api_pg_query(g->task, "px_ev_dead", sql_dead, 1, params, dead_counted, g);
        if (prune) {
            char age[24];
            snprintf(age, sizeof(age), "%" PRIu64, ew->cfg->retention_ms);
            const char *p[] = {age};
            api_pg_query(g->task, "px_ev_prune_groups", sql_prune_groups, 1, p, pruned, NULL);
            api_pg_query(g->task, "px_ev_prune", sql_prune, 1, p, pruned, NULL);
            ew->last_prune = now;
            prune = false;
        }
    }
    try_lead(ew);
}

void events_worker_start(worker_t *w)
{
    const struct events_registry *reg = w->plugins->events;
    if (!reg || !reg->n || !w->pg || w->events)
        return;
    events_worker_t *ew = xcalloc(1, sizeof(*ew));
    ew->w = w;
    ew->cfg = &w->cfg->events;
    ew->ngroups = reg->n;
    ew->groups = xcalloc(reg->n, sizeof(ev_group_t));
    ew->last_prune = uv_now(w->loop);
    for (size_t i = 0; i < reg->n; i++) {
        ew->groups[i].sub = &reg->subs[i];
        ew->groups[i].ew = ew;
        ew->groups[i].metrics_id = -1;
    }
    static const ev_listen_events_t events = {listen_up, listen_down, listen_notify};
    ew->listen = ev_listen_new(w->loop, w->cfg->pg.conninfo, &events, ew);
    uv_timer_init(w->loop, &ew->tick);
    ew->tick.data = ew;
    uint64_t every = ew->cfg->poll_interval_ms ? ew->cfg->poll_interval_ms : 1000;
    uv_timer_start(&ew->tick, on_tick, every, every);
    w->events = ew;
}

static void tick_closed(uv_handle_t *h)
{
    events_worker_t *ew = h->data;
    free(ew->groups);
    free(ew);
}

void events_worker_stop(worker_t *w)
{
    if (wake) {
        uv_close((uv_handle_t *)wake, wake_closed);
        wake = NULL;
    }
    wake_state = (events_wake_state_t){0};
    events_worker_t *ew = w->events;
    if (!ew)
        return;
    w->events = NULL;
    ew->stopping = true;
    for (size_t i = 0; i < ew->ngroups; i++)
        events_step_down(&ew->groups[i], 0);
    ev_listen_close(ew->listen);
    uv_timer_stop(&ew->tick);
    uv_close((uv_handle_t *)&ew->tick, tick_closed);
}
