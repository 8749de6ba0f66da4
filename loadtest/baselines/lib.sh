# Shared helpers for loadtest/baselines/*/run.sh. Source it, don't run it.
#
#   BL_NAME=foo; . "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
#
# Every run.sh follows one interface (the load harness relies on it):
#   run.sh PORT [extra args]  install what is missing, then serve on 127.0.0.1:PORT
#                             in the foreground; with $PIDFILE set, write the server
#                             PIDs there (one a line) once they are listening;
#                             SIGTERM/SIGINT stops everything it started.
#   run.sh --install          install only, then exit (used by setup.sh)

BL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${BL_NAME:=baseline}"

bl_log() { printf '[%s] %s\n' "$BL_NAME" "$*" >&2; }
bl_die() { bl_log "error: $*"; exit 1; }

# bl_args "$@": sets BL_INSTALL_ONLY=1 for --install, else PORT (validated).
# The remaining arguments are left in BL_EXTRA_ARGS (an array).
bl_args() {
    BL_INSTALL_ONLY=0
    BL_EXTRA_ARGS=()
    case "${1:-}" in
        --install) BL_INSTALL_ONLY=1; return 0 ;;
        -h|--help|"")
            echo "usage: $0 PORT      (serve on 127.0.0.1:PORT; PIDFILE=path writes the server PIDs)" >&2
            echo "       $0 --install (install dependencies only)" >&2
            exit 2 ;;
    esac
    [[ "$1" =~ ^[0-9]{1,5}$ ]] && (( 10#$1 >= 1 && 10#$1 <= 65535 )) || bl_die "PORT must be a number in 1..65535, got '$1'"
    PORT=$((10#$1))
    shift
    BL_EXTRA_ARGS=("$@")
}

bl_sha() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# ensure_apt COMMAND PACKAGE: apt-get install PACKAGE when COMMAND is not on PATH.
ensure_apt() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || bl_die "'$cmd' is missing and apt-get is not available; install '$pkg'"
    bl_log "installing Debian package $pkg (for $cmd)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2 || bl_die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg" >&2 \
        || bl_die "apt-get install $pkg failed"
    command -v "$cmd" >/dev/null 2>&1 || bl_die "'$cmd' still missing after installing $pkg"
}

ensure_node() {
    ensure_apt node nodejs
    ensure_apt npm npm
}

# ensure_venv DIR REQUIREMENTS: a Python venv at DIR/.venv with REQUIREMENTS installed.
# Skipped when DIR/.venv/.installed holds the hash of REQUIREMENTS (idempotent, fast).
ensure_venv() {
    local dir=$1 req=$2 venv="$1/.venv" want
    want=$(bl_sha "$req")
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.installed" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    local py=${PYTHON:-python3}
    command -v "$py" >/dev/null 2>&1 || ensure_apt python3 python3-venv
    bl_log "creating $venv from $(basename "$req")"
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 || bl_die "python -m venv failed (apt-get install python3-venv?)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2 \
        || { rm -rf "$venv"; bl_die "pip install -r $req failed"; }
    echo "$want" > "$venv/.installed"
}

# ensure_npm DIR: node_modules in DIR from its package.json/package-lock.json (npm ci).
# Skipped when DIR/node_modules/.installed holds the hash of both (idempotent, fast).
ensure_npm() {
    local dir=$1 want
    ensure_node
    want=$(bl_sha "$dir/package.json" "$dir/package-lock.json")
    if [ -d "$dir/node_modules" ] && [ "$(cat "$dir/node_modules/.installed" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    bl_log "installing npm packages in $dir"
    if [ -f "$dir/package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || bl_die "npm ci failed in $dir"
    else
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2) || bl_die "npm install failed in $dir"
    fi
    echo "$want" > "$dir/node_modules/.installed"
}

# port_listening PORT: true when some socket LISTENs on PORT (IPv4 or IPv6).
# Reads /proc/net/tcp*, so it does not open a connection to the server.
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# port_free PORT: true when no socket at all uses PORT as its local port.
port_free() {
    local hex
    hex=$(printf '%04X' "$1")
    ! awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_listening PORT PID [SECONDS]: wait until PORT listens; fail if PID dies or on timeout.
wait_listening() {
    local port=$1 pid=$2 secs=${3:-120} i
    for ((i = 0; i < secs * 10; i++)); do
        port_listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# write_pidfile PID...: write the PIDs to $PIDFILE (atomically), if PIDFILE is set.
write_pidfile() {
    [ -n "${PIDFILE:-}" ] || return 0
    printf '%s\n' "$@" > "$PIDFILE.tmp.$$" && mv -f "$PIDFILE.tmp.$$" "$PIDFILE"
}

# pidfile_on_listen PORT: for scripts that end in `exec SERVER`: a detached helper
# waits for PORT to listen and then writes this shell's PID ($$, which exec hands
# to the server) to $PIDFILE. The helper is double-forked (not a child of the
# server) and ends by itself when the port listens, the server dies, or after 10 min.
pidfile_on_listen() {
    [ -n "${PIDFILE:-}" ] || return 0
    rm -f "$PIDFILE"
    local port=$1 target=$$
    (
        (
            trap - TERM INT
            for ((i = 0; i < 6000; i++)); do
                kill -0 "$target" 2>/dev/null || exit 0
                if port_listening "$port"; then write_pidfile "$target"; exit 0; fi
                sleep 0.1
            done
        ) </dev/null >/dev/null 2>&1 &
    )
}

# bl_check_port PORT: fail early when something already listens on PORT.
bl_check_port() {
    port_listening "$1" && bl_die "port $1 is already in use"
    return 0
}

# stop_pid PID [SECONDS]: SIGTERM a child of this shell, SIGKILL it after SECONDS
# (default 10) if it is still running, and reap it.
stop_pid() {
    local pid=$1 secs=${2:-10} i state
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    for ((i = 0; i < secs * 10; i++)); do
        state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || break
        [ -z "$state" ] || [ "$state" = Z ] && break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# bl_exec PROGRAM [ARGS...]: exec the server (same PID as the script), with
# SIGINT/SIGTERM back to their default disposition first. A script started in
# the background by a non-interactive shell inherits SIGINT as *ignored*, and
# some servers (daphne/Twisted) then ignore Ctrl-C; bash cannot undo that itself.
bl_exec() {
    if env --default-signal=INT true 2>/dev/null; then
        exec env --default-signal=INT,TERM "$@"
    fi
    exec "$@"
}
