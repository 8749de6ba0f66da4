#!/usr/bin/env bash
# Baseline `ws`: the npm `ws` package (8.x) on Node, rooms as a Map of Sets (server.mjs).
#   loadtest/baselines/ws/run.sh PORT [node options...]
#   loadtest/baselines/ws/run.sh --install
# One process (node, exec'd: the script's PID is the server's).
set -euo pipefail
BL_NAME=ws
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

bl_args "$@"
ensure_npm "$HERE"
[ "$BL_INSTALL_ONLY" = 1 ] && exit 0
bl_check_port "$PORT"

pidfile_on_listen "$PORT"
bl_exec node "${BL_EXTRA_ARGS[@]}" "$HERE/server.mjs" "$PORT"
