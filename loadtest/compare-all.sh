#!/usr/bin/env bash
# Runs every named scenario against roomcast and every peer, one server at a
# time, each pinned to core 0 with the harness on core 1 (see
# loadtest/README.md, "Comparing servers"). Reports land in reports/:
# compare-<scenario>.json, .svg and one log per server.
#   loadtest/compare-all.sh                      # all scenarios, all servers
#   SCENARIOS="fanout pairs" SERVERS=roomcast,bun loadtest/compare-all.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet -p loadtest --bin loadtest
cargo build --release --quiet --bin roomcast
SERVERS="${SERVERS:-roomcast,bun,uws,ws,channels,channels-redis}"
SCENARIOS="${SCENARIOS:-fanout pairs bigroom saturate idle}"
mkdir -p reports
status=0
for scenario in $SCENARIOS; do
  echo "=== $scenario: $SERVERS"
  target/release/loadtest compare --scenario "$scenario" --servers "$SERVERS" \
    --out "reports/compare-$scenario.json" "$@" || status=1
done
exit $status
