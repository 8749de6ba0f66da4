#!/usr/bin/env bash
# Interop of roomcast with the real Django Channels app over Redis.
#
#   tests/interop/run.sh
#
# Starts, on free 127.0.0.1 ports:
#   - the seed's Django Channels app (loadtest/baselines/channels-redis/run.sh:
#     daphne + its own private redis-server) with CHANNEL_LAYER=redis-pubsub,
#     i.e. channels_redis 4.3.0's RedisPubSubChannelLayer;
#   - target/release/roomcast --redis redis://127.0.0.1:<that Redis>/0;
# then runs tests/interop/interop.mjs: headless Chromium with roomcast's room
# page and the seed's browser snippet against daphne, in one room, checking
# that messages cross both ways with identical frame texts, that a Python
# group_send (tests/interop/group_send.py) reaches both pages, with the
# sender's identity ("user") reaching roomcast's, and that a message roomcast's
# backplane publishes with a user (tests/backplane_interop.rs) reaches a Django
# member of the group (tests/interop/group_listen.py) with event["user"].
#
# Installs what is missing (redis-server, the Channels venv, Chromium,
# playwright-core; builds target/release/roomcast if absent). Every step is
# time-limited; only the PIDs started here are stopped (SIGTERM, then
# SIGKILL). Exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
BL_NAME=interop
. "$ROOT/loadtest/baselines/lib.sh"
CH="$ROOT/loadtest/baselines/channels"
ROOMCAST_BIN=${ROOMCAST_BIN:-$ROOT/target/release/roomcast}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-interop.XXXXXX")

say() { printf '[interop] %s\n' "$*"; }

DJANGO_RUN_PID=
ROOMCAST_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    # lib.sh's stop_pid reaps with `wait`, which returns the child's status:
    # no errexit here, or a crashed child would cut the cleanup short.
    set +e
    # channels-redis/run.sh stops its daphne and redis-server on SIGTERM
    # (daphne gets up to 15 s, Redis 10 s).
    stop_pid "$ROOMCAST_PID" 10
    stop_pid "$DJANGO_RUN_PID" 40
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
ensure_apt redis-server redis-server
ensure_apt curl curl
timeout 900 "$ROOT/loadtest/baselines/channels-redis/run.sh" --install
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ] || [ ! -f "$ROOT/tests/browser/node_modules/playwright-core/package.json" ]; then
    say "installing Chromium / playwright-core (tests/browser's setup)"
    if [ ! -x /usr/bin/chromium ]; then
        sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        export DEBIAN_FRONTEND=noninteractive
        timeout 900 $sudo apt-get update -qq
        timeout 900 $sudo apt-get install -y -qq chromium fonts-dejavu-core fonts-liberation >/dev/null
    fi
    ensure_node
    if [ ! -f "$ROOT/tests/browser/node_modules/playwright-core/package.json" ]; then
        (cd "$ROOT/tests/browser" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
if [ ! -x "$ROOMCAST_BIN" ]; then
    say "$ROOMCAST_BIN is missing; building it"
    timeout 1800 cargo build --release --bin roomcast
fi
say "building roomcast's interop publisher (tests/backplane_interop.rs)"
INTEROP_PUBLISHER=$(timeout 1800 cargo test --test backplane_interop --no-run 2>&1 \
    | sed -n 's/^ *Executable tests\/backplane_interop\.rs (\(.*\))$/\1/p' | tail -n 1)
case "$INTEROP_PUBLISHER" in
    /*) ;;
    ?*) INTEROP_PUBLISHER="$ROOT/$INTEROP_PUBLISHER" ;;
esac
[ -x "$INTEROP_PUBLISHER" ] || bl_die "cargo test --test backplane_interop --no-run did not name its executable"

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
DJANGO_PORT=$(pick_port); TAKEN="$TAKEN $DJANGO_PORT"
REDIS_PORT=$(pick_port); TAKEN="$TAKEN $REDIS_PORT"
ROOMCAST_PORT=$(pick_port)

# --- the Django Channels app with its Redis ---------------------------------
say "starting the Django Channels app (daphne :$DJANGO_PORT, RedisPubSubChannelLayer, redis-server :$REDIS_PORT)"
CHANNEL_LAYER=redis-pubsub REDIS_PORT=$REDIS_PORT PIDFILE="$WORK/django.pids" \
    "$ROOT/loadtest/baselines/channels-redis/run.sh" "$DJANGO_PORT" </dev/null >"$WORK/django.log" 2>&1 &
DJANGO_RUN_PID=$!
for ((i = 0; i < 1200; i++)); do
    [ -s "$WORK/django.pids" ] && break
    kill -0 "$DJANGO_RUN_PID" 2>/dev/null || bl_die "channels-redis/run.sh exited before daphne was up"
    sleep 0.1
done
[ -s "$WORK/django.pids" ] || bl_die "daphne did not come up within 120 s"
port_listening "$REDIS_PORT" || bl_die "redis-server is not listening on $REDIS_PORT"
say "daphne and redis-server are up (pids $(tr '\n' ' ' <"$WORK/django.pids"))"

# --- roomcast on the same Redis ---------------------------------------------
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
say "starting $ROOMCAST_BIN --bind 127.0.0.1:$ROOMCAST_PORT --redis $REDIS_URL"
"$ROOMCAST_BIN" --bind "127.0.0.1:$ROOMCAST_PORT" --redis "$REDIS_URL" </dev/null >"$WORK/roomcast.log" 2>&1 &
ROOMCAST_PID=$!
healthy=
for ((i = 0; i < 150; i++)); do
    kill -0 "$ROOMCAST_PID" 2>/dev/null || bl_die "roomcast exited at start"
    if health=$(curl -fsS --max-time 2 "http://127.0.0.1:$ROOMCAST_PORT/healthz" 2>/dev/null) \
        && [[ "$health" == *'"status": "ok"'* || "$health" == *'"status":"ok"'* ]]; then
        healthy=1
        break
    fi
    sleep 0.1
done
[ -n "$healthy" ] || bl_die "roomcast's /healthz did not say ok within 15 s: ${health:-no answer}"
say "roomcast is up and its backplane is ok: $health"

# --- the checks -------------------------------------------------------------
export ROOMCAST_URL="http://127.0.0.1:$ROOMCAST_PORT"
export DJANGO_HOST="127.0.0.1:$DJANGO_PORT"
export REDIS_PORT
export INTEROP_PYTHON="$CH/.venv/bin/python"
export CHANNEL_LAYER=redis-pubsub
export REDIS_URL
export DJANGO_SETTINGS_MODULE=chatsite.settings
export PYTHONPATH="$CH${PYTHONPATH:+:$PYTHONPATH}"
export INTEROP_PUBLISHER
timeout 180 node "$HERE/interop.mjs"
say "all interop checks passed"
