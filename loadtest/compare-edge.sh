#!/usr/bin/env bash
# The measurements of the edge features (README "Performance at the edge"), each a
# `loadtest compare` run: one server at a time pinned to core 0, the harness on core 1,
# the peers in the same run. Reports land in reports/edge-<name>.json (and .svg).
#
#   loadtest/compare-edge.sh                 # every group below
#   loadtest/compare-edge.sh tls deflate     # some of them
#
# Groups:
#   rebuild  roomcast before the session rebuild ($BEFORE, a prebuilt binary) against
#            this tree and Bun: fanout, pairs, bigroom (interleaved), saturate, idle
#   attacks  burst, flood (ping, echo) and flooder (with --max-messages-per-second 5),
#            $BEFORE against this tree
#   tls      over wss:// (ECDSA P-256 test certificate): saturate, fanout, idle (also
#            the TLS connection storm) against Bun and uWebSockets.js; saturate and idle
#            of this tree over plaintext in the same group
#   deflate  bigroom with 1 KiB chat-like messages and permessage-deflate against
#            uWebSockets.js (SHARED_COMPRESSOR) and Bun (perMessageDeflate); idle with
#            deflate negotiated; fanout and pairs (64 B) with deflate on against off
#   tokens   the connection storm (idle) with Django join tokens checked against the
#            same tokens ignored
#
# roomcast variants are small wrappers around target/release/roomcast made in a temp
# dir (the roomcast-bin baseline runs them as LABEL=PATH). Certificates are made here,
# at run time. Needs the peers installed (loadtest/baselines/setup.sh does it; the
# first compare installs them too).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ulimit -n "$(ulimit -Hn)"
BEFORE=${BEFORE:-/work/bin/roomcast-before}
cargo build --release --quiet -p loadtest --bin loadtest
cargo build --release --quiet --bin roomcast
LT=target/release/loadtest
RC="$ROOT/target/release/roomcast"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-edge.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p reports

# wrapper NAME FLAG...: a roomcast that always adds FLAG... (and drops the baseline's
# own --deflate, so a wrapper may say --deflate off under `compare --deflate`).
wrapper() {
  local name=$1
  shift
  {
    echo '#!/usr/bin/env bash'
    echo 'args=()'
    echo 'while [ $# -gt 0 ]; do'
    echo '  if [ "$1" = --deflate ]; then shift 2; continue; fi'
    echo '  args+=("$1"); shift'
    echo 'done'
    printf 'exec %q "${args[@]}"' "$RC"
    printf ' %q' "$@"
    echo
  } >"$WORK/$name"
  chmod +x "$WORK/$name"
  echo "$WORK/$name"
}

status=0
run() {
  local name=$1
  shift
  echo "=== $name: $LT compare $*"
  "$LT" compare "$@" --out "reports/edge-$name.json" || status=1
}

group_rebuild() {
  [ -x "$BEFORE" ] || { echo "no $BEFORE: set BEFORE=path/to/old/roomcast" >&2; status=1; return; }
  # Interleaved (before, after, Bun, after, before): the machine's speed drifts by
  # 20-30% over minutes, far more than what is compared, so each figure is the mean
  # of two runs placed symmetrically around the run of the other.
  local servers="before=$BEFORE,after=$RC,bun,after2=$RC,before2=$BEFORE"
  for s in ${REBUILD_SCENARIOS:-fanout pairs bigroom}; do
    run "rebuild-$s" --scenario "$s" --servers "$servers"
  done
  [ -n "${REBUILD_SCENARIOS:-}" ] && return
  run rebuild-saturate --scenario saturate --servers "before=$BEFORE,after=$RC,bun"
  run rebuild-idle --scenario idle --servers "before=$BEFORE,after=$RC,bun"
}

group_attacks() {
  [ -x "$BEFORE" ] || { echo "no $BEFORE: set BEFORE=path/to/old/roomcast" >&2; status=1; return; }
  local limited
  limited=$(wrapper limited --max-messages-per-second 5)
  run attack-burst --scenario burst --servers "before=$BEFORE,after=$RC"
  run attack-flood-ping --scenario flood --flood-mode ping --servers "before=$BEFORE,after=$RC"
  run attack-flood-echo --scenario flood --flood-mode echo --servers "before=$BEFORE,after=$RC"
  run attack-flooder --scenario flooder --servers "before=$BEFORE,limited=$limited"
}

group_tls() {
  loadtest/gen-cert.sh "$WORK/certs" >/dev/null
  local tls=(--tls "$WORK/certs/server.pem,$WORK/certs/server.key" --ca "$WORK/certs/ca.pem")
  run tls-saturate --scenario saturate --servers "roomcast,bun,uws" "${tls[@]}"
  run plain-saturate --scenario saturate --servers roomcast
  run tls-fanout --scenario fanout --servers "roomcast,bun,uws" "${tls[@]}"
  run tls-idle --scenario idle --servers "roomcast,bun,uws" "${tls[@]}"
  run plain-idle --scenario idle --servers roomcast
}

group_deflate() {
  local off
  off=$(wrapper deflate-off --deflate off)
  run deflate-bigroom --scenario bigroom --payload 1024 --deflate --servers "roomcast,uws,bun"
  run plain-bigroom --scenario bigroom --payload 1024 --servers "roomcast,uws,bun"
  run deflate-idle --scenario idle --deflate --servers "on=$RC,off=$off"
  run deflate-fanout --scenario fanout --deflate --servers "on=$RC,off=$off"
  run deflate-pairs --scenario pairs --deflate --servers "on=$RC,off=$off"
}

group_tokens() {
  local key=django-insecure-loadtest-key-0123456789 checked
  checked=$(wrapper tokens --auth-secret "$key")
  run tokens-storm --scenario idle --token-secret "$key" --servers "checked=$checked,ignored=$RC"
  run tokens-storm-2 --scenario idle --token-secret "$key" --servers "ignored=$RC,checked=$checked"
}

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(rebuild attacks tls deflate tokens)
for g in "${groups[@]}"; do
  "group_$g"
done
exit $status
