#!/usr/bin/env bash
# The content plugin at scale: 100,000 generated posts (BENCH_POSTS), then wrk at 64
# connections on search (GET /v1/posts?q=<two words>) and on the hot feed
# (GET /v1/feed?sort=hot, from the Redis sorted set), each reporting requests/s, p50/p99
# latency and the server's CPU time per request (utime + stime of master and workers from
# /proc, divided by the requests wrk counted). Finally EXPLAIN ANALYZE of the search's
# match, which must use the GIN index content_posts_search. Targets (issue 14): p99 <= 25 ms
# for search, <= 5 ms for the hot feed.
#
# BENCH_BASELINE=<build dir> (e.g. main built from `git archive main`) starts a second
# pantherad from that build on the same posts (its own hot set) and alternates the two in
# every round, so both are measured under the same load; each line says which it was and
# the load average when it ran.
#
# Needs the services of this checkout (scripts/dev services; the variables of .run/env are
# read from it when not set). The posts go into a database of their own, dropped at the end
# (BENCH_KEEP=1 keeps it and the temporary directory).
#
# Environment:
#   BENCH_POSTS     posts to generate (default 100000)
#   BENCH_SECONDS   length of one wrk run (default 10)
#   BENCH_CONNS     connections (default 64)
#   BENCH_THREADS   wrk threads (default 2)
#   BENCH_QUERY     the two words searched (default "w150 w300")
#   BENCH_ROUNDS    rounds (default 1; each measures every server once per route, and
#                   once more per route as a signed-in caller: "search-auth", "hot-auth")
#   BENCH_BASELINE  a second build to measure beside this one (see above)
#   BENCH_FLOOR     1 (default) also runs floor.c (tests/bench/lib.sh, start_floor; a
#                   canned answer, no work) once per round at the same connections: the
#                   p99 the machine allows at that moment, beside the p99 of the hot feed
#   BENCH_BASE_PORT its port (default 18484)
#   BENCH_DB        a database a previous run kept (BENCH_KEEP=1 prints it): its posts are
#                   used as they are, nothing generated, and it is kept again
#   BENCH_PX_PORT, BENCH_BUILD, BENCH_NO_BUILD: as hello.sh
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POSTS=${BENCH_POSTS:-100000}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64}
THREADS=${BENCH_THREADS:-2}
QUERY=${BENCH_QUERY:-w150 w300}
ROUNDS=${BENCH_ROUNDS:-1}
BASELINE=${BENCH_BASELINE:-}
BASE_PORT=${BENCH_BASE_PORT:-18484}

command -v wrk >/dev/null 2>&1 || die "wrk not found (apt-get install -y wrk)"
if [[ -z ${PANTHERA_PGHOST:-} && -f $REPO/.run/env ]]; then
    set -a
    # shellcheck disable=SC1091
    . "$REPO/.run/env"
    set +a
fi
[[ -n ${PANTHERA_PGHOST:-} && -n ${PANTHERA_REDIS_SOCKET:-} ]] ||
    die "no services: run scripts/dev services first"
PSQL=(/usr/lib/postgresql/15/bin/psql -X -q -tA -v ON_ERROR_STOP=1 -h "$PANTHERA_PGHOST"
      -p "${PANTHERA_PGPORT:-5432}" -U "${PANTHERA_PGUSER:-panthera}")
DB=${BENCH_DB:-bench_content_$$}
REUSE=${BENCH_DB:+1}
HOT_KEY=content:hot:bench:$$

cleanup() {
    stop_tree "${BASE_PID:-}"
    bench_cleanup
    if [[ ${BENCH_KEEP:-0} != 1 && -z $REUSE ]]; then
        "${PSQL[@]}" -d "${PANTHERA_PGDATABASE:-panthera}" \
            -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
        redis-cli -s "$PANTHERA_REDIS_SOCKET" DEL "$HOT_KEY" "$HOT_KEY:total" "$HOT_KEY:ver" \
            "$HOT_KEY:base" "$HOT_KEY:base:total" "$HOT_KEY:base:ver" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_init
[[ -f $BUILD/plugins/content/content.so ]] || die "no $BUILD/plugins/content/content.so"
[[ -z $BASELINE || -x $BASELINE/server/pantherad ]] || die "no $BASELINE/server/pantherad"
BASE_PID=

[[ -n $REUSE ]] ||
    "${PSQL[@]}" -d "${PANTHERA_PGDATABASE:-panthera}" -c "CREATE DATABASE $DB" >/dev/null
# start_server NAME BUILD PORT HOT_KEY: a pantherad with the user and content plugins on the
# bench database; prints its master's pid.
start_server() {
    local d=$BENCH_TMP/$1
    mkdir -p "$d/conf.d"
    head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48 >"$d/secret"
    cat >"$d/pantherad.conf" <<CONF
[server]
listen = 127.0.0.1:$3
workers = 2
plugin_path = $2/plugins
conf_dir = $d/conf.d
access_log = off
error_log = $d/error.log
pid_file = $d/pantherad.pid
[postgres]
conninfo = host=$PANTHERA_PGHOST port=${PANTHERA_PGPORT:-5432} dbname=$DB user=${PANTHERA_PGUSER:-panthera}
[redis]
address = unix:$PANTHERA_REDIS_SOCKET
[auth]
token_secret_file = $d/secret
[plugin:user]
[plugin:content]
hot_key = $4
CONF
    port_free "$3" || die "port $3 is in use (set BENCH_PX_PORT / BENCH_BASE_PORT)"
    timeout -s TERM -k 10 "$BENCH_MAX_LIFETIME" "$2/server/pantherad" -c "$d/pantherad.conf" \
        >"$d/stdout.log" 2>&1 &
    wait_pidfile "$d/pantherad.pid" || { cat "$d/stdout.log" "$d/error.log" >&2; die "$1 did not start"; }
    wait_http "http://127.0.0.1:$3/v1/posts" || die "GET /v1/posts does not answer ($1)"
    cat "$d/pantherad.pid"
}
PX_PID=$(start_server pantherad "$BUILD" "$PX_PORT" "$HOT_KEY")
[[ -n $PX_PID ]] || exit 1
if [[ -n $BASELINE ]]; then
    # Started second, after this build's migrations: both builds share the schema.
    BASE_PID=$(start_server baseline "$BASELINE" "$BASE_PORT" "$HOT_KEY:base")
    [[ -n $BASE_PID ]] || exit 1
fi

# The posts: words drawn log-uniformly from 50,000 ("w1" .. "w50000": word k has
# probability ~ 1/k, as in natural text), 3-7 title words and 30-120 body words, a tag,
# random authors and engagement, published over the last 90 days. The migration's trigger
# keeps content_words as for posts made through the API. The default query's two words
# are each in a few percent of the posts and together in about a thousandth: a
# selective query, as real searches are.
if [[ -n $REUSE ]]; then
    POSTS=$("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM content_posts")
    log "reusing $DB: $POSTS posts"
else
log "generating $POSTS posts"
t0=$(date +%s)
"${PSQL[@]}" -d "$DB" >/dev/null <<SQL
CREATE FUNCTION pg_temp.words(n integer, salt integer) RETURNS text LANGUAGE sql VOLATILE AS
\$\$ SELECT string_agg('w' || floor(exp(random() * ln(50000)))::int, ' ')
     FROM generate_series(1, n + salt * 0) \$\$;
INSERT INTO content_posts (id, author_id, kind, title, body, tags, status, published_at,
                           like_count, comment_count)
SELECT gen_random_uuid(), gen_random_uuid(), CASE WHEN i % 5 = 0 THEN 'article' ELSE 'post' END,
       pg_temp.words(3 + i % 5, i), pg_temp.words(30 + i % 90, i),
       ARRAY['t' || (i % 200)], 'published', now() - random() * interval '90 days',
       (random() ^ 4 * 500)::int, (random() ^ 4 * 50)::int
  FROM generate_series(1, $POSTS) i;
ANALYZE content_posts;
ANALYZE content_words;
SQL
log "generated in $(( $(date +%s) - t0 )) s"
[[ $("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM content_posts") == "$POSTS" ]] ||
    die "the posts were not all inserted"
fi

Q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$QUERY")
SEARCH=/v1/posts?q=$Q
HOT=/v1/feed?sort=hot
# The first hot request rebuilds the set from PostgreSQL; later ones read Redis.
warm_server() { # PORT HOT_KEY
    curl -s -o /dev/null "http://127.0.0.1:$1$HOT"
    for ((i = 0; i < 100; i++)); do
        [[ $(redis-cli -s "$PANTHERA_REDIS_SOCKET" ZCARD "$2") -gt 0 ]] && break
        sleep 0.1
    done
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$SEARCH") == 200 ]] ||
        die "search does not answer 200 (port $1)"
}
warm_server "$PX_PORT" "$HOT_KEY"
[[ -z $BASELINE ]] || warm_server "$BASE_PORT" "$HOT_KEY:base"

# A signed-in caller (likedByMe is theirs), who likes three of the hot page's posts and
# the search's first: since the overlay (plugins/content/overlay.c) they get the kept
# render with their likedByMe laid over it (main rendered their answers afresh), so the
# "-auth" runs measure that overlay, patching included.
token_for() { # PORT
    local name=bench_$$_$1 token id
    token=$(curl -sf -H 'Content-Type: application/json' \
        -d "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"Bench-pass-$$-x\"}" \
        "http://127.0.0.1:$1/v1/auth/register" |
        "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
    for id in $( { curl -sf "http://127.0.0.1:$1$HOT&limit=3"; echo; curl -sf "http://127.0.0.1:$1$SEARCH&limit=1"; } |
        "$PYTHON" -c 'import json,sys; [print(p["id"]) for l in sys.stdin if l.strip() for p in json.loads(l)["posts"]]'); do
        curl -sf -o /dev/null -X POST -H "Authorization: Bearer $token" \
            "http://127.0.0.1:$1/v1/posts/$id/like" || return 1
    done
    echo "$token"
}
TOKEN=$(token_for "$PX_PORT") || die "could not register a user"
BASE_TOKEN=
[[ -z $BASELINE ]] || BASE_TOKEN=$(token_for "$BASE_PORT") || die "could not register a user"

run() { # SERVER PID PORT NAME PATH [TOKEN]
    local out before after reqs
    local -a auth=()
    [[ -z ${6:-} ]] || auth=(-H "Authorization: Bearer $6")
    curl -s -o /dev/null "${auth[@]}" "http://127.0.0.1:$3$5" # warm
    wrk -t "$THREADS" -c "$CONNS" -d 2s "${auth[@]}" "http://127.0.0.1:$3$5" >/dev/null 2>&1 || true
    before=$(cpu_ticks "$2")
    out=$(wrk -t "$THREADS" -c "$CONNS" -d "${SECONDS_PER_RUN}s" --latency "${auth[@]}" \
        "http://127.0.0.1:$3$5")
    after=$(cpu_ticks "$2")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    printf '%-9s %-11s %10s %9s %9s %9s %12s %6s %s\n' "$1" "$4" \
        "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
        "$(awk '$1 == "50%" {print $2}' <<<"$out")" "$(awk '$1 == "99%" {print $2}' <<<"$out")" \
        "$reqs" \
        "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
            'BEGIN { printf "%.1f us", t / hz / n * 1e6 }')" \
        "$(cut -d' ' -f1 /proc/loadavg)" \
        "${non2xx:+non-2xx: $non2xx}"
}

log "query \"$QUERY\": $SEARCH; hot: $HOT; $CONNS connections, ${SECONDS_PER_RUN}s per run, $ROUNDS rounds"
printf '%-9s %-11s %10s %9s %9s %9s %12s %6s\n' server what "req/s" p50 p99 requests "CPU/request" load1
FLOOR=${BENCH_FLOOR:-1}
[[ $FLOOR == 0 ]] || start_floor 2
for ((round = 1; round <= ROUNDS; round++)); do
    [[ $FLOOR == 0 ]] || run floor "$FLOOR_PID" "$FLOOR_PORT" floor /v1/hello
    for what in search hot search-auth hot-auth; do
        path=$SEARCH
        [[ $what == hot* ]] && path=$HOT
        tok=
        [[ $what == *-auth ]] && tok=yes
        [[ -z $BASELINE ]] ||
            run baseline "$BASE_PID" "$BASE_PORT" "$what" "$path" "${tok:+$BASE_TOKEN}"
        run this "$PX_PID" "$PX_PORT" "$what" "$path" "${tok:+$TOKEN}"
    done
done
# What the workers' own copies answered (plugins/content/local.c); main has none.
log "this build's worker copies: $(curl -s "http://127.0.0.1:$PX_PORT/metrics" |
    awk '/^content_local_(hits|misses)_total/ {printf "%s %s  ", $1, $2}')"
log "EXPLAIN ANALYZE of the search's match"
"${PSQL[@]}" -d "$DB" <<SQL
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
SELECT id FROM content_posts p
 WHERE p.status = 'published' AND p.search @@ websearch_to_tsquery('content_search', '$QUERY')
 ORDER BY ts_rank_cd(p.search, websearch_to_tsquery('content_search', '$QUERY')) DESC,
          p.published_at DESC, p.id DESC
 LIMIT 10;
SQL
