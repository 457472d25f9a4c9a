#!/usr/bin/env bash
# Cross-node fan-out through Redis (docs/cluster.md): `volna bench fanout` against
#   1. one volna node, no Redis (the in-memory baseline),
#   2. one node with --redis (every broadcast also published to Redis),
#   3. two nodes with --redis, the room's members spread over both (half reached across nodes),
# reporting deliveries/s, latency p50/p99, volna CPU per delivery and redis-server's own CPU per message
# (from /proc/<pid>/stat). Writes docs/benchmarks-cluster.md (linked from docs/benchmarks.md).
#
#   bench/cluster.sh [CLIENTS] [MESSAGES] [RATE]     defaults: 200 2000 1000 (messages/s, 0 = flat out)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-200}
MESSAGES=${2:-2000}
RATE=${3:-1000}
PROTO=${PROTO:-socketio}
OUT=docs/benchmarks-cluster.md

command -v redis-server >/dev/null || { echo "bench/cluster.sh needs redis-server (scripts/install-test-deps.sh)"; exit 1; }
cargo build -q --release -p volna
VOLNA=target/release/volna

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
REDIS_PID=$!; pids+=($REDIS_PID)
sleep 0.3

start_node() { # $1 = extra flags; prints "PID HTTP_PORT"
  local http tcp
  http=$(free_port); tcp=$(free_port)
  # shellcheck disable=SC2086
  $VOLNA serve --http-addr "127.0.0.1:$http" --tcp-addr "127.0.0.1:$tcp" --log warn --queue-frames 65536 --messages-per-second 0 $1 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$http/health" >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$pid $http"
}

url() { case $PROTO in socketio) echo "socketio://127.0.0.1:$1";; ws) echo "ws://127.0.0.1:$1/ws";; esac; }

run() { # $1 = label, $2 = node flags, $3 = nodes (1|2)
  read -r p1 h1 < <(start_node "$2"); pids+=("$p1")
  local spread=()
  if [ "$3" = 2 ]; then
    read -r p2 h2 < <(start_node "$2"); pids+=("$p2")
    spread=(--spread-url "$(url "$h2")")
  fi
  sleep 0.5
  local r0; r0=$(ticks "$REDIS_PID")
  local json
  json=$($VOLNA bench fanout --url "$(url "$h1")" "${spread[@]}" --pid "$p1" -n "$CLIENTS" -m "$MESSAGES" \
    --rate "$RATE" --json --quiet --room "bench-$RANDOM")
  local r1; r1=$(ticks "$REDIS_PID")
  kill "$p1" ${p2:-} 2>/dev/null || true
  wait "$p1" ${p2:-} 2>/dev/null || true
  python3 - "$1" "$json" "$((r1 - r0))" "$(getconf CLK_TCK)" "$MESSAGES" "$3" <<'PY'
import json, sys
label, js, rticks, hz, messages, nodes = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
redis_us = rticks / hz * 1e6 / messages
print("| %s | %d | %.0f | %d | %.2f | %.2f | %.2f | %s |" % (
    label, nodes, js.get("deliveries/s", 0), js.get("lost", 0), js.get("latency p50 (ms)", 0),
    js.get("latency p99 (ms)", 0), js.get("server CPU per delivery (us)", 0),
    ("%.1f" % redis_us) if label != "in-memory" else "-"))
PY
  p2=""
}

{
  echo "## Cluster"
  echo
  echo "Cross-node fan-out through one local redis-server ($(redis-server --version | awk '{print $3}')), \`bench/cluster.sh $CLIENTS $MESSAGES $RATE\`:"
  echo "$CLIENTS $PROTO members in one room, one publisher sending $MESSAGES messages at $RATE/s (0 = flat out), 64-byte payloads;"
  echo "with two nodes every second member is connected to the second node. $(nproc) CPUs shared by the bench, the nodes and Redis; $(date -u +%Y-%m-%d)."
  echo "*volna CPU/delivery* is the first node's CPU only; *Redis CPU/message* is redis-server's user+system time divided by messages published (its clock-tick resolution is 10 ms, so short runs are coarse)."
  echo
  echo "| setup | nodes | deliveries/s | lost | p50 (ms) | p99 (ms) | volna CPU/delivery (us) | Redis CPU/message (us) |"
  echo "|---|---|---|---|---|---|---|---|"
  run "in-memory" "" 1
  run "redis, 1 node" "--redis redis://127.0.0.1:$REDIS_PORT --redis-prefix bench" 1
  run "redis, 2 nodes" "--redis redis://127.0.0.1:$REDIS_PORT --redis-prefix bench" 2
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
