#!/usr/bin/env bash
# Autobahn TestSuite (kosoku) against roomcast and the JavaScript load-test
# baselines, one after the other, and a side-by-side table of per-group
# outcome counts and wall times (Markdown, for tests/autobahn/README.md).
#
# Usage:
#   tests/autobahn/compare.sh [NAME...]     NAME: roomcast ws uws bun (default: all four)
#
# Each server is started by tests/autobahn/run.sh --start on its own port and
# stopped (by PID) when its run ends:
#   roomcast  $ROOMCAST_BIN (default target/release/roomcast, or
#             $CARGO_TARGET_DIR/release/roomcast) with the flags of
#             tests/run-all.sh autobahn(): --max-message-size 16MiB
#             --max-frame-size 16MiB --max-send-queue 64MiB, default deflate
#   ws, uws, bun  DEFLATE=1 loadtest/baselines/NAME/run.sh PORT: the
#             baseline's /ws/echo/ route (same limits as its chat route,
#             16 MiB messages; permessage-deflate on, as DEFLATE=1 gives)
# Outputs: target/autobahn-compare/NAME/ (run.sh's results.txt, summary.json,
# reports/, server.log) and NAME.log (run.sh's console output); the table is
# printed at the end and written to target/autobahn-compare/table.md.
# The exit status is 0 when every run ended (failing cases do not count:
# the peers are not held to roomcast's expected.txt).
#
# Environment: AUTOBAHN_GROUPS (default all groups), COMPARE_PORT (first
# port, default 19401; one port per server), ROOMCAST_BIN, COMPARE_OUT
# (default target/autobahn-compare), AUTOBAHN_TLS=1 (wss://: every server
# with a throwaway certificate, through run.sh's TLS bridge).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUTROOT="${COMPARE_OUT:-$ROOT/target/autobahn-compare}"
BASE_PORT="${COMPARE_PORT:-19401}"
ROOMCAST_BIN="${ROOMCAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/roomcast}"
SCHEME=ws
[ "${AUTOBAHN_TLS:-}" = 1 ] && SCHEME=wss

NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(roomcast ws uws bun)
for name in "${NAMES[@]}"; do
  case "$name" in
    roomcast) [ -x "$ROOMCAST_BIN" ] || { echo "compare: no roomcast binary at $ROOMCAST_BIN (cargo build --release, or set ROOMCAST_BIN)" >&2; exit 2; } ;;
    ws|uws|bun) "$ROOT/loadtest/baselines/$name/run.sh" --install || exit 2 ;;
    *) echo "compare: unknown server '$name' (roomcast ws uws bun)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUTROOT"

status=0
runs=()
i=0
for name in "${NAMES[@]}"; do
  port=$((BASE_PORT + i)); i=$((i + 1))
  case "$name" in
    roomcast) cmd=("$ROOMCAST_BIN" --bind "127.0.0.1:$port" --max-message-size 16MiB
                   --max-frame-size 16MiB --max-send-queue 64MiB) ;;
    *) cmd=(env DEFLATE=1 "$ROOT/loadtest/baselines/$name/run.sh" "$port") ;;
  esac
  echo "compare: $name on $SCHEME://127.0.0.1:$port/ws/echo/ (log: $OUTROOT/$name.log)"
  t0=$(date +%s)
  AUTOBAHN_OUT="$OUTROOT/$name" "$HERE/run.sh" "$SCHEME://127.0.0.1:$port/ws/echo/" --start "${cmd[@]}" \
    >"$OUTROOT/$name.log" 2>&1
  rc=$?
  grep -E '^[0-9]+\.x: ' "$OUTROOT/$name.log" | sed 's/^/  /'
  echo "  run.sh exit $rc, $(( $(date +%s) - t0 )) s in all"
  [ -s "$OUTROOT/$name/summary.json" ] || { echo "  compare: $name produced no summary (see $OUTROOT/$name.log)" >&2; status=1; }
  runs+=("$name=$OUTROOT/$name")
done

echo
VENV="${AUTOBAHN_VENV:-$ROOT/target/autobahn-venv}"
"$VENV/bin/python" "$HERE/kosoku_driver.py" compare-table "${runs[@]}" | tee "$OUTROOT/table.md"
exit "$status"
