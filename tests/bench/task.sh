#!/usr/bin/env bash
# Benchmarks of the task plugin (plugins/task), against PostgreSQL of scripts/dev services:
#
#   list   GET /v1/projects/{id}/tasks?limit=50 on a project of 10,000 tasks (the default
#          sort, -updatedAt), wrk -c64: requests/s, p50/p99, server CPU per request. With
#          [redis] configured (the channel generation.c needs), a kept page is answered
#          from the worker's memory while no task is written: no PostgreSQL at all.
#   move   POST /v1/tasks/{id}/move {before: another task} on the same project, wrk -c64.
#          Moves of one project are serialised by its row lock (the design: rank and
#          dependency decisions are made under it), so this is one project's ceiling.
#   explain  EXPLAIN (ANALYZE) of the list's statement as the plugin runs it (unfiltered:
#          prepared, so its generic plan): the caller's membership and the project's
#          task_count from their primary keys, and the page walking the index
#          task_tasks_updated, stopping after 50 rows, never sorting or counting the
#          project; and of the move's neighbour lookups, one step each of the (project_id,
#          status, rank) index.
#   Each run also prints the server's own p50/p99 from the access log (without wrk's
#   queueing on 64 connections) and its non-2xx answers by status, PostgreSQL's CPU per
#   request (every backend of the cluster: run it on a cluster nothing else uses, as
#   scripts/dev services' is) and the load average.
#
# usage: tests/bench/task.sh                      (BENCH_SECONDS per run, default 10)
#        BENCH_BASELINE=/path/to/other/build tests/bench/task.sh
#   With a baseline (a build directory of another tree, e.g. main from `git archive`),
#   both are measured in one run, alternating (BENCH_ROUNDS rounds, default 2): each
#   with its own database filled the same way, so the ratio is taken on the same load.
#   BENCH_NOCACHE=1 adds "nocache": this tree's build on its database with
#   [plugin:task] list_cache_size = 0, so every list is rendered by PostgreSQL (the
#   cost of a list right after a write; "new" answers from kept pages, no task changing
#   during its list runs).
# Needs `scripts/dev services` (reads .run/env). Creates and drops its own databases.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
WORKERS=2
TASKS=10000
bench_private_db task_bench
head -c 48 /dev/urandom | base64 -w0 >"$BENCH_TMP/secret"
chmod 600 "$BENCH_TMP/secret"
URL=http://127.0.0.1:$PX_PORT
NEW_BUILD=$BUILD
LABELS=(new)
declare -A BUILDS=([new]=$NEW_BUILD) DBS=([new]=$DB)
if [[ -n ${BENCH_BASELINE:-} ]]; then
    [[ -x $BENCH_BASELINE/server/pantherad ]] || die "no $BENCH_BASELINE/server/pantherad"
    LABELS=(base new)
    BUILDS[base]=$BENCH_BASELINE
    DBS[base]=${DB}_base
    psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "CREATE DATABASE ${DBS[base]}" >/dev/null
    trap 'bench_private_db_cleanup; psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "DROP DATABASE IF EXISTS ${DBS[base]} WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
fi
if [[ ${BENCH_NOCACHE:-0} == 1 ]]; then
    LABELS+=(nocache)
    BUILDS[nocache]=$NEW_BUILD
    DBS[nocache]=${DBS[new]}
fi
ROUNDS=${BENCH_ROUNDS:-$(( ${#LABELS[@]} > 1 ? 2 : 1 ))}
PG_PID=$(head -1 "$PANTHERA_RUNDIR/pgdata/postmaster.pid")

# start LABEL: that build's pantherad on that label's database.
start() {
    local plugins="user task" extra=()
    # One section per plugin: nocache's [plugin:task] is in the main file, not a drop-in.
    [[ $1 == nocache ]] && plugins=user extra=("[plugin:task]" "list_cache_size = 0")
    BUILD=${BUILDS[$1]}
    DB=${DBS[$1]}
    start_px "task-$1" "$plugins" "[postgres]" \
        "conninfo = host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$DB user=$PANTHERA_PGUSER" \
        "pool_size = 8" "[redis]" "address = unix:$PANTHERA_REDIS_SOCKET" \
        "[auth]" "token_secret_file = $BENCH_TMP/secret" "${extra[@]}"
}

# setup LABEL: a user, a project of TASKS tasks and the wrk scripts, in that database.
setup() {
    local label=$1 name token pid f
    if [[ $label == nocache ]]; then # new's project, user and scripts
        for f in pid-% ids-% list-%.lua move-%.lua; do
            cp "$BENCH_TMP/${f/\%/new}" "$BENCH_TMP/${f/\%/nocache}"
        done
        return
    fi
    start "$label"
    name=bench_$$_$label
    token=$(curl -sf -H 'Content-Type: application/json' \
        -d "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"Bench-pass-$$-x\"}" \
        "$URL/v1/auth/register" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
    pid=$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
        -d '{"name":"bench"}' "$URL/v1/projects" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    echo "$pid" >"$BENCH_TMP/pid-$label"
    log "$label: filling project $pid with $TASKS tasks"
    sql "INSERT INTO task_tasks (id, project_id, title, status, priority, rank, updated_at)
         SELECT gen_random_uuid(), '$pid', 'task ' || i,
                (ARRAY['todo', 'in_progress', 'done'])[1 + i % 3],
                (ARRAY['low', 'medium', 'high'])[1 + i % 3],
                task_rank_key(i, $TASKS), now() - i * interval '1 second'
         FROM generate_series(1, $TASKS) AS i; ANALYZE task_tasks" >/dev/null
    sql "SELECT id FROM task_tasks WHERE project_id = '$pid' AND status = 'todo' ORDER BY random() LIMIT 400" \
        >"$BENCH_TMP/ids-$label"
    cat >"$BENCH_TMP/list-$label.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA
    {
        echo "wrk.method = 'POST'"
        echo "wrk.headers['Authorization'] = 'Bearer $token'"
        echo "wrk.headers['Content-Type'] = 'application/json'"
        echo "ids = {"
        sed 's/.*/"&",/' "$BENCH_TMP/ids-$label"
        echo "}"
        cat <<'LUA'
request = function()
    local a = ids[math.random(#ids)]
    local b = a
    while b == a do b = ids[math.random(#ids)] end
    return wrk.format(nil, "/v1/tasks/" .. a .. "/move", nil, '{"before":"' .. b .. '"}')
end
LUA
    } >"$BENCH_TMP/move-$label.lua"
    stop_pantherad
}

# The access log's view of the last run: the server's own p50/p99 (from the request's
# first byte to its answer, without the client's queueing), and each non-2xx status with
# its count, so a failure under load has a name.
server_side() {
    local label=$1 from=$2 log=$3
    tail -n +"$((from + 1))" "$log" | "$PYTHON" -c '
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
print("%-11s server side: p50 %7.2f ms  p99 %7.2f ms  non-2xx by status %s"
      % (label, q(0.5), q(0.99), bad or "none"))' "$label"
}

# run_wrk LABEL SCRIPT PATH ACCESS_LOG: one wrk run against the running pantherad; CPU
# per request of pantherad (master and workers) and of PostgreSQL (the postmaster and
# every backend), and the 1-minute load average at the end.
run_wrk() {
    local label=$1 script=$2 path=$3 log=$4 out=$BENCH_TMP/wrk-$1.txt t0 t1 g0 g1 from
    wait_quiet
    from=$(wc -l <"$log")
    t0=$(cpu_ticks "$PX_PID")
    g0=$(cpu_ticks "$PG_PID")
    timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency \
        -s "$script" "$URL$path" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    t1=$(cpu_ticks "$PX_PID")
    g1=$(cpu_ticks "$PG_PID")
    awk -v label="$label" -v ticks=$((t1 - t0)) -v pg=$((g1 - g0)) -v hz="$CLK_TCK" \
        -v load="$(cut -d' ' -f1 /proc/loadavg)" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                         if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 } /requests in/ { n = $1 } $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) } /Non-2xx/ { bad = $NF }
        END { printf "%-11s %6.0f req/s  p50 %7.2f ms  p99 %7.2f ms  CPU/req server %5.0f us  postgres %5.0f us  load %s  non-2xx %s\n",
              label, rps, p50, p99, n ? ticks / hz * 1e6 / n : 0, n ? pg / hz * 1e6 / n : 0,
              load, bad + 0 }' "$out"
    server_side "$label" "$from" "$log"
}

for label in "${LABELS[@]}"; do
    setup "$label"
done
for ((round = 1; round <= ROUNDS; round++)); do
    for label in "${LABELS[@]}"; do
        log "round $round, $label (${BUILDS[$label]}): list (GET /v1/projects/{id}/tasks?limit=50," \
            "$TASKS tasks), then move (POST /v1/tasks/{id}/move), 64 connections each"
        start "$label"
        run_wrk "$label-list" "$BENCH_TMP/list-$label.lua" \
            "/v1/projects/$(cat "$BENCH_TMP/pid-$label")/tasks?limit=50" "$BENCH_TMP/task-$label/access.log"
        run_wrk "$label-move" "$BENCH_TMP/move-$label.lua" "/" "$BENCH_TMP/task-$label/access.log"
        stop_pantherad
    done
done

# The statements of store.c (TASK_LIST with the -updatedAt order, and the move's
# neighbour check), written out for PREPARE, on the database of this tree's build.
log "explain: the list page (generic plan, as prepared) and the move check"
DB=${DBS[new]}
PID=$(cat "$BENCH_TMP/pid-new")
A=$(sed -n 1p "$BENCH_TMP/ids-new")
B=$(sed -n 2p "$BENCH_TMP/ids-new")
psql "${PGARGS[@]}" "$DB" <<SQL | grep -v '^$'
SET plan_cache_mode = force_generic_plan;
PREPARE page(uuid, uuid, bool, int, int, bigint) AS
SELECT p.list_version, p.task_count, CASE WHEN p.list_version = \$6 THEN NULL ELSE
  array_to_json(ARRAY(SELECT json_build_object('id', t.id,
  'projectId', t.project_id, 'title', t.title, 'description', t.description,
  'status', t.status, 'priority', t.priority, 'assigneeId', t.assignee_id,
  'dueDate', t.due_date, 'dependsOn',
  coalesce((SELECT coalesce(jsonb_agg(dep.depends_on ORDER BY dep.depends_on), '[]'::jsonb)
            FROM task_dependencies dep WHERE dep.task_id = t.id), '[]'::jsonb),
  'rank', t.rank, 'createdAt', task_ts(t.created_at), 'updatedAt', task_ts(t.updated_at),
  'version', t.version) FROM task_tasks t WHERE t.project_id = \$1
  ORDER BY t.updated_at DESC, t.id LIMIT \$4 OFFSET \$5))::text END, m.role
FROM task_projects p LEFT JOIN task_members m ON m.project_id = p.id AND m.user_id = \$2
WHERE p.id = \$1 AND (m.role IS NOT NULL OR \$3);
\\echo 'the page rendered (no kept page, or its version moved):'
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE page('$PID', '$PID', true, 50, 0, NULL);
\\echo 'a kept page still current (the render is never executed):'
SELECT list_version AS v FROM task_projects WHERE id = '$PID' \\gset
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE page('$PID', '$PID', true, 50, 0, :v);
PREPARE neighbours(uuid, text, uuid, uuid) AS
WITH me AS (SELECT project_id, coalesce(\$2, status) AS status FROM task_tasks WHERE id = \$1),
b AS (SELECT status, rank FROM task_tasks WHERE id = \$3
        AND project_id = (SELECT project_id FROM me) AND id <> \$1)
SELECT (SELECT rank FROM b),
       (SELECT rank FROM task_tasks WHERE project_id = (SELECT project_id FROM me)
          AND status = (SELECT status FROM me) AND id <> \$1
          AND rank < (SELECT rank FROM b) ORDER BY rank DESC LIMIT 1),
       (SELECT rank FROM task_tasks WHERE project_id = (SELECT project_id FROM me)
          AND status = (SELECT status FROM me) AND id <> \$1 ORDER BY rank DESC LIMIT 1);
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE neighbours('$A', NULL, '$B', NULL);
SQL
