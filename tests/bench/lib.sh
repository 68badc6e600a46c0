# shellcheck shell=bash
# Helpers shared by the benchmarks in tests/bench/: the release build they use, a
# private pantherad and a private nginx (both under one temporary directory, both on
# 127.0.0.1 only, both stopped on exit), and readings from /proc.
#
# Sourced, never run. The caller calls bench_init first and sets `trap bench_cleanup EXIT`.
# services.sh uses these functions and variables too: keep their names and meaning.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$BENCH_DIR/../.." && pwd -P)
BUILD=${BENCH_BUILD:-$REPO/build-bench}
PX_PORT=${BENCH_PX_PORT:-18480}
NGINX_PORT=${BENCH_NGINX_PORT:-18481}
FLOOR_PORT=${BENCH_FLOOR_PORT:-18482}
SHIPPED_PORT=${BENCH_SHIPPED_PORT:-18483}
BASELINE_PORT=${BENCH_BASELINE_PORT:-18486}
NGINX=${BENCH_NGINX:-nginx}
PYTHON=${PYTHON:-python3}
# No server we start lives longer than this (seconds), even if this script is killed
# with SIGKILL and its EXIT trap never runs: each runs under timeout(1).
BENCH_MAX_LIFETIME=${BENCH_MAX_LIFETIME:-1800}

log()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

BENCH_TMP=
PX_PID=
NGINX_PID=
SHIPPED_PID=
BASELINE_PID=

# Builds (or refreshes) the release build the benchmarks run: its own build directory,
# so that nobody else's build/ is touched. BENCH_NO_BUILD=1 skips this.
bench_build() {
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
        if [[ ! -f $BUILD/build.ninja ]]; then
            log "setting up the release build in $BUILD"
            meson setup "$BUILD" "$REPO" --buildtype=release -Db_ndebug=true -Db_lto=true >/dev/null ||
                die "meson setup $BUILD failed"
        elif ! grep -q '"name": "b_lto", "value": true' "$BUILD/meson-info/intro-buildoptions.json" 2>/dev/null; then
            # Measured as the package is built (debian/rules: optimize=+lto).
            log "turning on link-time optimisation in $BUILD"
            meson configure "$BUILD" -Db_lto=true >/dev/null || die "meson configure $BUILD failed"
        fi
        local tree ninja_log=${TMPDIR:-/tmp}/panthera-bench-ninja.$$.log
        tree=$(tree_state)
        if ninja -C "$BUILD" >"$ninja_log" 2>&1; then
            # What the binaries were built from, for the runs that use them later.
            echo "$tree" >"$BUILD/.bench-tree"
        else
            tail -5 "$ninja_log" >&2
            [[ -x $BUILD/server/pantherad ]] || die "ninja -C $BUILD failed"
            warn "ninja -C $BUILD failed (the tree is mid-edit?): measuring the binaries built" \
                "$(date -r "$BUILD/server/pantherad" '+%F %T')"
        fi
        rm -f "$ninja_log"
    fi
    [[ -x $BUILD/server/pantherad ]] || die "no $BUILD/server/pantherad"
    [[ -f $BUILD/sdk/examples/hello/hello.so ]] || die "no $BUILD/sdk/examples/hello/hello.so"
}

# The commit, and a digest of the uncommitted changes to what pantherad is built from.
tree_state() {
    local rev diff
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) || { echo "?"; return; }
    diff=$(git -C "$REPO" diff HEAD -- server sdk plugins meson.build 2>/dev/null | sha1sum | cut -c1-8)
    if [[ -n $(git -C "$REPO" status --porcelain -- server sdk plugins meson.build 2>/dev/null) ]]; then
        echo "$rev + uncommitted changes (diff $diff)"
    else
        echo "$rev"
    fi
}

bench_init() {
    local tool
    for tool in "$NGINX" curl timeout pgrep ss "$PYTHON"; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "$tool not found (apt-get install -y nginx-light wrk curl procps iproute2 python3)"
    done
    bench_build
    BENCH_TMP=$(mktemp -d /tmp/panthera-bench.XXXXXX)
    # nginx's workers run as "nobody" when started by root.
    chmod 755 "$BENCH_TMP"
    # shellcheck disable=SC2034  # used by the scripts that source this file
    CLK_TCK=$(getconf CLK_TCK)
    local rev="unknown (built outside the benchmarks)"
    [[ -f $BUILD/.bench-tree ]] && rev=$(cat "$BUILD/.bench-tree")
    log "pantherad from $BUILD, built $(date -r "$BUILD/server/pantherad" '+%F %T') from $rev"
}

port_free() {
    [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}

# The process PID and its children (a master and its workers).
proc_tree() {
    echo "$1"
    pgrep -P "$1" || true
}

# utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat, whole thread
# group), summed over PID and its children.
cpu_ticks() {
    proc_ticks all "$1"
}

# user_ticks PID: the user-mode part alone (utime): the server's own code, the kernel's
# work for it left out.
user_ticks() {
    proc_ticks user "$1"
}

proc_ticks() {
    local which=$1 pid rest total=0
    local -a f
    for pid in $(proc_tree "$2"); do
        rest=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        # Field 2 (comm) may hold spaces: everything after the last ')' starts at field 3.
        rest=${rest##*) }
        read -r -a f <<<"$rest"
        if [[ $which == user ]]; then
            total=$((total + f[11]))
        else
            total=$((total + f[11] + f[12]))
        fi
    done
    echo "$total"
}

# VmRSS in KiB summed over PID and its children.
rss_kib() {
    local pid total=0 v
    for pid in $(proc_tree "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# Waits until URL answers 200 (up to 10 s).
wait_http() {
    local url=$1 i
    for ((i = 0; i < ${BENCH_START_TRIES:-100}; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true) == 200 ]] &&
            return 0
        sleep 0.1
    done
    return 1
}

wait_pidfile() {
    local file=$1 i
    for ((i = 0; i < ${BENCH_START_TRIES:-100}; i++)); do
        [[ -s $file ]] && return 0
        sleep 0.1
    done
    return 1
}

# start_pantherad WORKERS [HTTP_KEY=VALUE...]: a pantherad with the hello plugin only
# (PX_PLUGINS and PX_PLUGIN_PATH add others; PX_EXTRA_CONF is appended to the config),
# its access log and error log in files (BENCH_ACCESS_LOG=0: no access log, for both
# servers). Sets PX_PID (the master).
start_pantherad() {
    start_pantherad_as pantherad "$PX_PORT" "" "$@"
    PX_PID=$STARTED_PID
}

# start_pantherad_shipped WORKERS: pantherad as a new user runs it (scripts/dev run): the
# same hello plugin and access log, plus the shipped Lua scripts (scripts/lua). Sets
# SHIPPED_PID.
start_pantherad_shipped() {
    start_pantherad_as shipped "$SHIPPED_PORT" "$(printf '[lua]\ndir = %s' "$REPO/scripts/lua")" "$@"
    SHIPPED_PID=$STARTED_PID
}

# start_pantherad_as NAME PORT EXTRA_CONFIG WORKERS [HTTP KEY=VALUE...]: a pantherad with
# the hello plugin under BENCH_TMP/NAME, EXTRA_CONFIG (lines) appended to its config.
# PX_BUILD_DIR: another release build to run it from (hello.sh's baseline). Sets STARTED_PID.
start_pantherad_as() {
    local name=$1 port=$2 extra=$3 workers=$4 build=${PX_BUILD_DIR:-$BUILD}
    shift 4
    local d=$BENCH_TMP/$name kv
    rm -rf "$d"
    mkdir -p "$d/conf.d"
    port_free "$port" || die "port $port is in use (set BENCH_PX_PORT or BENCH_SHIPPED_PORT)"
    {
        echo "[server]"
        # PX_LISTEN_EXTRA: more listeners, e.g. "127.0.0.1:18484 ssl" (tls.sh).
        echo "listen = 127.0.0.1:$port${PX_LISTEN_EXTRA:+, $PX_LISTEN_EXTRA}"
        echo "workers = $workers"
        echo "plugin_path = $build/sdk/examples/hello${PX_PLUGIN_PATH:+:$PX_PLUGIN_PATH}"
        echo "conf_dir = $d/conf.d"
        if [[ ${BENCH_ACCESS_LOG:-1} == 1 ]]; then
            echo "access_log = $d/access.log"
        else
            echo "access_log = off"
        fi
        echo "error_log = $d/error.log"
        echo "pid_file = $d/pantherad.pid"
        echo "[http]"
        for kv in "$@"; do
            echo "${kv%%=*} = ${kv#*=}"
        done
        [[ -z $extra ]] || echo "$extra"
        for kv in hello ${PX_PLUGINS:-}; do
            echo "[plugin:$kv]"
        done
        echo "${PX_EXTRA_CONF:-}"
    } >"$d/pantherad.conf"
    # shellcheck disable=SC2086 # BENCH_WRAP is a command line (callgrind.sh's valgrind)
    timeout -s TERM -k 10 "$BENCH_MAX_LIFETIME" \
        ${BENCH_WRAP:-} "$build/server/pantherad" -c "$d/pantherad.conf" >"$d/stdout.log" 2>&1 &
    wait_pidfile "$d/pantherad.pid" || { cat "$d/stdout.log" "$d/error.log" >&2; die "pantherad ($name) did not start"; }
    STARTED_PID=$(cat "$d/pantherad.pid")
    wait_http "http://127.0.0.1:$port/v1/hello" ||
        { cat "$d/error.log" >&2; die "pantherad ($name) does not answer on port $port"; }
    local n
    n=$(pgrep -c -P "$STARTED_PID" || true)
    ((n == workers)) || die "pantherad ($name) has $n workers, expected $workers"
}

# start_px NAME PLUGINS [EXTRA CONFIG LINES...]: a pantherad with those plugins (space
# separated, each enabled by its own drop-in) and extra config appended verbatim to the
# main file; WORKERS workers. Sets PX_PID. (services.sh, events.sh)
start_px() {
    local name=$1 plugins=$2
    shift 2
    local d=$BENCH_TMP/$name p line
    rm -rf "$d"
    mkdir -p "$d/conf.d"
    port_free "$PX_PORT" || die "port $PX_PORT is in use (set BENCH_PX_PORT)"
    {
        echo "[server]"
        echo "listen = 127.0.0.1:$PX_PORT"
        echo "workers = $WORKERS"
        echo "plugin_path = $BUILD/sdk/examples:$BUILD/plugins:$BUILD/tests/plugins"
        echo "conf_dir = $d/conf.d"
        echo "access_log = $d/access.log"
        echo "error_log = $d/error.log"
        echo "pid_file = $d/pantherad.pid"
        for line in "$@"; do
            echo "$line"
        done
    } >"$d/pantherad.conf"
    for p in $plugins; do
        echo "[plugin:$p]" >"$d/conf.d/50-$p.conf"
    done
    timeout -s TERM -k 10 "$BENCH_MAX_LIFETIME" \
        "$BUILD/server/pantherad" -c "$d/pantherad.conf" >"$d/stdout.log" 2>&1 &
    wait_pidfile "$d/pantherad.pid" || { cat "$d/stdout.log" "$d/error.log" >&2; die "pantherad did not start"; }
    PX_PID=$(cat "$d/pantherad.pid")
    wait_http "http://127.0.0.1:$PX_PORT/healthz" || { cat "$d/error.log" >&2; die "pantherad does not answer"; }
}

# start_nginx WORKERS [DIRECTIVE...]: Debian's nginx with a private prefix under
# BENCH_TMP, in the foreground (daemon off) under timeout(1). Extra http-level
# directives (e.g. "keepalive_timeout 120s") are appended; NGINX_SERVER_EXTRA (text) goes
# into the server block (tls.sh's ssl listener). Sets NGINX_PID (the master).
start_nginx() {
    local workers=$1
    shift
    local d=$BENCH_TMP/nginx dir
    rm -rf "$d"
    mkdir -p "$d"
    port_free "$NGINX_PORT" || die "port $NGINX_PORT is in use (set BENCH_NGINX_PORT)"
    for dir in body proxy fastcgi uwsgi scgi; do
        mkdir -p "$d/$dir"
    done
    local extra="" x access_log="access_log $d/access.log combined buffer=64k flush=1s;"
    [[ ${BENCH_ACCESS_LOG:-1} == 1 ]] || access_log="access_log off;"
    for x in "$@"; do
        extra+="    $x;"$'\n'
    done
    cat >"$d/nginx.conf" <<EOF
# Written by tests/bench/lib.sh.
daemon off;
worker_processes $workers;
worker_rlimit_nofile 20000;
${NGINX_MAIN_EXTRA:-}
pid $d/nginx.pid;
error_log $d/error.log warn;
events {
    worker_connections 20000;
}
http {
    $access_log
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    # pantherad's defaults: 1000 requests and 75 s per keep-alive connection.
    keepalive_requests 1000;
$extra
    server {
        listen 127.0.0.1:$NGINX_PORT;
        ${NGINX_SERVER_EXTRA:-}
        location = /v1/hello {
            default_type "application/json; charset=utf-8";
            return 200 '{"message":"Hello, World!"}';
        }
    }
}
EOF
    "$NGINX" -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>"$d/stdout.log" ||
        { cat "$d/stdout.log" >&2; die "nginx -t failed"; }
    # shellcheck disable=SC2086 # as in start_pantherad_as
    timeout -s TERM -k 10 "$BENCH_MAX_LIFETIME" \
        ${BENCH_WRAP:-} "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >>"$d/stdout.log" 2>&1 &
    wait_pidfile "$d/nginx.pid" || { cat "$d/stdout.log" "$d/error.log" >&2; die "nginx did not start"; }
    NGINX_PID=$(cat "$d/nginx.pid")
    wait_http "http://127.0.0.1:$NGINX_PORT/v1/hello" ||
        { cat "$d/error.log" >&2; die "nginx does not answer on port $NGINX_PORT"; }
    local n
    n=$(pgrep -c -P "$NGINX_PID" || true)
    # NGINX_MAIN_EXTRA (main-context directives, callgrind.sh's "master_process off;")
    # may make nginx one process with no workers.
    [[ ${NGINX_MAIN_EXTRA:-} != *"master_process off"* ]] || workers=0
    ((n == workers)) || die "nginx has $n workers, expected $workers"
}

# start_floor WORKERS: floor.c (the kernel's share alone, see there), built with cc into
# BENCH_TMP. Sets FLOOR_PID (the master).
start_floor() {
    local workers=$1 d=$BENCH_TMP/floor
    mkdir -p "$d"
    port_free "$FLOOR_PORT" || die "port $FLOOR_PORT is in use (set BENCH_FLOOR_PORT)"
    cc -O2 -Wall -Werror -o "$d/floor" "$REPO/tests/bench/floor.c" || die "cannot build floor.c"
    timeout -s TERM -k 10 "$BENCH_MAX_LIFETIME" "$d/floor" "$FLOOR_PORT" "$workers" \
        >"$d/stdout.log" 2>&1 &
    FLOOR_PID=$!
    wait_http "http://127.0.0.1:$FLOOR_PORT/v1/hello" ||
        { cat "$d/stdout.log" >&2; die "floor does not answer on port $FLOOR_PORT"; }
    # timeout(1) is the parent: the server is its child, the workers are the server's.
    FLOOR_PID=$(pgrep -P "$FLOOR_PID")
    local n
    n=$(pgrep -c -P "$FLOOR_PID" || true)
    ((n == workers)) || die "floor has $n workers, expected $workers"
}

# Stops a master and its workers: SIGTERM, then SIGKILL after 15 s.
stop_tree() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    local -a tree
    mapfile -t tree < <(proc_tree "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for pid in "${tree[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

stop_pantherad() { stop_tree "$PX_PID"; PX_PID=; }
stop_shipped() { stop_tree "${SHIPPED_PID:-}"; SHIPPED_PID=; }
stop_baseline() { stop_tree "${BASELINE_PID:-}"; BASELINE_PID=; }
stop_nginx() { stop_tree "$NGINX_PID"; NGINX_PID=; }
stop_floor() { stop_tree "${FLOOR_PID:-}"; FLOOR_PID=; }

bench_cleanup() {
    stop_pantherad
    stop_shipped
    stop_baseline
    stop_nginx
    stop_floor
    wait 2>/dev/null
    if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            log "kept $BENCH_TMP"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
}

# A private database for one benchmark in this checkout's services (scripts/dev services,
# read from .run/env): sets DB (<prefix>_<pid>) and PGARGS, calls bench_init, and drops the
# database with everything else on exit. `sql "<statement>"` runs in it.
bench_private_db() {
    [[ -f $REPO/.run/env ]] || die "no .run/env: run scripts/dev services first"
    set -a
    # shellcheck disable=SC1091
    . "$REPO/.run/env"
    set +a
    DB=$1_$$
    PGARGS=(-X -q -A -t -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U "$PANTHERA_PGUSER")
    bench_init
    trap bench_private_db_cleanup EXIT
    psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "CREATE DATABASE $DB" >/dev/null
}

bench_private_db_cleanup() {
    bench_cleanup
    psql "${PGARGS[@]}" "$PANTHERA_PGDATABASE" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
        >/dev/null 2>&1 || true
}

sql() { psql "${PGARGS[@]}" "$DB" -c "$1"; }

# Busy clock ticks of the whole machine (all CPUs) from /proc/stat: user, nice,
# system, irq, softirq, steal.
busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# Waits (at most BENCH_QUIET_WAIT seconds, default 30) until the machine is quiet:
# less than 10 % of one CPU busy over a second, with our servers idle. Other people's
# builds and tests on a shared machine skew every figure; this only lowers the odds,
# the "other%" column of the results says what happened during each run.
wait_quiet() {
    local limit=${BENCH_QUIET_WAIT:-30} waited=0 a b hz
    hz=$(getconf CLK_TCK)
    while :; do
        a=$(busy_ticks)
        sleep 1
        b=$(busy_ticks)
        (((b - a) * 10 < hz)) && return 0
        waited=$((waited + 1))
        if ((waited >= limit)); then
            warn "the machine is still busy ($(((b - a) * 100 / hz))% of a CPU) after ${limit}s: measuring anyway"
            return 0
        fi
    done
}
