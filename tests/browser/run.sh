#!/usr/bin/env bash
# Browser test of roomcast's embedded page (see README.md beside this file).
# Installs what is missing (Debian's chromium, playwright-core from npm, openssl
# for the test certificates), then runs, one after the other,
#   node --test tests/browser/chat.test.mjs   the chat page over plain http://
#   node --test tests/browser/edge.test.mjs   TLS (https://, wss://) and permessage-deflate
# and fails when either fails. RELAY_CMD overrides the relay's start command
# (default: target/release/roomcast, built here with cargo when it is missing);
# the tests append --bind 127.0.0.1:<port> and flags of their own.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

if [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: /usr/bin/chromium is missing; installing Debian's chromium" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium fonts-dejavu-core fonts-liberation >/dev/null
fi

if [ ! -f "$HERE/node_modules/playwright-core/package.json" ]; then
  echo "run.sh: installing playwright-core into tests/browser/node_modules" >&2
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -z "${RELAY_CMD:-}" ] && [ ! -x "$ROOT/target/release/roomcast" ]; then
  echo "run.sh: target/release/roomcast is missing; building it" >&2
  cargo build --release --bin roomcast
fi

if ! command -v openssl >/dev/null 2>&1; then
  echo "run.sh: installing openssl (edge.test.mjs makes its certificates with it)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi

status=0
for file in chat.test.mjs edge.test.mjs; do
  echo "run.sh: node --test tests/browser/$file" >&2
  # Each file has a watchdog of its own (under 2 minutes); this is the backstop.
  timeout --kill-after=10 180 node --test "$HERE/$file" </dev/null || status=1
done
exit "$status"
