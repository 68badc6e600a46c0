#!/usr/bin/env bash
# Files: what a large upload costs a worker, and how fast a stored file goes back out,
# pantherad (spool + blob store + px_res_file's sendfile) against Debian's nginx serving
# the same bytes from disk (sendfile on).
#
# One pantherad worker with the filekit test plugin ([storage] backend = dir) and one
# nginx worker. Each round: BENCH_FILE_MB of random bytes uploaded to pantherad (the
# worker's peak RSS over idle is read from VmHWM after clear_refs), then downloaded
# BENCH_GETS times from each server in turn (A B A B), by curl to /dev/null. Loopback, so
# the figures are the servers' and the kernel's, not a network's. See tests/bench/README.md.
#
# Environment:
#   BENCH_FILE_MB   size of the file (default 50)
#   BENCH_ROUNDS    rounds (default 3)
#   BENCH_GETS      downloads per server per round (default 5)
#   BENCH_PX_PORT, BENCH_NGINX_PORT, BENCH_BUILD, BENCH_NO_BUILD: as hello.sh
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MB=${BENCH_FILE_MB:-50}
ROUNDS=${BENCH_ROUNDS:-3}
GETS=${BENCH_GETS:-5}

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init
[[ -f $BUILD/tests/plugins/filekit.so ]] || die "no $BUILD/tests/plugins/filekit.so"

DATA=$BENCH_TMP/data.bin
head -c $((MB * 1024 * 1024)) /dev/urandom >"$DATA"
SHA=$(sha256sum "$DATA" | cut -d' ' -f1)

# pantherad with filekit.
d=$BENCH_TMP/pantherad
mkdir -p "$d/conf.d"
cat >"$d/pantherad.conf" <<EOF
[server]
listen = 127.0.0.1:$PX_PORT
workers = 1
plugin_path = $BUILD/tests/plugins
conf_dir = $d/conf.d
access_log = off
error_log = $d/error.log
pid_file = $d/pantherad.pid
[storage]
dir = $d/blobs
sweep_interval = 0
[plugin:filekit]
EOF
port_free "$PX_PORT" || die "port $PX_PORT is in use (set BENCH_PX_PORT)"
timeout -s TERM -k 10 "$BENCH_MAX_LIFETIME" "$BUILD/server/pantherad" -c "$d/pantherad.conf" \
    >"$d/stdout.log" 2>&1 &
wait_pidfile "$d/pantherad.pid" || { cat "$d/stdout.log" "$d/error.log" >&2; die "pantherad did not start"; }
PX_PID=$(cat "$d/pantherad.pid")
wait_http "http://127.0.0.1:$PX_PORT/v1/files/$(printf '0%.0s' {1..64})/stat" 2>/dev/null || true
WORKER=$(pgrep -P "$PX_PID" | head -1)

# nginx serving the same bytes.
n=$BENCH_TMP/nginx
mkdir -p "$n/www" "$n/body"
cp "$DATA" "$n/www/$SHA"
cat >"$n/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $n/body;
    sendfile on;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /v1/files/ { alias $n/www/; default_type application/octet-stream; }
    }
}
EOF
chmod -R a+rX "$n"
port_free "$NGINX_PORT" || die "port $NGINX_PORT is in use (set BENCH_NGINX_PORT)"
timeout -s TERM -k 10 "$BENCH_MAX_LIFETIME" "$NGINX" -p "$n" -c "$n/nginx.conf" -e "$n/error.log" \
    >"$n/stdout.log" 2>&1 &
wait_pidfile "$n/nginx.pid" || { cat "$n/error.log" >&2; die "nginx did not start"; }
NGINX_PID=$(cat "$n/nginx.pid")

kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# Warm-up: libmagic's database, the thread pool, the page cache.
curl -s -o /dev/null --data-binary @"$DATA" "http://127.0.0.1:$PX_PORT/v1/files" ||
    die "warm-up upload failed"

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }
printf '%-6s %-26s %12s %12s %12s\n' round what "MiB/s" "seconds" "peak RSS +KiB"
for ((round = 1; round <= ROUNDS; round++)); do
    echo 5 >"/proc/$WORKER/clear_refs"
    idle=$(kib "$WORKER" VmRSS)
    out=$(curl -s -w '\n%{time_total}' --data-binary @"$DATA" "http://127.0.0.1:$PX_PORT/v1/files")
    t=$(tail -1 <<<"$out")
    grep -q "\"id\":\"$SHA\"" <<<"$out" || die "upload answered: $out"
    peak=$(kib "$WORKER" VmHWM)
    printf '%-6s %-26s %12s %12s %12s\n' "$round" "pantherad upload" \
        "$(mbps $((MB * 1048576)) "$t")" "$t" "$((peak - idle))"
    for server in pantherad nginx pantherad nginx; do
        port=$PX_PORT
        [[ $server == nginx ]] && port=$NGINX_PORT
        total=0
        for ((i = 0; i < GETS; i++)); do
            t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/v1/files/$SHA")
            total=$(awk -v a="$total" -v b="$t" 'BEGIN { print a + b }')
        done
        printf '%-6s %-26s %12s %12s\n' "$round" "$server download x$GETS" \
            "$(mbps $((MB * 1048576 * GETS)) "$total")" "$total"
    done
done
