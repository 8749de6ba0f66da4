#!/usr/bin/env bash
# Runs one fuzz target for a while: fuzz/run.sh TARGET SECONDS [libFuzzer args]
#
# cargo-fuzz passes nightly-only -Z flags (sanitizer, coverage); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1. New inputs go to a scratch
# corpus outside the repository ($FUZZ_SCRATCH, default /tmp/roomcast-fuzz),
# seeded from the committed fuzz/corpus/TARGET, which is only read. Crashes
# land in fuzz/artifacts/TARGET/ (ignored by git).
set -euo pipefail

usage="usage: fuzz/run.sh TARGET SECONDS [libFuzzer args]"
target="${1:?$usage}"
seconds="${2:?$usage}"
shift 2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if [ ! -f "fuzz_targets/$target.rs" ]; then
    echo "no such target: $target (have: $(ls fuzz_targets | sed 's/\.rs$//' | tr '\n' ' '))" >&2
    exit 2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

scratch="${FUZZ_SCRATCH:-/tmp/roomcast-fuzz}/$target"
mkdir -p "$scratch" "corpus/$target"

export RUSTC_BOOTSTRAP=1
exec cargo fuzz run "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
