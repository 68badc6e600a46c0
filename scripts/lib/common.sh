# shellcheck shell=bash
# Helpers shared by scripts/dev: messages, privileges and the Debian packages the
# project needs. Sourced, never run; expects REPO to be set by the caller.

log()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# True while process PID runs; a zombie waiting for its parent to reap it
# (a daemon's parent is init, which may take its time) counts as gone.
pid_alive() {
    local stat
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $stat && $stat != Z* ]]
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and no sudo)"
    fi
}

# Everything a fresh Debian 12 needs to build, run and test Panthera.
PANTHERA_PACKAGES=(
    build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
    libuv1-dev libhiredis-dev liblua5.4-dev libjansson-dev libpq-dev libssl-dev
    libinih-dev libargon2-dev node-llhttp libmagic-dev libcurl4-openssl-dev
    postgresql-15 postgresql-client-15 redis-server redis-tools
    nginx-light wrk
    python3 python3-pytest python3-requests python3-aiosmtpd curl procps openssl
    librsvg2-bin nodejs chromium
    debhelper lintian dpkg-dev fakeroot
)

# The npm packages the tests use (package.json, pinned by package-lock.json: an OpenAPI
# validator; playwright-core and axe-core for tests/browser), into node_modules/ at the
# repo root. `npm ci` again only when the lock file is newer than what it installed.
ensure_node_modules() {
    local stamp=$REPO/node_modules/.package-lock.json
    if [[ -f $stamp && ! $REPO/package-lock.json -nt $stamp ]]; then
        return 0
    fi
    # Debian ships npm apart from nodejs; other builds of nodejs bring their own, so it is
    # installed only when the command is missing, not by name in PANTHERA_PACKAGES.
    if ! command -v npm >/dev/null 2>&1; then
        log "installing npm"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm ||
            die "npm is missing and could not be installed"
    fi
    log "npm ci (node_modules for the tests)"
    (cd "$REPO" && npm ci --no-audit --no-fund) || die "npm ci failed"
}

# Installs whichever of PANTHERA_PACKAGES is missing; a no-op (no apt-get update)
# when all are there. PANTHERA_SKIP_INSTALL=1 skips the check altogether.
ensure_packages() {
    if [[ ${PANTHERA_SKIP_INSTALL:-0} == 1 ]]; then
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "dpkg-query not found: not a Debian system, install the packages by hand:"
        warn "  ${PANTHERA_PACKAGES[*]}"
        return 0
    fi
    local pkg status missing=()
    for pkg in "${PANTHERA_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing missing packages: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}
