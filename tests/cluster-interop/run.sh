#!/usr/bin/env bash
# Cluster interop: a Node.js socket.io server with @socket.io/redis-adapter, a @socket.io/redis-emitter
# script and a volna node share one redis-server (docs/cluster.md). Needs redis-server and the npm packages
# (scripts/install-test-deps.sh installs both).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)

if ! command -v redis-server >/dev/null; then
  echo "=========="
  echo "SKIPPED cluster interop: redis-server is not installed (scripts/install-test-deps.sh installs it)"
  echo "=========="
  exit 0
fi
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
[ -d node_modules/@socket.io/redis-streams-adapter ] || npm ci --no-audit --no-fund --loglevel=error

(cd "$ROOT" && cargo build -q -p volna)
VOLNA="$ROOT/target/debug/volna"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port)
HTTP_PORT=$(free_port)
TCP_PORT=$(free_port)
PREFIX="interop-$$"
LOG=$(mktemp -d)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$LOG"
}
trap cleanup EXIT

# wait_joined WHAT LOGS PORT…: waits (10 s at most) until each node's /health says Redis is up; else shows
# the logs and fails.
wait_joined() {
  local what=$1 logs=$2 port
  shift 2
  for port in "$@"; do
    for _ in $(seq 100); do
      if curl -fsS "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"redis":"up"'; then break; fi
      sleep 0.1
    done
    if ! curl -fsS "http://127.0.0.1:$port/health" | grep -q '"redis":"up"'; then
      echo "$what on port $port did not join the cluster:"
      # shellcheck disable=SC2086
      cat $logs
      exit 1
    fi
  done
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$LOG/redis.log" 2>&1 &
pids+=($!)
# Two volna nodes: the Node suite talks to the first; the server-API suite (cent) to both.
API_KEY="cluster-$$-$RANDOM-key"
HTTP2_PORT=$(free_port)
TCP2_PORT=$(free_port)
"$VOLNA" serve --tcp-addr "127.0.0.1:$TCP_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --node-name volna-a \
  --api-key "$API_KEY" --redis "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$PREFIX" --log warn >"$LOG/volna.log" 2>&1 &
pids+=($!)
"$VOLNA" serve --tcp-addr "127.0.0.1:$TCP2_PORT" --http-addr "127.0.0.1:$HTTP2_PORT" --node-name volna-b \
  --api-key "$API_KEY" --redis "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$PREFIX" --log warn >"$LOG/volna2.log" 2>&1 &
pids+=($!)

wait_joined "volna" "$LOG/volna*.log" "$HTTP_PORT" "$HTTP2_PORT"

REDIS_URL="redis://127.0.0.1:$REDIS_PORT" VOLNA_URL="http://127.0.0.1:$HTTP_PORT" PREFIX="$PREFIX" \
  node --test cluster.test.mjs || { echo "--- volna log"; cat "$LOG/volna.log"; exit 1; }

# The server API across the two nodes, with the stock Centrifugo client (cent, in the interop venv).
VENV="$ROOT/target/interop-venv"
[ -x "$VENV/bin/python" ] || (cd "$ROOT" && bash scripts/install-test-deps.sh) || exit 1
VOLNA_A="http://127.0.0.1:$HTTP_PORT" VOLNA_B="http://127.0.0.1:$HTTP2_PORT" API_KEY="$API_KEY" \
  timeout -k 5 120 "$VENV/bin/python" -m unittest -v api_two_nodes.py ||
  { echo "--- volna logs"; cat "$LOG"/volna*.log; exit 1; }

# Redis Streams mode (streams.test.mjs): two more volna nodes with connection-state recovery share the stream
# "$SPREFIX" and the sessions under "$SPREFIX:session:" with the suite's Node.js server
# (@socket.io/redis-streams-adapter); clients are moved between the three through a TCP proxy and recover.
SPREFIX="streams-$$"
SHTTP_A=$(free_port)
STCP_A=$(free_port)
SHTTP_B=$(free_port)
STCP_B=$(free_port)
for node in a b; do
  if [ "$node" = a ]; then http=$SHTTP_A tcp=$STCP_A; else http=$SHTTP_B tcp=$STCP_B; fi
  "$VOLNA" serve --tcp-addr "127.0.0.1:$tcp" --http-addr "127.0.0.1:$http" --node-name "streams-$node" \
    --redis "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$SPREFIX" --redis-mode streams \
    --redis-session-prefix "$SPREFIX:session:" --recovery true --max-disconnection-ms 120000 \
    --log warn >"$LOG/streams-$node.log" 2>&1 &
  pids+=($!)
done
wait_joined "volna (streams mode)" "$LOG/streams-*.log" "$SHTTP_A" "$SHTTP_B"

REDIS_URL="redis://127.0.0.1:$REDIS_PORT" VOLNA_A="http://127.0.0.1:$SHTTP_A" VOLNA_B="http://127.0.0.1:$SHTTP_B" \
  PREFIX="$SPREFIX" timeout -k 5 180 node --test streams.test.mjs ||
  { echo "--- volna logs (streams mode)"; for f in "$LOG"/streams-*.log; do echo "--- $f"; cat "$f"; done; exit 1; }

# Rolling restarts (restart.test.mjs): the suite starts its own volna nodes (two in streams mode with
# recovery on this redis-server, one alone), moves 200 Socket.IO clients off a node it sends SIGTERM to,
# through a load balancer of its own, and checks /ws and TCP clients are told to reconnect.
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" PREFIX="restart-$$" VOLNA_BIN="$VOLNA" \
  timeout -k 5 120 node --test restart.test.mjs ||
  { echo "=========="; echo "FAILED rolling restarts (restart.test.mjs): volna's stderr is printed above"; echo "=========="; exit 1; }
