# shellcheck shell=bash
# Builds and test steps for "scripts/dev test". Sourced by scripts/dev after
# common.sh and services.sh. Each step records its outcome in RESULTS (JUnit
# XML) or EXTRA (one "PASS name" / "FAIL name: why" line); a failing step never
# stops the next one. Only a failed build is fatal.

PYTHON=/usr/bin/python3

# Configures BUILD_DIR the first time (the remaining arguments go to meson
# setup), then builds it; ninja re-runs meson by itself when a meson.build changes.
# A directory configured earlier with other -D values (an old build-asan without
# -Dfuzz=true never fuzzes) is brought to these values first.
build_dir() {
    local dir=$1
    shift
    if [[ ! -f $REPO/$dir/meson-private/coredata.dat ]]; then
        log "configuring $dir"
        meson setup "$REPO/$dir" "$REPO" "$@" || die "meson setup of $dir failed"
    elif ! options_match "$dir" "$@"; then
        log "reconfiguring $dir: its options differ from $*"
        meson configure "$REPO/$dir" "$@" || die "meson configure of $dir failed"
    fi
    log "building $dir"
    ninja -C "$REPO/$dir" || die "build of $dir failed"
}

# True when every -Dname=value and --buildtype=value among the arguments is what DIR
# is configured with now (meson introspect), so a configured tree is left alone.
options_match() {
    local dir=$1
    shift
    meson introspect "$REPO/$dir" --buildoptions | "$PYTHON" -c '
import json, sys
have = {o["name"]: o["value"] for o in json.load(sys.stdin)}
for arg in sys.argv[1:]:
    name, _, want = arg.lstrip("-").removeprefix("D").partition("=")
    value = have.get(name)
    shown = str(value).lower() if isinstance(value, bool) else ",".join(value) if isinstance(value, list) else str(value)
    if shown != want:
        sys.exit(1)
' "$@"
}

# Link-time optimisation, as the Debian package is built (debian/rules, optimize=+lto):
# the tests run the code that ships. LTO inlines across the host's files (the parser's
# callbacks, the response and log writers): 10 % fewer instructions per request.
build_release() {
    build_dir build --buildtype=release -Dwerror=true -Db_lto=true
}

build_asan() {
    CC=clang build_dir build-asan -Dbuildtype=debug -Db_sanitize=address,undefined \
        -Db_lundef=false -Dwerror=true -Dfuzz=true -Dc_args=-fno-sanitize-recover=all
}

# A step that could not run at all: a failure under CI=true (a green CI run must have run
# everything), a visible SKIP line elsewhere.
not_run() {
    local step=$1 why=$2
    if [[ ${CI:-} == true ]]; then
        echo "FAIL $step: $why" >>"$EXTRA"
    else
        warn "$why: step $step skipped"
        echo "SKIP $step: $why" >>"$EXTRA"
    fi
}

# A step that exited non-zero without a failed case in its XML (a crash before
# the report, a runner error) still counts as one failure.
record_exit() {
    local step=$1 rc=$2 xml=$3
    ((rc == 0)) && return 0
    if [[ $("$PYTHON" "$REPO/tests/summary.py" --failures "$xml") == 0 ]]; then
        echo "FAIL $step: exited with status $rc and reported no failed test" >>"$EXTRA"
    fi
}

# meson test --suite unit in BUILD_DIR, report in RESULTS/NAME.xml.
step_unit() {
    local dir=$1 name=$2 rc=0
    log "step $name: meson test -C $dir --suite unit"
    rm -f "$REPO/$dir/meson-logs/testlog.junit.xml" "$REPO/$dir/meson-logs/testlog.json"
    meson test -C "$REPO/$dir" --suite unit --print-errorlogs || rc=$?
    "$PYTHON" "$REPO/tests/summary.py" --meson-junit "$REPO/$dir" "$RESULTS/$name.xml" || rc=$?
    record_exit "$name" "$rc" "$RESULTS/$name.xml"
}

# pytest tests/api against the server built in BUILD_DIR, with the services' env.
step_api() {
    local dir=$1 name=$2 rc=0
    log "step $name: pytest tests/api (PANTHERA_BUILD=$REPO/$dir)"
    if [[ ! -d $REPO/tests/api ]]; then
        not_run "$name" "tests/api does not exist"
        return 0
    fi
    (cd "$REPO" && env "PANTHERA_BUILD=$REPO/$dir" "${SERVICE_ENV[@]}" \
        "$PYTHON" -m pytest -q -rs tests/api --junitxml="$RESULTS/$name.xml") || rc=$?
    # 5 is pytest's "no tests collected": summary.py fails an empty results file under
    # CI=true; elsewhere it only says "no test ran".
    ((rc == 5)) && rc=0
    record_exit "$name" "$rc" "$RESULTS/$name.xml"
}

# The web console in Debian's chromium (tests/browser: playwright-core from node_modules,
# never a downloaded browser), against the server built in BUILD_DIR; one case per flow.
step_browser() {
    local dir=$1 name=$2 rc=0
    log "step $name: pytest tests/browser (chromium, PANTHERA_BUILD=$REPO/$dir)"
    if [[ ! -x /usr/bin/chromium ]]; then
        not_run "$name" "/usr/bin/chromium is missing (Debian package chromium)"
        return 0
    fi
    (cd "$REPO" && env "PANTHERA_BUILD=$REPO/$dir" "PANTHERA_BROWSER_OUT=$RESULTS/browser" \
        "${SERVICE_ENV[@]}" "$PYTHON" -m pytest -q -rs tests/browser \
        --junitxml="$RESULTS/$name.xml") || rc=$?
    record_exit "$name" "$rc" "$RESULTS/$name.xml"
}

# libFuzzer on the HTTP parser for PANTHERA_FUZZ_SECONDS; one pass or one failure.
step_fuzz() {
    local bin=$REPO/build-asan/tests/fuzz/fuzz_http
    local seconds=${PANTHERA_FUZZ_SECONDS:-120} corpus rc=0 crash args
    local logfile=$LOCAL_RUN/logs/fuzz_http.log
    if [[ ! -x $bin ]]; then
        not_run fuzz_http "build-asan/tests/fuzz/fuzz_http is not built"
        return 0
    fi
    log "step fuzz: fuzz_http for ${seconds}s (log: $logfile)"
    mkdir -p "$REPO/tests/fuzz/crashes" "$LOCAL_RUN/logs"
    # A copy, so the inputs libFuzzer adds do not land in the tree.
    corpus=$(mktemp -d "${TMPDIR:-/tmp}/panthera-corpus.XXXXXX")
    if [[ -d $REPO/tests/fuzz/corpus ]]; then
        cp -R "$REPO/tests/fuzz/corpus/." "$corpus/"
    fi
    args=(-max_total_time="$seconds" -timeout=10 -artifact_prefix=tests/fuzz/crashes/
        -print_final_stats=1)
    if [[ -f $REPO/tests/fuzz/http.dict ]]; then
        args+=(-dict=tests/fuzz/http.dict)
    fi
    (cd "$REPO" && "$bin" "${args[@]}" "$corpus") >"$logfile" 2>&1 || rc=$?
    rm -rf "$corpus"
    if ((rc == 0)); then
        grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )' "$logfile" || true
        echo "PASS fuzz_http: ${seconds}s without a crash" >>"$EXTRA"
        return 0
    fi
    tail -n 60 "$logfile"
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logfile" | tail -n 1)
    if [[ -n $crash ]]; then
        warn "fuzz_http found a crashing input: $crash"
        warn "fix the bug, then commit that file under tests/fuzz/crashes/ so the"
        warn "ordinary test suite replays it from now on"
        echo "FAIL fuzz_http: crashing input $crash" >>"$EXTRA"
    else
        echo "FAIL fuzz_http: exited with status $rc (log: $logfile)" >>"$EXTRA"
    fi
}

# The Debian packages, built, linted, installed, run and purged on this machine
# (tests/packaging/run.sh; needs root or sudo); one pass or one failure.
step_packaging() {
    local logfile=$LOCAL_RUN/logs/packaging.log rc=0
    log "step packaging: tests/packaging/run.sh (log: $logfile)"
    mkdir -p "$LOCAL_RUN/logs"
    if ((EUID == 0)); then
        env "${SERVICE_ENV[@]}" "$REPO/tests/packaging/run.sh" >"$logfile" 2>&1 || rc=$?
    else
        as_root env "${SERVICE_ENV[@]}" "$REPO/tests/packaging/run.sh" >"$logfile" 2>&1 || rc=$?
    fi
    grep -E '^(FAIL|packaging test took)' "$logfile" || true
    if ((rc == 0)); then
        echo "PASS packaging: $(tail -n 1 "$logfile")" >>"$EXTRA"
    else
        tail -n 40 "$logfile"
        echo "FAIL packaging: $(tail -n 1 "$logfile") (log: $logfile)" >>"$EXTRA"
    fi
}
