#!/usr/bin/env bash
# Instructions PostgreSQL spends on px_event_emit's statement, part by part: a count, not a
# time, so the shared machine's load does not move it (events.sh emit's rates swing by
# ±0.3 between rounds of one build there).
#
# A throw-away cluster (initdb in a temporary directory), one single-user backend
# (`postgres --single`, no client, no socket, fsync off) under callgrind, running N write
# transactions like evkit's POST /v1/evkit/write: BEGIN; the write's one-column insert;
# the emit; SELECT pg_sleep(0); COMMIT — each statement prepared once, then EXECUTEd. The
# schema is panthera_events' migrations, read from server/events.c, and the emit is
# events.c's sql_emit as this checkout has it. Each variant runs with N = 100 and 600, and
# the difference over 500 is the instructions per transaction (startup and schema cancel
# out). The baseline variant EXECUTEs a four-parameter SELECT in the emit's place, so
# what each other variant adds is the emit's own work beyond any statement's.
#
# Variants: none (the baseline), current, no-lock (the same INSERT without the advisory
# lock), id-plain (current, the id's default drawing without taking the transaction id
# first), json (current, payload json).
# Needs valgrind and PostgreSQL's server binaries (PANTHERA_PG_BIN, default
# /usr/lib/postgresql/15/bin); run as root it runs PostgreSQL as the postgres user.
# usage: tests/bench/emit_instr.sh [variant...]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd -P)
PG_BIN=${PANTHERA_PG_BIN:-/usr/lib/postgresql/15/bin}
command -v valgrind >/dev/null || { echo "error: valgrind not found" >&2; exit 1; }
TMP=$(mktemp -d /tmp/emit-instr.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
as_pg() {
    if ((EUID == 0)); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
((EUID != 0)) || chown postgres "$TMP"
as_pg "$PG_BIN/initdb" -D "$TMP/data" -A trust -U postgres --no-sync -E UTF8 --no-locale \
    >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; exit 1; }

# The statements of one run: schema, prepared statements, n transactions.
script() {
    python3 - "$REPO/tests/bench" "$1" "$2" <<'PY'
import re, sys
sys.path.insert(0, sys.argv[1])
from events_sql import SCHEMA, const
variant, n = sys.argv[2], int(sys.argv[3])
out = []
for part in SCHEMA:
    # plpgsql bodies ($$ ... $$) hold semicolons; none of them is on the emit's path
    # (a LOCK needs a transaction block, and nothing else runs here)
    out += [s.strip() for s in re.sub(r'CREATE FUNCTION.*?\$\$[^$]*\$\$', '', const(part)).split(';')
            if s.strip() and not s.strip().startswith('LOCK ')]
emit = const('sql_emit')
plain = "INSERT INTO panthera_events (type, aggregate_id, producer, payload) VALUES ($1, $2, $3, $4::jsonb)"
if variant == 'id-plain':
    out.append("ALTER TABLE panthera_events ALTER id SET DEFAULT nextval('panthera_events_id_seq')")
if variant == 'json':
    out.append("ALTER TABLE panthera_events ALTER payload TYPE json")
    emit = emit.replace('::jsonb', '::json')
emit = {'none': "SELECT $1, $2, $3, $4", 'no-lock': plain}.get(variant, emit)
out.append("CREATE TABLE evkit_writes (id bigserial PRIMARY KEY, aggregate_id text NOT NULL)")
out.append("PREPARE w(text) AS INSERT INTO evkit_writes (aggregate_id) VALUES ($1)")
out.append("PREPARE e(text, text, text, text) AS " + emit)
out.append("PREPARE s(text) AS SELECT pg_sleep($1::int / 1000.0)")
payload = '{"seq":0,"fail":false,"slow":false,"never_ack":false}'
for i in range(n):
    out += ["BEGIN", "EXECUTE w('b%d')" % i,
            "EXECUTE e('evkit.item.changed', 'b%d', 'evkit', '%s')" % (i, payload),
            "EXECUTE s('0')", "COMMIT"]
print('\n'.join(out))
PY
}

# Instructions of one single-user backend running one script.
instr() {
    local d=$TMP/$1-$2
    cp -a "$TMP/data" "$d"
    chmod 700 "$d"
    script "$1" "$2" >"$d.sql"
    as_pg valgrind --tool=callgrind --callgrind-out-file="$d.cg" "$PG_BIN/postgres" --single \
        -D "$d" -c fsync=off -c synchronous_commit=off postgres <"$d.sql" >"$d.log" 2>&1
    if grep -q "ERROR" "$d.log"; then
        grep -m3 "ERROR" "$d.log" >&2
        exit 1
    fi
    awk '/^(summary|totals):/ { print $2; exit }' "$d.cg"
    rm -rf "$d" "$d.cg"
}

variants=("$@")
((${#variants[@]})) || variants=(none current no-lock id-plain json)
[[ ${variants[0]} == none ]] || variants=(none "${variants[@]}")
base=
for v in "${variants[@]}"; do
    lo=$(instr "$v" 100)
    hi=$(instr "$v" 600)
    per=$(((hi - lo) / 500))
    [[ -n $base ]] || base=$per
    printf '%-14s %8d instructions per write transaction  %+7d against none\n' "$v" "$per" $((per - base))
done
