#!/usr/bin/env bash
# Benchmarks of the task plugin (plugins/task), against PostgreSQL of scripts/dev services:
#
#   list   GET /v1/projects/{id}/tasks?limit=50 on a project of 10,000 tasks (the default
#          sort, -updatedAt), wrk -c64: requests/s, p50/p99, server CPU per request.
#   move   POST /v1/tasks/{id}/move {before: another task} on the same project, wrk -c64.
#          Moves of one project are serialised by its row lock (the design: rank and
#          dependency decisions are made under it), so this is one project's ceiling.
#   explain  EXPLAIN (ANALYZE) of the list page's statement planned with its values, as
#          the plugin sends it (unnamed, so never a generic plan): it must walk the index
#          task_tasks_updated and stop after 50 rows, not sort the project; and of the
#          move's neighbour lookups, one step each of the (project_id, status, rank) index.
#   Each run also prints the server's own p50/p99 from the access log (without wrk's
#   queueing on 64 connections) and its non-2xx answers by status.
#
# usage: tests/bench/task.sh        (BENCH_SECONDS per run, default 10)
# Needs `scripts/dev services` (reads .run/env). Creates and drops its own database.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
WORKERS=2
TASKS=10000
bench_private_db task_bench
head -c 48 /dev/urandom | base64 -w0 >"$BENCH_TMP/secret"
chmod 600 "$BENCH_TMP/secret"

start_px task "user task" "[postgres]" \
    "conninfo = host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$DB user=$PANTHERA_PGUSER" \
    "pool_size = 8" "[auth]" "token_secret_file = $BENCH_TMP/secret"
URL=http://127.0.0.1:$PX_PORT

name=bench_$$
TOKEN=$(curl -sf -H 'Content-Type: application/json' \
    -d "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"Bench-pass-$$-x\"}" \
    "$URL/v1/auth/register" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
PID=$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    -d '{"name":"bench"}' "$URL/v1/projects" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
log "filling project $PID with $TASKS tasks"
sql "INSERT INTO task_tasks (id, project_id, title, status, priority, rank, updated_at)
     SELECT gen_random_uuid(), '$PID', 'task ' || i,
            (ARRAY['todo', 'in_progress', 'done'])[1 + i % 3],
            (ARRAY['low', 'medium', 'high'])[1 + i % 3],
            task_rank_key(i, $TASKS), now() - i * interval '1 second'
     FROM generate_series(1, $TASKS) AS i; ANALYZE task_tasks" >/dev/null
sql "SELECT id FROM task_tasks WHERE project_id = '$PID' AND status = 'todo' ORDER BY random() LIMIT 400" \
    >"$BENCH_TMP/ids"

# The access log's view of the last run: the server's own p50/p99 (from the request's
# first byte to its answer, without the client's queueing), and each non-2xx status with
# its count, so a failure under load has a name.
server_side() {
    local label=$1 from=$2
    tail -n +"$((from + 1))" "$BENCH_TMP/task/access.log" | "$PYTHON" -c '
import json, sys
label = sys.argv[1]
d, bad = [], {}
for line in sys.stdin:
    r = json.loads(line)
    d.append(r["duration_ms"])
    if not 200 <= r["status"] < 300:
        bad[r["status"]] = bad.get(r["status"], 0) + 1
d.sort()
q = lambda f: d[min(len(d) - 1, int(f * len(d)))] if d else 0
print("%-6s server side: p50 %7.2f ms  p99 %7.2f ms  non-2xx by status %s"
      % (label, q(0.5), q(0.99), bad or "none"))' "$label"
}

run_wrk() {
    local label=$1 script=$2 path=$3 out=$BENCH_TMP/wrk-$1.txt t0 t1 from
    wait_quiet
    from=$(wc -l <"$BENCH_TMP/task/access.log")
    t0=$(cpu_ticks "$PX_PID")
    timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency \
        -s "$script" "$URL$path" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    t1=$(cpu_ticks "$PX_PID")
    awk -v label="$label" -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                         if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 } /requests in/ { n = $1 } $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) } /Non-2xx/ { bad = $NF }
        END { printf "%-6s %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  server CPU %6.0f us/req  non-2xx %s\n",
              label, rps, p50, p99, n ? ticks / hz * 1e6 / n : 0, bad + 0 }' "$out"
    server_side "$label" "$from"
}

cat >"$BENCH_TMP/list.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
{
    echo "wrk.method = 'POST'"
    echo "wrk.headers['Authorization'] = 'Bearer $TOKEN'"
    echo "wrk.headers['Content-Type'] = 'application/json'"
    echo "ids = {"
    sed 's/.*/"&",/' "$BENCH_TMP/ids"
    echo "}"
    cat <<'LUA'
request = function()
    local a = ids[math.random(#ids)]
    local b = a
    while b == a do b = ids[math.random(#ids)] end
    return wrk.format(nil, "/v1/tasks/" .. a .. "/move", nil, '{"before":"' .. b .. '"}')
end
LUA
} >"$BENCH_TMP/move.lua"

log "list: GET /v1/projects/{id}/tasks?limit=50, $TASKS tasks, 64 connections"
run_wrk list "$BENCH_TMP/list.lua" "/v1/projects/$PID/tasks?limit=50"
log "move: POST /v1/tasks/{id}/move, 64 connections"
run_wrk move "$BENCH_TMP/move.lua" "/"

# The statements of store.c (TASK_LIST with the -updatedAt order, and the move's
# neighbour check), written out for PREPARE.
log "explain: the list page and the move check (planned with their values, as sent)"
A=$(sed -n 1p "$BENCH_TMP/ids")
B=$(sed -n 2p "$BENCH_TMP/ids")
psql "${PGARGS[@]}" "$DB" <<SQL | grep -v '^$'
SET plan_cache_mode = force_custom_plan;
PREPARE page(uuid, text, uuid, text, date, date, text, int, int) AS
SELECT jsonb_build_object('id', t.id, 'projectId', t.project_id, 'title', t.title,
  'description', t.description, 'status', t.status, 'priority', t.priority,
  'assigneeId', t.assignee_id, 'dueDate', t.due_date, 'dependsOn',
  coalesce((SELECT coalesce(jsonb_agg(dep.depends_on ORDER BY dep.depends_on), '[]'::jsonb)
            FROM task_dependencies dep WHERE dep.task_id = t.id), '[]'::jsonb),
  'rank', t.rank, 'createdAt', task_ts(t.created_at), 'updatedAt', task_ts(t.updated_at),
  'version', t.version)::text FROM task_tasks t
WHERE project_id = \$1 AND (\$2::text IS NULL OR status = \$2)
  AND (\$3::uuid IS NULL OR assignee_id = \$3) AND (\$4::text IS NULL OR priority = \$4)
  AND (\$5::date IS NULL OR due_date < \$5) AND (\$6::date IS NULL OR due_date > \$6)
  AND (\$7::text IS NULL OR strpos(lower(title), lower(\$7)) > 0
       OR strpos(lower(coalesce(description, '')), lower(\$7)) > 0)
ORDER BY t.updated_at DESC, t.id LIMIT \$8 OFFSET \$9;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE page('$PID', NULL, NULL, NULL, NULL, NULL, NULL, 50, 0);
PREPARE neighbours(uuid, uuid, text, uuid) AS
SELECT (SELECT rank FROM task_tasks WHERE project_id = \$1 AND status = \$3 AND id <> \$2
          AND rank < (SELECT rank FROM task_tasks WHERE id = \$4) ORDER BY rank DESC LIMIT 1),
       (SELECT rank FROM task_tasks WHERE project_id = \$1 AND status = \$3 AND id <> \$2
          ORDER BY rank DESC LIMIT 1);
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE neighbours('$PID', '$A', 'todo', '$B');
SQL
