#!/usr/bin/env bash
# Django's own session login decides who joins roomcast's rooms (SPEC section
# 9, "Ask the back end"). See README.md beside this file.
#
#   tests/django_auth/run.sh
#
# Makes a throwaway sqlite database (migrate, then users ann (staff) and bob),
# and starts, on free 127.0.0.1 ports:
#   - the test Django site (authsite/, `manage.py runserver --noreload`): a
#     LoginView form and /roomcast/auth/, which answers 200 {"user", "write"},
#     401 or 403 from request.user;
#   - $ROOMCAST_BIN (default target/release/roomcast) --auth-url
#     http://127.0.0.1:<django>/roomcast/auth/;
#   - a second roomcast whose --auth-url is a @login_required view (302 for
#     an anonymous visitor, which must become 503).
# Then runs django_auth.mjs (headless Chromium logs in and chats) and
# check_upgrade.py (the HTTP statuses and reasons of refused upgrades).
#
# Installs what is missing (a venv with Django 5.2 under target/django-auth,
# Chromium and playwright-core as tests/browser/run.sh does; builds
# target/release/roomcast if absent). Every step is time-limited; only the
# PIDs started here are stopped (SIGTERM, then SIGKILL). No stdin. Exits
# non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
BL_NAME=django-auth
. "$ROOT/loadtest/baselines/lib.sh"
ROOMCAST_BIN=${ROOMCAST_BIN:-$ROOT/target/release/roomcast}
VENV_DIR="$ROOT/target/django-auth"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-django-auth.XXXXXX")

say() { printf '[django-auth] %s\n' "$*"; }

DJANGO_PID=
ROOMCAST_PID=
ROOMCAST2_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    stop_pid "$ROOMCAST_PID" 10
    stop_pid "$ROOMCAST2_PID" 10
    stop_pid "$DJANGO_PID" 10
    if [ "$rc" -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -s "$f" ] || continue
            echo "----- $(basename "$f") (last 40 lines)"
            tail -n 40 "$f"
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --- install what is missing (bounded) ------------------------------------
export PIP_NO_INPUT=1
mkdir -p "$VENV_DIR"
timeout 900 bash -c "BL_NAME=django-auth; . '$ROOT/loadtest/baselines/lib.sh'; ensure_venv '$VENV_DIR' '$HERE/requirements.txt'" </dev/null
PY="$VENV_DIR/.venv/bin/python"
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    say "installing Debian's chromium"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 $sudo apt-get update -qq </dev/null
    timeout 900 $sudo apt-get install -y -qq chromium fonts-dejavu-core fonts-liberation </dev/null >/dev/null
fi
if [ ! -f "$ROOT/tests/browser/node_modules/playwright-core/package.json" ]; then
    say "installing playwright-core into tests/browser/node_modules"
    ensure_node
    (cd "$ROOT/tests/browser" && timeout 600 npm ci --no-audit --no-fund --loglevel=error </dev/null)
fi
if [ ! -x "$ROOMCAST_BIN" ]; then
    say "$ROOMCAST_BIN is missing; building it"
    timeout 1800 cargo build --release --bin roomcast </dev/null
fi

# --- free ports -------------------------------------------------------------
pick_port() {
    local p n
    for ((n = 0; n < 200; n++)); do
        p=$((20000 + RANDOM % 20000))
        if port_free "$p" && [[ " $TAKEN " != *" $p "* ]]; then
            echo "$p"
            return 0
        fi
    done
    bl_die "no free port found"
}
TAKEN=""
DJANGO_PORT=$(pick_port); TAKEN="$TAKEN $DJANGO_PORT"
ROOMCAST_PORT=$(pick_port); TAKEN="$TAKEN $ROOMCAST_PORT"
ROOMCAST2_PORT=$(pick_port)

# --- the Django site ----------------------------------------------------------
export DJANGO_SETTINGS_MODULE=authsite.settings
export DJANGO_AUTH_DB="$WORK/db.sqlite3"
export DJANGO_AUTH_PASSWORD="pw-$RANDOM-$RANDOM-$RANDOM"
export ROOMCAST_ORIGINS="http://127.0.0.1:$ROOMCAST_PORT,http://127.0.0.1:$ROOMCAST2_PORT"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
say "migrating a fresh sqlite database and making the users ann (staff) and bob"
timeout 120 "$PY" "$HERE/manage.py" migrate --noinput -v 0 </dev/null
timeout 60 "$PY" "$HERE/manage.py" seed_users </dev/null

say "starting Django (runserver 127.0.0.1:$DJANGO_PORT)"
"$PY" "$HERE/manage.py" runserver --noreload "127.0.0.1:$DJANGO_PORT" </dev/null >"$WORK/django.log" 2>&1 &
DJANGO_PID=$!
wait_listening "$DJANGO_PORT" "$DJANGO_PID" 60 || bl_die "Django did not listen on $DJANGO_PORT within 60 s"

# --- roomcast, asking Django --------------------------------------------------
start_roomcast() { # PORT AUTH_PATH LOG -> ROOMCAST_STARTED
    local port=$1 auth_path=$2 log=$3 i
    "$ROOMCAST_BIN" --bind "127.0.0.1:$port" --auth-url "http://127.0.0.1:$DJANGO_PORT$auth_path" \
        </dev/null >"$log" 2>&1 &
    ROOMCAST_STARTED=$!
    for ((i = 0; i < 150; i++)); do
        kill -0 "$ROOMCAST_STARTED" 2>/dev/null || bl_die "roomcast on $port exited at start: $(tail -n 5 "$log")"
        port_listening "$port" && return 0
        sleep 0.1
    done
    bl_die "roomcast did not listen on $port within 15 s"
}
say "starting $ROOMCAST_BIN on $ROOMCAST_PORT (--auth-url .../roomcast/auth/) and $ROOMCAST2_PORT (.../roomcast/auth-login-required/)"
start_roomcast "$ROOMCAST_PORT" /roomcast/auth/ "$WORK/roomcast.log"
ROOMCAST_PID=$ROOMCAST_STARTED
start_roomcast "$ROOMCAST2_PORT" /roomcast/auth-login-required/ "$WORK/roomcast2.log"
ROOMCAST2_PID=$ROOMCAST_STARTED

# --- the checks -------------------------------------------------------------
export DJANGO_URL="http://127.0.0.1:$DJANGO_PORT"
export ROOMCAST_URL="http://127.0.0.1:$ROOMCAST_PORT"
export ROOMCAST_PORT ROOMCAST2_PORT
say "browser checks (django_auth.mjs)"
timeout --kill-after=10 180 node "$HERE/django_auth.mjs" </dev/null
say "HTTP checks of refused upgrades (check_upgrade.py)"
(cd "$HERE" && timeout 120 "$PY" "$HERE/check_upgrade.py" </dev/null)
say "all Django auth checks passed"
