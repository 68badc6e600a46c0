#!/usr/bin/env bash
# The Debian packaging, end to end, on this machine (it installs into /usr and /etc and
# purges everything again at the end):
#   build the packages from a clean copy of the checkout; lintian (no error, no warning);
#   apt-get install ./*.deb; pantherad -t with the installed config; the installed server
#   in the foreground (as the panthera user) against the test PostgreSQL and Redis answers
#   /readyz; panthera-plugin disable/enable + SIGHUP removes/restores a plugin's routes;
#   removing/reinstalling a plugin package disables/enables it and reloads the server; a
#   plugin disabled by the admin stays disabled through a reinstall; the example plugin
#   and panthera-plugin-new's skeleton build with only panthera-dev and load; a plugin
#   built for ABI major+1 is refused, and so is its package; a third party's plugin package
#   built with dh_panthera from panthera-dev for a newer minor than the host's depends on
#   it and is refused, as is its .so at load; the installed man pages render without a
#   warning; panthera-plugin enable refuses a plugin whose .so is gone; systemd-analyze
#   verify is silent; remove and purge leave nothing but the admin's own file. Then, in a
#   mount namespace where /run/systemd/system exists and systemctl/deb-systemd-invoke are
#   stubs that record their calls, install, upgrade, reinstall, remove and purge, checking
#   what each maintainer script asked of systemd.
# Needs root (or sudo), and PostgreSQL and Redis from `scripts/dev services` (started
# here when .run/env is missing). Ends with "N passed, N failed"; exit 1 on a failure.
# PANTHERA_PKG_PORT: the port the installed server listens on (default: a free one).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# A port nobody listens on (a fixed one may be taken by another checkout's server, which
# would then answer this test's requests).
PORT=${PANTHERA_PKG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/panthera-pkgtest.XXXXXX")
chmod 755 "$WORK"
BASE=http://127.0.0.1:$PORT
# Every binary package of debian/control: a new plugin package is built, linted, installed,
# checked (ABI dependency, maintainer scripts, README) and purged like the others.
mapfile -t PKGS < <(sed -n 's/^Package: *//p' "$REPO/packaging/deb/debian/control")
PLUGIN_PKGS=()
for p in "${PKGS[@]}"; do [[ $p == panthera-plugin-* ]] && PLUGIN_PKGS+=("$p"); done
DB=panthera_pkgtest
ADMIN_FILE=/etc/panthera/conf.d/90-admin-own.conf
PASSED=0 FAILED=0 SERVER_PID=
START=$(date +%s)

if ((EUID != 0)); then
    exec sudo -E bash "$0" "$@"
fi

log() { printf '==> %s\n' "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*"; }
check() { # check "description" command...
    local what=$1; shift
    if "$@" >"$WORK/out" 2>&1; then pass "$what"; else fail "$what"; sed 's/^/    /' "$WORK/out" | tail -n 25; fi
}
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE$1" || true; }
# wait_code PATH CODE [SECONDS]: poll until PATH answers CODE.
wait_code() {
    local i n=$((${3:-20} * 10)) c
    for ((i = 0; i < n; i++)); do
        c=$(http_code "$1")
        [[ $c == "$2" ]] && return 0
        sleep 0.1
    done
    echo "$1 answered $c, wanted $2" >&2
    return 1
}
psql_admin() { psql -X -q -h "$PANTHERA_PGHOST" -p "$PANTHERA_PGPORT" -U postgres -d postgres "$@"; }

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

installed_pkgs() {
    dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PKGS[@]}" panthera-plugin-future \
        panthera-plugin-newer \
        2>/dev/null | awk '$2 ~ /^[ihrc]/ {print $1}'
}

cleanup() {
    stop_server
    local left
    left=$(installed_pkgs)
    if [[ -n $left ]]; then
        # shellcheck disable=SC2086
        dpkg --purge $left >/dev/null 2>&1 || true
    fi
    rm -f "$ADMIN_FILE"
    rm -rf /usr/local/lib/panthera
    rmdir /etc/panthera/conf.d /etc/panthera 2>/dev/null || true
    if getent passwd panthera >/dev/null; then deluser --quiet --system panthera >/dev/null 2>&1 || true; fi
    if getent group panthera >/dev/null; then delgroup --quiet --system panthera >/dev/null 2>&1 || true; fi
    [[ -n ${PANTHERA_PGHOST:-} ]] && psql_admin -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- preconditions ----
need=()
for p in debhelper lintian dpkg-dev fakeroot curl postgresql-client-15 build-essential; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || need+=("$p")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if [[ -z ${PANTHERA_PGHOST:-} ]]; then
    [[ -f $REPO/.run/env ]] || "$REPO/scripts/dev" services >/dev/null
    set -a; . "$REPO/.run/env"; set +a
fi
if [[ -n $(installed_pkgs) ]]; then
    log "purging panthera packages left from an earlier run"
    # shellcheck disable=SC2046
    dpkg --purge $(installed_pkgs) >/dev/null 2>&1
fi

# ---- build ----
log "building the packages in $WORK (log: $WORK/build.log)"
mkdir -p "$WORK/src"
(cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$WORK/src")
# nocheck: the unit suite the build would run again has just run in scripts/dev test.
build() { cd "$WORK/src" && cp -a packaging/deb/debian . && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; return 1; }; }
check "dpkg-buildpackage -us -uc -b builds the packages" build
DEBS=()
declare -A DEB
for p in "${PKGS[@]}"; do
    DEB[$p]=$(ls "$WORK"/"${p}"_*.deb 2>/dev/null | head -n1)
    DEBS+=("${DEB[$p]}")
done
all_built() { for p in "${PKGS[@]}"; do test -s "${DEB[$p]}" || { echo "no $p"; return 1; }; done; }
check "every package of debian/control was built: ${PKGS[*]}" all_built
if ((FAILED)); then echo "$PASSED passed, $FAILED failed"; exit 1; fi

run_lintian() {
    lintian --fail-on error,warning --tag-display-limit 0 \
        "$WORK"/panthera_*.changes 2>&1 | grep -v 'running with root privileges' | tee "$WORK/lintian.txt"
    return "${PIPESTATUS[0]}"
}
check "lintian: no errors, no warnings" run_lintian
sed 's/^/    lintian: /' "$WORK/lintian.txt"

abi=$(sed -n 's/^#define PX_ABI_MAJOR \([0-9]*\).*/\1/p' "$REPO/sdk/panthera.h")
minor=$(sed -n 's/^#define PX_ABI_MINOR \([0-9]*\).*/\1/p' "$REPO/sdk/panthera.h")
check "panthera Provides panthera-abi-$abi (= $abi.$minor)" \
    bash -c "dpkg-deb -f '${DEB[panthera]}' Provides | grep -qxF 'panthera-abi-$abi (= $abi.$minor)'"
# hello and user are built against this header without PX_MIN_MINOR: they need $abi.$minor.
plugin_debs() { # plugin_debs CHECK: CHECK DEB PACKAGE for each plugin package, all must pass
    local p
    for p in "${PLUGIN_PKGS[@]}"; do "$1" "${DEB[$p]}" "$p" || { echo "$p: $1 failed"; return 1; }; done
}
abi_dep() { dpkg-deb -f "$1" Depends | grep -qF "panthera-abi-$abi (>= $abi.$minor)"; }
check "dh_panthera made the plugin packages Depend on panthera-abi-$abi (>= $abi.$minor)" plugin_debs abi_dep
check "panthera records the node-llhttp sources it compiles in (Built-Using) and their licence" \
    bash -c "dpkg-deb -f '${DEB[panthera]}' Built-Using | grep -qE '^node-undici \\(= .+\\)\$' &&
        dpkg-deb --fsys-tarfile '${DEB[panthera]}' | tar -xO ./usr/share/doc/panthera/copyright | grep -q 'Fedor Indutny'"
from_template() {
    local f
    for f in postinst prerm postrm; do
        dpkg-deb --ctrl-tarfile "$1" | tar -xO "./$f" | grep -q 'Automatically added by dh_panthera' || return 1
    done
}
check "the plugin packages' maintainer scripts come from dh_panthera's template" plugin_debs from_template

# ---- install ----
check "apt-get install ./*.deb" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${DEBS[@]}"
check "a system user panthera exists with /var/lib/panthera" \
    bash -c 'getent passwd panthera | grep -q :/var/lib/panthera: && test -d /var/lib/panthera'
check "the token secret is root:panthera 0640 and was generated" \
    bash -c '[[ $(stat -c %U:%G:%a /etc/panthera/token_secret) == root:panthera:640 && $(wc -c </etc/panthera/token_secret) -ge 32 ]]'
check "no secret ships in the package" bash -c "! dpkg-deb -c '${DEB[panthera]}' | grep -q token_secret"
check "installing the plugin packages enabled them (links in conf.d)" \
    bash -c '[[ $(readlink /etc/panthera/conf.d/10-hello.conf) == ../plugins-available/10-hello.conf && -L /etc/panthera/conf.d/20-user.conf ]]'
check "pkg-config panthera-sdk has plugindir, confdir, abi_major, abi_minor" \
    bash -c "[[ \$(pkg-config --variable=abi_major panthera-sdk) == $abi && -d \$(pkg-config --variable=plugindir panthera-sdk) && \$(pkg-config --variable=confdir panthera-sdk) == /etc/panthera && -n \$(pkg-config --variable=abi_minor panthera-sdk) ]]"
check "man pages pantherad(8), pantherad.conf(5), panthera-lua(7), panthera-plugin(8) are installed" \
    bash -c 'man -w pantherad && man -w 5 pantherad.conf && man -w 7 panthera-lua && man -w panthera-plugin && man -w dh_panthera && man -w panthera-plugin-abi'
man_clean() {
    local page out rc=0
    for page in $(dpkg -L "${PKGS[@]}" | grep -E '^/usr/share/man/man[0-9]/.+\.gz$'); do
        out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)
        [[ -z $out ]] || { echo "$page:"; echo "$out"; rc=1; }
    done
    return $rc
}
check "every installed man page renders with man -l without a warning" man_clean
readme() { ls /usr/share/doc/"$2"/README.md* >/dev/null; }
docs() {
    test -s /usr/share/doc/panthera/operator-guide.md.gz && ! test -e /usr/share/doc/panthera/README.md.gz &&
        plugin_debs readme
}
check "the operator's guide (not the developer README) and each plugin's README are installed" docs

# ---- configure (README: "Installing from the Debian packages") ----
psql_admin -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
psql_admin -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'panthera') THEN CREATE ROLE panthera LOGIN; END IF; END\$\$" >/dev/null
check "CREATE DATABASE $DB OWNER panthera" psql_admin -c "CREATE DATABASE $DB OWNER panthera"
sed -i -e "s|^listen = .*|listen = 127.0.0.1:$PORT|" \
    -e "s|^conninfo = .*|conninfo = host=$PANTHERA_PGHOST port=$PANTHERA_PGPORT dbname=$DB user=panthera|" \
    -e "s|^address = .*|address = unix:$PANTHERA_REDIS_SOCKET|" \
    -e "s|^workers = .*|workers = 2|" /etc/panthera/pantherad.conf
printf '# An administrator'"'"'s own drop-in: purge must leave it alone.\n' >"$ADMIN_FILE"
check "pantherad -t passes with the installed config (as the panthera user)" \
    runuser -u panthera -- pantherad -t
check "systemd-analyze verify panthera.service prints nothing on stderr" \
    bash -c 'err=$(systemd-analyze verify /lib/systemd/system/panthera.service 2>&1 >/dev/null); [[ -z $err ]] || { echo "$err"; false; }'

# ---- the installed server, in the foreground ----
[[ -d /run/panthera ]] || systemd-tmpfiles --create panthera.conf
runuser -u panthera -- pantherad -c /etc/panthera/pantherad.conf >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
if wait_code /readyz 200 30 2>"$WORK/out"; then
    pass "the installed server starts (as panthera) and /readyz answers 200"
else
    fail "the installed server starts (as panthera) and /readyz answers 200"
    tail -n 30 "$WORK/server.log" | sed 's/^/    /'
fi
check "GET /v1/hello answers 200" wait_code /v1/hello 200 5
check "GET /app/projects answers the console's shell (panthera-plugin-console)" \
    bash -c "$(declare -f http_code wait_code); BASE=$BASE; wait_code /app/projects 200 5 && curl -fsS $BASE/assets/app.js | grep -q 'import'"
check "panthera-plugin disable hello + SIGHUP: /v1/hello is 404" \
    bash -c "panthera-plugin disable hello && kill -HUP \$(cat /run/panthera/pantherad.pid) && $(declare -f http_code wait_code); BASE=$BASE; wait_code /v1/hello 404 15"
check "panthera-plugin enable hello + SIGHUP: /v1/hello is 200 again" \
    bash -c "panthera-plugin enable hello && kill -HUP \$(cat /run/panthera/pantherad.pid) && $(declare -f http_code wait_code); BASE=$BASE; wait_code /v1/hello 200 15"
check "panthera-plugin list shows both plugins enabled" \
    bash -c 'panthera-plugin list | grep -Eq "^hello +enabled" && panthera-plugin list | grep -Eq "^user +enabled"'
mkdir -p /etc/panthera/plugins-available
printf '# depends: nosuchplugin\n[plugin:needy]\n' >/etc/panthera/plugins-available/60-needy.conf
check "panthera-plugin enable refuses a plugin whose dependencies are not enabled" \
    bash -c 'out=$(panthera-plugin enable needy 2>&1); rc=$?; echo "$out"; ((rc != 0)) && [[ $out == *nosuchplugin* && ! -e /etc/panthera/conf.d/60-needy.conf ]]'
rm -f /etc/panthera/plugins-available/60-needy.conf
check "apt-get remove panthera-plugin-hello disables it and reloads: /v1/hello 404" \
    bash -c "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q panthera-plugin-hello && [[ ! -e /etc/panthera/conf.d/10-hello.conf ]] && $(declare -f http_code wait_code); BASE=$BASE; wait_code /v1/hello 404 15"
check "apt-get install panthera-plugin-hello again enables it and reloads: /v1/hello 200" \
    bash -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q '${DEB[panthera-plugin-hello]}' && $(declare -f http_code wait_code); BASE=$BASE; wait_code /v1/hello 200 15"
check "a plugin the admin disabled stays disabled through remove + reinstall" \
    bash -c "panthera-plugin -q disable hello && DEBIAN_FRONTEND=noninteractive apt-get remove -y -q panthera-plugin-hello && DEBIAN_FRONTEND=noninteractive apt-get install -y -q '${DEB[panthera-plugin-hello]}' && [[ ! -e /etc/panthera/conf.d/10-hello.conf ]] && panthera-plugin -q enable hello && hup_pid=\$(cat /run/panthera/pantherad.pid) && kill -HUP \$hup_pid && $(declare -f http_code wait_code); BASE=$BASE; wait_code /v1/hello 200 15"

# ---- the plugin author's kit, with only panthera-dev installed ----
oot() {
    cp -r /usr/share/doc/panthera-dev/examples/hello "$WORK/oot"
    make -C "$WORK/oot" && test -f "$WORK/oot/hello.so" || return 1
    mkdir -p "$WORK/ootconf/conf.d"
    printf '[server]\nlisten = 127.0.0.1:%s\n[plugin:hello]\nload = %s\n' "$((PORT + 1))" "$WORK/oot/hello.so" \
        >"$WORK/ootconf/pantherad.conf"
    pantherad -t -c "$WORK/ootconf/pantherad.conf"
}
check "the example plugin builds out of tree (pkg-config panthera-sdk) and loads" oot
skel() {
    cd "$WORK" && panthera-plugin-new skel && make -C skel && make -C skel install &&
        test -f /usr/local/lib/panthera/plugins/skel.so &&
        ! dpkg -S /usr/local/lib/panthera/plugins/skel.so 2>/dev/null &&
        panthera-plugin enable skel && kill -HUP "$(cat /run/panthera/pantherad.pid)" &&
        wait_code /v1/skel/items 200 15 && PANTHERA_URL=$BASE make -C skel check &&
        pantherad -t >"$WORK/skel-t.out" 2>&1 &&
        grep -q 'skel 0.1.0 (/usr/local/lib/panthera/plugins/skel.so)' "$WORK/skel-t.out" ||
        { cat "$WORK/skel-t.out"; return 1; }
}
check "panthera-plugin-new's skeleton builds, installs under /usr/local, is found along the default plugin_path and passes its make check" skel
panthera-plugin -q disable skel >/dev/null 2>&1
gone() {
    rm -f /usr/local/lib/panthera/plugins/skel.so
    local out
    out=$(panthera-plugin enable skel 2>&1) && { echo "$out"; return 1; }
    echo "$out"
    [[ $out == *'cannot find skel.so along plugin_path'* && ! -e /etc/panthera/conf.d/50-skel.conf ]]
}
check "panthera-plugin enable refuses a plugin whose .so was removed, quoting pantherad" gone
rm -f /etc/panthera/plugins-available/50-skel.conf /var/lib/panthera/plugin-state/skel.*
rm -rf /usr/local/lib/panthera
kill -HUP "$(cat /run/panthera/pantherad.pid)"

future() {
    cat >"$WORK/future.c" <<'EOC'
#include <panthera/panthera.h>
static int init(px_plugin_t *self) { (void)self; return 0; }
PX__HIDDEN const px_api_t *px_api;
PX__EXPORT const px_plugin_info_t px_plugin_info = {
    PX_PLUGIN_MAGIC, PX_ABI_MAJOR + 1, 0, "future", "1.0.0", NULL, &px_api, init, NULL};
EOC
    # shellcheck disable=SC2046 # pkg-config prints several words, split on purpose
    cc -shared -fPIC $(pkg-config --cflags panthera-sdk) "$WORK/future.c" -o "$WORK/future.so" \
        $(pkg-config --libs panthera-sdk) -Wl,--no-undefined || return 1
    printf '[plugin:future]\nload = %s\n' "$WORK/future.so" >"$WORK/future.conf"
    printf '[server]\nlisten = 127.0.0.1:%s\nconf_dir = %s\n' "$((PORT + 1))" "$WORK/futureconf" \
        >"$WORK/future-main.conf"
    mkdir -p "$WORK/futureconf" && cp "$WORK/future.conf" "$WORK/futureconf/"
    if pantherad -t -c "$WORK/future-main.conf" >"$WORK/future.out" 2>&1; then
        cat "$WORK/future.out"; return 1
    fi
    cat "$WORK/future.out"
    grep -q "not binary compatible" "$WORK/future.out"
}
check "a plugin built for ABI major $((abi + 1)) is refused at load" future
future_deb() {
    local d=$WORK/futuredeb
    mkdir -p "$d/DEBIAN"
    printf 'Package: panthera-plugin-future\nVersion: 1.0\nArchitecture: all\nMaintainer: Test <test@panthera.dev>\nDepends: panthera-abi-%s\nDescription: test\n test\n' \
        "$((abi + 1))" >"$d/DEBIAN/control"
    dpkg-deb --build "$d" "$WORK/panthera-plugin-future_1.0_all.deb" >/dev/null || return 1
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$WORK/panthera-plugin-future_1.0_all.deb"; then
        return 1
    fi
    ! dpkg-query -W -f='${Status}' panthera-plugin-future 2>/dev/null | grep -q installed
}
check "a plugin package for panthera-abi-$((abi + 1)) cannot be installed beside this host" future_deb

# A third party's plugin package, built with nothing but panthera-dev and debhelper: its
# plugin needs SDK $abi.$((minor + 1)), newer than this host's (a descriptor written by hand,
# as a newer header's PX_PLUGIN() would make it). dh_panthera must read that out of the .so.
newer_pkg() {
    local d=$WORK/newer
    mkdir -p "$d/debian/source"
    cat >"$d/newer.c" <<EOC
#include <panthera/panthera.h>
static int init(px_plugin_t *self) { (void)self; return 0; }
PX__HIDDEN const px_api_t *px_api;
PX__EXPORT const px_plugin_info_t px_plugin_info = {
    PX_PLUGIN_MAGIC, PX_ABI_MAJOR, PX_ABI_MINOR + 1, "newer", "1.0.0", NULL, &px_api, init, NULL};
EOC
    printf '[plugin:newer]\n' >"$d/50-newer.conf"
    printf '%s\n' 'newer.so: newer.c' \
        '	$(CC) $(CFLAGS) -fPIC -shared $(shell pkg-config --cflags panthera-sdk) -o $@ $< $(LDFLAGS) -Wl,--no-undefined $(shell pkg-config --libs panthera-sdk)' \
        'clean:' '	rm -f newer.so' >"$d/Makefile"
    cat >"$d/debian/control" <<'EOC'
Source: panthera-plugin-newer
Section: httpd
Priority: optional
Maintainer: Test <test@panthera.dev>
Build-Depends: debhelper-compat (= 13), dh-sequence-panthera
Standards-Version: 4.6.2
Rules-Requires-Root: no

Package: panthera-plugin-newer
Architecture: any
Depends: ${misc:Depends}, ${shlibs:Depends}, ${panthera:Depends}
Description: test plugin built for a newer SDK minor
 Test.
EOC
    printf 'panthera-plugin-newer (1.0-1) unstable; urgency=medium\n\n  * Test.\n\n -- Test <test@panthera.dev>  Sat, 05 Dec 2026 00:00:00 +0000\n' \
        >"$d/debian/changelog"
    printf '#!/usr/bin/make -f\n%%:\n\tdh $@\n' >"$d/debian/rules"
    chmod +x "$d/debian/rules"
    echo '3.0 (native)' >"$d/debian/source/format"
    printf 'newer.so usr/lib/${DEB_HOST_MULTIARCH}/panthera/plugins/\n50-newer.conf etc/panthera/plugins-available/\n' \
        >"$d/debian/panthera-plugin-newer.install"
    (cd "$d" && dpkg-buildpackage -us -uc -b >"$WORK/newer-build.log" 2>&1) || { tail -n 30 "$WORK/newer-build.log"; return 1; }
    local deb
    deb=$(ls "$WORK"/panthera-plugin-newer_1.0-1_*.deb) || return 1
    dpkg-deb -f "$deb" Depends
    dpkg-deb -f "$deb" Depends | grep -qF "panthera-abi-$abi (>= $abi.$((minor + 1)))" || return 1
    # The installed addon's template, with this plugin's name and drop-in filled in.
    dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst | grep -q 'panthera-plugin --maint enable newer' || return 1
    dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./prerm | grep -q '/etc/panthera/conf.d/50-newer.conf' || return 1
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb"; then return 1; fi
    dpkg-query -W -f='${Status}' panthera-plugin-newer 2>/dev/null | grep -q installed && return 1
    # ... and the same .so, loaded by hand, is refused with the versions and the fix.
    dpkg-deb -x "$deb" "$d/root"
    printf '[server]\nlisten = 127.0.0.1:%s\nconf_dir = %s\n' "$((PORT + 1))" "$d/conf.d" >"$d/main.conf"
    mkdir -p "$d/conf.d"
    printf '[plugin:newer]\nload = %s\n' "$(ls "$d"/root/usr/lib/*/panthera/plugins/newer.so)" >"$d/conf.d/50-newer.conf"
    local out
    out=$(pantherad -t -c "$d/main.conf" 2>&1) && { echo "$out"; return 1; }
    echo "$out"
    [[ $out == *"needs SDK ABI $abi.$((minor + 1)), this host has ABI $abi.$minor"* ]]
}
check "a plugin package built with dh_panthera for SDK $abi.$((minor + 1)) depends on it, is refused by apt, and its .so by pantherad" newer_pkg
check "the server still answers /readyz after all the reloads" wait_code /readyz 200 10
stop_server

# ---- remove and purge ----
check "apt-get remove removes the programs and the conf.d links" \
    bash -c "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q ${PKGS[*]} && [[ ! -e /usr/sbin/pantherad && ! -e /etc/panthera/conf.d/10-hello.conf && ! -L /etc/panthera/conf.d/20-user.conf ]]"
check "dpkg --purge leaves nothing but the admin's own file" \
    bash -c "dpkg --purge ${PKGS[*]} >/dev/null &&
        left=\$(find /etc/panthera /var/lib/panthera /var/log/panthera /run/panthera /usr/include/panthera \
            /usr/lib/*/panthera /usr/share/doc/panthera* /lib/systemd/system/panthera.service \
            /etc/systemd/system/multi-user.target.wants/panthera.service /etc/logrotate.d/panthera \
            /usr/lib/tmpfiles.d/panthera.conf 2>/dev/null | sort | tr '\n' ' ') &&
        echo \"left: \$left\" &&
        [[ \$left == '/etc/panthera /etc/panthera/conf.d /etc/panthera/conf.d/90-admin-own.conf ' ]]"

# ---- what the maintainer scripts ask of systemd ----
# systemd is not PID 1 here, so the scripts' systemd calls are replayed in a private mount
# namespace where /run/systemd/system exists (the scripts' test for a running systemd)
# and systemctl and deb-systemd-invoke are stubs on PATH that record each call (the
# offline `systemctl --root=/ preset` that deb-systemd-helper runs goes on to the real
# one). "The service is running" is a file the stub's is-active consults.
STUB=$WORK/stub
mkdir -p "$STUB"
cat >"$STUB/systemctl" <<'EOS'
#!/bin/sh
echo "systemctl $*" >>"$SYSTEMD_CALLS"
case " $* " in
    *" --root="*) exec /usr/bin/systemctl "$@" ;;
    *" is-active "*) [ -e "$SYSTEMD_ACTIVE" ] ;;
esac
EOS
cat >"$STUB/deb-systemd-invoke" <<'EOS'
#!/bin/sh
echo "deb-systemd-invoke $*" >>"$SYSTEMD_CALLS"
EOS
chmod +x "$STUB/systemctl" "$STUB/deb-systemd-invoke"
# The upgrade: the same panthera with a higher version.
ver=$(dpkg-deb -f "${DEB[panthera]}" Version)
dpkg-deb -R "${DEB[panthera]}" "$WORK/up"
sed -i "s/^Version: .*/Version: $ver+up1/" "$WORK/up/DEBIAN/control"
dpkg-deb -b "$WORK/up" "$WORK/panthera-upgrade.deb" >/dev/null
cat >"$WORK/systemd-paths.sh" <<EOS
set -u
mount -t tmpfs none /run/systemd && mkdir /run/systemd/system || exit 1
export PATH=$STUB:\$PATH SYSTEMD_ACTIVE=$WORK/active DEBIAN_FRONTEND=noninteractive
step() { # step NAME dpkg-args...: the calls go to $WORK/calls.NAME
    local name=\$1; shift
    export SYSTEMD_CALLS=$WORK/calls.\$name
    : >"\$SYSTEMD_CALLS"
    dpkg "\$@" >>$WORK/systemd-dpkg.log 2>&1 || echo "dpkg \$* failed" >>"\$SYSTEMD_CALLS"
}
step install -i ${DEB[panthera]}
touch $WORK/active   # the operator starts it
step plugin-install -i ${DEB[panthera-plugin-hello]}
step upgrade -i $WORK/panthera-upgrade.deb
step reinstall -i $WORK/panthera-upgrade.deb
step plugin-upgrade -i ${DEB[panthera-plugin-hello]}
step plugin-remove -r panthera-plugin-hello
step remove -r panthera
step purge -P panthera panthera-plugin-hello
rm -f $WORK/active
EOS
unshare -m bash "$WORK/systemd-paths.sh"
calls() { sed 's/^/    /' "$WORK/calls.$1"; }
only() { # only NAME LINE...: the recorded calls are exactly these lines, in this order
    local name=$1; shift
    calls "$name"
    [[ $(cat "$WORK/calls.$name") == "$(printf '%s\n' "$@" | sed '/^$/d')" ]]
}
check "systemd, first install: enabled (preset), daemon-reload, not started" \
    only install "systemctl --root=/ --system --preset-mode=enable-only preset panthera.service" \
    "systemctl --system daemon-reload"
check "systemd, plugin install with the service running: systemctl reload" \
    only plugin-install "systemctl is-active --quiet panthera.service" "systemctl reload panthera.service"
check "systemd, upgrade: daemon-reload, try-restart (never stop and leave stopped)" \
    only upgrade "systemctl --system daemon-reload" "deb-systemd-invoke try-restart panthera.service"
check "systemd, reinstall: daemon-reload, try-restart" \
    only reinstall "systemctl --system daemon-reload" "deb-systemd-invoke try-restart panthera.service"
check "systemd, plugin upgrade: systemctl reload" \
    only plugin-upgrade "systemctl is-active --quiet panthera.service" "systemctl reload panthera.service"
check "systemd, plugin remove: systemctl reload" \
    only plugin-remove "systemctl is-active --quiet panthera.service" "systemctl reload panthera.service"
check "systemd, remove: stop, daemon-reload" \
    only remove "deb-systemd-invoke stop panthera.service" "systemctl --system daemon-reload"
unit_gone() {
    ! test -e /etc/systemd/system/multi-user.target.wants/panthera.service &&
        ! test -e /var/lib/systemd/deb-systemd-helper-enabled/panthera.service.dsh-also
}
# deb-systemd-helper purge removes the enablement links, then has systemd re-read them.
check "systemd, purge: the unit's enablement gone, daemon-reload, nothing started or stopped" \
    bash -c "$(declare -f calls only unit_gone); WORK=$WORK; only purge 'systemctl daemon-reload' && unit_gone"

echo "packaging test took $(($(date +%s) - START))s"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
