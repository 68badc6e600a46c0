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
#          task_tasks_updated and stop after 50 rows, not sort the project.
#
# usage: tests/bench/task.sh        (BENCH_SECONDS per run, default 10)
# Needs `scripts/dev services` (reads .run/env). Creates and drops its own database.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
WORKERS=2
TASKS=10000
[[ -f $REPO/.run/env ]] || die "no .run/env: run scripts/dev services first"
set -a
# shellcheck disable=SC1091
. "$REPO/.run/env"
set +a
DB=task_bench_$$
PGARGS=(-X -q -A -t -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER")
sql() { psql "${PGARGS[@]}" "$DB" -c "$1"; }

bench_init
cleanup() {
    bench_cleanup
    psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
        >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "CREATE DATABASE $DB" >/dev/null
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

run_wrk() {
    local label=$1 script=$2 path=$3 out=$BENCH_TMP/wrk-$1.txt t0 t1
    wait_quiet
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

# The statement of store.c (TASK_LIST with the -updatedAt order), written out for PREPARE.
log "explain: the list page (planned with its values, as the plugin sends it)"
psql "${PGARGS[@]}" "$DB" <<SQL | grep -v '^$'
SET plan_cache_mode = force_custom_plan;
PREPARE page(uuid, text, uuid, text, date, date, text, int, int) AS
SELECT task_task_json(to_jsonb(t), task_deps(t.id))::text FROM task_tasks t
WHERE project_id = \$1 AND (\$2::text IS NULL OR status = \$2)
  AND (\$3::uuid IS NULL OR assignee_id = \$3) AND (\$4::text IS NULL OR priority = \$4)
  AND (\$5::date IS NULL OR due_date < \$5) AND (\$6::date IS NULL OR due_date > \$6)
  AND (\$7::text IS NULL OR strpos(lower(title), lower(\$7)) > 0
       OR strpos(lower(coalesce(description, '')), lower(\$7)) > 0)
ORDER BY t.updated_at DESC, t.id LIMIT \$8 OFFSET \$9;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE page('$PID', NULL, NULL, NULL, NULL, NULL, NULL, 50, 0);
SQL
