# shellcheck shell=bash
# A private PostgreSQL and Redis for development and tests: unix sockets only, no
# TCP port, nothing shared with services the machine may already run. Sourced by
# scripts/dev after common.sh; call services_init first.
#
# Where they live. PostgreSQL refuses to run as root, so as root we run it as
# user "postgres", which must be able to reach its data directory. A checkout
# under /root (mode 0700) is out of its reach, and a deep checkout can make a
# socket path longer than a unix socket allows (107 bytes). In both cases the
# services live in /tmp/panthera-run-<hash of the repo path> instead of
# <repo>/.run; the hash keeps the choice stable, so "stop" finds what "run"
# started. Generated files the host reads (pantherad.conf, logs, results)
# always stay in <repo>/.run.

PG_BIN=${PANTHERA_PG_BIN:-/usr/lib/postgresql/15/bin}
SOCKET_PATH_MAX=107

# Runs a PostgreSQL server command as the user that owns the cluster. The
# subshell leaves a cwd user postgres may not be allowed to enter.
as_pg() {
    if ((EUID == 0)); then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# True when DIR can hold the PostgreSQL and Redis files and sockets.
run_dir_usable() {
    local dir=$1
    ((${#dir} + ${#PG_PORT} + 15 <= SOCKET_PATH_MAX)) || return 1 # /pg/.s.PGSQL.N
    ((${#dir} + 11 <= SOCKET_PATH_MAX)) || return 1                # /redis.sock
    if ((EUID == 0)); then
        runuser -u postgres -- test -x "$dir" 2>/dev/null || return 1
    fi
}

# Sets every path below; creates <repo>/.run and, if needed, the /tmp fallback.
services_init() {
    PG_PORT=${PANTHERA_PG_PORT:-5432}
    [[ $PG_PORT =~ ^[0-9]+$ ]] || die "PANTHERA_PG_PORT must be a number, not '$PG_PORT'"
    LOCAL_RUN=$REPO/.run
    mkdir -p "$LOCAL_RUN"
    if ((EUID == 0)) && ! id postgres >/dev/null 2>&1; then
        die "user 'postgres' does not exist: is postgresql-15 installed?"
    fi
    if run_dir_usable "$LOCAL_RUN"; then
        RUN_DIR=$LOCAL_RUN
    else
        RUN_DIR=/tmp/panthera-run-$(printf '%s' "$REPO" | sha256sum | cut -c1-12)
        [[ -e $RUN_DIR ]] || mkdir -m 0755 "$RUN_DIR"
        # Someone else's directory or a symlink planted in /tmp is not ours to use.
        [[ -d $RUN_DIR && ! -L $RUN_DIR && -O $RUN_DIR ]] ||
            die "$RUN_DIR exists but is not a directory owned by $(id -un)"
        chmod 0755 "$RUN_DIR"
    fi
    PG_DATA=$RUN_DIR/pgdata
    PG_SOCK=$RUN_DIR/pg
    PG_LOG=$PG_SOCK/postgresql.log
    REDIS_DIR=$RUN_DIR/redis
    REDIS_SOCK=$RUN_DIR/redis.sock
    REDIS_CONF=$RUN_DIR/redis.conf
    REDIS_PID=$RUN_DIR/redis.pid
    REDIS_LOG=$REDIS_DIR/redis.log
    ENV_FILE=$RUN_DIR/env
    SERVICE_ENV=(
        "PANTHERA_RUNDIR=$RUN_DIR"
        "PANTHERA_PGHOST=$PG_SOCK"
        "PANTHERA_PGPORT=$PG_PORT"
        "PANTHERA_PGDATABASE=panthera"
        "PANTHERA_PGUSER=panthera"
        "PANTHERA_REDIS_SOCKET=$REDIS_SOCK"
    )
}

pg_running() {
    [[ -f $PG_DATA/PG_VERSION ]] &&
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# Runs SQL as the superuser over the private socket; prints unaligned tuples.
pg_sql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -tA -h "$PG_SOCK" -p "$PG_PORT" \
        -U postgres -d postgres -c "$1"
}

# Starts the cluster unless it already runs. MODE "test" turns fsync off (fast,
# and the data is thrown away); "run" keeps PostgreSQL's durable defaults, so a
# cluster left running by a test run is restarted with them.
pg_start() {
    local mode=$1 opts=() restart=0
    if [[ $mode == test ]]; then
        opts=(-o "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    fi
    if ((EUID == 0)); then
        install -d -o postgres -g postgres -m 0700 "$PG_DATA"
        install -d -o postgres -g postgres -m 0755 "$PG_SOCK"
    else
        install -d -m 0700 "$PG_DATA"
        install -d -m 0755 "$PG_SOCK"
    fi
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "creating a PostgreSQL cluster in $PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres --no-sync \
            -E UTF8 --no-locale >"$LOCAL_RUN/initdb.log" 2>&1 ||
            { cat "$LOCAL_RUN/initdb.log" >&2; die "initdb failed"; }
        echo "include_if_exists = 'panthera.conf'" |
            as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
    fi
    # Rewritten on every start so a moved checkout or a new port takes effect.
    as_pg tee "$PG_DATA/panthera.conf" >/dev/null <<CONF
# Written by scripts/dev; changes here are lost on the next start.
listen_addresses = ''
unix_socket_directories = '${PG_SOCK//\'/\'\'}'
port = $PG_PORT
max_connections = 200
CONF
    if pg_running; then
        if [[ $(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null) != "$PG_PORT" ]]; then
            log "PostgreSQL runs on another port: restarting it on $PG_PORT"
            restart=1
        elif [[ $mode == run && $(pg_sql 'SHOW fsync' 2>/dev/null) == off ]]; then
            log "PostgreSQL runs with fsync=off (left by a test run): restarting it"
            restart=1
        fi
        if ((restart)); then
            pg_stop
        else
            log "PostgreSQL already running ($PG_SOCK, port $PG_PORT)"
        fi
    fi
    if ! pg_running; then
        log "starting PostgreSQL ($PG_SOCK, port $PG_PORT)"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 "${opts[@]}" start \
            >/dev/null || { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start (log: $PG_LOG)"; }
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        "$PG_BIN/pg_isready" -q -h "$PG_SOCK" -p "$PG_PORT" && break
        sleep 0.5
    done
    "$PG_BIN/pg_isready" -q -h "$PG_SOCK" -p "$PG_PORT" ||
        die "PostgreSQL is not ready after 30 s (log: $PG_LOG)"
    if [[ $(pg_sql "SELECT 1 FROM pg_roles WHERE rolname = 'panthera'") != 1 ]]; then
        pg_sql 'CREATE ROLE panthera LOGIN CREATEDB' >/dev/null
    fi
    if [[ $(pg_sql "SELECT 1 FROM pg_database WHERE datname = 'panthera'") != 1 ]]; then
        pg_sql 'CREATE DATABASE panthera OWNER panthera' >/dev/null
    fi
}

pg_stop() {
    pg_running || return 0
    log "stopping PostgreSQL"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
}

redis_alive() {
    [[ -S $REDIS_SOCK ]] && [[ $(redis-cli -s "$REDIS_SOCK" ping 2>/dev/null) == PONG ]]
}

# Pid of the redis-server this script started, if it still runs.
redis_pid() {
    local pid
    pid=$(cat "$REDIS_PID" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(ps -o comm= -p "$pid" 2>/dev/null) == redis-server* ]] &&
        echo "$pid"
}

redis_start() {
    mkdir -p "$REDIS_DIR"
    cat >"$REDIS_CONF" <<CONF
# Written by scripts/dev; changes here are lost on the next start.
port 0
unixsocket "$REDIS_SOCK"
unixsocketperm 777
daemonize yes
pidfile "$REDIS_PID"
dir "$REDIS_DIR"
logfile "$REDIS_LOG"
save ""
appendonly no
CONF
    if redis_alive; then
        log "Redis already running ($REDIS_SOCK)"
        return 0
    fi
    log "starting Redis ($REDIS_SOCK)"
    redis-server "$REDIS_CONF" || die "redis-server failed (log: $REDIS_LOG)"
    local i
    for ((i = 0; i < 50; i++)); do
        redis_alive && return 0
        sleep 0.2
    done
    tail -n 20 "$REDIS_LOG" >&2 || true
    die "Redis is not answering on $REDIS_SOCK after 10 s (log: $REDIS_LOG)"
}

redis_stop() {
    local pid i
    pid=$(redis_pid) || { redis_alive || return 0; }
    log "stopping Redis"
    redis-cli -s "$REDIS_SOCK" shutdown nosave >/dev/null 2>&1 ||
        { [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null; } || true
    for ((i = 0; i < 50; i++)); do
        redis_alive || { [[ -n ${pid:-} ]] && pid_alive "$pid"; } || return 0
        sleep 0.2
    done
    warn "Redis did not stop within 10 s"
}

# Writes the file tests and tools source to reach the services, in the run
# directory and, when that is the /tmp fallback, in <repo>/.run as well.
write_env() {
    local file kv
    for file in "$ENV_FILE" "$LOCAL_RUN/env"; do
        for kv in "${SERVICE_ENV[@]}"; do
            printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
        done >"$file"
    done
}

services_start() {
    pg_start "$1"
    redis_start
    write_env
}

services_stop() {
    redis_stop
    pg_stop
}
