#!/usr/bin/env bash
# Open Server-Sent Events streams: what each costs a worker in memory, and how long one
# channel message takes to reach all of them (Redis PUBLISH -> each worker's subscriber
# connection -> every stream subscribed to the channel).
#
# A private Redis (unix socket under the bench's temp dir) and a pantherad with 2 workers
# and the streamkit test plugin; BENCH_STREAMS streams on /v1/streamkit/sse?channel=bench,
# opened by sse_client.py, each read until Redis confirmed its subscription. The growth of
# VmRSS summed over master and workers, divided by the streams, is the memory figure; then
# BENCH_MESSAGES times one PUBLISH, and for every stream the time until its event arrived.
# Targets (issue 9): <= 2 KiB per stream, p99 <= 250 ms. See tests/bench/README.md.
#
# Environment:
#   BENCH_STREAMS   streams (default 10000)
#   BENCH_MESSAGES  messages published (default 5)
#   BENCH_PROCS     client processes the streams are spread over (default 2)
#   BENCH_OUT       also write the raw result (JSON) to this file
#   BENCH_PX_PORT, BENCH_BUILD, BENCH_NO_BUILD, BENCH_KEEP: as hello.sh
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAMS=${BENCH_STREAMS:-10000}
MESSAGES=${BENCH_MESSAGES:-5}
PROCS=${BENCH_PROCS:-2}
WORKERS=2

ulimit -n 20000 2>/dev/null || die "cannot raise the open-files limit to 20000 (hard limit $(ulimit -Hn))"
((STREAMS + 500 <= 20000)) || die "BENCH_STREAMS: at most 19500 under a 20000 fd limit"
command -v redis-server >/dev/null || die "redis-server is not installed"

REDIS_PID=
stop_redis() {
    [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=
}
trap 'stop_redis; bench_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init
[[ -f $BUILD/tests/plugins/streamkit.so ]] || die "no $BUILD/tests/plugins/streamkit.so"

REDIS_SOCK=$BENCH_TMP/redis.sock
timeout -s TERM "$BENCH_MAX_LIFETIME" redis-server --port 0 --unixsocket "$REDIS_SOCK" \
    --save '' --appendonly no --maxclients 1000 >"$BENCH_TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
    redis-cli -s "$REDIS_SOCK" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
redis-cli -s "$REDIS_SOCK" ping | grep -q PONG || die "the private Redis did not start"

PX_PLUGINS=streamkit PX_PLUGIN_PATH=$BUILD/tests/plugins \
    PX_EXTRA_CONF=$'[redis]\naddress = unix:'"$REDIS_SOCK" \
    start_pantherad "$WORKERS" max_connections=12000 max_connections_per_client=12000 \
    keepalive_timeout=300s header_timeout=300s
PIDS=$(proc_tree "$PX_PID" | paste -sd, -)

log "warm-up: 100 streams"
"$PYTHON" "$BENCH_DIR/sse_client.py" --port "$PX_PORT" --pids "$PIDS" --streams 100 \
    --redis "$REDIS_SOCK" --messages 1 --settle 0 --procs 1 >/dev/null || die "warm-up failed"
sleep 1
log "$STREAMS streams over $WORKERS workers, $MESSAGES messages"
out=$(timeout 900 "$PYTHON" "$BENCH_DIR/sse_client.py" --port "$PX_PORT" --pids "$PIDS" \
    --streams "$STREAMS" --redis "$REDIS_SOCK" --messages "$MESSAGES" --procs "$PROCS") ||
    die "the SSE client failed"
[[ -z ${BENCH_OUT:-} ]] || echo "$out" >"$BENCH_OUT"
stop_pantherad

echo
echo "$STREAMS open SSE streams, $WORKERS workers ($(date -u +%Y-%m-%d), $(cat "$BUILD/.bench-tree" 2>/dev/null || echo "tree unknown"))"
echo
"$PYTHON" - "$out" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
print("memory: VmRSS %+d KiB over %d streams = %.0f bytes per stream (target <= 2048)"
      % (r["rss_after_kib"] - r["rss_before_kib"], r["streams"], r["rss_bytes_per_stream"]))
print()
print("| message | received | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|---|")
for i, m in enumerate(r["rounds"], 1):
    fmt = lambda v: "-" if v is None else "%.1f" % v
    print("| %d | %d | %s | %s | %s |" % (i, m["received"], fmt(m["p50_ms"]), fmt(m["p99_ms"]),
                                          fmt(m["max_ms"])))
print()
print("(p99 target <= 250 ms; the latencies include the Python client's own time to get")
print(" round every socket, and one redis-cli start before the PUBLISH)")
EOF
