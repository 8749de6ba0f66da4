#!/usr/bin/env bash
# One load scenario across several roomcast nodes sharing rooms through one Redis
# (the pub/sub backplane), then the same scenario against a single node, side by side.
#
#   loadtest/multinode.sh                      # default: 300 clients in 10 rooms, 5 msg/s each
#   loadtest/multinode.sh --clients 3000 --rooms 30 --rate 1 --duration 10
#
# What it does, bounded in time (every harness run under `timeout`):
#   1. raises `ulimit -n` to the hard limit (the nodes and the harness inherit it);
#   2. installs redis-server with apt-get when it is missing (baselines/lib.sh ensure_apt);
#      builds target/release/roomcast and target/release/loadtest when they are missing
#      (REBUILD=1: always run `cargo build --release`, which is quick when up to date);
#   3. starts a private redis-server on a free 127.0.0.1 port (no persistence, in a
#      temporary directory), then NODES (3) release roomcast nodes, each
#      `--redis redis://127.0.0.1:RP/0 --bind 127.0.0.1:<free port>` (and `--workers
#      $WORKERS` when set; otherwise roomcast's own default);
#   4. runs the scenario across the nodes: `loadtest URL1 URL2 URL3 ... --server-pid` the
#      nodes' PIDs and Redis's, so CPU is measured per process (member m of each room on
#      node m % NODES; a message sent through one node must reach its room's members on all);
#   5. stops the nodes, starts ONE node with the same --redis and runs the SAME scenario
#      against it; then (WITHOUT_REDIS=1, the default) one node without --redis;
#   6. stops everything it started (by PID, trap on exit and Ctrl-C) and prints the runs
#      side by side: delivered/s, lost, latency p50/p99/max, server CPU microseconds per
#      delivery (the nodes' sum, Redis's, both), RSS (summed over the nodes), harness CPU.
#   Exit status: 0 when every run passed; 1 when any run lost a delivery or failed in any
#   other way (or a node died); 2 on a setup problem.
#
# Arguments: given, they are passed to `loadtest` INSTEAD of the default scenario
# (`--clients 300 --rooms 10 --rate 5 --duration 10 --warmup 2`); the script adds the
# URLs, `--server-pid`, `--json` and `-q` itself. Use a fixed-rate scenario (not saturate
# or idle) for a meaningful comparison.
#
# Environment:
#   NODES=3            nodes in the multi-node run (at least 2)
#   WORKERS=N          --workers for every roomcast node (default: roomcast's own)
#   WITHOUT_REDIS=0    skip the third run (one node, no backplane)
#   BASE_PORT=19300    ports are taken from here upwards, the first free ones
#   RUN_TIMEOUT=300    longest a harness run may take, seconds
#   HARNESS_CPU=N      pin the harness to core N (default: not pinned, see below)
#   REBUILD=1          cargo build --release before running, even if the binaries exist
#   KEEP=1             keep the run directory (logs, JSON lines) even when all passed
#   BACKPLANE=0        start the "redis" nodes WITHOUT --redis: their rooms are then separate
#                      and the multi-node run must show loss (a check of the harness and this
#                      script, not of roomcast)
#
# CPU pinning (this machine has 2 cores shared with other work): NOTHING is pinned by
# default. Three nodes plus Redis plus the harness are five busy processes on two cores;
# pinning the nodes to one core would turn the comparison into "three nodes share one
# core", and pinning each node to a core is impossible. Unpinned, every run -- three nodes
# or one -- gets the same two cores, the kernel spreads the work, and the figure that
# compares fairly is CPU per delivery (summed over the server processes), not the latency
# alone. The harness competes for the same cores: its CPU use and the run-queue waits of
# harness and servers are reported (and warned about by loadtest when above 5 % of the
# window), so a run starved of CPU shows as such. HARNESS_CPU pins the harness only, if a
# run wants it out of the kernel's balancing.
set -euo pipefail
BL_NAME=multinode
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/baselines/lib.sh"
cd "$ROOT"

NODES=${NODES:-3}
WITHOUT_REDIS=${WITHOUT_REDIS:-1}
BASE_PORT=${BASE_PORT:-19300}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
[[ "$NODES" =~ ^[0-9]+$ ]] && ((NODES >= 2 && NODES <= 64)) || { bl_log "NODES must be 2..64"; exit 2; }
[[ -z "${WORKERS:-}" || "$WORKERS" =~ ^[0-9]+$ ]] || { bl_log "WORKERS must be a number"; exit 2; }
[[ "$RUN_TIMEOUT" =~ ^[0-9]+$ ]] || { bl_log "RUN_TIMEOUT must be a number of seconds"; exit 2; }

if (($# > 0)); then
    SCENARIO=("$@")
else
    SCENARIO=(--clients 300 --rooms 10 --rate 5 --duration 10 --warmup 2)
fi

ulimit -n "$(ulimit -Hn)"

# --- dependencies and binaries ------------------------------------------------------
ensure_apt redis-server redis-server
ensure_apt python3 python3
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
if [ "${REBUILD:-0}" = 1 ] || [ ! -x "$BIN/roomcast" ]; then
    bl_log "cargo build --release --bin roomcast"
    cargo build --release --bin roomcast >&2 || { bl_log "build of roomcast failed"; exit 2; }
fi
if [ "${REBUILD:-0}" = 1 ] || [ ! -x "$BIN/loadtest" ]; then
    bl_log "cargo build --release -p loadtest"
    cargo build --release -p loadtest --bin loadtest >&2 || { bl_log "build of loadtest failed"; exit 2; }
fi

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-multinode.XXXXXX")
RESULTS="$RUN_DIR/results.jsonl"
: > "$RESULTS"

# --- processes this script started (and only those get signals) ----------------------
REDIS_PID=
NODE_PIDS=()
stop_nodes() {
    local pid
    # `|| true`: stop_pid's `wait` returns a dead child's status, which set -e would obey.
    for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid" 10 || true; done
    NODE_PIDS=()
}
cleanup() {
    local rc=$1
    trap - EXIT INT TERM HUP
    set +e   # stop everything even if one step fails
    stop_nodes
    stop_pid "$REDIS_PID" 10 || true
    REDIS_PID=
    if [ "$rc" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$RUN_DIR"
    else
        bl_log "logs and JSON lines kept in $RUN_DIR"
    fi
    exit "$rc"
}
trap 'cleanup $?' EXIT
trap 'cleanup 130' INT
trap 'cleanup 143' TERM HUP

# next_port: the first free port from NEXT_PORT on (sets PORT_FOUND, advances NEXT_PORT).
NEXT_PORT=$BASE_PORT
next_port() {
    local p
    for ((p = NEXT_PORT; p < NEXT_PORT + 1000 && p <= 65535; p++)); do
        if port_free "$p"; then
            PORT_FOUND=$p
            NEXT_PORT=$((p + 1))
            return 0
        fi
    done
    bl_log "no free port from $NEXT_PORT on"
    exit 2
}

# --- Redis ----------------------------------------------------------------------------
next_port
REDIS_PORT=$PORT_FOUND
mkdir -p "$RUN_DIR/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes --daemonize no \
    --save "" --appendonly no --dir "$RUN_DIR/redis" --loglevel warning --logfile "" \
    --databases 1 --maxclients 19000 --timeout 0 </dev/null >"$RUN_DIR/redis.log" 2>&1 &
REDIS_PID=$!
wait_listening "$REDIS_PORT" "$REDIS_PID" 30 || { bl_log "redis-server did not come up; see $RUN_DIR/redis.log"; exit 2; }
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
BACKPLANE_ARGS=(--redis "$REDIS_URL")
KIND=redis
if [ "${BACKPLANE:-1}" = 0 ]; then
    BACKPLANE_ARGS=()
    KIND=separate
    bl_log "BACKPLANE=0: the nodes do not share rooms, expect loss across nodes"
fi
bl_log "redis-server (pid $REDIS_PID) on 127.0.0.1:$REDIS_PORT"

# start_node NAME [roomcast args...]: one release node on a free port, in the background;
# appends its PID to NODE_PIDS and its URL to NODE_URLS.
NODE_URLS=()
start_node() {
    local name=$1 port pid
    shift
    next_port
    port=$PORT_FOUND
    "$BIN/roomcast" --bind "127.0.0.1:$port" --log-level warn ${WORKERS:+--workers "$WORKERS"} "$@" \
        </dev/null >"$RUN_DIR/$name.log" 2>&1 &
    pid=$!
    if ! wait_listening "$port" "$pid" 30; then
        bl_log "$name did not come up on 127.0.0.1:$port; its log:"
        tail -n 20 "$RUN_DIR/$name.log" >&2 || true
        exit 2
    fi
    NODE_PIDS+=("$pid")
    NODE_URLS+=("ws://127.0.0.1:$port/ws/chat/")
    bl_log "$name (pid $pid) on 127.0.0.1:$port $*"
}

# run_scenario LABEL PID...: the harness against NODE_URLS, measuring the given PIDs;
# appends {"label", "node_pids", "redis_pid", "report"} to RESULTS. Returns the harness's
# status (0 ok, 1 failed checks, 124 timed out, ...).
run_scenario() {
    local label=$1 rc=0 pid alive=1
    shift
    local pids=("$@") pid_args=() pin=()
    for pid in "${pids[@]}"; do pid_args+=(--server-pid "$pid"); done
    [ -n "${HARNESS_CPU:-}" ] && pin=(--cpu "$HARNESS_CPU")
    bl_log "run '$label': loadtest ${NODE_URLS[*]} ${SCENARIO[*]}"
    timeout --kill-after=10 "$RUN_TIMEOUT" "$BIN/loadtest" "${NODE_URLS[@]}" "${SCENARIO[@]}" \
        "${pid_args[@]}" "${pin[@]}" --json -q >"$RUN_DIR/$label.json" 2>"$RUN_DIR/$label.err" || rc=$?
    for pid in "${NODE_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { alive=0; bl_log "run '$label': node pid $pid died"; }
    done
    LABEL=$label RC=$rc ALIVE=$alive NODES_N=${#NODE_PIDS[@]} REDIS_PID_USED=$([ "${pids[-1]}" = "$REDIS_PID" ] && echo 1 || echo 0) \
        python3 - "$RUN_DIR/$label.json" >>"$RESULTS" <<'PY'
import json, os, sys
text = open(sys.argv[1]).read().strip()
try:
    report = json.loads(text.splitlines()[-1]) if text else None
except ValueError:
    report = None
print(json.dumps({
    "label": os.environ["LABEL"],
    "status": int(os.environ["RC"]),
    "nodes_alive": os.environ["ALIVE"] == "1",
    "node_count": int(os.environ["NODES_N"]),
    "redis_measured": os.environ["REDIS_PID_USED"] == "1",
    "report": report,
}))
PY
    if ((rc != 0)); then
        bl_log "run '$label' exited $rc"
        [ -s "$RUN_DIR/$label.err" ] && tail -n 5 "$RUN_DIR/$label.err" >&2
    fi
    return 0
}

# --- run 1: NODES nodes on the backplane --------------------------------------------
NODE_URLS=()
for ((k = 1; k <= NODES; k++)); do start_node "node$k" "${BACKPLANE_ARGS[@]}"; done
run_scenario "${NODES}-nodes-$KIND" "${NODE_PIDS[@]}" "$REDIS_PID"
stop_nodes

# --- run 2: one node on the backplane -------------------------------------------------
NODE_URLS=()
start_node "single-redis" "${BACKPLANE_ARGS[@]}"
run_scenario "1-node-$KIND" "${NODE_PIDS[@]}" "$REDIS_PID"
stop_nodes

# --- run 3: one node, no backplane ----------------------------------------------------
if [ "$WITHOUT_REDIS" = 1 ]; then
    NODE_URLS=()
    start_node "single-plain"
    run_scenario "1-node-plain" "${NODE_PIDS[@]}"
    stop_nodes
fi
stop_pid "$REDIS_PID" 10 || true
REDIS_PID=

# --- side by side -------------------------------------------------------------------------
bl_log "scenario: ${SCENARIO[*]}${WORKERS:+ (--workers $WORKERS)}"
set +e
python3 - "$RESULTS" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]

def per_delivery(cpu, delivered):
    return None if cpu is None or not delivered else cpu * 1e6 / delivered

rows = {}
order = ["nodes", "clients / rooms", "rate per sender", "sent", "delivered/s", "lost",
         "latency p50", "latency p99", "latency max", "cpu/delivery nodes",
         "cpu/delivery redis", "cpu/delivery total", "rss nodes (sum)", "rss redis",
         "harness cpu", "cpu wait harness/servers", "status"]
bad = False
for run in runs:
    r = run["report"] or {}
    col = {}
    n = run["node_count"]
    cpu = r.get("server_cpu_s_per_pid") or []
    rss = r.get("server_rss_kb_per_pid") or []
    node_cpu = cpu[:n]
    node_cpu = sum(node_cpu) if node_cpu and None not in node_cpu else None
    redis_cpu = cpu[n] if run["redis_measured"] and len(cpu) > n else None
    node_rss = rss[:n]
    node_rss = sum(node_rss) if node_rss and None not in node_rss else None
    redis_rss = rss[n] if run["redis_measured"] and len(rss) > n else None
    d = r.get("delivered")
    lat = r.get("latency_us") or {}
    ms = lambda us: "-" if us is None else f"{us / 1000:.2f} ms"
    us = lambda v: "-" if v is None else f"{v:.2f} us"
    mib = lambda kb: "-" if kb is None else f"{kb / 1024:.1f} MiB"
    total = None if node_cpu is None else node_cpu + (redis_cpu or 0.0)
    col["nodes"] = str(r.get("nodes", n))
    col["clients / rooms"] = f"{r.get('connected', '-')}/{r.get('clients', '-')} in {r.get('rooms', '-')}"
    col["rate per sender"] = f"{r.get('rate_per_sender', '-')} msg/s"
    col["sent"] = str(r.get("sent", "-"))
    col["delivered/s"] = f"{r['delivered_per_sec']:.0f}" if "delivered_per_sec" in r else "-"
    col["lost"] = f"{r.get('lost', '-')} of {r.get('expected_deliveries', '-')}"
    col["latency p50"] = ms(lat.get("p50"))
    col["latency p99"] = ms(lat.get("p99"))
    col["latency max"] = ms(lat.get("max"))
    col["cpu/delivery nodes"] = us(per_delivery(node_cpu, d))
    col["cpu/delivery redis"] = us(per_delivery(redis_cpu, d))
    col["cpu/delivery total"] = us(per_delivery(total, d))
    col["rss nodes (sum)"] = mib(node_rss)
    col["rss redis"] = mib(redis_rss)
    col["harness cpu"] = f"{r['harness_cpu_util'] * 100:.0f}% of a core" if "harness_cpu_util" in r else "-"
    hw, sw = r.get("harness_cpu_wait_s"), r.get("server_cpu_wait_s")
    col["cpu wait harness/servers"] = ("-" if hw is None else f"{hw:.2f}") + " / " + ("-" if sw is None else f"{sw:.2f} s")
    ok = bool(r.get("ok")) and run["status"] == 0 and run["nodes_alive"]
    why = []
    if not run["nodes_alive"]:
        why.append("a node died")
    if run["status"] == 124:
        why.append("timed out")
    why += r.get("failures") or ([] if r else ["no report"])
    col["status"] = "ok" if ok else "FAILED: " + "; ".join(why)
    bad |= not ok
    rows[run["label"]] = col

labels = [run["label"] for run in runs]
w0 = max(len(k) for k in order)
widths = [max(len(l), *(len(rows[l][k]) for k in order if k != "status")) for l in labels]
print(f"{'':<{w0}}  " + "  ".join(f"{l:>{w}}" for l, w in zip(labels, widths)))
for k in order:
    if k == "status":
        continue
    print(f"{k:<{w0}}  " + "  ".join(f"{rows[l][k]:>{w}}" for l, w in zip(labels, widths)))
for l in labels:
    print(f"{l}: {rows[l]['status']}")
for run in runs:
    for w in (run["report"] or {}).get("warnings") or []:
        print(f"{run['label']}: warning: {w}")
sys.exit(1 if bad else 0)
PY
status=$?
set -e
exit "$status"
