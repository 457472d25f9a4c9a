#!/usr/bin/env bash
# Side-by-side benchmark: volna vs Node socket.io, python-socketio and socketioxide.
# Writes docs/benchmarks.md. See bench/compare.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { apt-get update && apt-get install -y util-linux; }
exec python3 bench/compare.py "$@"
