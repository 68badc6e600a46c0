#!/usr/bin/env bash
# Instructions per GET /v1/hello in user space, counted by callgrind: the measure of a
# change to the request path that does not depend on how busy the machine is.
#
# hello.sh's CPU per request moves by tens of percent between runs on a shared machine
# (how many requests each wake-up carries changes the kernel's part most, but every
# part moves); a change worth a few percent of the worker's own code cannot be seen
# there in a sensible time. callgrind counts the instructions the worker executes, the
# same from run to run within about 1 %, whatever else runs. Kernel time is not in it:
# syscalls per request come from profile.sh.
#
# Each server runs under valgrind --tool=callgrind with ONE worker: pantherad (this
# tree's release build), and with BENCH_BASELINE another build configured the same
# (see hello.sh), and nginx unless BENCH_CALLGRIND_NGINX=0. For each: a warm-up of
# wrk -t1 -c16 for 3 s, the worker's counters zeroed (callgrind_control -z), wrk for
# BENCH_SECONDS (default 5), the counters dumped (-d); the requests are those wrk
# counted. Prints instructions per request, the ratios, and pantherad's top functions
# by self instructions (BENCH_TOP, 25).
#
# Needs valgrind (callgrind_control, callgrind_annotate). About 1 minute per server.
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS=${BENCH_SECONDS:-5}
TOP=${BENCH_TOP:-25}
BASELINE=${BENCH_BASELINE:-}
WITH_NGINX=${BENCH_CALLGRIND_NGINX:-1}
URLPATH=/v1/hello

for tool in valgrind callgrind_control callgrind_annotate wrk; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y valgrind wrk)"
done
[[ -z $BASELINE || -x $BASELINE/server/pantherad ]] || die "no $BASELINE/server/pantherad"

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init
# nginx's worker (nobody, when started by root) writes its own profile here.
OUT=$BENCH_TMP/callgrind
mkdir -p "$OUT"
chmod 777 "$OUT"
export BENCH_WRAP="valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=$OUT/cg.%p"
# Starting under valgrind takes seconds.
export BENCH_START_TRIES=600

# count NAME PORT MASTER: instructions per request of MASTER's one worker.
count() {
    local name=$1 port=$2 master=$3 worker reqs ir
    worker=$(pgrep -P "$master" || echo "$master") # nginx runs without a master here
    [[ $worker =~ ^[0-9]+$ ]] || die "$name: expected one worker under $master, found: $worker"
    timeout 60 wrk -t1 -c16 -d3s "http://127.0.0.1:$port$URLPATH" >/dev/null
    callgrind_control -z "$worker" >/dev/null
    timeout $((SECS + 60)) wrk -t1 -c16 -d"${SECS}s" "http://127.0.0.1:$port$URLPATH" >"$OUT/$name-wrk.txt"
    callgrind_control -d "$worker" >/dev/null
    reqs=$(awk '/ requests in / { print $1 }' "$OUT/$name-wrk.txt")
    local dump="$OUT/cg.$worker.1" i
    for ((i = 0; i < 100; i++)); do
        [[ -s $dump ]] && break
        sleep 0.1
    done
    [[ -s $dump ]] || die "$name: no callgrind dump $dump"
    callgrind_annotate --threshold=100 "$dump" >"$OUT/$name-annotate.txt" 2>/dev/null
    ir=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' "$OUT/$name-annotate.txt")
    ((reqs > 0)) || die "$name: wrk counted no requests"
    IR[$name]=$((ir / reqs))
    log "$name: $reqs requests, ${IR[$name]} instructions per request"
}

declare -A IR
start_pantherad 1
count pantherad "$PX_PORT" "$PX_PID"
TOPFILE=$OUT/pantherad-annotate.txt
stop_pantherad
if [[ -n $BASELINE ]]; then
    PX_BUILD_DIR=$BASELINE start_pantherad_as baseline "$BASELINE_PORT" "" 1
    BASELINE_PID=$STARTED_PID
    count baseline "$BASELINE_PORT" "$BASELINE_PID"
    stop_baseline
fi
if ((WITH_NGINX)); then
    # One process that stays root: callgrind_control cannot reach a worker that
    # switched to nobody. The request path is the same as a worker's.
    NGINX_MAIN_EXTRA="master_process off;" start_nginx 1
    count nginx "$NGINX_PORT" "$NGINX_PID"
    stop_nginx
fi

echo
echo "GET $URLPATH, one worker under callgrind, wrk -t1 -c16 -d${SECS}s: user-space instructions per request"
printf '%-10s %12s\n' server "instr/req"
for name in pantherad baseline nginx; do
    [[ -n ${IR[$name]:-} ]] && printf '%-10s %12d\n' "$name" "${IR[$name]}"
done
[[ -z ${IR[baseline]:-} ]] ||
    awk -v a="${IR[pantherad]}" -v b="${IR[baseline]}" 'BEGIN { printf "pantherad / baseline = %.3f\n", a / b }'
[[ -z ${IR[nginx]:-} ]] ||
    awk -v a="${IR[pantherad]}" -v b="${IR[nginx]}" 'BEGIN { printf "pantherad / nginx = %.3f\n", a / b }'
echo
echo "pantherad: top $TOP functions by self instructions (of all the worker ran in the ${SECS}s)"
# The first lines after the header are the callers that hold everything (main, the loop).
awk '/file:function/ { on = 1; next } on && /%\)/' "$TOPFILE" | awk '$2 !~ /^\(100\.0%\)$/' |
    sed -E 's/ \[[^]]*\]$//; s/[^ ]*\/(sysdeps|string)\/[^:]*://' | head -n "$TOP"
