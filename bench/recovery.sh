#!/usr/bin/env bash
# What Socket.IO connection-state recovery costs (docs/benchmarks.md, "Recovery"): server CPU per delivery,
# latency and RSS for a fan-out to MEMBERS Socket.IO members at RATE messages/s, with recovery off and on,
# alternated ROUNDS times (off, on, off, on, …) so drift hits both alike. Server pinned to core 0, load
# generator to core 1. Prints a Markdown table; compare the ratios, not the absolute figures.
# CASES picks what is compared (the first is the baseline of the ratios):
#   off      a single node, recovery off
#   on       a single node, recovery on
#   pubsub   recovery on, joined to a Redis (classic pub/sub adapter)
#   streams  recovery on, joined to a Redis in streams mode (every message ordered by the stream)
#   base     recovery off, the binary BASE_BIN (an older build, e.g. before a change on the hot path)
#   scraped  recovery off, with GET /metrics scraped every second during the run
# Redis (when a case needs it) runs on core 1 with the load generator.
#
#   bash bench/recovery.sh                       # CASES="off on" MEMBERS=1000 RATE=200 MESSAGES=400 ROUNDS=2
#   CASES="pubsub streams" bash bench/recovery.sh
#   NO_BUILD=1 uses target/release/volna as it is
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p volna
bin=target/release/volna
members=${MEMBERS:-1000}
rate=${RATE:-200}
messages=${MESSAGES:-400}
rounds=${ROUNDS:-2}
ulimit -n 20000 2>/dev/null || true
cases=${CASES:-off on}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_pid=
case " $cases " in
  *" pubsub "* | *" streams "*)
    redis_port=$(free_port)
    taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    redis_pid=$!
    trap 'kill $redis_pid 2>/dev/null || true' EXIT
    sleep 0.3
    ;;
esac
results=$(mktemp)
for round in $(seq "$rounds"); do
  for mode in $cases; do
    port=$(free_port)
    redis=(--redis "redis://127.0.0.1:${redis_port:-0}" --redis-prefix "bench-$round-$mode")
    server=$bin
    scraper=
    case $mode in
      off | scraped) extra=() ;;
      base) extra=(); server=${BASE_BIN:?BASE_BIN names the binary of case base} ;;
      on) extra=(--recovery true) ;;
      pubsub) extra=(--recovery true "${redis[@]}") ;;
      streams) extra=(--recovery true "${redis[@]}" --redis-mode streams) ;;
      *) echo "unknown case $mode" >&2; exit 2 ;;
    esac
    taskset -c 0 "$server" serve --http-addr "127.0.0.1:$port" --tcp-addr 127.0.0.1:0 --log warn \
      --messages-per-second 0 "${extra[@]}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    if [ "$mode" = scraped ]; then
      (while sleep 1; do curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics" || break; done) &
      scraper=$!
    fi
    echo "$mode $(taskset -c 1 "$bin" bench fanout -n "$members" -m "$messages" --rate "$rate" --size 64 \
      --url "socketio://127.0.0.1:$port" --pid "$pid" --json --quiet | tail -1)" >>"$results"
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done
python3 - "$results" "$members" "$rate" "$cases" <<'PY'
import json, sys
rows = [line.split(" ", 1) for line in open(sys.argv[1]) if line.strip()]
cases = sys.argv[4].split()
print(f"fan-out to {sys.argv[2]} Socket.IO members at {sys.argv[3]} messages/s, 64-byte payloads\n")
print("| case | server CPU per delivery (µs) | p50 (ms) | p99 (ms) | lost | server RSS (MiB) |")
print("|---|---|---|---|---|---|")
cpu = {c: [] for c in cases}
for mode, js in rows:
    d = json.loads(js)
    cpu[mode].append(d["server CPU per delivery (us)"])
    print(f"| {mode} | {d['server CPU per delivery (us)']:.2f} | {d['latency p50 (ms)']:.1f} | "
          f"{d['latency p99 (ms)']:.1f} | {d['lost']} | {d['server RSS (MiB)']:.1f} |")
mean = {k: sum(v) / len(v) for k, v in cpu.items() if v}
base = cases[0]
for c in cases[1:]:
    if c in mean and base in mean:
        print(f"\nmean CPU per delivery, {c} / {base}: {mean[c] / mean[base]:.2f}×")
PY
rm -f "$results"
