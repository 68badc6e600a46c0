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
# usage: tests/bench/notification.sh   (BENCH_STREAMS; BENCH_EVENTS_BATCH: [events] batch;
#        BENCH_BUILD/BENCH_NO_BUILD as lib.sh)
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

start_px notif "user task content notification" "[postgres]" \
    "conninfo = host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$DB user=$PANTHERA_PGUSER" \
    "pool_size = 16" "[redis]" "address = unix:$PANTHERA_REDIS_SOCKET" \
    "[auth]" "token_secret_file = $BENCH_TMP/secret" \
    "[http]" "max_connections = 12000" "max_connections_per_client = 12000" \
    "keepalive_timeout = 300s" "header_timeout = 300s" \
    ${BENCH_EVENTS_BATCH:+"[events]" "batch = $BENCH_EVENTS_BATCH"}
URL=http://127.0.0.1:$PX_PORT
PIDS=$(proc_tree "$PX_PID" | paste -sd, -)

json() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
name=bench_$$
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
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -1 "$BENCH_TMP/tokens")" \
    "$URL/v1/notifications/unread-count")
[[ $code == 200 ]] || die "a minted token is refused ($code)"

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

log "streams + fan-out: $STREAMS streams, one comment mentioning $USERS users"
out=$(timeout 900 "$PYTHON" "$BENCH_DIR/notification_client.py" --port "$PX_PORT" \
    --pids "$PIDS" --tokens "$BENCH_TMP/tokens" --streams "$STREAMS" --action-token "$TOKEN" \
    --task "$TASK" --usernames "$BENCH_TMP/names") || die "the stream client failed"
wait_rows "$USERS"

log "consumer (a): 20 comments x $USERS mentions"
base=$(rows)
body=$("$PYTHON" -c 'import json,sys; print(json.dumps({"body": "x " + " ".join("@" + n for n in open(sys.argv[1]).read().split())}))' "$BENCH_TMP/names")
c0=$(work_ticks)
t0=$(date +%s.%N)
for _ in $(seq 20); do
    curl -sf -o /dev/null -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
        -d "$body" "$URL/v1/tasks/$TASK/comments" || { curl -s -H "Content-Type: application/json" -H "Authorization: Bearer $TOKEN" -d "$body" "$URL/v1/tasks/$TASK/comments" >&2; die "a comment failed"; }
done
wait_rows $((base + 20 * USERS))
t1=$(date +%s.%N)
rate_a=$("$PYTHON" -c "print(round(20 * $USERS / ($t1 - $t0)))")
cpu_a=$(per_row_us "$c0" "$(work_ticks)" $((20 * USERS)))

log "consumer (b): 5,000 single-recipient task.assigned events"
base=$(rows)
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
