#!/usr/bin/env bash
# GET /v1/hello: pantherad against Debian's nginx answering the same 27 bytes, on
# 127.0.0.1, both with 2 workers and a buffered access log.
#
# For each connection count, wrk runs alternately against pantherad and nginx
# (A B A B ..., each round starting one server further on) and each run records requests/s, the p99 latency and the server's CPU
# time per request (utime + stime of master and workers, from /proc, divided by the
# requests wrk counted). A third server, floor.c (epoll, recv, one canned send: what the
# kernel costs alone), runs in the same rounds as a measuring stick, and so does a
# second pantherad, "shipped", configured as a new user runs it (scripts/dev run: the
# shipped Lua scripts on top of the same access log). See tests/bench/README.md.
#
# Per round it prints the user-space share, (pantherad - floor) / (nginx - floor) in CPU
# per request: what our own code costs against what nginx's costs, the kernel's part
# taken out of both (target <= 0.5); and shipped / pantherad (target <= 1.10). The summary
# lists the share of every round with their median, the figure to quote. Beside it,
# the user-mode CPU (utime) per request of pantherad against nginx's: the same question
# asked without the floor, and less moved by load on a shared machine, which changes how
# many requests each wake-up carries and so mostly the kernel's share (the floor's too).
#
# Environment:
#   BENCH_SECONDS   length of one wrk run (default 10)
#   BENCH_CONNS     connection counts (default "64 256")
#   BENCH_ROUNDS    runs per server and connection count (default 2)
#   BENCH_THREADS   wrk threads (default 2)
#   BENCH_WARMUP    seconds of unrecorded load on each server first (default 2; 0: none)
#   BENCH_QUIET_WAIT  before each run, wait up to this many seconds for the machine to
#                   be idle (default 30)
#   BENCH_NOISE_MAX   a run during which other processes used more than this % of one CPU
#                   is run again (default 10) ...
#   BENCH_RETRIES     ... at most this many times (default 3)
#   BENCH_ACCESS_LOG  0: both servers without access log (default 1: both log to a file)
#   BENCH_FLOOR     0: leave floor.c out (default 1)
#   BENCH_SHIPPED   0: leave the shipped-configuration pantherad out (default 1)
#   BENCH_BASELINE  another release build (e.g. main's) run as a fifth server, "baseline",
#                   in the same rounds and configured as pantherad: its ratio to
#                   pantherad and its own user-space share are printed too (default: none)
#   BENCH_PIN       1: every server's processes on CPU 1 and wrk (one thread) on CPU 0,
#                   so neither steals the other's core: steadier per-request figures
#                   (the servers then have one core for their two workers)
#   BENCH_OUT       also write the raw results (TSV) to this file
#   BENCH_PX_PORT, BENCH_NGINX_PORT, BENCH_FLOOR_PORT  ports (default 18480, 18481, 18482)
#   BENCH_BUILD     the release build to use (default build-bench/, set up if missing)
#   BENCH_NO_BUILD  1: do not run ninja first
#   BENCH_KEEP      1: keep the temporary directory (configs, logs)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64 256}
ROUNDS=${BENCH_ROUNDS:-2}
THREADS=${BENCH_THREADS:-2}
WARMUP=${BENCH_WARMUP:-2}
NOISE_MAX=${BENCH_NOISE_MAX:-10}
RETRIES=${BENCH_RETRIES:-3}
WORKERS=2
PATH_=/v1/hello
FLOOR=${BENCH_FLOOR:-1}
SHIPPED=${BENCH_SHIPPED:-1}
BASELINE=${BENCH_BASELINE:-}
[[ -z $BASELINE || -x $BASELINE/server/pantherad ]] || die "BENCH_BASELINE: no $BASELINE/server/pantherad"

command -v wrk >/dev/null 2>&1 || die "wrk not found (apt-get install -y wrk)"
PIN=${BENCH_PIN:-0}
WRK=(wrk)
if ((PIN)); then
    command -v taskset >/dev/null || die "BENCH_PIN needs taskset (util-linux)"
    WRK=(taskset -c 0 wrk)
    THREADS=1
fi
[[ $SECONDS_PER_RUN =~ ^[0-9]+$ && $SECONDS_PER_RUN -ge 1 ]] || die "BENCH_SECONDS: a whole number of seconds"

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init

log "pantherad $("$BUILD/server/pantherad" -V | head -1) from $BUILD; $("$NGINX" -v 2>&1)"
log "$(nproc) CPUs; wrk -t$THREADS, ${SECONDS_PER_RUN}s per run, connections: $CONNS, $ROUNDS rounds"

start_pantherad "$WORKERS"
start_nginx "$WORKERS"
((FLOOR)) && start_floor "$WORKERS"
((SHIPPED)) && start_pantherad_shipped "$WORKERS"
if [[ -n $BASELINE ]]; then
    log "baseline: pantherad $("$BASELINE/server/pantherad" -V | head -1) from $BASELINE"
    PX_BUILD_DIR=$BASELINE start_pantherad_as baseline "$BASELINE_PORT" "" "$WORKERS"
    BASELINE_PID=$STARTED_PID
fi

# Same status, same body, same Content-Type from both, before anything is measured.
check_server() {
    local name=$1 port=$2 out=$BENCH_TMP/check-$1
    local code
    code=$(curl -s -D "$out.head" -o "$out.body" -w '%{http_code}' --max-time 5 \
        "http://127.0.0.1:$port$PATH_") || die "$name: curl failed"
    [[ $code == 200 ]] || die "$name: GET $PATH_ answered $code"
    grep -qi '^content-type: application/json; charset=utf-8' "$out.head" ||
        die "$name: unexpected Content-Type: $(grep -i '^content-type' "$out.head")"
}
check_server pantherad "$PX_PORT"
check_server nginx "$NGINX_PORT"
cmp -s "$BENCH_TMP/check-pantherad.body" "$BENCH_TMP/check-nginx.body" ||
    die "the bodies differ: $(cat "$BENCH_TMP/check-pantherad.body") vs $(cat "$BENCH_TMP/check-nginx.body")"
if ((SHIPPED)); then
    check_server shipped "$SHIPPED_PORT"
    cmp -s "$BENCH_TMP/check-shipped.body" "$BENCH_TMP/check-nginx.body" || die "shipped's body differs"
    grep -qi '^x-frame-options: deny' "$BENCH_TMP/check-shipped.head" ||
        die "the shipped scripts are not in effect (no X-Frame-Options)"
fi
if [[ -n $BASELINE ]]; then
    check_server baseline "$BASELINE_PORT"
    cmp -s "$BENCH_TMP/check-baseline.body" "$BENCH_TMP/check-nginx.body" || die "baseline's body differs"
fi
if ((FLOOR)); then
    check_server floor "$FLOOR_PORT"
    cmp -s "$BENCH_TMP/check-floor.body" "$BENCH_TMP/check-nginx.body" || die "floor's body differs"
fi
log "both answer 200 with the same $(wc -c <"$BENCH_TMP/check-nginx.body")-byte body: $(cat "$BENCH_TMP/check-nginx.body")"

# run_wrk SERVER PORT CONNS ROUND: one measured run; appends a TSV line to RESULTS.
RESULTS=$BENCH_TMP/results.tsv
: >"$RESULTS"
run_wrk() {
    local server=$1 port=$2 conns=$3 round=$4 pid before after out
    case $server in
    pantherad) pid=$PX_PID ;;
    shipped) pid=$SHIPPED_PID ;;
    baseline) pid=$BASELINE_PID ;;
    nginx) pid=$NGINX_PID ;;
    floor) pid=$FLOOR_PID ;;
    esac
    out=$BENCH_TMP/wrk-$server-c$conns-r$round.txt
    local sys_before sys_after wrk_cpu user_before user_after
    wait_quiet
    sys_before=$(busy_ticks)
    before=$(cpu_ticks "$pid")
    user_before=$(user_ticks "$pid")
    # bash's `time` gives wrk's own CPU time (user + system, in seconds).
    wrk_cpu=$({
        TIMEFORMAT='%3U %3S'
        time timeout $((SECONDS_PER_RUN + 30)) "${WRK[@]}" -t"$THREADS" -c"$conns" \
            -d"${SECONDS_PER_RUN}s" --latency "http://127.0.0.1:$port$PATH_" >"$out" 2>&1
    } 2>&1) || { cat "$out" >&2; die "wrk failed against $server"; }
    after=$(cpu_ticks "$pid")
    user_after=$(user_ticks "$pid")
    sys_after=$(busy_ticks)
    # Lines: "  123 requests in 10.00s, ...", "     99%    1.23ms", "Requests/sec: ...",
    # "  Non-2xx or 3xx responses: N", "  Socket errors: connect A, read B, write C, timeout D".
    awk -v server="$server" -v conns="$conns" -v round="$round" -v ticks=$((after - before)) \
        -v hz="$CLK_TCK" -v user_ticks=$((user_after - user_before)) \
        -v sys_ticks=$((sys_after - sys_before)) -v wrk_cpu="$wrk_cpu" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        / requests in / { reqs = $1; dur = $4; sub(/s,$/, "", dur) }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ { errs = $4 + $6 + $8 + $10 }
        END {
            if (!reqs) { print "no request count in wrk output" > "/dev/stderr"; exit 1 }
            cpu_s = ticks / hz
            split(wrk_cpu, w, " ")
            wrk_s = w[1] + w[2]
            # Whatever else ran on the machine meanwhile (other users, tests): noise.
            other_s = sys_ticks / hz - cpu_s - wrk_s
            if (other_s < 0) other_s = 0
            printf "%s\t%d\t%d\t%.0f\t%.3f\t%.2f\t%d\t%d\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%.2f\n", server,
                conns, round, rps, p99, cpu_s * 1e6 / reqs, reqs, bad + 0, errs + 0, cpu_s,
                100 * cpu_s / dur, 100 * wrk_s / dur, 100 * other_s / dur,
                user_ticks / hz * 1e6 / reqs
        }' "$out" >>"$RESULTS" || { cat "$out" >&2; die "cannot read wrk's output"; }
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "    %-9s c=%-4s round %s: %8s req/s  p99 %7.2f ms  %6.2f us CPU/request (user %5.2f)  (CPU%%: server %s, wrk %s, other %s)\n", $1, $2, $3, $4, $5, $6, $14, $11, $12, $13 }' >&2
}

if ((PIN)); then
    for pid in $PX_PID $NGINX_PID ${FLOOR_PID:-} ${SHIPPED_PID:-} ${BASELINE_PID:-}; do
        for p in $pid $(pgrep -P "$pid" || true); do
            taskset -a -cp 1 "$p" >/dev/null
        done
    done
    log "pinned: the servers on CPU 1, wrk on CPU 0"
fi

if ((WARMUP > 0)); then
    log "warming up both servers (${WARMUP}s each, not recorded)"
    timeout $((WARMUP + 30)) wrk -t"$THREADS" -c64 -d"${WARMUP}s" "http://127.0.0.1:$PX_PORT$PATH_" >/dev/null
    timeout $((WARMUP + 30)) wrk -t"$THREADS" -c64 -d"${WARMUP}s" "http://127.0.0.1:$NGINX_PORT$PATH_" >/dev/null
    if ((FLOOR)); then
        timeout $((WARMUP + 30)) wrk -t"$THREADS" -c64 -d"${WARMUP}s" "http://127.0.0.1:$FLOOR_PORT$PATH_" >/dev/null
    fi
    if ((SHIPPED)); then
        timeout $((WARMUP + 30)) wrk -t"$THREADS" -c64 -d"${WARMUP}s" "http://127.0.0.1:$SHIPPED_PORT$PATH_" >/dev/null
    fi
    if [[ -n $BASELINE ]]; then
        timeout $((WARMUP + 30)) wrk -t"$THREADS" -c64 -d"${WARMUP}s" "http://127.0.0.1:$BASELINE_PORT$PATH_" >/dev/null
    fi
fi

# A run during which other processes used more than NOISE_MAX % of a CPU is done again
# (at most RETRIES times); the discarded runs are counted in the summary.
DISCARDED=0
run_measured() {
    local attempt other
    for ((attempt = 1; ; attempt++)); do
        run_wrk "$@"
        other=$(tail -1 "$RESULTS" | cut -f13)
        ((other <= NOISE_MAX || attempt > RETRIES)) && return 0
        log "other processes took $other% of a CPU during that run: running it again"
        sed -i '$d' "$RESULTS"
        DISCARDED=$((DISCARDED + 1))
    done
}

# round_shares CONNS ROUND: this round's user-space share and shipped/bare ratio.
round_shares() {
    awk -F'\t' -v c="$1" -v r="$2" '
        $2 == c && $3 == r { cpu[$1] = $6; user[$1] = $14 }
        END {
            line = ""
            if (user["nginx"] > 0)
                line = sprintf("user CPU pantherad / nginx = %.2f", user["pantherad"] / user["nginx"])
            if (("floor" in cpu) && cpu["nginx"] > cpu["floor"])
                line = line "; " sprintf("user-space share (px - floor) / (nginx - floor) = %.2f (target <= 0.5)",
                               (cpu["pantherad"] - cpu["floor"]) / (cpu["nginx"] - cpu["floor"]))
            if ("shipped" in cpu)
                line = line (line ? "; " : "") sprintf("shipped / bare = %.3f (target <= 1.10)",
                                                       cpu["shipped"] / cpu["pantherad"])
            if ("baseline" in cpu) {
                line = line (line ? "; " : "") sprintf("pantherad / baseline = %.3f", cpu["pantherad"] / cpu["baseline"])
                if (("floor" in cpu) && cpu["nginx"] > cpu["floor"])
                    line = line sprintf(" (baseline share %.2f)", (cpu["baseline"] - cpu["floor"]) / (cpu["nginx"] - cpu["floor"]))
            }
            if (line) print "    round " r ": " line
        }' "$RESULTS" >&2
}

# Each round starts one server further on (pantherad nginx floor ..., then nginx floor
# ... pantherad): whatever favours a place in the order (the first run after the quiet
# wait, the run after the one that loaded wrk hardest) falls on every server in turn
# instead of on the same one every round.
ORDER=("pantherad $PX_PORT" "nginx $NGINX_PORT")
((FLOOR)) && ORDER+=("floor $FLOOR_PORT")
((SHIPPED)) && ORDER+=("shipped $SHIPPED_PORT")
[[ -z $BASELINE ]] || ORDER+=("baseline $BASELINE_PORT")
for conns in $CONNS; do
    log "$conns connections"
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((i = 0; i < ${#ORDER[@]}; i++)); do
            # shellcheck disable=SC2086 # "name port"
            run_measured ${ORDER[(i + round - 1) % ${#ORDER[@]}]} "$conns" "$round"
        done
        round_shares "$conns" "$round"
    done
done

# Nothing the servers logged above warn level is expected.
for f in "$BENCH_TMP/pantherad/error.log" "$BENCH_TMP/nginx/error.log"; do
    if grep -Eqi '\[(error|crit|alert|emerg)\]' "$f"; then
        warn "errors logged in $f:"
        grep -Ei '\[(error|crit|alert|emerg)\]' "$f" | tail -5 >&2
    fi
done
[[ ${BENCH_ACCESS_LOG:-1} != 1 ]] || log "access logs: pantherad $(wc -l <"$BENCH_TMP/pantherad/access.log") lines, nginx $(wc -l <"$BENCH_TMP/nginx/access.log") lines (nginx flushes its last second at exit)"

if [[ -n ${BENCH_OUT:-} ]]; then
    {
        printf 'server\tconns\tround\treq_s\tp99_ms\tcpu_us_per_req\trequests\tnon2xx\tsocket_errors\tcpu_s\tserver_cpu_pct\twrk_cpu_pct\tother_cpu_pct\tuser_us_per_req\n'
        cat "$RESULTS"
    } >"$BENCH_OUT"
fi

echo
echo "GET $PATH_, $WORKERS workers each, wrk -t$THREADS -d${SECONDS_PER_RUN}s, $(nproc) CPUs ($(date -u +%Y-%m-%d))$([[ ${BENCH_ACCESS_LOG:-1} == 1 ]] || echo ", access logs OFF")"
echo
awk -F'\t' -v noise_max="$NOISE_MAX" -v discarded="$DISCARDED" '
    BEGIN {
        printf "%-9s %5s %5s %10s %9s %12s %10s %7s %7s %6s %6s %6s\n", "server", "conns", "round",
            "req/s", "p99 ms", "CPU us/req", "requests", "non2xx", "sockerr", "srv%", "wrk%", "other%"
    }
    {
        printf "%-9s %5d %5d %10d %9.2f %12.2f %10d %7d %7d %6.0f %6.0f %6.0f\n", $1, $2, $3, $4, $5,
            $6, $7, $8, $9, $11, $12, $13
        if ($13 > noise_max) noisy++
        key = $1 SUBSEP $2
        rps[key] += $4; p99[key] += $5; cpu[key] += $6; ucpu[key] += $14; n[key]++
        rcpu[$1, $2, $3] = $6
        if ($3 > nround[$2]) nround[$2] = $3
        if (!seen[$2]++) order[++nc] = $2
    }
    END {
        printf "\nmeans over the rounds, and pantherad/nginx\n"
        printf "%5s %14s %14s %8s   %11s %11s %8s   %10s %10s %8s\n", "conns",
            "req/s pantherad", "nginx", "ratio", "p99 ms px", "nginx", "ratio",
            "CPU us px", "nginx", "ratio"
        for (i = 1; i <= nc; i++) {
            c = order[i]; a = "pantherad" SUBSEP c; b = "nginx" SUBSEP c
            ra = rps[a] / n[a]; rb = rps[b] / n[b]
            pa = p99[a] / n[a]; pb = p99[b] / n[b]
            ca = cpu[a] / n[a]; cb = cpu[b] / n[b]
            printf "%5d %14.0f %14.0f %8.3f   %11.2f %11.2f %8.3f   %10.2f %10.2f %8.3f\n", c,
                ra, rb, ra / rb, pa, pb, pa / pb, ca, cb, ca / cb
        }
        if (n["shipped" SUBSEP order[1]]) {
            printf "\nshipped: pantherad as scripts/dev run configures it (the shipped Lua scripts),\n"
            printf "against the bare pantherad above (target: at most 1.10x its CPU per request)\n"
            printf "%5s %14s %14s %10s\n", "conns", "CPU us shipped", "bare", "ratio"
            for (i = 1; i <= nc; i++) {
                c = order[i]; s = "shipped" SUBSEP c; a = "pantherad" SUBSEP c
                printf "%5d %14.2f %14.2f %10.3f\n", c, cpu[s] / n[s], cpu[a] / n[a],
                    (cpu[s] / n[s]) / (cpu[a] / n[a])
            }
        }
        printf "\nuser-mode CPU per request (utime alone: no kernel time)\n"
        printf "%5s %12s %12s %8s\n", "conns", "user us px", "nginx", "ratio"
        for (i = 1; i <= nc; i++) {
            c = order[i]; a = "pantherad" SUBSEP c; b = "nginx" SUBSEP c
            printf "%5d %12.2f %12.2f %8.3f\n", c, ucpu[a] / n[a], ucpu[b] / n[b],
                (ucpu[b] ? (ucpu[a] / n[a]) / (ucpu[b] / n[b]) : 0)
        }
        if (n["baseline" SUBSEP order[1]]) {
            printf "\nbaseline: another build (BENCH_BASELINE), configured as pantherad, same rounds\n"
            printf "%5s %14s %14s %10s %12s %12s %10s\n", "conns", "CPU us px", "baseline", "ratio",
                "user us px", "baseline", "ratio"
            for (i = 1; i <= nc; i++) {
                c = order[i]; s = "baseline" SUBSEP c; a = "pantherad" SUBSEP c
                printf "%5d %14.2f %14.2f %10.3f %12.2f %12.2f %10.3f\n", c, cpu[a] / n[a],
                    cpu[s] / n[s], (cpu[a] / n[a]) / (cpu[s] / n[s]), ucpu[a] / n[a],
                    ucpu[s] / n[s], (ucpu[s] ? (ucpu[a] / n[a]) / (ucpu[s] / n[s]) : 0)
            }
        }
        if (n["floor" SUBSEP order[1]]) {
            printf "\nfloor.c (epoll, recv, one canned send; no parsing, logging or limits): the CPU\n"
            printf "per request that the kernel costs any server here, and its ratio to nginx\n"
            printf "%5s %14s %14s %10s %10s %12s\n", "conns", "CPU us floor", "nginx", "floor/ngx", "px/floor", "user share"
            for (i = 1; i <= nc; i++) {
                c = order[i]; f = "floor" SUBSEP c; a = "pantherad" SUBSEP c; b = "nginx" SUBSEP c
                cf = cpu[f] / n[f]; ca = cpu[a] / n[a]; cb = cpu[b] / n[b]
                printf "%5d %14.2f %14.2f %10.3f %10.3f %12.2f\n", c, cf, cb, cf / cb, ca / cf,
                    (cb > cf ? (ca - cf) / (cb - cf) : 0)
            }
            printf "user share: (pantherad - floor) / (nginx - floor), the CPU of our own code\n"
            printf "against nginx'"'"'s with the kernel'"'"'s part taken out (target <= 0.5)\n"
            # One disturbed run moves the share of its round by more than any code change
            # (the divisor is a difference of two noisy figures): the median of the
            # rounds is the figure to quote, with the rounds themselves beside it.
            printf "\nuser share per round (same rounds as above), their median and mean\n"
            for (i = 1; i <= nc; i++) {
                c = order[i]
                for (who = 1; who <= 2; who++) {
                    srv = who == 1 ? "pantherad" : "baseline"
                    if (!n[srv SUBSEP c]) continue
                    k = 0; list = ""; sum = 0
                    for (r = 1; r <= nround[c]; r++) {
                        # A round without one of the three (a run that failed) has no share.
                        if (!(("floor" SUBSEP c SUBSEP r) in rcpu) || !(("nginx" SUBSEP c SUBSEP r) in rcpu) ||
                            !((srv SUBSEP c SUBSEP r) in rcpu) || rcpu["nginx", c, r] <= rcpu["floor", c, r]) {
                            list = list " -"; continue
                        }
                        f = rcpu["floor", c, r]; b = rcpu["nginx", c, r]; a = rcpu[srv, c, r]
                        sh[++k] = (a - f) / (b - f); sum += sh[k]
                        list = list sprintf(" %.2f", sh[k])
                    }
                    if (!k) continue
                    for (x = 2; x <= k; x++)
                        for (y = x; y > 1 && sh[y - 1] > sh[y]; y--) { t = sh[y]; sh[y] = sh[y - 1]; sh[y - 1] = t }
                    med = k % 2 ? sh[(k + 1) / 2] : (sh[k / 2] + sh[k / 2 + 1]) / 2
                    printf "%5d %-9s median %5.2f  mean %5.2f  rounds:%s\n", c, srv, med, sum / k, list
                }
            }
        }
        printf "\nreq/s ratio: higher is better for pantherad; p99 and CPU/request ratios: lower is better.\n"
        printf "srv%%, wrk%%: CPU of the server (master + workers) and of wrk, in %% of one CPU;\n"
        printf "other%%: everything else on the machine meanwhile.\n"
        if (discarded)
            printf "%d run(s) disturbed by other processes were discarded and run again.\n", discarded
        if (noisy)
            printf "WARNING: %d run(s) kept with more than %d%% of a CPU used by other processes: noisy.\n", noisy, noise_max
    }' "$RESULTS"
