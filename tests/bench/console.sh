#!/usr/bin/env bash
# The console plugin's static serving (plugins/console): wrk against
#   full  GET /assets/app.js          (200 with the body, its headers: CSP, ETag...)
#   304   GET /assets/app.js with If-None-Match: its ETag   (a browser's revalidation)
#   shell GET /app/projects/x          (the SPA fallback: index.html)
# printing requests/s and the p99 latency of each. No database is involved.
#
# usage: tests/bench/console.sh    (BENCH_SECONDS per run, default 10; BENCH_CONNS, 64;
#                                   BENCH_BUILD / BENCH_NO_BUILD as in lib.sh)
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64}
WORKERS=2
command -v wrk >/dev/null 2>&1 || die "wrk not found (apt-get install -y wrk)"
trap bench_cleanup EXIT
bench_init
start_px console console

BASE=http://127.0.0.1:$PX_PORT
etag=$(curl -fsS -D - -o /dev/null "$BASE/assets/app.js" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
[[ -n $etag ]] || die "no ETag on /assets/app.js"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$BASE/assets/app.js")
[[ $code == 304 ]] || die "If-None-Match answered $code, not 304"

run() {
    local name=$1 path=$2 out=$BENCH_TMP/wrk-$1.txt
    shift 2
    timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency "$@" \
        "$BASE$path" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed ($name)"; }
    awk -v name="$name" '
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" { p99 = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%-6s %10.0f req/s   p99 %8s   non-2xx/3xx %d\n", name, rps, p99, bad + 0 }' "$out"
}
log "wrk -t2 -c$CONNS -d${SECONDS_PER_RUN}s, $WORKERS workers, $(nproc) CPUs"
run full /assets/app.js
run 304 /assets/app.js -H "If-None-Match: $etag"
run shell /app/projects/x
