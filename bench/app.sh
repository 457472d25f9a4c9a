#!/usr/bin/env bash
# Your own application's costs, in one run (docs/benchmarks.md, "Applications"): a custom event's
# fan-out against a message's, the server API publishing into a 1000-member room, and the rpc
# hook's added round-trip latency against a plain echo. Server pinned to core 0; load generator and
# hook backend to core 1. Compare the rows as ratios within the run.
#
#   bash bench/app.sh                # MEMBERS=1000 MESSAGES=2000 RATE=1000 ROUND_TRIPS=2000
#
# The three fan-outs run at the same rate (RATE messages/s into the room), so their CPU per delivery
# compares; the API is also run unpaced for its throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p volna
bin=target/release/volna
members=${MEMBERS:-1000}
messages=${MESSAGES:-2000}
rate=${RATE:-1000}
trips=${ROUND_TRIPS:-2000}
key=bench-api-key-$$
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
hook_port=$(free_port)
work=$(mktemp -d)
cat >"$work/volna.toml" <<TOML
# Events named "order" in rpc:* rooms go to the rpc hook; everything else is relayed.
[[rooms]]
match = "rpc:*"
rpc = ["order"]
[[rooms]]
match = "*"
TOML
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
taskset -c 1 "$bin" bench hook-backend --addr "127.0.0.1:$hook_port" 2>/dev/null &
pids+=($!)
# No per-connection rate limit: the publisher sends $rate messages a second.
taskset -c 0 "$bin" serve --tcp-addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" --log warn --messages-per-second 0 \
  --config "$work/volna.toml" --api-key "$key" --rpc-hook-url "http://127.0.0.1:$hook_port/rpc" &
server=$!
pids+=($server)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
load() { taskset -c 1 "$bin" bench "$@" --pid "$server" --quiet; }
ws="ws://127.0.0.1:$port/ws"
echo "### fan-out of a message ($members members, one /ws publisher, $rate/s)"
load fanout --url "$ws" -n "$members" -m "$messages" --rate "$rate" --room fan-msg
echo "### fan-out of a custom event (same)"
load fanout --url "$ws" -n "$members" -m "$messages" --rate "$rate" --room fan-ev --event tick
echo "### the server API publishing into the room ($members members, 4 HTTP connections, $rate/s)"
load api --url "$ws" -n "$members" -m "$messages" --rate "$rate" --room fan-api --api "http://127.0.0.1:$port" --api-key "$key"
echo "### the server API, unpaced: as fast as the answers come"
load api --url "$ws" -n "$members" -m "$messages" --room fan-api2 --api "http://127.0.0.1:$port" --api-key "$key"
echo "### round trips: echo (no hook), 10 /ws clients"
load echo --url "$ws" -n 10 -m $((trips / 10)) --room rpc:a
echo "### round trips: an rpc event answered by the hook backend, 10 /ws clients"
load echo --url "$ws" -n 10 -m $((trips / 10)) --room rpc:b --rpc order
