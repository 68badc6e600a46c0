#!/usr/bin/env bash
# What one pass of the event relay costs PostgreSQL on a large log: the plan it gets and its
# time, from EXPLAIN ANALYZE, not from a clock around the server.
#
# A private database on the project's PostgreSQL gets the host's event schema (the
# migrations in server/events.c, as this checkout has them), a log of BENCH_RELAY_EVENTS
# events (default 1,000,000, a week at under two a second; four types), and one group,
# "task.%", whose deliveries of every matching event are done, its frontier
# BENCH_RELAY_TAIL events (default 50) below the end of the log; VACUUM ANALYZE. Then
# events.c's sql_relay runs three times, each in a transaction rolled back:
#   worker's frontier   $3 as the worker passes it (the frontier it last read)
#   again, 20,000 new   the same after 20,000 more events, unanalyzed: a burst the
#                       statistics have not seen, copied (the copy's own inserts included)
#   frontier unknown    $3 = 0: what the planner knows when the frontier is not a value
#                       it can see (how the relay was planned before it passed $3)
# usage: tests/bench/relay_plan.sh   (needs `scripts/dev services`; reads .run/env)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd -P)
[[ -f $REPO/.run/env ]] || { echo "error: no .run/env: run scripts/dev services first" >&2; exit 1; }
set -a
# shellcheck source=/dev/null
. "$REPO/.run/env"
set +a
EVENTS=${BENCH_RELAY_EVENTS:-1000000}
TAIL=${BENCH_RELAY_TAIL:-50}
DB=relayplan_$$
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" "$@"; }
psql_ "$PANTHERA_PGDATABASE" -c "CREATE DATABASE $DB" >/dev/null
trap 'psql_ "$PANTHERA_PGDATABASE" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

consts() { python3 "$REPO/tests/bench/events_sql.py" "$@"; }
{
    echo "BEGIN;"
    consts schema
    echo "COMMIT;"
} | psql_ "$DB" >/dev/null

echo "==> a log of $EVENTS events, the group's deliveries of them done, VACUUM ANALYZE" >&2
psql_ "$DB" >/dev/null 2>&1 <<SQL
INSERT INTO panthera_events (type, aggregate_id, producer, payload)
 SELECT (ARRAY['task.created', 'task.updated', 'comment.created', 'user.created'])[1 + i % 4],
 'a' || (i % 10000), 'bench', '{"seq": 1}' FROM generate_series(1, $EVENTS) i;
INSERT INTO panthera_event_groups (group_name, plugin, pattern, frontier_id)
 VALUES ('bench', 'bench', 'task.%', 0);
INSERT INTO panthera_event_deliveries (group_name, event_id, aggregate_id, state, done_at)
 SELECT 'bench', id, aggregate_id, 'done', now() FROM panthera_events WHERE type LIKE 'task.%';
UPDATE panthera_event_groups SET frontier_id = (SELECT max(id) - $TAIL FROM panthera_events);
VACUUM ANALYZE panthera_events;
VACUUM ANALYZE panthera_event_deliveries;
VACUUM ANALYZE panthera_event_groups;
SQL

relay=$(consts sql_relay)
pass() { # label, SQL that sets :f, extra SQL before the pass
    local out
    out=$(psql_ "$DB" <<SQL
PREPARE relay(text, text, text) AS ${relay}
SET plan_cache_mode = force_custom_plan;
BEGIN;
$3
$2 \gset
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE relay('bench', 'task.%', :'f');
ROLLBACK;
SQL
)
    printf '%-22s %10s ms   %s\n' "$1" \
        "$(sed -n 's/.*Execution Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")" \
        "$(grep -oE '(Hash|Nested Loop|Merge) Anti Join' <<<"$out" | head -1)"
    grep -E 'Index Cond|Scan on panthera_event_deliveries' <<<"$out" | sed 's/^ */    /' | head -4
}
frontier="SELECT frontier_id AS f FROM panthera_event_groups WHERE group_name = 'bench'"
pass "worker's frontier" "$frontier" ""
pass "again, 20,000 new" "$frontier" "ALTER TABLE panthera_events SET (autovacuum_enabled = false);
INSERT INTO panthera_events (type, aggregate_id, producer, payload) SELECT 'task.created',
 'b' || (i % 1000), 'bench', '{}' FROM generate_series(1, 20000) i;"
pass "frontier unknown" "SELECT 0 AS f" ""
