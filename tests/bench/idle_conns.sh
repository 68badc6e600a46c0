#!/usr/bin/env bash
# What an idle keep-alive connection costs in memory: pantherad against Debian's nginx.
#
# Each server (2 workers; room for 10,000 connections per worker; 120 s keep-alive and
# header timeouts so that nothing times out during the measurement) gets 10,000
# connections that each complete one GET /v1/hello and then stay open, idle. The growth
# of VmRSS summed over master and workers, divided by the connections, is the figure.
# Every round starts fresh servers. See tests/bench/README.md.
#
# Environment:
#   BENCH_IDLE_CONNS  connections (default 10000)
#   BENCH_ROUNDS      rounds per server (default 2)
#   BENCH_SETTLE      seconds between the last connection and the second reading (default 2)
#   BENCH_OUT         also write the raw results (JSON lines) to this file
#   BENCH_PX_PORT, BENCH_NGINX_PORT, BENCH_BUILD, BENCH_NO_BUILD, BENCH_KEEP: as hello.sh
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${BENCH_IDLE_CONNS:-10000}
ROUNDS=${BENCH_ROUNDS:-2}
SETTLE=${BENCH_SETTLE:-2}
WORKERS=2
WARM_CONNS=100

# One fd per client socket here, and the servers inherit the limit too.
ulimit -n 20000 2>/dev/null || die "cannot raise the open-files limit to 20000 (hard limit $(ulimit -Hn))"
((CONNS + 500 <= 20000)) || die "BENCH_IDLE_CONNS: at most 19500 under a 20000 fd limit"

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init

RESULTS=$BENCH_TMP/idle.jsonl
: >"$RESULTS"

# measure SERVER PORT MASTER_PID ROUND
measure() {
    local server=$1 port=$2 pid=$3 round=$4 pids out
    pids=$(proc_tree "$pid" | paste -sd, -)
    # Warm-up: a few connections, so that what is allocated once per worker (read buffer,
    # request pool, log buffer) is in place before the first reading.
    "$PYTHON" "$BENCH_DIR/idle_client.py" --port "$port" --pids "$pids" --conns "$WARM_CONNS" \
        --settle 0 >/dev/null || die "$server: warm-up failed"
    sleep 1
    out=$(timeout 180 "$PYTHON" "$BENCH_DIR/idle_client.py" --port "$port" --pids "$pids" \
        --conns "$CONNS" --settle "$SETTLE") || {
        echo "$out" >&2
        die "$server: the idle-connection client failed (or the server closed connections)"
    }
    "$PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1]); r["server"] = sys.argv[2]; r["round"] = int(sys.argv[3])
print(json.dumps(r))' "$out" "$server" "$round" >>"$RESULTS"
    "$PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1])
spread = ", ".join("%s: +%d fds" % (p, v["fds_added"]) for p, v in r["per_process"].items())
print("    %-9s round %s: %d idle connections, VmRSS %+d KiB = %.0f bytes each (anon %.0f); %s"
      % (sys.argv[2], sys.argv[3], r["conns"], r["rss_delta_kib"], r["rss_bytes_per_conn"],
         r["anon_bytes_per_conn"], spread), file=sys.stderr)' "$out" "$server" "$round"
}

log "$CONNS idle keep-alive connections per server, $ROUNDS rounds, fresh servers each round"
for ((round = 1; round <= ROUNDS; round++)); do
    start_pantherad "$WORKERS" max_connections=10000 max_connections_per_client=10000 \
        keepalive_timeout=120s header_timeout=120s
    measure pantherad "$PX_PORT" "$PX_PID" "$round"
    stop_pantherad

    start_nginx "$WORKERS" "keepalive_timeout 120s" "client_header_timeout 120s"
    measure nginx "$NGINX_PORT" "$NGINX_PID" "$round"
    stop_nginx
done

[[ -z ${BENCH_OUT:-} ]] || cp "$RESULTS" "$BENCH_OUT"

echo
echo "$CONNS idle keep-alive connections (one request each), $WORKERS workers each ($(date -u +%Y-%m-%d))"
echo
"$PYTHON" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("%-9s %5s %12s %12s %10s %14s %15s %10s" % ("server", "round", "RSS before", "RSS after",
      "delta", "bytes/conn", "anon bytes/conn", "still open"))
for r in rows:
    print("%-9s %5d %9d KiB %9d KiB %6d KiB %14.0f %15.0f %10d" % (r["server"], r["round"],
          r["rss_before_kib"], r["rss_after_kib"], r["rss_delta_kib"], r["rss_bytes_per_conn"],
          r["anon_bytes_per_conn"], r["still_open"]))
print()
mean = {}
for s in ("pantherad", "nginx"):
    v = [r["rss_bytes_per_conn"] for r in rows if r["server"] == s]
    mean[s] = sum(v) / len(v)
    print("%-9s mean %.0f bytes (%.2f KiB) of VmRSS per idle connection" % (s, mean[s], mean[s] / 1024))
print("pantherad/nginx: %.2f; pantherad target: <= 1024 bytes: %s"
      % (mean["pantherad"] / mean["nginx"], "met" if mean["pantherad"] <= 1024 else "NOT met"))
EOF
