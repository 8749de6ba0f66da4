#!/usr/bin/env bash
# Interop of roomcast's join-token verifier with the real minters.
#
#   tests/auth/run.sh
#
# Makes (once) a Python venv under target/auth-interop/.venv with Django 5.2
# and PyJWT 2 (tests/auth/requirements.txt), mints tokens with Django's
# signing.dumps (plain and compress=True), TimestampSigner.sign_object and
# PyJWT at a fixed time (tests/auth/mint.py, which also checks each Django
# token against Django's own signing.loads), and runs tests/auth_vectors.rs
# on them: accepted, wrong key, fallback key, expired by max_age and by exp,
# another room, prefix rooms, read-only, tampered payloads, the compressed
# form, other algorithms. No server, no network beyond PyPI on the first run;
# every step is time-limited; no stdin. Exits non-zero on any disagreement.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

WORK="$ROOT/target/auth-interop"
mkdir -p "$WORK"
export PIP_NO_INPUT=1
# lib.sh's ensure_venv: reused while requirements.txt is unchanged.
timeout 900 bash -c "BL_NAME=auth; . '$ROOT/loadtest/baselines/lib.sh'; ensure_venv '$WORK' '$HERE/requirements.txt'" </dev/null
timeout 120 nice "$WORK/.venv/bin/python" "$HERE/mint.py" "$WORK/vectors.json" </dev/null
ROOMCAST_AUTH_VECTORS="$WORK/vectors.json" timeout 1200 nice -n 10 \
    cargo test --quiet --test auth_vectors -- --nocapture </dev/null
