#!/usr/bin/env bash
# Benchmarks of the reporting plugin (plugins/reporting), against PostgreSQL and Redis of
# scripts/dev services: a project of 10,000 tasks with 100,000 transitions spread over
# 365 days, written straight into the plugin's log (reporting_transitions) and its days
# (reporting_daily, summed from the log as reporting_transition does), then
#
#   burndown, flow   GET .../burndown and .../flow for the full year (366 days), wrk -c4:
#                    cold = a server without [redis] (every request computes the report:
#                    the gate query, the report's SQL function, the rendering); cached =
#                    the same with [redis] (the gate query, then the rendered answer).
#   explain          EXPLAIN ANALYZE of the flow function's query for the year.
#
# usage: tests/bench/reporting.sh        (BENCH_SECONDS per run, default 10)
# Needs `scripts/dev services` (reads .run/env). Creates and drops its own database.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
WORKERS=2
TASKS=10000
MOVES_PER_TASK=9 # plus the creation: 10 transitions a task, 100,000 in all
FIRST=2025-01-01
LAST=2026-01-01
bench_private_db reporting_bench
head -c 48 /dev/urandom | base64 -w0 >"$BENCH_TMP/secret"
chmod 600 "$BENCH_TMP/secret"

start_server() { # start_server yes|no: with [redis] or not
    local redis=()
    [[ $1 == yes ]] && redis=("[redis]" "address = unix:$PANTHERA_REDIS_SOCKET")
    start_px reporting "user task reporting" "[postgres]" \
        "conninfo = host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$DB user=$PANTHERA_PGUSER" \
        "pool_size = 8" "[auth]" "token_secret_file = $BENCH_TMP/secret" "${redis[@]}"
    URL=http://127.0.0.1:$PX_PORT
}

start_server no
name=bench_$$
TOKEN=$(curl -sf -H 'Content-Type: application/json' \
    -d "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"Bench-pass-$$-x\"}" \
    "$URL/v1/auth/register" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
PID=$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    -d '{"name":"bench"}' "$URL/v1/projects" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 300); do # the consumer records the project (a hang's ceiling)
    [[ $(sql "SELECT count(*) FROM reporting_projects WHERE id = '$PID'") == 1 ]] && break
    sleep 0.2
done
[[ $(sql "SELECT count(*) FROM reporting_projects WHERE id = '$PID'") == 1 ]] ||
    die "the consumer never recorded the project"

log "filling project $PID: $TASKS tasks, $((TASKS * (MOVES_PER_TASK + 1))) transitions over 365 days"
sql "
WITH s(k, st) AS (SELECT k, (ARRAY['todo', 'in_progress', 'done'])[1 + k % 3]
                  FROM generate_series(0, $MOVES_PER_TASK) AS k),
t AS (SELECT gen_random_uuid() AS id, i FROM generate_series(1, $TASKS) AS i)
INSERT INTO reporting_transitions (source, project_id, task_id, from_status, to_status, at)
SELECT 'bench:' || t.i || ':' || s.k, '$PID', t.id,
       CASE WHEN s.k = 0 THEN NULL ELSE (ARRAY['todo', 'in_progress', 'done'])[1 + (s.k - 1) % 3] END,
       s.st, timestamptz '$FIRST' + (t.i % 311 + s.k * 6) * interval '1 day'
                                   + (t.i % 86400) * interval '1 second'
FROM t CROSS JOIN s;
INSERT INTO reporting_daily (project_id, day, status, delta)
SELECT '$PID'::uuid, reporting_day(at), status, sum(d)
FROM (SELECT at, from_status AS status, -1 AS d FROM reporting_transitions WHERE from_status IS NOT NULL
      UNION ALL SELECT at, to_status, 1 FROM reporting_transitions) x
GROUP BY 1, 2, 3;
INSERT INTO reporting_tasks (task_id, project_id, status)
SELECT DISTINCT ON (task_id) task_id, project_id, to_status FROM reporting_transitions
ORDER BY task_id, at DESC;
ANALYZE reporting_transitions; ANALYZE reporting_daily; ANALYZE reporting_tasks" >/dev/null
log "log rows: $(sql "SELECT count(*) FROM reporting_transitions"), day rows: $(sql "SELECT count(*) FROM reporting_daily")"

echo "wrk.headers['Authorization'] = 'Bearer $TOKEN'" >"$BENCH_TMP/auth.lua"
run_wrk() {
    local label=$1 path=$2 out=$BENCH_TMP/wrk-$1.txt
    wait_quiet
    timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c4 -d"${SECONDS_PER_RUN}s" --latency \
        -s "$BENCH_TMP/auth.lua" "$URL$path" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    awk -v label="$label" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                         if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
        /Non-2xx/ { bad = $NF }
        END { printf "%-16s %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  non-2xx %s\n",
              label, rps, p50, p99, bad + 0 }' "$out"
}

Q="from=$FIRST&to=$LAST"
curl -sf -H "Authorization: Bearer $TOKEN" "$URL/v1/reports/projects/$PID/flow?$Q" |
    "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin)["days"]; print("days:", len(d), "last:", d[-1])' >&2
log "cold (no [redis]): every request computes the year"
run_wrk burndown-cold "/v1/reports/projects/$PID/burndown?$Q"
run_wrk flow-cold "/v1/reports/projects/$PID/flow?$Q"
stop_pantherad
start_server yes
log "cached ([redis]): the gate query, then the stored rendering"
run_wrk burndown-cached "/v1/reports/projects/$PID/burndown?$Q"
run_wrk flow-cached "/v1/reports/projects/$PID/flow?$Q"

log "explain: the flow function for the year"
sql "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) SELECT reporting_flow('$PID', '$FIRST', '$LAST')" | grep -E "Execution|Planning"
