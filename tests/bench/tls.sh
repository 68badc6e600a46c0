#!/usr/bin/env bash
# HTTPS: pantherad against Debian's nginx, same certificate, protocols (TLS 1.2 and 1.3),
# ciphers (Mozilla intermediate), groups and GET /v1/hello, both with 2 workers and a
# buffered access log, on 127.0.0.1.
#
# For each key type (ECDSA P-256, RSA-2048) and each round, wrk runs alternately against
# pantherad and nginx (A B A B):
#   full        full handshakes: `openssl s_time -new`, BENCH_HS_CLIENTS of them at once,
#               each connecting, handshaking and closing in a loop: handshakes per second
#               and server CPU per handshake;
#   resumed     wrk -H "Connection: close": every request is a new connection, and wrk
#               offers its previous session on each (it keeps its SSL object across
#               reconnections), so these are resumed handshakes plus one request each;
#   keep-alive  the same request on kept connections: requests per second and server CPU
#               per request, what encryption adds to hello.sh's figure.
# Server CPU is utime + stime of master and workers from /proc, divided by what wrk
# counted. Targets (issue 18): CPU per keep-alive request <= nginx's, handshakes per
# second >= nginx's.
#
# Environment (besides lib.sh's):
#   BENCH_SECONDS     length of one run (default 8)
#   BENCH_ROUNDS      runs per server, key type and mode (default 2)
#   BENCH_CONNS       keep-alive connections (default 64)
#   BENCH_HS_CONNS    connections of the resumed runs (default 16)
#   BENCH_HS_CLIENTS  s_time processes of the full runs (default 2)
#   BENCH_KEYS        key types (default "ecdsa rsa")
#   BENCH_MODES       modes (default "full resumed keepalive")
#   BENCH_THREADS     wrk threads (default 2)
#   BENCH_PX_TLS_PORT, BENCH_NGINX_TLS_PORT  (default 18484, 18485)
#   BENCH_OUT         also write the raw results (TSV) to this file
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-2}
KA_CONNS=${BENCH_CONNS:-64}
HS_CONNS=${BENCH_HS_CONNS:-16}
HS_CLIENTS=${BENCH_HS_CLIENTS:-2}
KEYS=${BENCH_KEYS:-ecdsa rsa}
MODES=${BENCH_MODES:-full resumed keepalive}
THREADS=${BENCH_THREADS:-2}
PX_TLS_PORT=${BENCH_PX_TLS_PORT:-18484}
NGINX_TLS_PORT=${BENCH_NGINX_TLS_PORT:-18485}
WORKERS=2
PATH_=/v1/hello
# server/tls.c's default, spelled out for nginx.
CIPHERS="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

command -v wrk >/dev/null 2>&1 || die "wrk not found (apt-get install -y wrk)"
command -v openssl >/dev/null 2>&1 || die "openssl not found"

trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init
log "$(nproc) CPUs; wrk -t$THREADS, ${SECONDS_PER_RUN}s per run; handshakes on $HS_CONNS connections, keep-alive on $KA_CONNS; $ROUNDS rounds; $(openssl version)"

make_cert() {
    local kind=$1 d=$BENCH_TMP/certs
    mkdir -p "$d"
    local newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    [[ $kind == rsa ]] && newkey=(-newkey rsa:2048)
    openssl req -x509 "${newkey[@]}" -nodes -keyout "$d/$kind.key" -out "$d/$kind.pem" \
        -days 30 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null ||
        die "openssl req ($kind) failed"
    chmod 644 "$d/$kind.key" # nginx's workers read nothing, but its master runs as us
}

# The negotiated protocol, cipher, key and signature, to be the same from both servers.
handshake_of() {
    openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
        awk '/^New, / { hs = $2 " " $NF } /^Server public key is/ { key = $5 " bit" }
             /^Peer signature type:/ { sig = $4 } END { print hs, key, sig }'
}

# run_s_time PORT OUT: HS_CLIENTS `openssl s_time -new` for SECONDS_PER_RUN, their
# connections summed into wrk's output format ("N requests in", "Requests/sec:").
run_s_time() {
    local port=$1 out=$2 i total=0 n
    local -a pids=()
    for ((i = 0; i < HS_CLIENTS; i++)); do
        timeout $((SECONDS_PER_RUN + 30)) openssl s_time -connect "127.0.0.1:$port" -new \
            -time "$SECONDS_PER_RUN" >"$out.$i" 2>&1 &
        pids+=($!)
    done
    # Only these: the servers are background jobs of this shell too.
    for i in "${pids[@]}"; do
        wait "$i" || true
    done
    for ((i = 0; i < HS_CLIENTS; i++)); do
        n=$(awk '/connections in .* real seconds/ { print $1 }' "$out.$i")
        [[ -n $n ]] || { cat "$out.$i" >&2; die "s_time failed against port $port"; }
        total=$((total + n))
    done
    printf '  %d requests in %ss\nRequests/sec: %s\n' "$total" "$SECONDS_PER_RUN" \
        "$(awk -v t="$total" -v s="$SECONDS_PER_RUN" 'BEGIN { printf "%.0f", t / s }')" >"$out"
}

RESULTS=$BENCH_TMP/results.tsv
: >"$RESULTS"

# run_wrk SERVER PID PORT KEY MODE ROUND: one measured run, a TSV line in RESULTS.
run_wrk() {
    local server=$1 pid=$2 port=$3 key=$4 mode=$5 round=$6 conns=$KA_CONNS
    local out=$BENCH_TMP/wrk-$server-$key-$mode-$round.txt before after
    local -a extra=()
    if [[ $mode == resumed ]]; then
        conns=$HS_CONNS
        extra=(-H "Connection: close")
    fi
    wait_quiet
    before=$(cpu_ticks "$pid")
    if [[ $mode == full ]]; then
        run_s_time "$port" "$out"
    else
        timeout $((SECONDS_PER_RUN + 30)) wrk -t"$THREADS" -c"$conns" -d"${SECONDS_PER_RUN}s" \
            "${extra[@]}" "https://127.0.0.1:$port$PATH_" >"$out" 2>&1 ||
            { cat "$out" >&2; die "wrk failed against $server"; }
    fi
    after=$(cpu_ticks "$pid")
    awk -v server="$server" -v key="$key" -v mode="$mode" -v round="$round" \
        -v ticks=$((after - before)) -v hz="$CLK_TCK" '
        / requests in / { reqs = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ { errs = $4 + $6 + $8 + $10 }
        END {
            if (!reqs) { print "no request count in wrk output" > "/dev/stderr"; exit 1 }
            printf "%s\t%s\t%s\t%d\t%.0f\t%.2f\t%d\t%d\t%d\n", server, key, mode, round, rps,
                ticks / hz * 1e6 / reqs, reqs, bad + 0, errs + 0
        }' "$out" >>"$RESULTS" || { cat "$out" >&2; die "cannot read wrk's output"; }
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "    %-9s %-5s %-9s round %s: %8s /s  %7.2f us CPU each  (non-2xx %s, socket errors %s)\n", $1, $2, $3, $4, $5, $6, $8, $9 }' >&2
}

for key in $KEYS; do
    make_cert "$key"
    cert=$BENCH_TMP/certs/$key.pem
    keyfile=$BENCH_TMP/certs/$key.key
    log "$key certificate"
    PX_LISTEN_EXTRA="127.0.0.1:$PX_TLS_PORT ssl" \
        start_pantherad_as pantherad "$PX_PORT" "$(printf '[tls]\ncertificate = %s\nkey = %s' "$cert" "$keyfile")" "$WORKERS"
    PX_PID=$STARTED_PID
    NGINX_SERVER_EXTRA="listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        ssl_certificate $cert;
        ssl_certificate_key $keyfile;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers $CIPHERS;
        ssl_prefer_server_ciphers off;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_session_tickets on;" start_nginx "$WORKERS"
    px_hs=$(handshake_of "$PX_TLS_PORT")
    nginx_hs=$(handshake_of "$NGINX_TLS_PORT")
    [[ -n $px_hs && $px_hs == "$nginx_hs" ]] ||
        die "the handshakes differ: pantherad \"$px_hs\", nginx \"$nginx_hs\""
    a=$(curl -sk "https://127.0.0.1:$PX_TLS_PORT$PATH_")
    b=$(curl -sk "https://127.0.0.1:$NGINX_TLS_PORT$PATH_")
    [[ -n $a && $a == "$b" ]] || die "the bodies differ: \"$a\" vs \"$b\""
    log "both negotiate $px_hs and answer $a"
    timeout 40 wrk -t"$THREADS" -c16 -d2s "https://127.0.0.1:$PX_TLS_PORT$PATH_" >/dev/null
    timeout 40 wrk -t"$THREADS" -c16 -d2s "https://127.0.0.1:$NGINX_TLS_PORT$PATH_" >/dev/null
    for ((round = 1; round <= ROUNDS; round++)); do
        for mode in $MODES; do
            run_wrk pantherad "$PX_PID" "$PX_TLS_PORT" "$key" "$mode" "$round"
            run_wrk nginx "$NGINX_PID" "$NGINX_TLS_PORT" "$key" "$mode" "$round"
        done
    done
    stop_pantherad
    stop_nginx
done

log "summary (median over rounds; the machine may be shared: read with the noise in mind)"
awk -F'\t' '
    { k = $2 "\t" $3; v[$1, k, ++n[$1, k]] = $5; c[$1, k, n[$1, k]] = $6; keys[k] = 1 }
    function median(arr, s, kk, m,   i, j, t, a) {
        for (i = 1; i <= m; i++) a[i] = arr[s, kk, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END {
        for (k in keys) {
            split(k, p, "\t")
            pr = median(v, "pantherad", k, n["pantherad", k]); nr = median(v, "nginx", k, n["nginx", k])
            pc = median(c, "pantherad", k, n["pantherad", k]); nc = median(c, "nginx", k, n["nginx", k])
            printf "    %-5s %-9s pantherad %8.0f/s %7.2f us CPU | nginx %8.0f/s %7.2f us CPU | rate x%.2f, CPU x%.2f\n",
                p[1], p[2], pr, pc, nr, nc, pr / nr, pc / nc
        }
    }' "$RESULTS" >&2

if [[ -n ${BENCH_OUT:-} ]]; then
    {
        printf 'server\tkey\tmode\tround\tper_s\tcpu_us_each\trequests\tnon2xx\tsocket_errors\n'
        cat "$RESULTS"
    } >"$BENCH_OUT"
fi
