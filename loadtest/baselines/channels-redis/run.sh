#!/usr/bin/env bash
# Baseline `channels-redis`: the seed's Django Channels ChatConsumer (the same
# Django project as ../channels) served by daphne with channels_redis against a
# local redis-server that this script starts and stops.
#   loadtest/baselines/channels-redis/run.sh PORT [daphne options...]
#   loadtest/baselines/channels-redis/run.sh --install
# Environment:
#   CHANNEL_LAYER=redis         channels_redis.core.RedisChannelLayer (default)
#   CHANNEL_LAYER=redis-pubsub  channels_redis.pubsub.RedisPubSubChannelLayer
#   REDIS_PORT=N                Redis port (default PORT+10000, or PORT-10000
#                               above 55535; the next free port if taken)
# Two processes: daphne and redis-server; PIDFILE gets both (daphne first).
set -euo pipefail
# Signals ignored on entry (SIGINT, for a script started in the background by a
# non-interactive shell) cannot be trapped: restart once with them at default.
if [ -z "${BL_SIGNALS_RESET:-}" ] && env --default-signal=INT true 2>/dev/null; then
    BL_SIGNALS_RESET=1 exec env --default-signal=INT,TERM,HUP "$0" "$@"
fi
BL_NAME=channels-redis
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"
CH="$BL_DIR/channels"   # the shared Django project and venv

bl_args "$@"
ensure_apt redis-server redis-server
ensure_venv "$CH" "$CH/requirements.txt"
[ "$BL_INSTALL_ONLY" = 1 ] && exit 0
bl_check_port "$PORT"

LAYER=${CHANNEL_LAYER:-redis}
case "$LAYER" in
    redis|redis-pubsub) ;;
    *) bl_die "CHANNEL_LAYER must be redis or redis-pubsub, got '$LAYER'" ;;
esac

if [ -n "${REDIS_PORT:-}" ]; then
    port_free "$REDIS_PORT" || bl_die "REDIS_PORT $REDIS_PORT is in use"
else
    REDIS_PORT=$((PORT + 10000))
    (( REDIS_PORT <= 65535 )) || REDIS_PORT=$((PORT - 10000))
    for ((n = 0; n < 100; n++)); do
        (( REDIS_PORT != PORT )) && port_free "$REDIS_PORT" && break
        REDIS_PORT=$((REDIS_PORT + 1))
    done
    port_free "$REDIS_PORT" || bl_die "no free port for redis-server near $REDIS_PORT"
fi

REDIS_PID=
DAPHNE_PID=
cleanup() {
    local rc=$1
    trap - TERM INT HUP EXIT
    stop_pid "$DAPHNE_PID" 15   # daphne first, while Redis is still there
    stop_pid "$REDIS_PID" 10
    exit "$rc"
}
trap 'cleanup 0' TERM INT HUP
trap 'cleanup $?' EXIT

mkdir -p "$HERE/.run"   # Redis's working dir (nothing is written: no persistence)
redis-server "$HERE/redis.conf" --port "$REDIS_PORT" --dir "$HERE/.run" </dev/null &
REDIS_PID=$!
wait_listening "$REDIS_PORT" "$REDIS_PID" 30 || bl_die "redis-server did not come up on 127.0.0.1:$REDIS_PORT"

export CHANNEL_LAYER=$LAYER
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DJANGO_SETTINGS_MODULE=chatsite.settings
export PYTHONPATH="$CH${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# -v 0: no per-connection access log (pass "-v 1" after PORT to get it back).
"$CH/.venv/bin/daphne" -b 127.0.0.1 -p "$PORT" -v 0 "${BL_EXTRA_ARGS[@]}" chatsite.asgi:application </dev/null &
DAPHNE_PID=$!
wait_listening "$PORT" "$DAPHNE_PID" 120 || bl_die "daphne did not come up on 127.0.0.1:$PORT"

write_pidfile "$DAPHNE_PID" "$REDIS_PID"
bl_log "daphne (pid $DAPHNE_PID) on 127.0.0.1:$PORT, $LAYER layer, redis-server (pid $REDIS_PID) on 127.0.0.1:$REDIS_PORT"

set +e
wait -n "$DAPHNE_PID" "$REDIS_PID"
rc=$?
bl_log "a server process exited (status $rc); stopping the other"
cleanup "$rc"
