#!/usr/bin/env bash
# Benchmarks of the host's services, each side by side with its peer in one run:
#
#   lua    GET /v1/hello with a trivial on_request Lua hook vs without (A B A B):
#          the hook's extra server CPU per request (target <= 0.2 us; nginx's
#          rewrite_by_lua costs 0.2-0.35 us here).
#   pg     a PostgreSQL-backed read (pgkit: one row by primary key, a prepared statement)
#          vs pgbench -S -M prepared with as many clients as pool connections, on the same
#          database over the same socket (target >= 0.7x pgbench's transactions/s).
#   users  GET /v1/users/me and GET /v1/users/{id} (cache warm) at 256 connections as a
#          ratio to GET /v1/hello in the same run; then logins per second with the
#          configured scrypt parameters while a second wrk loads /v1/hello, and how much
#          the hello route's p99 moves.
#   logins POST /v1/auth/login at 32 concurrent clients, scrypt (N=2^17, r=8: OWASP's
#          scrypt setting, the plugin's default before Argon2id) then Argon2id (m=19 MiB,
#          t=2, p=1: OWASP's equal-strength Argon2id setting, today's default): logins/s,
#          p99 and the server's peak RSS during the storm (target >= 5x the logins/s).
#
# usage: tests/bench/services.sh [lua] [pg] [users] [logins]   (default: all four)
# Needs PostgreSQL and Redis: run `scripts/dev services` first (this reads .run/env).
# BENCH_SECONDS (default 10) per run. Loads 127.0.0.1 only; stops what it starts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
WORKERS=2
THREADS=2
[[ -f $REPO/.run/env ]] || die "no .run/env: run scripts/dev services first"
set -a
# shellcheck disable=SC1091
. "$REPO/.run/env"
set +a
CONNINFO="host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$PANTHERA_PGDATABASE user=$PANTHERA_PGUSER"
SECRET=bench-secret-0123456789abcdef0123456789abcdef

bench_init
trap bench_cleanup EXIT

# measure LABEL PID URL CONNS [WRK ARGS...]: one wrk run; prints and records
# "label rps p99_ms cpu_us_per_request requests non2xx".
RESULTS=$BENCH_TMP/results.tsv
measure() {
    local label=$1 pid=$2 url=$3 conns=$4
    shift 4
    local out=$BENCH_TMP/wrk-$label-$RANDOM.txt before after
    wait_quiet
    before=$(cpu_ticks "$pid")
    timeout $((SECONDS_PER_RUN + 30)) wrk -t"$THREADS" -c"$conns" -d"${SECONDS_PER_RUN}s" \
        --latency "$@" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed ($label)"; }
    after=$(cpu_ticks "$pid")
    awk -v label="$label" -v ticks=$((after - before)) -v hz="$CLK_TCK" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        / requests in / { reqs = $1 }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END {
            if (!reqs) exit 1
            printf "%s\t%.0f\t%.3f\t%.3f\t%d\t%d\n", label, rps, p99, ticks / hz * 1e6 / reqs, reqs, bad + 0
        }' "$out" >>"$RESULTS" || { cat "$out" >&2; die "cannot read wrk's output ($label)"; }
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "    %-22s %8s req/s  p99 %7.2f ms  %7.3f us CPU/request  (%s requests, %s non-2xx)\n", $1, $2, $3, $4, $5, $6 }' >&2
    local bad
    bad=$(tail -1 "$RESULTS" | cut -f6)
    ((bad == 0)) || die "$label: $bad responses were not 2xx"
}

# mean LABEL COLUMN: the mean of a column over the runs of LABEL.
mean() {
    awk -F'\t' -v l="$1" -v c="$2" '$1 == l { s += $c; n++ } END { printf "%.3f", n ? s / n : 0 }' "$RESULTS"
}

bench_lua() {
    local rounds=${BENCH_LUA_ROUNDS:-4}
    log "lua: GET /v1/hello without and with a trivial on_request hook (2 workers each, 64 connections, $rounds rounds)"
    local lua=$BENCH_TMP/lua
    mkdir -p "$lua"
    printf 'function on_request(req)\nend\n' >"$lua/10-trivial.lua"
    # Both servers run for the whole benchmark and take turns: restarting them between
    # runs moved the figure by more than the 0.2 us being measured.
    start_px plain hello
    local plain_pid=$PX_PID plain_port=$PX_PORT
    PX_PORT=$((PX_PORT + 10))
    start_px hooked hello "[lua]" "dir = $lua"
    local hooked_pid=$PX_PID hooked_port=$PX_PORT
    local round
    for ((round = 1; round <= rounds; round++)); do
        measure lua-without "$plain_pid" "http://127.0.0.1:$plain_port/v1/hello" 64
        measure lua-with "$hooked_pid" "http://127.0.0.1:$hooked_port/v1/hello" 64
    done
    stop_tree "$plain_pid"
    stop_tree "$hooked_pid"
    PX_PID=
    PX_PORT=$plain_port
    local a b
    a=$(mean lua-without 4)
    b=$(mean lua-with 4)
    printf 'lua: %s us CPU/request without, %s with: the hook costs %s us (target <= 0.2)\n' \
        "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }')"
}

bench_pg() {
    command -v pgbench >/dev/null || die "pgbench not found (postgresql-client)"
    local db=bench_pg pool=4 clients=$((WORKERS * 4))
    log "pg: pgkit's read by primary key vs pgbench -S -M prepared, $clients clients (= pool connections)"
    psql -X -q -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" panthera \
        -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    pgbench -q -i -s 1 -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" "$db" >/dev/null 2>&1
    local conninfo="host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$db user=$PANTHERA_PGUSER"
    start_px pg pgkit "[postgres]" "conninfo = $conninfo" "pool_size = $pool"
    local id
    id=$(curl -s -X POST -H 'Content-Type: application/json' -d '{"name":"bench"}' \
        "http://127.0.0.1:$PX_PORT/v1/pgkit/items" | sed -n 's/.*"id":"\([0-9]*\)".*/\1/p')
    [[ -n $id ]] || die "could not create the row to read"
    local round out
    for round in 1 2; do
        measure pg-pantherad "$PX_PID" "http://127.0.0.1:$PX_PORT/v1/pgkit/items/$id" 64
        out=$BENCH_TMP/pgbench-$round.txt
        wait_quiet
        pgbench -n -S -M prepared -c "$clients" -j 2 -T "$SECONDS_PER_RUN" \
            -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" "$db" >"$out" 2>&1 ||
            { cat "$out" >&2; die "pgbench failed"; }
        awk '/^tps = / { printf "pgbench\t%.0f\t0\t0\t0\t0\n", $3 }' "$out" >>"$RESULTS"
        printf '    %-22s %8s tps\n' pgbench "$(tail -1 "$RESULTS" | cut -f2)" >&2
    done
    stop_pantherad
    psql -X -q -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" panthera \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    local a b
    a=$(mean pg-pantherad 2)
    b=$(mean pgbench 2)
    printf 'pg: pantherad %s req/s, pgbench %s tps: ratio %s (target >= 0.7)\n' "$a" "$b" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
}

bench_users() {
    local db=bench_users scrypt_n=${BENCH_SCRYPT_N:-131072}
    log "users: /v1/users/me and /v1/users/{id} vs /v1/hello at 256 connections; logins (scrypt N=$scrypt_n)"
    psql -X -q -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" panthera \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    local conninfo="host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$db user=$PANTHERA_PGUSER"
    # [plugin:user] in the main file enables the plugin with its settings.
    start_px users "hello" "[postgres]" "conninfo = $conninfo" \
        "[redis]" "address = unix:$PANTHERA_REDIS_SOCKET" "[auth]" "token_secret = $SECRET" \
        "[plugin:user]" "password_scheme = scrypt" "scrypt_n = $scrypt_n" "login_limit = 1000000"
    local base=http://127.0.0.1:$PX_PORT reg token uid
    reg=$(curl -s -X POST -H 'Content-Type: application/json' \
        -d '{"username":"benchuser","email":"bench@example.com","password":"correct horse battery"}' \
        "$base/v1/auth/register")
    token=$(sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p' <<<"$reg")
    uid=$(sed -n 's/.*"userId":"\([^"]*\)".*/\1/p' <<<"$reg")
    [[ -n $token && -n $uid ]] || die "register failed: $reg"
    curl -s -o /dev/null -H "Authorization: Bearer $token" "$base/v1/users/$uid" # warm the cache
    local round
    for round in 1 2; do
        measure users-hello "$PX_PID" "$base/v1/hello" 256
        measure users-me "$PX_PID" "$base/v1/users/me" 256 -H "Authorization: Bearer $token"
        measure users-by-id "$PX_PID" "$base/v1/users/$uid" 256 -H "Authorization: Bearer $token"
    done
    local h me id
    h=$(mean users-hello 2)
    me=$(mean users-me 2)
    id=$(mean users-by-id 2)
    printf 'users: hello %s req/s; /users/me %s (%.2fx); /users/{id} %s (%.2fx)\n' "$h" "$me" \
        "$(awk -v a="$me" -v b="$h" 'BEGIN { print a / b }')" "$id" \
        "$(awk -v a="$id" -v b="$h" 'BEGIN { print a / b }')"
    local hc mec idc
    hc=$(mean users-hello 4)
    mec=$(mean users-me 4)
    idc=$(mean users-by-id 4)
    printf 'users: server CPU per request: hello %s us; /users/me %s us (%.2fx hello, target <= 20 us and <= 1.7x); /users/{id} %s us (%.2fx)\n' \
        "$hc" "$mec" "$(awk -v a="$mec" -v b="$hc" 'BEGIN { print a / b }')" "$idc" \
        "$(awk -v a="$idc" -v b="$hc" 'BEGIN { print a / b }')"

    # Logins while hello is loaded: a wrk script that POSTs the login body.
    cat >"$BENCH_TMP/login.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"benchuser","password":"correct horse battery"}'
EOF
    measure users-hello-alone "$PX_PID" "$base/v1/hello" 64
    local login_out=$BENCH_TMP/wrk-login.txt
    timeout $((SECONDS_PER_RUN + 30)) wrk -t1 -c8 -d"${SECONDS_PER_RUN}s" -s "$BENCH_TMP/login.lua" \
        "$base/v1/auth/login" >"$login_out" 2>&1 &
    local login_pid=$!
    measure users-hello-during-logins "$PX_PID" "$base/v1/hello" 64
    wait "$login_pid" || true
    local logins bad
    logins=$(awk '/^Requests\/sec:/ { print $2 }' "$login_out")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$login_out")
    stop_pantherad
    psql -X -q -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" panthera \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    printf 'users: %s logins/s (%s non-2xx) with scrypt N=%s; hello p99 %s ms alone, %s ms during logins\n' \
        "$logins" "${bad:-0}" "$scrypt_n" "$(mean users-hello-alone 3)" "$(mean users-hello-during-logins 3)"
}

# login_storm SCHEME CONFIG_LINES...: a pantherad with the user plugin hashing with
# SCHEME; one account; 32 clients logging in for SECONDS_PER_RUN while RSS is sampled.
# Records "logins-SCHEME rps p99 cpu requests non2xx" and the idle and peak RSS.
login_storm() {
    local scheme=$1 db=bench_logins
    shift
    psql -X -q -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" panthera \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    local conninfo="host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$db user=$PANTHERA_PGUSER"
    start_px "logins-$scheme" "hello" "[postgres]" "conninfo = $conninfo" \
        "[redis]" "address = unix:$PANTHERA_REDIS_SOCKET" "[auth]" "token_secret = $SECRET" \
        "[plugin:user]" "password_scheme = $scheme" "login_limit = 1000000" "$@"
    local base=http://127.0.0.1:$PX_PORT reg
    reg=$(curl -s -X POST -H 'Content-Type: application/json' \
        -d '{"username":"benchuser","email":"bench@example.com","password":"correct horse battery"}' \
        "$base/v1/auth/register")
    [[ $reg == *accessToken* ]] || die "register failed: $reg"
    local idle peak=0 rss sampler
    idle=$(rss_kib "$PX_PID")
    (
        while sleep 0.2; do rss_kib "$PX_PID"; done
    ) >"$BENCH_TMP/rss-$scheme.txt" &
    sampler=$!
    measure "logins-$scheme" "$PX_PID" "$base/v1/auth/login" 32 -s "$BENCH_TMP/login.lua"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    while read -r rss; do ((rss > peak)) && peak=$rss; done <"$BENCH_TMP/rss-$scheme.txt"
    stop_pantherad
    psql -X -q -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER" panthera \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    printf '%s\t%s\t%s\n' "$scheme" "$idle" "$peak" >>"$BENCH_TMP/rss.tsv"
}

bench_logins() {
    log "logins: 32 concurrent clients, scrypt (N=2^17, r=8) then Argon2id (m=19 MiB, t=2)"
    cat >"$BENCH_TMP/login.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"benchuser","password":"correct horse battery"}'
EOF
    : >"$BENCH_TMP/rss.tsv"
    login_storm scrypt "scrypt_n = 131072" "scrypt_r = 8" "scrypt_p = 1"
    login_storm argon2id "argon2_m = 19456" "argon2_t = 2" "argon2_p = 1"
    local s a
    s=$(mean logins-scrypt 2)
    a=$(mean logins-argon2id 2)
    printf 'logins: scrypt %s/s (p99 %s ms), argon2id %s/s (p99 %s ms): %sx (target >= 5x)\n' \
        "$s" "$(mean logins-scrypt 3)" "$a" "$(mean logins-argon2id 3)" \
        "$(awk -v a="$a" -v b="$s" 'BEGIN { printf "%.1f", b ? a / b : 0 }')"
    awk -F'\t' '{ printf "logins: %s RSS %d MiB idle, %d MiB peak during the storm\n", $1, $2 / 1024, $3 / 1024 }' \
        "$BENCH_TMP/rss.tsv"
}

: >"$RESULTS"
which=("$@")
((${#which[@]})) || which=(lua pg users logins)
for w in "${which[@]}"; do
    case $w in
    lua) bench_lua ;;
    pg) bench_pg ;;
    users) bench_users ;;
    logins) bench_logins ;;
    *) die "unknown benchmark $w (lua, pg, users, logins)" ;;
    esac
done
