#!/usr/bin/env bash
# Benchmarks of the host's event log (server/events*.c), with the evkit test plugin:
#
#   emit     POST /v1/evkit/write, one transaction with one px_event_emit vs the same
#            transaction without (A B A B, wrk -c16, a new aggregate per request, no
#            consumer running): the latency emitting adds and the throughput ratio
#            (target <= 10 % slower). With BENCH_BASE_BUILD=<build dir of another
#            checkout, e.g. main's>, that build is measured the same way in the same run,
#            rounds alternated, each build on a private database its own migrations made;
#            BENCH_EMIT_ROUNDS rounds (default 2). The write is a one-column insert (the
#            least a write can be, so the emit's share is at its largest); with
#            BENCH_EMIT_SHAPE=task, a task and its activity row as the task plugin writes
#            them on POST /v1/projects/{id}/tasks (evkit's migrations/005).
#   latency  events emitted at 1,000/s for BENCH_SECONDS by pgbench -R running the
#            statement px_event_emit sends, plus the NOTIFY the emitting worker sends after
#            such commits (here one per commit: the worst case), into one group: commit-to-handler
#            latency p50/p99 (the event's transaction start to its handler's insert; the
#            emitting transaction is that one statement) (target p99 <= 50 ms).
#   wake     events emitted through pantherad (POST /v1/evkit/write, wrk with each of 16
#            connections pausing 15 ms between requests: about 1,000 writes/s) into one
#            group whose consumer runs on the same host, woken only by the emitting
#            workers' own coalesced NOTIFY (poll_interval 60 s): commit-to-handler p50/p99
#            (the emitting transaction's start to its handler's insert) (target p99 <= 50
#            ms); BENCH_BASE_BUILD and BENCH_EMIT_ROUNDS as for emit.
#   drain    20,000 events committed at once over 1,000 aggregates: the events/s one group
#            handles until the last is done (target >= 5,000/s), each run on a fresh private
#            database; BENCH_BASE_BUILD as for emit, BENCH_DRAIN_ROUNDS rounds (default 1),
#            BENCH_PERF=<prefix>: perf record -g of pantherad and the backends to <prefix>.<build>.
#
# Every run is on a private database of its own (evbench_*), dropped at the end.
# usage: tests/bench/events.sh [emit] [latency] [wake] [drain]   (default: all four)
# Needs PostgreSQL: run `scripts/dev services` first (this reads .run/env).
# BENCH_SECONDS (default 10) per run. Loads 127.0.0.1 only; stops what it starts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
EMIT_SHAPE=${BENCH_EMIT_SHAPE:-row}
[[ $EMIT_SHAPE == row || $EMIT_SHAPE == task ]] || die "BENCH_EMIT_SHAPE: row or task"
WORKERS=2
[[ -f $REPO/.run/env ]] || die "no .run/env: run scripts/dev services first"
set -a
# shellcheck disable=SC1091
. "$REPO/.run/env"
set +a
CONNINFO="host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$PANTHERA_PGDATABASE user=$PANTHERA_PGUSER"
GROUP=bench$(date +%s)
# The PostgreSQL of scripts/dev services, whose backends' CPU counts with pantherad's.
PG_PID=$(head -1 "${PANTHERA_RUNDIR:-$REPO/.run}/pgdata/postmaster.pid" 2>/dev/null || true)
TICKS_PER_S=$(getconf CLK_TCK)

# CPU ticks of pantherad (master and workers) and PostgreSQL (postmaster and its backends)
# so far: work per request or per event, which other load on the machine stretches far
# less than it stretches a rate.
work_ticks() {
    local t
    t=$(cpu_ticks "$PX_PID")
    [[ -z $PG_PID ]] || t=$((t + $(cpu_ticks "$PG_PID")))
    echo "$t"
}

bench_init
trap bench_cleanup EXIT
command -v pgbench >/dev/null || die "pgbench not found (postgresql-client)"

sql() { sql_in "$PANTHERA_PGDATABASE" "$1"; }
sql_in() {
    psql -X -q -A -t -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" "$1" -c "$2"
}

# evkit with its consumer group $GROUP (SUBSCRIBE yes) or none (no), on database $EV_DB
# (default: the services' own).
start_evkit() {
    local conninfo=$CONNINFO
    [[ -z ${EV_DB:-} ]] || conninfo="${CONNINFO% dbname=*} dbname=$EV_DB user=$PANTHERA_PGUSER"
    start_px "evkit-$1" "" "[postgres]" "conninfo = $conninfo" "pool_size = 8" "[events]" \
        "concurrency = ${BENCH_EVENTS_CONCURRENCY:-16}" ${BENCH_EVENTS_BATCH:+"batch = $BENCH_EVENTS_BATCH"} \
        ${BENCH_EVENTS_POLL:+"poll_interval = $BENCH_EVENTS_POLL"} \
        "[plugin:evkit]" "group = $GROUP" \
        "subscribe = $1"
}

# Lua for wrk: each request a new aggregate, "<prefix><thread>-<n>". Never math.random:
# every wrk thread starts its generator from the same seed, so the threads sent the same
# aggregates at about the same time, and emitters of one aggregate take turns (its
# advisory lock) until commit: the emitting runs waited on each other, the others not.
new_aggregate_lua() {
    cat <<LUA
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("thread_no", threads)
end
local n = 0
function new_aggregate()
    n = n + 1
    return "$1" .. thread_no .. "-" .. n
end
LUA
}

emit_round() {
    local label=$1 count=$2 out=$BENCH_TMP/wrk-${1//\//-}-$RANDOM.txt script=$BENCH_TMP/post-$2.lua
    new_aggregate_lua "b$RANDOM$RANDOM-" >"$script"
    cat >>"$script" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
    return wrk.format(nil, "/v1/evkit/write",
        nil, '{"aggregate":"' .. new_aggregate() .. '","count":$count,"delay_ms":0,"shape":"$EMIT_SHAPE"}')
end
LUA
    wait_quiet
    local t0 t1 x0 x1
    x0=$(xacts)
    t0=$(work_ticks)
    timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c16 -d"${SECONDS_PER_RUN}s" --latency \
        -s "$script" "http://127.0.0.1:$PX_PORT/" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    t1=$(work_ticks)
    x1=$(xacts)
    awk -v label="$label" -v ticks=$((t1 - t0)) -v hz="$TICKS_PER_S" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        -v xacts=$((x1 - x0)) '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                         if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
        /requests in/ { n = $1 } /Non-2xx/ { bad = $NF }
        END { printf "%-10s %10.0f req/s  p50 %7.2f ms  p99 %7.2f ms  non-2xx %s  cpu %6.0f us/req  load %s  xacts/req %.3f\n",
              label, rps, p50, p99, bad + 0, n ? ticks * 1e6 / hz / n : 0, load, n ? xacts / n : 0 }' "$out" | tee -a "$BENCH_TMP/emit.txt"
}

# Transaction ids PostgreSQL has handed out so far, cluster-wide (the private cluster of
# scripts/dev services, nothing else writing): per write, one for the write itself plus
# the wake-up NOTIFYs the workers sent for it, each a transaction with an id of its own.
# Exact, where pg_stat_database's counts arrive late.
xacts() {
    sql "SELECT pg_snapshot_xmax(pg_current_snapshot())"
}

EMIT_DBS=()
drop_emit_dbs() {
    local db
    for db in "${EMIT_DBS[@]}"; do
        sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}

run_emit() {
    log "emit: a write transaction ($EMIT_SHAPE) with one px_event_emit vs without (wrk -c16)"
    local builds=("new=$BUILD") b label dir round
    [[ -z ${BENCH_BASE_BUILD:-} ]] || builds+=("base=$BENCH_BASE_BUILD")
    for b in "${builds[@]}"; do
        EMIT_DBS+=("evbench_${b%%=*}_$$")
        sql "CREATE DATABASE evbench_${b%%=*}_$$" >/dev/null
    done
    trap 'bench_cleanup; drop_emit_dbs' EXIT
    : >"$BENCH_TMP/emit.txt"
    for ((round = 1; round <= ${BENCH_EMIT_ROUNDS:-2}; round++)); do
        for b in "${builds[@]}"; do
            label=${b%%=*} dir=${b#*=}
            EV_DB=evbench_${label}_$$
            BUILD=$dir start_evkit no
            emit_round "$label/without" 0
            emit_round "$label/with-emit" 1
            stop_pantherad
            EV_DB=
        done
    done
    awk '{ split($1, k, "/"); b = k[1]; m = k[2]; seen[b] = 1
           n[b, m]++; rps[b, m] += $2; p50[b, m] += $5; p99[b, m] += $8; cpu[b, m] += $13; x[b, m] += $18 }
         END { for (b in seen) {
               w = rps[b, "with-emit"] / n[b, "with-emit"]; o = rps[b, "without"] / n[b, "without"];
               printf "emit (%s): throughput ratio %.3f (%.1f %% slower), p50 %+.2f ms, p99 %+.2f ms, cpu per request x%.3f (%+.0f us), transactions per write %.3f -> %.3f\n",
                  b, w / o, (1 - w / o) * 100,
                  p50[b, "with-emit"] / n[b, "with-emit"] - p50[b, "without"] / n[b, "without"],
                  p99[b, "with-emit"] / n[b, "with-emit"] - p99[b, "without"] / n[b, "without"],
                  cpu[b, "with-emit"] / cpu[b, "without"], (cpu[b, "with-emit"] - cpu[b, "without"]) / n[b, "without"],
                  x[b, "without"] / n[b, "without"], x[b, "with-emit"] / n[b, "with-emit"] } }' "$BENCH_TMP/emit.txt"
}

EMIT_SQL="WITH ins AS (INSERT INTO panthera_events (type, aggregate_id, producer, payload) SELECT 'evkit.bench', 'lat' || :agg, 'bench', '{\"seq\": 0}'::jsonb WHERE pg_advisory_xact_lock(hashtextextended('px-aggregate' || chr(10) || :agg::text, 0)) IS NOT NULL RETURNING id) SELECT id, pg_notify('panthera_events', '') FROM ins;"

run_latency() {
    log "latency: 1,000 events/s into group $GROUP for ${SECONDS_PER_RUN}s"
    local db=evbench_latency_$$
    EMIT_DBS+=("$db")
    trap 'bench_cleanup; drop_emit_dbs' EXIT
    sql "CREATE DATABASE $db" >/dev/null
    EV_DB=$db start_evkit yes
    printf '\\set agg random(1, 1000000)\n%s\n' "$EMIT_SQL" >"$BENCH_TMP/emit.sql"
    wait_quiet
    local first_id
    first_id=$(sql_in "$db" "SELECT coalesce(max(id), 0) FROM panthera_events")
    pgbench -n -R 1000 -T "$SECONDS_PER_RUN" -c 4 -j 2 -f "$BENCH_TMP/emit.sql" \
        -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" "$db" \
        >"$BENCH_TMP/pgbench.txt" 2>&1 || { cat "$BENCH_TMP/pgbench.txt" >&2; die "pgbench failed"; }
    local sent done_ waited=0
    sent=$(sql_in "$db" "SELECT count(*) FROM panthera_events WHERE type = 'evkit.bench' AND aggregate_id LIKE 'lat%' AND id > $first_id")
    while :; do
        done_=$(sql_in "$db" "SELECT count(*) FROM evkit_seen WHERE group_name = '$GROUP' AND type = 'evkit.bench'")
        ((done_ >= sent)) && break
        ((waited++ < 600)) || die "only $done_ of $sent events handled after 60 s"
        sleep 0.1
    done
    sql_in "$db" "SELECT format('latency: %s events at %s/s, commit-to-handler p50 %s ms, p99 %s ms, max %s ms',
            count(*), round(count(*) / $SECONDS_PER_RUN.0),
            round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
            round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
            round(max(ms)::numeric, 1))
         FROM (SELECT extract(epoch FROM handled_at - at::timestamptz) * 1000 AS ms
               FROM evkit_seen WHERE group_name = '$GROUP' AND type = 'evkit.bench') t"
    stop_pantherad
}

# One wake run: about 1,000 writes/s through build $2 into group $GROUP-w on database $3.
wake_round() {
    local label=$1 db=$3 script=$BENCH_TMP/wake.lua first_id
    new_aggregate_lua "wk$RANDOM$RANDOM-" >"$script"
    cat >>"$script" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
    return wrk.format(nil, "/v1/evkit/write",
        nil, '{"aggregate":"' .. new_aggregate() .. '","count":1,"delay_ms":0,"no_sleep":true}')
end
delay = function() return 15 end
LUA
    BUILD=$2 EV_DB=$db GROUP=$GROUP-w BENCH_EVENTS_POLL=60s start_evkit yes
    sleep 2 # the group is registered by the migrator; let a worker take it
    wait_quiet
    first_id=$(sql_in "$db" "SELECT coalesce(max(n), 0) FROM evkit_seen")
    timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c16 -d"${SECONDS_PER_RUN}s" -s "$script" \
        "http://127.0.0.1:$PX_PORT/" >"$BENCH_TMP/wrk-wake.txt" 2>&1 ||
        { cat "$BENCH_TMP/wrk-wake.txt" >&2; die "wrk failed"; }
    local sent done_ waited=0
    sent=$(awk '/requests in/ { print $1 }' "$BENCH_TMP/wrk-wake.txt")
    while :; do
        done_=$(sql_in "$db" "SELECT count(*) FROM evkit_seen WHERE n > $first_id AND aggregate_id LIKE 'wk%'")
        ((done_ >= sent)) && break
        ((waited++ < 600)) || die "only $done_ of $sent events handled after 60 s"
        sleep 0.1
    done
    sql_in "$db" "SELECT format('wake %-5s %s events at %s/s, commit-to-handler p50 %s ms, p99 %s ms, max %s ms, load %s',
            '$label', count(*), round(count(*) / $SECONDS_PER_RUN.0),
            round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
            round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
            round(max(ms)::numeric, 1), '$(cut -d' ' -f1 /proc/loadavg)')
         FROM (SELECT extract(epoch FROM handled_at - at::timestamptz) * 1000 AS ms
               FROM evkit_seen WHERE n > $first_id AND aggregate_id LIKE 'wk%') t" | tee -a "$BENCH_TMP/wake.txt"
    stop_pantherad
}

run_wake() {
    local builds=("new=$BUILD") b round
    [[ -z ${BENCH_BASE_BUILD:-} ]] || builds+=("base=$BENCH_BASE_BUILD")
    log "wake: about 1,000 writes/s through pantherad, consumer woken by its NOTIFY alone"
    trap 'bench_cleanup; drop_emit_dbs' EXIT
    for b in "${builds[@]}"; do
        EMIT_DBS+=("evbench_wake_${b%%=*}_$$")
        sql "CREATE DATABASE evbench_wake_${b%%=*}_$$" >/dev/null
    done
    : >"$BENCH_TMP/wake.txt"
    for ((round = 1; round <= ${BENCH_EMIT_ROUNDS:-2}; round++)); do
        for b in "${builds[@]}"; do
            wake_round "${b%%=*}" "${b#*=}" "evbench_wake_${b%%=*}_$$"
        done
    done
}

# One drain: $n events over 1,000 aggregates committed in one transaction into a fresh
# private database (its own migrations), handled by one group; prints a result line.
drain_round() {
    local label=$1 n=$2 db=evbench_drain_$$_$RANDOM
    EMIT_DBS+=("$db")
    sql "CREATE DATABASE $db" >/dev/null
    BUILD=$BUILD EV_DB=$db GROUP=$GROUP-d start_evkit yes
    sleep 2 # the group is registered by the migrator; let a worker take it
    wait_quiet
    local t0 t1 c0 c1 done_ waited=0 perf_pid=
    if [[ -n ${BENCH_PERF:-} ]]; then # where the CPU goes: pantherad and the backends
        perf record -q -g -o "$BENCH_PERF.$label" \
            -p "$( (proc_tree "$PX_PID"; pgrep -P "$PG_PID") | paste -sd,)" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 1
    fi
    c0=$(work_ticks)
    t0=$(date +%s.%N)
    sql_in "$db" "INSERT INTO panthera_events (type, aggregate_id, producer, payload)
         SELECT 'evkit.drain', 'drain' || (i % 1000), 'bench', jsonb_build_object('seq', i)
         FROM generate_series(1, $n) i; SELECT pg_notify('panthera_events', '')" >/dev/null
    while :; do
        done_=$(sql_in "$db" "SELECT count(*) FROM evkit_seen WHERE group_name = '$GROUP-d' AND type = 'evkit.drain'")
        ((done_ >= n)) && break
        ((waited++ < 3000)) || die "only $done_ of $n events handled after 300 s"
        sleep 0.1
    done
    t1=$(date +%s.%N)
    c1=$(work_ticks)
    [[ -z $perf_pid ]] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
    stop_pantherad
    sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    awk -v label="$label" -v n="$n" -v a="$t0" -v b="$t1" -v ticks=$((c1 - c0)) -v hz="$TICKS_PER_S" \
        -v load="$(cut -d' ' -f1 /proc/loadavg)" -v batch="${BENCH_EVENTS_BATCH:-default}" 'BEGIN {
        printf "drain %-5s %d events in %.2f s: %.0f events/s, cpu %.0f us/event (%.0f events per cpu-second), batch %s, load %s\n",
            label, n, b - a, n / (b - a), ticks * 1e6 / hz / n, n * hz / (ticks ? ticks : 1), batch, load }' |
        tee -a "$BENCH_TMP/drain.txt"
}

run_drain() {
    local n=20000 builds=("new=$BUILD") b round
    [[ -z ${BENCH_BASE_BUILD:-} ]] || builds+=("base=$BENCH_BASE_BUILD")
    log "drain: $n events committed at once, one group, ${BENCH_DRAIN_ROUNDS:-1} round(s) per build"
    trap 'bench_cleanup; drop_emit_dbs' EXIT
    : >"$BENCH_TMP/drain.txt"
    for ((round = 1; round <= ${BENCH_DRAIN_ROUNDS:-1}; round++)); do
        for b in "${builds[@]}"; do
            BUILD=${b#*=} drain_round "${b%%=*}" "$n"
        done
    done
    awk '{ b = $2; seen[b] = 1; k[b]++; rate[b] += $8; cpu[b] += $11 }
         END { for (b in seen) printf "drain (%s): %.0f events/s, cpu %.0f us/event over %d round(s)\n",
               b, rate[b] / k[b], cpu[b] / k[b], k[b] }' "$BENCH_TMP/drain.txt"
}


what=("$@")
((${#what[@]})) || what=(emit latency wake drain)
for w in "${what[@]}"; do
    case $w in
    emit) run_emit ;;
    latency) run_latency ;;
    wake) run_wake ;;
    drain) run_drain ;;
    *) die "unknown benchmark $w (emit, latency, wake, drain)" ;;
    esac
done
