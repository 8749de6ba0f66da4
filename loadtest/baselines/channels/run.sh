#!/usr/bin/env bash
# Baseline `channels`: the seed's Django Channels ChatConsumer served by daphne
# with InMemoryChannelLayer.
#   loadtest/baselines/channels/run.sh PORT [daphne options...]
#   loadtest/baselines/channels/run.sh --install
# One process (daphne, exec'd: the script's PID is the server's).
set -euo pipefail
BL_NAME=channels
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

bl_args "$@"
ensure_venv "$HERE" "$HERE/requirements.txt"
[ "$BL_INSTALL_ONLY" = 1 ] && exit 0
bl_check_port "$PORT"

export CHANNEL_LAYER=inmemory
export DJANGO_SETTINGS_MODULE=chatsite.settings
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

pidfile_on_listen "$PORT"
bl_log "daphne on 127.0.0.1:$PORT (InMemoryChannelLayer)"
# -v 0: no per-connection access log on stdout (daphne logs every WSCONNECT at -v 1);
# pass "-v 1" after PORT to get it back.
bl_exec "$HERE/.venv/bin/daphne" -b 127.0.0.1 -p "$PORT" -v 0 "${BL_EXTRA_ARGS[@]}" chatsite.asgi:application
