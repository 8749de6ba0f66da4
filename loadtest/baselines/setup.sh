#!/usr/bin/env bash
# Install everything the baselines need, then print the versions installed.
#   loadtest/baselines/setup.sh              channels channels-redis bun uws ws
#   loadtest/baselines/setup.sh --all        the same plus roomcast's release build
#   loadtest/baselines/setup.sh NAME...      only those
#   loadtest/baselines/setup.sh --versions   print the installed versions only
# Each baseline's install step is its `run.sh --install` (idempotent, fast when
# already installed). Exits non-zero if any of them failed.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

versions() {
    local v
    echo "node $(node --version 2>/dev/null || echo missing)"
    for p in ws/node_modules/ws uws/node_modules/uwebsockets bun/node_modules/bun; do
        v=$(node -p "require('$HERE/$p/package.json').version" 2>/dev/null) || v="not installed"
        echo "npm ${p##*/} $v"
    done
    v=$("$HERE/bun/node_modules/bun/bin/bun.exe" --version 2>/dev/null) || v="not installed"
    echo "bun --version $v"
    if [ -x "$HERE/channels/.venv/bin/python" ]; then
        echo "python $("$HERE/channels/.venv/bin/python" -c 'import platform; print(platform.python_version())')"
        "$HERE/channels/.venv/bin/python" -m pip freeze 2>/dev/null \
            | grep -iE '^(channels|channels[-_]redis|daphne|django|redis|twisted|autobahn|asgiref)==' | sed 's/^/pip /'
    else
        echo "pip channels venv not installed"
    fi
    echo "$(redis-server --version 2>/dev/null || echo 'redis-server missing')"
}

names=(channels channels-redis bun uws ws)
case "${1:-}" in
    --versions) versions; exit 0 ;;
    --all) names+=(roomcast) ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    "") ;;
    *) names=("$@") ;;
esac

failed=()
for n in "${names[@]}"; do
    if [ ! -x "$HERE/$n/run.sh" ]; then
        echo "setup: no baseline named '$n'" >&2
        failed+=("$n")
        continue
    fi
    echo "== $n" >&2
    "$HERE/$n/run.sh" --install || failed+=("$n")
done

echo "== versions"
versions
if [ ${#failed[@]} -gt 0 ]; then
    echo "setup: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "setup: ok (${names[*]})"
