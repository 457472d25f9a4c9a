#!/usr/bin/env bash
# What Socket.IO connection-state recovery costs (docs/benchmarks.md, "Recovery"): server CPU per delivery,
# latency and RSS for a fan-out to MEMBERS Socket.IO members at RATE messages/s, with recovery off and on,
# alternated ROUNDS times (off, on, off, on, …) so drift hits both alike. Server pinned to core 0, load
# generator to core 1. Prints a Markdown table; compare the ratios, not the absolute figures.
#
#   bash bench/recovery.sh            # MEMBERS=1000 RATE=200 MESSAGES=400 ROUNDS=2
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p volna
bin=target/release/volna
members=${MEMBERS:-1000}
rate=${RATE:-200}
messages=${MESSAGES:-400}
rounds=${ROUNDS:-2}
ulimit -n 20000 2>/dev/null || true
results=$(mktemp)
for _ in $(seq "$rounds"); do
  for mode in off on; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    extra=()
    [ "$mode" = on ] && extra=(--recovery true)
    taskset -c 0 "$bin" serve --http-addr "127.0.0.1:$port" --tcp-addr 127.0.0.1:0 --log warn \
      --messages-per-second 0 "${extra[@]}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    echo "$mode $(taskset -c 1 "$bin" bench fanout -n "$members" -m "$messages" --rate "$rate" --size 64 \
      --url "socketio://127.0.0.1:$port" --pid "$pid" --json --quiet | tail -1)" >>"$results"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done
python3 - "$results" "$members" "$rate" <<'PY'
import json, sys
rows = [line.split(" ", 1) for line in open(sys.argv[1]) if line.strip()]
print(f"fan-out to {sys.argv[2]} Socket.IO members at {sys.argv[3]} messages/s, 64-byte payloads\n")
print("| recovery | server CPU per delivery (µs) | p50 (ms) | p99 (ms) | lost | server RSS (MiB) |")
print("|---|---|---|---|---|---|")
cpu = {"off": [], "on": []}
for mode, js in rows:
    d = json.loads(js)
    cpu[mode].append(d["server CPU per delivery (us)"])
    print(f"| {mode} | {d['server CPU per delivery (us)']:.2f} | {d['latency p50 (ms)']:.1f} | "
          f"{d['latency p99 (ms)']:.1f} | {d['lost']} | {d['server RSS (MiB)']:.1f} |")
mean = {k: sum(v) / len(v) for k, v in cpu.items() if v}
if len(mean) == 2:
    print(f"\nmean CPU per delivery, on / off: {mean['on'] / mean['off']:.2f}×")
PY
rm -f "$results"
