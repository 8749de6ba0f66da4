#!/usr/bin/env bash
# Baseline `bun`: Bun's built-in WebSocket server (uWebSockets inside) with its
# pub/sub (server.mjs). Bun comes from the npm package `bun` (the official build,
# via its @oven/bun-<platform> package), installed into ./node_modules.
#   loadtest/baselines/bun/run.sh PORT [bun options...]
#   loadtest/baselines/bun/run.sh --install
# One process (bun, exec'd: the script's PID is the server's).
set -euo pipefail
BL_NAME=bun
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

# The bun binary: the package's postinstall (install.js) puts the platform
# build at node_modules/bun/bin/bun.exe; if npm skipped that script, run it,
# and failing that use the @oven/bun-<platform> package's binary directly.
bun_bin() {
    local b="$HERE/node_modules/bun/bin/bun.exe"
    "$b" --version >/dev/null 2>&1 && { echo "$b"; return 0; }
    (cd "$HERE/node_modules/bun" && node install.js >&2) || true
    "$b" --version >/dev/null 2>&1 && { echo "$b"; return 0; }
    for b in "$HERE"/node_modules/@oven/bun-*/bin/bun; do
        "$b" --version >/dev/null 2>&1 && { echo "$b"; return 0; }
    done
    return 1
}

bl_args "$@"
ensure_npm "$HERE"
BUN=$(bun_bin) || bl_die "no working bun binary in $HERE/node_modules (npm ci there, or check the CPU: x64 builds need AVX2)"
[ "$BL_INSTALL_ONLY" = 1 ] && exit 0
bl_check_port "$PORT"

export DO_NOT_TRACK=1   # no telemetry or crash-report uploads
pidfile_on_listen "$PORT"
bl_exec "$BUN" "${BL_EXTRA_ARGS[@]}" "$HERE/server.mjs" "$PORT"
