#!/usr/bin/env bash
# Where the CPU of GET /v1/hello goes, for whoever drives pantherad's CPU per request
# down: perf profiles and syscall counts per request, for pantherad and for nginx under
# the same load (wrk -t2 -c64 on 127.0.0.1, as hello.sh).
#
#   1. perf record -g on the workers for BENCH_SECONDS under load; prints the top
#      symbols by self time (all, and user space only) and the split by DSO.
#   2. perf stat on syscall tracepoints (low overhead) over a whole wrk run: syscalls per
#      request.
#   3. strace -c -f on master and workers for a short run: syscalls per request with
#      their error counts (strace slows the server several times over, so the figures
#      of this step are per request, never per second).
#
# Environment:
#   BENCH_SECONDS        length of the perf record and perf stat runs (default 10)
#   BENCH_STRACE_SECONDS length of the strace run (default 3)
#   BENCH_PROFILE_CONNS  wrk connections (default 64)
#   BENCH_PROFILE_OUT    keep perf.data and reports here (default: a new /tmp/panthera-profile.*)
#   BENCH_TOP            symbols to list (default 15)
#   BENCH_PX_PORT, BENCH_NGINX_PORT, BENCH_BUILD, BENCH_NO_BUILD, BENCH_KEEP: as hello.sh
#
# pantherad's release build has no frame pointers, so call chains (-g) are partial; the
# self-time figures do not depend on them. perf needs perf_event_paranoid <= 1 or root.
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS=${BENCH_SECONDS:-10}
STRACE_SECS=${BENCH_STRACE_SECONDS:-3}
CONNS=${BENCH_PROFILE_CONNS:-64}
TOP=${BENCH_TOP:-15}
WORKERS=2
URLPATH=/v1/hello

for tool in perf strace wrk; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y linux-perf strace wrk)"
done
OUT=${BENCH_PROFILE_OUT:-$(mktemp -d /tmp/panthera-profile.XXXXXX)}
mkdir -p "$OUT"

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init

# wrk_bg PORT SECONDS OUTFILE: load in the background; sets WRK_PID.
wrk_bg() {
    timeout $(($2 + 30)) wrk -t2 -c"$CONNS" -d"$2s" "http://127.0.0.1:$1$URLPATH" >"$3" 2>&1 &
    WRK_PID=$!
}

wrk_requests() {
    awk '/ requests in / { print $1 }' "$1"
}

# perf report lines without the empty columns -g adds at their end.
tidy() {
    sed -E 's/( +-)+ *$//'
}

workers_of() {
    pgrep -P "$1" | paste -sd, -
}

profile() {
    local server=$1 port=$2 pid=$3 workers
    workers=$(workers_of "$pid")
    timeout 10 wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$port$URLPATH" >/dev/null

    # 1. perf record: the load runs 2 s longer on each side than the recording.
    wait_quiet
    wrk_bg "$port" $((SECS + 3)) "$OUT/$server-perf-wrk.txt"
    sleep 1
    perf record -q -g -F 999 -p "$workers" -o "$OUT/$server.perf.data" -- sleep "$SECS" \
        >"$OUT/$server-perf-record.log" 2>&1 || { cat "$OUT/$server-perf-record.log" >&2; die "perf record failed"; }
    wait "$WRK_PID" || true
    perf report -i "$OUT/$server.perf.data" --no-children --sort symbol --stdio \
        --percent-limit 0.3 2>/dev/null | grep -E '^ +[0-9.]+%' >"$OUT/$server-symbols.txt" || true
    perf report -i "$OUT/$server.perf.data" --no-children --sort dso,symbol --stdio \
        2>/dev/null | grep -E '^ +[0-9.]+%' >"$OUT/$server-dso-symbols.txt" || true
    perf report -i "$OUT/$server.perf.data" --no-children --sort dso --stdio \
        2>/dev/null | grep -E '^ +[0-9.]+%' >"$OUT/$server-dsos.txt" || true
    echo
    echo "== $server: top $TOP symbols by self time (perf record -g -F 999 on the workers, ${SECS}s, wrk -t2 -c$CONNS; [k] kernel, [.] user)"
    tidy <"$OUT/$server-symbols.txt" | awk -v n="$TOP" 'NR <= n'
    echo "-- $server: top $TOP user-space symbols"
    tidy <"$OUT/$server-dso-symbols.txt" | awk -v n="$TOP" '!/\[kernel/ && ++k <= n'
    echo "-- $server: self time by DSO"
    tidy <"$OUT/$server-dsos.txt" | awk 'NR <= 8'

    # 2. perf stat on syscall tracepoints.
    local events="raw_syscalls:sys_enter" sc
    local syscalls="read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait epoll_ctl accept4 close setsockopt getpeername ioctl"
    for sc in $syscalls; do
        events+=",syscalls:sys_enter_$sc"
    done
    # perf stat covers the whole wrk run (and half a second on each side), so the
    # requests are exactly those wrk counted.
    wait_quiet
    perf stat -x, -e "$events" -p "$pid,$workers" -o "$OUT/$server-perf-stat.csv" \
        -- sleep $((SECS + 1)) >/dev/null 2>&1 &
    local statpid=$!
    sleep 0.5
    timeout $((SECS + 30)) wrk -t2 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$port$URLPATH" \
        >"$OUT/$server-stat-wrk.txt" 2>&1
    wait "$statpid" || die "perf stat failed"
    local reqs
    reqs=$(wrk_requests "$OUT/$server-stat-wrk.txt")
    echo "-- $server: syscalls per request (perf stat on tracepoints, $reqs requests in ${SECS}s)"
    awk -F, -v reqs="$reqs" '
        $3 ~ /sys_enter/ && $1 + 0 > 0 {
            name = $3; sub(/.*sys_enter_?/, "", name); if (name == "") name = "ALL"
            printf "   %-12s %8.3f\n", name, $1 / reqs
        }' "$OUT/$server-perf-stat.csv"

    # 3. strace -c -f for a short run.
    wait_quiet
    local -a pargs=()
    for sc in $pid ${workers//,/ }; do
        pargs+=(-p "$sc")
    done
    timeout $((STRACE_SECS + 60)) strace -q -c -f -o "$OUT/$server-strace.txt" "${pargs[@]}" &
    local spid=$!
    sleep 1
    timeout $((STRACE_SECS + 30)) wrk -t2 -c"$CONNS" -d"${STRACE_SECS}s" \
        "http://127.0.0.1:$port$URLPATH" >"$OUT/$server-strace-wrk.txt" 2>&1
    sleep 0.5
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" || true
    reqs=$(wrk_requests "$OUT/$server-strace-wrk.txt")
    echo "-- $server: syscalls per request under strace -c -f ($reqs requests in ${STRACE_SECS}s)"
    awk -v reqs="$reqs" '
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        $1 ~ /^[0-9.]+$/ && NF >= 5 {
            errors = (NF == 6) ? $5 : 0
            printf "   %-12s %8.3f calls/request  %8.3f errors/request  (%s%% of syscall time)\n",
                $NF, $4 / reqs, errors / reqs, $1
        }
        ' "$OUT/$server-strace.txt"
}

log "profiles and reports go to $OUT"
start_pantherad "$WORKERS"
profile pantherad "$PX_PORT" "$PX_PID"
stop_pantherad
start_nginx "$WORKERS"
profile nginx "$NGINX_PORT" "$NGINX_PID"
stop_nginx
echo
echo "perf.data and the full reports: $OUT (perf report -i $OUT/pantherad.perf.data)"
