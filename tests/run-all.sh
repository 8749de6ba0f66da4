#!/usr/bin/env bash
# The whole test suite, the one command README.md gives and .ci/run calls.
# It installs what it needs (Rust components, a Python venv for the Autobahn
# runner, Chromium and playwright-core for the browser test) so it passes on a
# fresh machine. Stages:
#   1. cargo fmt --check and cargo clippy --all-targets -D warnings
#   2. cargo test --workspace (unit, property and socket integration tests)
#   3. Autobahn TestSuite 1.x-10.x with kosoku against /ws/echo/, diffed
#      against tests/autobahn/expected.txt, each case group time-limited
#   4. the browser test (headless Chromium + Playwright) of the chat page
#   5. a short load-harness run against the release binary (no loss allowed)
# Ends with one line "suite: N passed, N failed".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR=never

passed=0
failed=0
failures=()

stage() {
  local name="$1"
  shift
  echo
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - start))s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== $name: FAILED ($((SECONDS - start))s)"
  fi
}

ensure_rust_components() {
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
  fi
}

lint() {
  cargo fmt --all -- --check && cargo clippy --workspace --all-targets --quiet -- -D warnings
}

unit_and_integration() {
  cargo test --workspace
}

release_build() {
  cargo build --release --workspace --bins
}

autobahn() {
  local port=19001
  tests/autobahn/run.sh "ws://127.0.0.1:$port/ws/echo/" --start target/release/roomcast \
    --bind "127.0.0.1:$port" --max-message-size 16MiB --max-frame-size 16MiB --max-send-queue 64MiB
}

browser() {
  RELAY_CMD="$ROOT/target/release/roomcast" tests/browser/run.sh
}

load_smoke() {
  loadtest/smoke.sh
}

stage "rust components" ensure_rust_components
stage "fmt and clippy" lint
stage "cargo test" unit_and_integration
stage "release build" release_build
stage "autobahn 1.x-10.x" autobahn
stage "browser" browser
if [ -x loadtest/smoke.sh ]; then
  stage "load smoke" load_smoke
fi

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed stages: %s\n' "${failures[*]}"
fi
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
