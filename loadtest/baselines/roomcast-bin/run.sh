#!/usr/bin/env bash
# A prebuilt roomcast binary, with the baselines' interface, so one `loadtest compare`
# run can measure two builds side by side (e.g. the relay before and after a change):
#   ROOMCAST_BIN=/path/to/roomcast loadtest/baselines/roomcast-bin/run.sh PORT [roomcast options...]
#   loadtest compare --servers before=/work/bin/roomcast-before,after=target/release/roomcast,bun
# (`loadtest compare` sets ROOMCAST_BIN for a `LABEL=/path` entry.) Nothing is built:
# the binary runs as it is, `--bind 127.0.0.1:PORT` plus the options after PORT.
# One process (exec'd: the script's PID is the server's).
set -euo pipefail
BL_NAME=roomcast-bin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"

bl_args "$@"
[ -n "${ROOMCAST_BIN:-}" ] || bl_die "ROOMCAST_BIN is not set: name the roomcast binary to run, e.g. ROOMCAST_BIN=/work/bin/roomcast-before $0 PORT"
[ -f "$ROOMCAST_BIN" ] && [ -x "$ROOMCAST_BIN" ] || bl_die "ROOMCAST_BIN=$ROOMCAST_BIN is not an executable file"
[ "$BL_INSTALL_ONLY" = 1 ] && exit 0
bl_check_port "$PORT"

# DEFLATE=1 (loadtest compare --deflate): the relay's permessage-deflate, asked for
# explicitly (a relay without the flag fails to start, which the row then shows); the
# same for TLS.
MODE_ARGS=()
[ "${DEFLATE:-}" = 1 ] && MODE_ARGS+=(--deflate on)
# TLS_CERT and TLS_KEY (loadtest compare --tls CERT,KEY): wss:// with the relay's own TLS.
if [ -n "${TLS_CERT:-}" ] && [ -n "${TLS_KEY:-}" ]; then
    MODE_ARGS+=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
fi

pidfile_on_listen "$PORT"
bl_log "$ROOMCAST_BIN on 127.0.0.1:$PORT"
bl_exec "$ROOMCAST_BIN" --bind "127.0.0.1:$PORT" "${MODE_ARGS[@]}" "${BL_EXTRA_ARGS[@]}"
