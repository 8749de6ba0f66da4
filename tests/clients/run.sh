#!/usr/bin/env bash
# Python's `websockets` client against roomcast over wss:// (see README.md
# beside this file).
#
#   tests/clients/run.sh
#
# Makes a throwaway CA and server certificate (loadtest/gen-cert.sh) in a temp
# dir, starts on free 127.0.0.1 ports
#   - $ROOMCAST_BIN (default target/release/roomcast) --tls-cert/--tls-key
#     (deflate on, --deflate-min-size 256);
#   - the same with --auth-secret (join tokens required);
# and runs wss_python.py against them: the chat contract, permessage-deflate,
# TLS 1.2 and 1.3, certificate verification, Django-minted join tokens.
#
# Installs what is missing (a venv with websockets and Django under
# target/wss-clients, openssl; builds target/release/roomcast if absent).
# Every step is time-limited; only the PIDs started here are stopped
# (SIGTERM, then SIGKILL). No stdin. Exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
BL_NAME=wss-clients
. "$ROOT/loadtest/baselines/lib.sh"
ROOMCAST_BIN=${ROOMCAST_BIN:-$ROOT/target/release/roomcast}
VENV_DIR="$ROOT/target/wss-clients"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-wss-clients.XXXXXX")
MIN_SIZE=256

say() { printf '[wss-clients] %s\n' "$*"; }

ROOMCAST_PID=
ROOMCAST_AUTH_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    stop_pid "$ROOMCAST_PID" 10
    stop_pid "$ROOMCAST_AUTH_PID" 10
    if [ "$rc" -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -s "$f" ] || continue
            echo "----- $(basename "$f") (last 40 lines)"
            tail -n 40 "$f"
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --- install what is missing (bounded) ------------------------------------
export PIP_NO_INPUT=1
mkdir -p "$VENV_DIR"
timeout 900 bash -c "BL_NAME=wss-clients; . '$ROOT/loadtest/baselines/lib.sh'; ensure_venv '$VENV_DIR' '$HERE/requirements.txt'" </dev/null
PY="$VENV_DIR/.venv/bin/python"
if [ ! -x "$ROOMCAST_BIN" ]; then
    say "$ROOMCAST_BIN is missing; building it"
    timeout 1800 cargo build --release --bin roomcast </dev/null
fi
timeout 300 "$ROOT/loadtest/gen-cert.sh" "$WORK/certs" </dev/null

# --- free ports -------------------------------------------------------------
pick_port() {
    local p n
    for ((n = 0; n < 200; n++)); do
        p=$((20000 + RANDOM % 20000))
        if port_free "$p" && [[ " $TAKEN " != *" $p "* ]]; then
            echo "$p"
            return 0
        fi
    done
    bl_die "no free port found"
}
TAKEN=""
PORT=$(pick_port); TAKEN="$TAKEN $PORT"
AUTH_PORT=$(pick_port)

# --- the relays -------------------------------------------------------------
AUTH_SECRET="wss-clients-test-secret-$RANDOM-$RANDOM-$RANDOM"
start_roomcast() { # PORT LOG ARGS... -> ROOMCAST_STARTED
    local port=$1 log=$2 i
    shift 2
    "$ROOMCAST_BIN" --bind "127.0.0.1:$port" --tls-cert "$WORK/certs/server.pem" --tls-key "$WORK/certs/server.key" \
        --deflate-min-size "$MIN_SIZE" "$@" </dev/null >"$log" 2>&1 &
    ROOMCAST_STARTED=$!
    for ((i = 0; i < 150; i++)); do
        kill -0 "$ROOMCAST_STARTED" 2>/dev/null || bl_die "roomcast on $port exited at start: $(tail -n 5 "$log")"
        port_listening "$port" && return 0
        sleep 0.1
    done
    bl_die "roomcast did not listen on $port within 15 s"
}
say "starting $ROOMCAST_BIN with TLS on $PORT, and with TLS and --auth-secret on $AUTH_PORT"
start_roomcast "$PORT" "$WORK/roomcast.log"
ROOMCAST_PID=$ROOMCAST_STARTED
start_roomcast "$AUTH_PORT" "$WORK/roomcast-auth.log" --auth-secret "$AUTH_SECRET"
ROOMCAST_AUTH_PID=$ROOMCAST_STARTED

# --- the checks -------------------------------------------------------------
export WSS_PORT=$PORT WSS_AUTH_PORT=$AUTH_PORT WSS_CA="$WORK/certs/ca.pem" MIN_SIZE AUTH_SECRET
export PYTHONUNBUFFERED=1
timeout 180 "$PY" "$HERE/wss_python.py" </dev/null
say "all wss client checks passed"
