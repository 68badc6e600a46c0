/*
 * store.c — the plugin's SQL, in one place. Times leave PostgreSQL already formatted
 * (notification_json, migrations/001), so C never parses one.
 */
#include "notification.h"

/* ---- the consumer ---- */

/* Candidates up to which an event takes each one's own inbox lock (sql_inbox_lock). */
#define LOCK_USERS "4"

/* The inbox locks of a whole delivery batch, taken by its batch hook before any of its
 * inserts (consumer.c). Per user, seq order must be commit order, so a transaction that
 * may insert rows for a user holds a lock that user's other inserters need, from before
 * its INSERT takes seqs until its commit, the end of the batch. Which locks, per event
 * ($1: [{"ord": its number, "u": candidates, "t": the task whose watchers are candidates
 * too, or null}];
 * $2: the users this batch's events make watchers, candidates of every such event):
 *   - at most LOCK_USERS candidates (the common event: an assignee, a mention): each
 *     one's own lock (1852796277, hash of the id) and its stripe's (1852796276, one of 64)
 *     SHARED. Events for different users never wait for each other, however many a batch
 *     holds; with 64 stripes alone, two batches of 32 shared a stripe nearly always, and
 *     batches queued behind each other's commits.
 *   - more (a fan-out): the candidates' stripes EXCLUSIVE, at most 64 locks: a lock per
 *     recipient of a thousand-recipient event, held to a batch's commit, would overflow
 *     PostgreSQL's shared lock table (max_locks_per_transaction).
 * A stripe one event of the batch needs exclusive is taken exclusive only. Two
 * transactions for one user always conflict (user/user, shared/exclusive,
 * exclusive/exclusive). All of a batch's locks in one statement, stripes first, then
 * users, each in key order, and none later: no two batches ever wait for each other in a
 * circle (they did when each event took its own, one event after another: PostgreSQL
 * cancelled one after deadlock_timeout and its batch stalled a second). The first keys
 * are the plugin's own constants. */
const char sql_inbox_lock[] =
    "WITH e AS (SELECT * FROM json_to_recordset($1::json) AS e(ord int, u json, t uuid)),"
    " m AS (SELECT e.ord, c.u::uuid AS u FROM e, json_array_elements_text(e.u) AS c(u)"
    "  UNION SELECT e.ord, w.user_id FROM e JOIN notification_task_watch w ON w.task_id = e.t"
    "  UNION SELECT e.ord, a.u::uuid FROM e, json_array_elements_text($2::json) AS a(u)"
    "   WHERE e.t IS NOT NULL),"
    " f AS (SELECT ord, count(*) > " LOCK_USERS " AS fan FROM m GROUP BY ord),"
    " k AS (SELECT 0 AS phase, hashtext(m.u::text) & 63 AS key, bool_or(f.fan) AS excl"
    "  FROM m JOIN f USING (ord) GROUP BY 1, 2"
    "  UNION ALL SELECT 1, hashtext(m.u::text), true FROM m JOIN f USING (ord)"
    "  WHERE NOT f.fan GROUP BY 1, 2)"
    " SELECT count(CASE WHEN x.phase = 1 THEN pg_advisory_xact_lock(1852796277, x.key)"
    "  WHEN x.excl THEN pg_advisory_xact_lock(1852796276, x.key)"
    "  ELSE pg_advisory_xact_lock_shared(1852796276, x.key) END)"
    " FROM (SELECT * FROM k ORDER BY phase, key) x";

/* The inbox rows of every event of a batch whose recipients do not depend on the watch
 * table, in one statement (consumer.c). $1: [{"e": source event id, "type", "payload",
 * "project", "inApp" (default), "email" (default), "actor", "all" (true: anyone may see
 * it), "members", "cand"}], in event order. Candidates are kept when members (or "all"),
 * the actor dropped: a join (hashed), not a members subquery per candidate, which for
 * 4 mentions of 1,000 parsed the member list 4,000 times. json_to_recordset reads each
 * item once (a json `->>` per field parsed it again for each: 3 times slower); rows are made in event order, then user order, so per user seq
 * follows the events. Returns source_event, then the columns of sql_inbox_insert; `prev`
 * counts this statement's own earlier rows (the outer query does not see them in the
 * table). */
const char sql_inbox_insert_batch[] =
    "WITH ev AS (SELECT e, type, payload, project, \"inApp\" AS in_app, email, actor,"
    "  \"all\" AS everyone, members, cand FROM json_to_recordset($1::json) AS x(e bigint,"
    "  type text, payload jsonb, project uuid, \"inApp\" boolean, email text, actor uuid,"
    "  \"all\" boolean, members json, cand json)),"
    " mem AS (SELECT DISTINCT ev.e, m.u::uuid AS u FROM ev,"
    "  json_array_elements_text(ev.members) AS m(u)),"
    " cand AS (SELECT DISTINCT c.e, c.u FROM (SELECT ev.e, ev.actor, ev.everyone,"
    "  x.u::uuid AS u FROM ev, json_array_elements_text(ev.cand) AS x(u)) c"
    "  LEFT JOIN mem ON mem.e = c.e AND mem.u = c.u"
    "  WHERE c.u IS DISTINCT FROM c.actor AND (c.everyone OR mem.u IS NOT NULL)),"
    " ins AS ("
    " INSERT INTO notification (user_id, type, payload, project_id, source_event, in_app)"
    " SELECT cand.u, ev.type, ev.payload, ev.project, ev.e, coalesce(p.in_app, ev.in_app)"
    " FROM cand JOIN ev ON ev.e = cand.e"
    " LEFT JOIN notification_preference p ON p.user_id = cand.u AND p.type = ev.type"
    " ORDER BY ev.e, cand.u"
    " ON CONFLICT (source_event, user_id, type) DO NOTHING RETURNING *),"
    " touched AS (SELECT notification_touch(array_agg(user_id)) FROM ins WHERE in_app)"
    " SELECT ins.source_event, ins.seq, ins.user_id, ins.id, ins.in_app,"
    " coalesce(p.email, ev.email),"
    " notification_json(ins.id, ins.type, ins.payload, ins.read_at, ins.created_at)::text,"
    " CASE WHEN ins.in_app THEN coalesce(lag(ins.seq) OVER w,"
    "  (SELECT coalesce(max(o.seq), 0) FROM notification o WHERE o.user_id = ins.user_id"
    "   AND o.in_app AND o.seq < ins.seq)) ELSE 0 END"
    " FROM ins JOIN ev ON ev.e = ins.source_event"
    " LEFT JOIN notification_preference p ON p.user_id = ins.user_id AND p.type = ins.type"
    " CROSS JOIN (SELECT count(*) FROM touched) t"
    " WINDOW w AS (PARTITION BY ins.user_id, ins.in_app ORDER BY ins.seq)"
    " ORDER BY ins.seq";

/* Fails the transaction with $1 (migrations/013): the batch is given back. */
const char sql_fail[] = "SELECT notification_fail($1)";

/* One event's rows, for the events whose recipients include a task's watchers as they
 * are when the event's turn comes (earlier events of the batch change them): run by its
 * handler, under the locks the batch hook took. $1 candidates (JSON array of uuids), $2 type, $3 payload, $4 project, $5 source event,
 * $6 default inApp, $7/$8 the task and watch reasons whose watchers are candidates too,
 * $9 the actor, $10 members (JSON array) or NULL for "anyone", $11 default email.
 * Returns the rows made: seq, user_id, id, in_app, effective email, the public JSON, and
 * the seq of the user's previous in-app row (0: none), exact under the inbox lock: the
 * stream sends a live row at once only when it follows the last one it sent. */
const char sql_inbox_insert[] =
    "WITH cand AS ("
    " SELECT DISTINCT u FROM ("
    "  SELECT json_array_elements_text($1::json)::uuid AS u"
    "  UNION SELECT user_id FROM notification_task_watch"
    "   WHERE $8::text[] IS NOT NULL AND task_id = $7::uuid AND reason = ANY($8::text[])) c"
    " WHERE u IS DISTINCT FROM $9::uuid AND ($10::json IS NULL OR u IN"
    "  (SELECT json_array_elements_text($10::json)::uuid))),"
    " ins AS ("
    " INSERT INTO notification (user_id, type, payload, project_id, source_event, in_app)"
    " SELECT cand.u, $2, $3::jsonb, $4::uuid, $5::bigint, coalesce(p.in_app, $6::boolean)"
    " FROM cand LEFT JOIN notification_preference p ON p.user_id = cand.u AND p.type = $2"
    " ORDER BY cand.u"
    " ON CONFLICT (source_event, user_id, type) DO NOTHING RETURNING *),"
    " touched AS (SELECT notification_touch(array_agg(user_id)) FROM ins WHERE in_app)"
    " SELECT ins.seq, ins.user_id, ins.id, ins.in_app, coalesce(p.email, $11),"
    " notification_json(ins.id, ins.type, ins.payload, ins.read_at, ins.created_at)::text,"
    " (SELECT coalesce(max(o.seq), 0) FROM notification o WHERE o.user_id = ins.user_id"
    "  AND o.in_app AND o.seq < ins.seq)"
    " FROM ins LEFT JOIN notification_preference p ON p.user_id = ins.user_id AND p.type = $2"
    " CROSS JOIN (SELECT count(*) FROM touched) t ORDER BY ins.seq";

const char sql_watch_forget[] = "DELETE FROM notification_task_watch WHERE task_id = $1::uuid";
const char sql_watch_clear[] =
    "DELETE FROM notification_task_watch WHERE task_id = $1::uuid AND reason = $2";
const char sql_watch_add[] =
    "INSERT INTO notification_task_watch (task_id, user_id, reason)"
    " VALUES ($1::uuid, $2::uuid, $3) ON CONFLICT DO NOTHING";
/* The watch table's changes of a whole delivery batch in one statement, from the batch
 * hook (consumer.c says which events' changes may go there), with the effect of making
 * them one event after another: $1 [{"ord": the event's place in the batch, "t": task,
 * "forget": drop all the task's rows, "clear": a reason whose rows go first, "reason"/"u":
 * the row to add after that}]. So a task's rows go when any of its events forgets it or
 * clears their reason, and an add survives unless a later event (or a forget at it)
 * removes it again: two assignments of one task leave the second assignee. The DELETEs
 * find their rows through the primary key by an array of task ids: joined to the JSON's
 * rows (which PostgreSQL guesses at 100 or more) they were planned as a scan of the whole
 * table, milliseconds per batch and growing with it. The INSERT's condition reads their
 * counts, so they are done before it looks for conflicts (and it finds no row they
 * removed: re-adding the same assignee keeps it). A count it joins but never reads,
 * PostgreSQL may plan away: the DELETEs then ran after the INSERT, which had found the
 * old row, added nothing, and the row was gone (tests/api/test_notification_batches.py). */
const char sql_watch_apply[] =
    "WITH o AS (SELECT * FROM json_to_recordset($1::json)"
    "  AS x(ord int, t uuid, forget boolean, clear text, reason text, u uuid)),"
    " f AS (SELECT t, max(ord) AS at FROM o WHERE forget GROUP BY t),"
    " c AS (SELECT t, clear AS reason, max(ord) AS at FROM o WHERE clear IS NOT NULL"
    "  GROUP BY 1, 2),"
    " df AS (DELETE FROM notification_task_watch"
    "  WHERE task_id = ANY ((SELECT array_agg(t) FROM f)::uuid[]) RETURNING 1),"
    " dc AS (DELETE FROM notification_task_watch"
    "  WHERE task_id = ANY ((SELECT array_agg(t) FROM c)::uuid[])"
    "  AND (task_id, reason) IN (SELECT t, reason FROM c) RETURNING 1)"
    " INSERT INTO notification_task_watch (task_id, user_id, reason)"
    " SELECT DISTINCT o.t, o.u, o.reason FROM o"
    " LEFT JOIN f ON f.t = o.t LEFT JOIN c ON c.t = o.t AND c.reason = o.reason"
    " CROSS JOIN (SELECT count(*) AS n FROM df) d1 CROSS JOIN (SELECT count(*) AS n FROM dc) d2"
    " WHERE d1.n + d2.n >= 0 AND o.u IS NOT NULL AND o.reason IS NOT NULL AND NOT o.forget"
    "  AND o.ord > coalesce(f.at, -1) AND o.ord >= coalesce(c.at, -1)"
    " ON CONFLICT DO NOTHING";

/* ---- the inbox ---- */

/* $1 user, $2 unread only ('t'/'f'), $3 type or NULL, $4 limit, $5 offset. Rows of
 * (total, JSON); an empty page is one row with NULL JSON. */
const char sql_inbox_list[] =
    "WITH f AS (SELECT * FROM notification WHERE user_id = $1::uuid AND in_app"
    " AND (NOT $2::boolean OR read_at IS NULL) AND ($3::text IS NULL OR type = $3)),"
    " page AS (SELECT * FROM f ORDER BY seq DESC LIMIT $4::int OFFSET $5::int)"
    " SELECT (SELECT count(*) FROM f), CASE WHEN page.seq IS NOT NULL THEN"
    " notification_json(page.id, page.type, page.payload, page.read_at, page.created_at)::text"
    " END"
    " FROM (SELECT 1) one LEFT JOIN page ON true ORDER BY page.seq DESC";

/* The inbox's Last-Modified as epoch seconds, or NULL when it never changed. */
const char sql_inbox_modified[] =
    "SELECT extract(epoch FROM modified_at)::bigint FROM notification_inbox_state"
    " WHERE user_id = $1::uuid";

/* $1 user, $2 id. One row: found, changed. */
const char sql_inbox_read[] =
    "WITH n AS (SELECT seq, read_at FROM notification"
    "  WHERE id = $2::uuid AND user_id = $1::uuid AND in_app),"
    " u AS (UPDATE notification SET read_at = now() FROM n"
    "  WHERE notification.seq = n.seq AND n.read_at IS NULL RETURNING notification.user_id),"
    " t AS (SELECT notification_touch(array_agg(user_id)) FROM u HAVING count(*) > 0)"
    " SELECT (SELECT count(*) FROM n), (SELECT count(*) FROM t)";

/* $1 user, $2 the newest id to mark (inclusive) or NULL for all. One row: whether the id
 * was found (always true without one), rows changed. */
const char sql_inbox_read_all[] =
    "WITH b AS (SELECT seq FROM notification WHERE id = $2::uuid AND user_id = $1::uuid"
    "  AND in_app),"
    " u AS (UPDATE notification SET read_at = now() WHERE user_id = $1::uuid AND in_app"
    "  AND read_at IS NULL AND ($2::uuid IS NULL OR seq <= (SELECT seq FROM b))"
    "  RETURNING user_id),"
    " t AS (SELECT notification_touch(array_agg(user_id)) FROM u HAVING count(*) > 0)"
    " SELECT $2::uuid IS NULL OR EXISTS (SELECT 1 FROM b), (SELECT count(*) FROM t)";

const char sql_inbox_unread[] =
    "SELECT count(*) FROM notification WHERE user_id = $1::uuid AND in_app AND read_at IS NULL";

/* ---- preferences ---- */

const char sql_prefs_get[] =
    "SELECT type, in_app, email FROM notification_preference WHERE user_id = $1::uuid";

/* $1 user, $2 JSON object type -> {inApp, email}. */
const char sql_prefs_put[] =
    "INSERT INTO notification_preference (user_id, type, in_app, email)"
    " SELECT $1::uuid, e.key, (e.value ->> 'inApp')::boolean, e.value ->> 'email'"
    " FROM json_each($2::json) e"
    " ON CONFLICT (user_id, type) DO UPDATE SET in_app = excluded.in_app, email = excluded.email";

/* ---- the stream ---- */

/* $1 user, $2 id: the seq to resume after, or no row (unknown, swept, someone else's). */
const char sql_stream_point[] =
    "SELECT seq FROM notification WHERE id = $2::uuid AND user_id = $1::uuid";
/* $1 user: the newest seq (a stream without a point starts after it). */
const char sql_stream_head[] =
    "SELECT coalesce(max(seq), 0) FROM notification WHERE user_id = $1::uuid AND in_app";
/* $1 user, $2 after seq, $3 limit: the rows to send, in order. */
const char sql_stream_after[] =
    "SELECT seq, id, notification_json(id, type, payload, read_at, created_at)::text"
    " FROM notification WHERE user_id = $1::uuid AND in_app AND seq > $2::bigint"
    " ORDER BY seq LIMIT $3::int";

/* ---- the sweep ---- */

/* $1 retention in seconds, $2 batch. Touches the inboxes it shrank. */
const char sql_sweep[] =
    "WITH d AS (DELETE FROM notification WHERE seq IN (SELECT seq FROM notification"
    "  WHERE created_at < now() - $1::bigint * interval '1 second' ORDER BY seq LIMIT $2::int)"
    "  RETURNING user_id, in_app),"
    " t AS (SELECT notification_touch(array_agg(user_id)) FROM d WHERE in_app"
    "  HAVING count(*) > 0)"
    " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM t)";
