#!/usr/bin/env bash
# Benchmarks of the notification plugin (plugins/notification), against PostgreSQL and
# Redis of scripts/dev services:
#
#   streams   BENCH_STREAMS (10,000) open SSE streams on 2 workers, 10 per user over 1,000
#             users: VmRSS growth per stream (master + workers).
#   fan-out   one comment mentioning all 1,000 users (members of the project): the time
#             from its commit (the POST's answer) to the last of the 10,000 streams
#             receiving its notification (target <= 1 s), p50/p99 over the streams.
#   consumer  inbox rows the consumer makes per second: (a) 20 comments each mentioning
#             1,000 users (20,000 rows, 20 events); (b) 5,000 task.assigned events of
#             distinct tasks with one recipient each, written straight into the event log
#             (the per-event cost). Timed from the first commit to the last row.
#
# Side by side (BENCH_BASELINE=<another release build>, e.g. main's from `git archive`):
# only the consumer's (a) and (b) (BENCH_PARTS=b: (b) alone), BENCH_ROUNDS (2) rounds of
# baseline then this build, each on a fresh database and server, and the ratios. BENCH_PROFILE=1 (either mode):
# during (b), PostgreSQL's statements by total time (pg_stat_statements, when the server
# preloads it) and `perf record` of pantherad and the PostgreSQL backends (top symbols).
#
# usage: tests/bench/notification.sh   (BENCH_STREAMS; BENCH_EVENTS_BATCH: [events] batch;
#        BENCH_BASELINE, BENCH_ROUNDS, BENCH_PARTS, BENCH_PROFILE; BENCH_BUILD/BENCH_NO_BUILD as lib.sh)
# Needs `scripts/dev services` (reads .run/env). Creates and drops its own database.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

STREAMS=${BENCH_STREAMS:-10000}
USERS=1000
WORKERS=2
ulimit -n 20000 2>/dev/null || die "cannot raise the open-files limit to 20000"
bench_private_db notif_bench
head -c 48 /dev/urandom | base64 -w0 >"$BENCH_TMP/secret"
chmod 600 "$BENCH_TMP/secret"
[[ -z ${BENCH_BASELINE:-} || -x $BENCH_BASELINE/server/pantherad ]] ||
    die "BENCH_BASELINE=$BENCH_BASELINE has no server/pantherad"

json() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A pantherad of build $1 (default BUILD) on database DB, with a user, a project of
# USERS members, a task and USERS minted tokens. Sets URL, TOKEN, PID, TASK, PX_PID.
seed() {
    local build=${1:-$BUILD}
    BUILD=$build start_px notif "user task content notification" "[postgres]" \
        "conninfo = host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$DB user=$PANTHERA_PGUSER" \
        "pool_size = 16" "[redis]" "address = unix:$PANTHERA_REDIS_SOCKET" \
        "[auth]" "token_secret_file = $BENCH_TMP/secret" \
        "[http]" "max_connections = 12000" "max_connections_per_client = 12000" \
        "keepalive_timeout = 300s" "header_timeout = 300s" \
        ${BENCH_EVENTS_BATCH:+"[events]" "batch = $BENCH_EVENTS_BATCH"}
    URL=http://127.0.0.1:$PX_PORT
    local name=bench_$$
    TOKEN=$(curl -sf -H 'Content-Type: application/json' \
        -d "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"Bench-pass-$$-x\"}" \
        "$URL/v1/auth/register" | json '["accessToken"]')
    PID=$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
        -d '{"name":"bench"}' "$URL/v1/projects" | json '["id"]')
    TASK=$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
        -d '{"title":"bench"}' "$URL/v1/projects/$PID/tasks" | json '["id"]')
    log "$USERS users, members of project $PID"
    sql "INSERT INTO users (username, email, password_hash)
         SELECT 'b' || lpad(i::text, 5, '0'), 'b' || i || '@bench.example', 'x'
         FROM generate_series(1, $USERS) i;
         INSERT INTO task_members (project_id, user_id, role)
         SELECT '$PID', id, 'member' FROM users WHERE username LIKE 'b0%'" >/dev/null
    sql "SELECT id FROM users WHERE username LIKE 'b0%' ORDER BY username" >"$BENCH_TMP/ids"
    sql "SELECT username FROM users WHERE username LIKE 'b0%' ORDER BY username" >"$BENCH_TMP/names"
    # Access tokens as the host signs them (HS256 over the secret, issuer "panthera").
    "$PYTHON" - "$BENCH_TMP/secret" "$BENCH_TMP/ids" >"$BENCH_TMP/tokens" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret = open(sys.argv[1]).read().strip().encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
for uid in open(sys.argv[2]).read().split():
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": "panthera", "sub": uid, "role": "user", "iat": now,
                           "exp": now + 3600}).encode())
    sig = hmac.new(secret, (head + "." + body).encode(), hashlib.sha256).digest()
    print(head + "." + body + "." + b64(sig))
PY
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -1 "$BENCH_TMP/tokens")" \
        "$URL/v1/notifications/unread-count")
    [[ $code == 200 ]] || die "a minted token is refused ($code)"
}

rows() { sql "SELECT count(*) FROM notification"; }
# CPU ticks of pantherad and PostgreSQL (postmaster and its backends) so far: the work per
# row, which other load on the shared machine stretches far less than a rate.
PG_PID=$(head -1 "${PANTHERA_RUNDIR:-$REPO/.run}/pgdata/postmaster.pid" 2>/dev/null || true)
work_ticks() {
    local t
    t=$(cpu_ticks "$PX_PID")
    [[ -z $PG_PID ]] || t=$((t + $(cpu_ticks "$PG_PID")))
    echo "$t"
}
per_row_us() { "$PYTHON" -c "print(round(($2 - $1) * 1e6 / $(getconf CLK_TCK) / $3))"; }
wait_rows() {
    local want=$1 end=$((SECONDS + 600))
    while (($(rows) < want)); do
        ((SECONDS < end)) || die "the consumer stalled at $(rows) of $want rows"
        sleep 0.05
    done
}

# (a): 20 comments mentioning all USERS. Sets rate_a, cpu_a.
consumer_a() {
    log "consumer (a): 20 comments x $USERS mentions"
    local base body c0 t0 t1
    base=$(rows)
    body=$("$PYTHON" -c 'import json,sys; print(json.dumps({"body": "x " + " ".join("@" + n for n in open(sys.argv[1]).read().split())}))' "$BENCH_TMP/names")
    c0=$(work_ticks)
    t0=$(date +%s.%N)
    local made=0 tries=0 code
    while ((made < 20)); do
        code=$(curl -s -o "$BENCH_TMP/comment.out" -w '%{http_code}' -H 'Content-Type: application/json' \
            -H "Authorization: Bearer $TOKEN" -d "$body" "$URL/v1/tasks/$TASK/comments")
        if [[ $code == 201 ]]; then
            made=$((made + 1))
            continue
        fi
        # A 503 (the pool's wait timed out on the loaded machine) is retried, twice at most.
        tries=$((tries + 1))
        warn "a comment answered $code: $(head -c 300 "$BENCH_TMP/comment.out")"
        ((tries <= 2)) || die "a comment failed"
    done
    wait_rows $((base + 20 * USERS))
    t1=$(date +%s.%N)
    rate_a=$("$PYTHON" -c "print(round(20 * $USERS / ($t1 - $t0)))")
    cpu_a=$(per_row_us "$c0" "$(work_ticks)" $((20 * USERS)))
}

# BENCH_PROFILE=1: pg_stat_statements (when preloaded) and perf over what runs between
# profile_start and profile_stop.
PROFILE_PERF=
profile_start() {
    [[ ${BENCH_PROFILE:-0} == 1 ]] || return 0
    if psql "${PGARGS[@]}" -U postgres "$DB" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
            SELECT pg_stat_statements_reset()" >/dev/null 2>&1; then
        PROFILE_PGSS=1
    else
        warn "no pg_stat_statements (shared_preload_libraries): statements not profiled"
    fi
    if command -v perf >/dev/null; then
        perf record -q -g -F 499 -o "$BENCH_TMP/perf.data" \
            -p "$( (proc_tree "$PX_PID"; proc_tree "$PG_PID") | paste -sd, -)" \
            >/dev/null 2>&1 &
        PROFILE_PERF=$!
    fi
}
profile_stop() {
    [[ ${BENCH_PROFILE:-0} == 1 ]] || return 0
    local n=$1
    if [[ -n $PROFILE_PERF ]]; then
        kill -INT "$PROFILE_PERF" 2>/dev/null || true
        wait "$PROFILE_PERF" 2>/dev/null || true
        PROFILE_PERF=
        echo "== perf: self time by process and symbol (top 40)"
        perf report -q -i "$BENCH_TMP/perf.data" -g none --no-children --sort comm,dso,sym \
            2>/dev/null | grep -v '^$' | head -40 || true
        echo "== perf: by process and DSO"
        perf report -q -i "$BENCH_TMP/perf.data" -g none --no-children --sort comm,dso \
            2>/dev/null | grep -v '^$' | head -15 || true
    fi
    if [[ ${PROFILE_PGSS:-0} == 1 ]]; then
        echo "== PostgreSQL statements during (b), per row ($n rows): calls, total us, rows"
        psql "${PGARGS[@]}" -U postgres "$DB" -F ' | ' -c "SELECT round(calls::numeric / $n, 3),
                round(total_exec_time::numeric * 1000 / $n, 1), round(rows::numeric / $n, 2),
                left(regexp_replace(query, '\s+', ' ', 'g'), 110)
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database
            WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT 25"
    fi
}

# (b): 5,000 single-recipient task.assigned events. Sets rate_b, cpu_b.
consumer_b() {
    log "consumer (b): 5,000 single-recipient task.assigned events"
    local base c0 t0 t1
    base=$(rows)
    profile_start
    c0=$(work_ticks)
    t0=$(date +%s.%N)
    sql "INSERT INTO panthera_events (type, aggregate_id, producer, payload)
         SELECT 'task.assigned', t.id::text, 'task', jsonb_build_object('projectId', '$PID',
                'taskId', t.id, 'title', 'b', 'assigneeId', u.id, 'previousAssigneeId', null,
                'actorId', '00000000-0000-4000-8000-000000000000',
                'members', jsonb_build_array(jsonb_build_object('userId', u.id, 'role', 'member')))
         FROM (SELECT gen_random_uuid() AS id, i FROM generate_series(1, 5000) i) t
         JOIN (SELECT id, row_number() OVER () AS n FROM users WHERE username LIKE 'b0%') u
           ON u.n = 1 + t.i % $USERS;
         SELECT pg_notify('panthera_events', '')" >/dev/null
    wait_rows $((base + 5000))
    t1=$(date +%s.%N)
    rate_b=$("$PYTHON" -c "print(round(5000 / ($t1 - $t0)))")
    cpu_b=$(per_row_us "$c0" "$(work_ticks)" 5000)
    profile_stop 5000
}

if [[ -n ${BENCH_BASELINE:-} ]]; then
    main_db=$DB
    results=$BENCH_TMP/rounds
    : >"$results"
    for round in $(seq "${BENCH_ROUNDS:-2}"); do
        for which in baseline this; do
            build=$BUILD
            [[ $which == baseline ]] && build=$BENCH_BASELINE
            DB=${main_db}_$which$round
            psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "CREATE DATABASE $DB" >/dev/null
            log "round $round: $which ($build)"
            seed "$build"
            rate_a=- cpu_a=-
            [[ ${BENCH_PARTS:-a b} != *a* ]] || consumer_a
            consumer_b
            stop_pantherad
            # FORCE cannot end a backend of another role (an autovacuum worker on the
            # tables (b) just filled, now and then): it is gone a moment later.
            local_try=0
            until psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "DROP DATABASE $DB WITH (FORCE)" \
                >/dev/null 2>"$BENCH_TMP/drop.err"; do
                local_try=$((local_try + 1))
                ((local_try < 10)) || die "cannot drop $DB: $(cat "$BENCH_TMP/drop.err")"
                sleep 1
            done
            echo "$which $round $rate_a $cpu_a $rate_b $cpu_b $(cut -d' ' -f1 /proc/loadavg)" |
                tee -a "$results"
        done
    done
    DB=$main_db
    echo
    echo "notification consumer, baseline $BENCH_BASELINE against $(cat "$BUILD/.bench-tree" 2>/dev/null || echo "tree unknown") ($(date -u +%Y-%m-%d), $WORKERS workers, [events] batch ${BENCH_EVENTS_BATCH:-default})"
    "$PYTHON" - "$results" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print("%-9s %5s %12s %12s %12s %12s %6s" % ("build", "round", "(a) rows/s", "(a) us/row",
                                            "(b) rows/s", "(b) us/row", "load"))
for r in rows:
    print("%-9s %5s %12s %12s %12s %12s %6s" % tuple(r))
def mean(which, i):
    v = [float(r[i]) for r in rows if r[0] == which and r[i] != "-"]
    return sum(v) / len(v) if v else float("nan")
for which in ("baseline", "this"):
    print("%-9s %5s %12.0f %12.0f %12.0f %12.0f %6.2f" % (which, "mean", mean(which, 2),
          mean(which, 3), mean(which, 4), mean(which, 5), mean(which, 6)))
print("this / baseline: (a) rows/s x%.2f, cpu/row x%.2f; (b) rows/s x%.2f, cpu/row x%.2f"
      % (mean("this", 2) / mean("baseline", 2), mean("this", 3) / mean("baseline", 3),
         mean("this", 4) / mean("baseline", 4), mean("this", 5) / mean("baseline", 5)))
PY
    exit 0
fi

seed
PIDS=$(proc_tree "$PX_PID" | paste -sd, -)
log "streams + fan-out: $STREAMS streams, one comment mentioning $USERS users"
out=$(timeout 900 "$PYTHON" "$BENCH_DIR/notification_client.py" --port "$PX_PORT" \
    --pids "$PIDS" --tokens "$BENCH_TMP/tokens" --streams "$STREAMS" --action-token "$TOKEN" \
    --task "$TASK" --usernames "$BENCH_TMP/names") || die "the stream client failed"
wait_rows "$USERS"
consumer_a
consumer_b
timeouts=$(grep -c "canceling statement due to statement timeout" "$BENCH_TMP/notif/error.log" || true)
stop_pantherad
echo
echo "notification plugin, $WORKERS workers ($(date -u +%Y-%m-%d), $(cat "$BUILD/.bench-tree" 2>/dev/null || echo "tree unknown"))"
"$PYTHON" - "$out" "$rate_a" "$rate_b" "$cpu_a" "$cpu_b" "$timeouts" "${BENCH_EVENTS_BATCH:-default}" \
    "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("streams: %d open (in %.1f s); VmRSS %+d KiB = %.0f bytes per stream"
      % (r["streams"], r["open_seconds"], r["rss_after_kib"] - r["rss_before_kib"],
         r["rss_bytes_per_stream"]))
print("fan-out: 1 comment -> %d users -> %d of %d streams received; the POST took %s ms;"
      " from its answer: p50 %s ms, p99 %s ms, last %s ms (target <= 1000); from its send:"
      " last %s ms" % (1000, r["received"], r["streams"], r["action_ms"], r["p50_ms"],
                       r["p99_ms"], r["last_ms"], r["last_from_sent_ms"]))
print("consumer: (a) %s rows/s (1,000 recipients per event); (b) %s rows/s (1 per event)"
      " (target >= 2,000)" % (sys.argv[2], sys.argv[3]))
print("consumer cpu (pantherad + PostgreSQL): (a) %s us/row, (b) %s us/row; statement"
      " timeouts logged: %s; [events] batch %s; load %s" % tuple(sys.argv[4:9]))
PY
