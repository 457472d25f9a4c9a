#!/usr/bin/env bash
# Image sharing vs. event-loop responsiveness: the same load against a server that makes
# thumbnails on its worker pool and against one that makes them inline on the event loop
# (--images-inline, a benchmark-only switch). Server pinned to core 0, load generator to core 1.
# Prints both reports; docs/concurrency.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p volna
bin=target/release/volna
duration=${DURATION:-10}
for mode in pool inline; do
  extra=()
  [ "$mode" = inline ] && extra=(--images-inline)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  taskset -c 0 "$bin" serve --tcp-addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" --log warn --messages-per-second 0 "${extra[@]}" &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  echo "### thumbnails: $mode"
  taskset -c 1 "$bin" bench images --url "ws://127.0.0.1:$port/ws" --duration "$duration" --quiet "$@"
  kill $server; wait $server 2>/dev/null || true
  trap - EXIT
done
