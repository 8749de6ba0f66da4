#!/usr/bin/env bash
# Baseline `uws`: uWebSockets.js on Node via the npm package uwebsockets@3.0.6 -- a THIRD-PARTY
# build of uWebSockets.js (upstream is not on npm) that loads with this machine's Node 20.
#   loadtest/baselines/uws/run.sh PORT [node options...]
#   loadtest/baselines/uws/run.sh --install
# One process (node, exec'd: the script's PID is the server's).
set -euo pipefail
BL_NAME=uws
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

bl_args "$@"
ensure_npm "$HERE"
if [ "$BL_INSTALL_ONLY" = 1 ]; then
    # the addon must load with this node (prebuilt uws_<os>_<arch>_<ABI>.node files)
    (cd "$HERE" && node -e 'require("uwebsockets")') \
        || bl_die "uwebsockets does not load with node $(node --version) here"
    exit 0
fi
bl_check_port "$PORT"

pidfile_on_listen "$PORT"
bl_exec node "${BL_EXTRA_ARGS[@]}" "$HERE/server.mjs" "$PORT"
