#!/usr/bin/env bash
# The kernel side of GET /v1/hello, per request, for pantherad, nginx and floor.c side by
# side (and BENCH_BASELINE, another build, as hello.sh): what hello.sh's user-space share
# cannot say, since there the kernel's part is only taken out by subtracting the floor.
#
# Per round, each server in turn under the same load (wrk -t2 -c BENCH_CONNS, default 64,
# for BENCH_SECONDS, default 5), with perf stat counting on the master and its workers:
#   - every syscall, and each of the ones a keep-alive request can make, by type, from
#     the raw_syscalls/syscalls tracepoints (counting only: no slowdown worth speaking of);
#   - reads and receives that found nothing (returned -EAGAIN): wasted calls;
#   - context switches (the wake-ups: how many requests each sleep in epoll_wait ends with);
#   - user and system CPU (utime, stime from /proc) per request.
# "events/wait" is the reads and receives per epoll_wait: how many ready sockets each
# wake-up handed over (every ready client socket is read exactly once by all three).
# This VM's perf has no hardware counters (cycles:u/:k are "not supported"), hence
# /proc's utime/stime for the user/kernel split.
#
# Environment: BENCH_SECONDS, BENCH_ROUNDS (default 2), BENCH_CONNS (one count),
# BENCH_BASELINE, BENCH_FLOOR, and the ports/build variables of hello.sh. Needs perf.
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-2}
CONNS=${BENCH_CONNS:-64}
FLOOR=${BENCH_FLOOR:-1}
BASELINE=${BENCH_BASELINE:-}
WORKERS=2
URLPATH=/v1/hello
[[ $CONNS =~ ^[0-9]+$ ]] || die "BENCH_CONNS: one connection count"
[[ -z $BASELINE || -x $BASELINE/server/pantherad ]] || die "no $BASELINE/server/pantherad"
for tool in perf wrk; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y linux-perf wrk)"
done

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init

SYSCALLS="read recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait epoll_ctl
    accept4 close setsockopt getsockopt getpeername ioctl futex clock_gettime timerfd_settime
    openat newfstat lseek"
EVENTS="raw_syscalls:sys_enter,context-switches,cpu-migrations"
for sc in $SYSCALLS; do
    EVENTS+=",syscalls:sys_enter_$sc"
done

start_pantherad "$WORKERS"
start_nginx "$WORKERS"
((FLOOR)) && start_floor "$WORKERS"
SERVERS="pantherad nginx"
((FLOOR)) && SERVERS+=" floor"
if [[ -n $BASELINE ]]; then
    PX_BUILD_DIR=$BASELINE start_pantherad_as baseline "$BASELINE_PORT" "" "$WORKERS"
    BASELINE_PID=$STARTED_PID
    SERVERS+=" baseline"
fi
log "servers: $SERVERS; wrk -t2 -c$CONNS -d${SECS}s, $ROUNDS rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"

pid_of() {
    case $1 in
    pantherad) echo "$PX_PID" ;;
    nginx) echo "$NGINX_PID" ;;
    floor) echo "$FLOOR_PID" ;;
    baseline) echo "$BASELINE_PID" ;;
    esac
}
port_of() {
    case $1 in
    pantherad) echo "$PX_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    floor) echo "$FLOOR_PORT" ;;
    baseline) echo "$BASELINE_PORT" ;;
    esac
}

for s in $SERVERS; do
    timeout 30 wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$(port_of "$s")$URLPATH" >/dev/null
done

# One line per server and round: name, then "key=value" per request.
ROWS=$BENCH_TMP/rows
: >"$ROWS"
measure() {
    local s=$1 round=$2 pid port pids out=$BENCH_TMP/$1-r$2 u0 a0 u1 a1 reqs
    pid=$(pid_of "$s")
    port=$(port_of "$s")
    pids=$(proc_tree "$pid" | paste -sd, -)
    wait_quiet
    u0=$(user_ticks "$pid")
    a0=$(cpu_ticks "$pid")
    # Each -e with a --filter right after it: reads that came back empty-handed.
    perf stat -x, -o "$out.perf" -p "$pids" -e "$EVENTS" \
        -e syscalls:sys_exit_read --filter 'ret == -11' \
        -e syscalls:sys_exit_recvfrom --filter 'ret == -11' \
        -- sleep $((SECS + 1)) >/dev/null 2>&1 &
    local statpid=$!
    sleep 0.5
    timeout $((SECS + 30)) wrk -t2 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$port$URLPATH" >"$out.wrk" 2>&1
    wait "$statpid" || die "perf stat failed on $s"
    u1=$(user_ticks "$pid")
    a1=$(cpu_ticks "$pid")
    reqs=$(awk '/ requests in / { print $1 }' "$out.wrk")
    [[ -n $reqs ]] || die "$s: no request count from wrk"
    awk -F, -v s="$s" -v r="$round" -v reqs="$reqs" -v hz="$CLK_TCK" \
        -v ut=$((u1 - u0)) -v st=$((a1 - a0 - u1 + u0)) -v load="$(cut -d' ' -f1 /proc/loadavg)" '
        $1 ~ /^[0-9]+$/ {
            name = $3
            if (name ~ /sys_exit_/) { sub(/.*sys_exit_/, "", name); name = name "_EAGAIN" }
            else if (name ~ /sys_enter_/) sub(/.*sys_enter_/, "", name)
            else if (name == "raw_syscalls:sys_enter") name = "ALL"
            v[name] += $1
        }
        END {
            line = s "\t" r "\treqs=" reqs "\tload=" load
            line = line sprintf("\tuser_us=%.3f\tsys_us=%.3f", ut / hz * 1e6 / reqs, st / hz * 1e6 / reqs)
            for (k in v) line = line sprintf("\t%s=%.4f", k, v[k] / reqs)
            print line
        }' "$out.perf" >>"$ROWS"
    log "$s round $round: $reqs requests"
}

# As hello.sh: each round starts one server further on.
read -r -a ORDER <<<"$SERVERS"
for ((round = 1; round <= ROUNDS; round++)); do
    for ((i = 0; i < ${#ORDER[@]}; i++)); do
        measure "${ORDER[(i + round - 1) % ${#ORDER[@]}]}" "$round"
    done
done

echo
echo "GET $URLPATH per request, $WORKERS workers each, wrk -t2 -c$CONNS -d${SECS}s, $ROUNDS rounds (means), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' -v servers="$SERVERS" '
    {
        s = $1; n[s]++
        for (i = 3; i <= NF; i++) {
            split($i, kv, "="); v[s, kv[1]] += kv[2]; keys[kv[1]] = 1
        }
    }
    END {
        ns = split(servers, S, " ")
        printf "%-22s", ""; for (j = 1; j <= ns; j++) printf "%12s", S[j]; printf "\n"
        split("user_us sys_us ALL read read_EAGAIN recvfrom recvfrom_EAGAIN recvmsg write writev sendto sendmsg epoll_wait epoll_pwait epoll_ctl accept4 close setsockopt getsockopt getpeername ioctl futex clock_gettime timerfd_settime openat newfstat lseek context-switches cpu-migrations", K, " ")
        for (k = 1; k in K; k++) {
            key = K[k]; any = 0
            for (j = 1; j <= ns; j++) if (v[S[j], key] / n[S[j]] >= 0.0005) any = 1
            if (!any) continue
            label = key
            if (key == "user_us") label = "user CPU us"
            if (key == "sys_us") label = "system CPU us"
            if (key == "ALL") label = "syscalls"
            printf "%-22s", label
            for (j = 1; j <= ns; j++) printf "%12.3f", v[S[j], key] / n[S[j]]
            printf "\n"
        }
        printf "%-22s", "events/wait"
        for (j = 1; j <= ns; j++) {
            s = S[j]; w = v[s, "epoll_wait"] + v[s, "epoll_pwait"]
            r = v[s, "read"] + v[s, "recvfrom"] + v[s, "recvmsg"] - v[s, "read_EAGAIN"] - v[s, "recvfrom_EAGAIN"]
            printf "%12.2f", w ? r / w : 0
        }
        printf "\n"
    }' "$ROWS"
