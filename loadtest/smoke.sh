#!/usr/bin/env bash
# A short, bounded load run against the release relay, part of the test
# suite: 2,000 clients in 20 rooms (several 127.x source addresses), every
# client sending 2 msg/s for 4 s, plus an idle-mode run of 2,000 connections.
# The harness exits non-zero if anything was lost or failed to connect.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bin roomcast
cargo build --release --quiet -p loadtest --bin loadtest
PORT="${SMOKE_PORT:-19080}"
target/release/roomcast --bind "127.0.0.1:$PORT" --log-level warn &
RELAY=$!
trap 'kill "$RELAY" 2>/dev/null || true; wait "$RELAY" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
URL="ws://127.0.0.1:$PORT/ws/chat/"
timeout 120 target/release/loadtest "$URL" --clients 2000 --rooms 20 --rate 2 \
  --duration 4 --warmup 1 --server-pid "$RELAY"
timeout 120 target/release/loadtest idle "$URL" --clients 2000 --rooms 20 --hold 2 --server-pid "$RELAY"
kill -TERM "$RELAY"
wait "$RELAY"
trap - EXIT
echo "load smoke: relay exited cleanly"
