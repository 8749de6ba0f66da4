#!/usr/bin/env bash
# roomcast itself, with the baselines' interface, so the harness can treat it alike:
#   loadtest/baselines/roomcast/run.sh PORT [roomcast options...]
#   loadtest/baselines/roomcast/run.sh --install     (release build only)
# Builds `cargo build --release --bin roomcast` at the repo root (incremental:
# fast when up to date), then execs target/release/roomcast --bind 127.0.0.1:PORT
# with the extra options after PORT passed on. One process (the script's PID is
# the server's). CARGO_TARGET_DIR is honoured.
set -euo pipefail
BL_NAME=roomcast
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"
ROOT=$(cd "$HERE/../../.." && pwd)
[ -f "$ROOT/Cargo.toml" ] || bl_die "no Cargo.toml at $ROOT"

bl_args "$@"
command -v cargo >/dev/null 2>&1 || bl_die "cargo is not on PATH (install Rust: rustup)"
(cd "$ROOT" && cargo build --release --bin roomcast >&2) || bl_die "cargo build --release --bin roomcast failed"
[ "$BL_INSTALL_ONLY" = 1 ] && exit 0
bl_check_port "$PORT"

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/roomcast"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
[ -x "$BIN" ] || bl_die "$BIN not found after the build"

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
bl_exec "$BIN" --bind "127.0.0.1:$PORT" "${MODE_ARGS[@]}" "${BL_EXTRA_ARGS[@]}"
