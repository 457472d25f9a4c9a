#!/usr/bin/env bash
# One cluster of N volna nodes behind one Redis, with a very large room: connect CLIENTS Socket.IO
# clients spread over the nodes, hold them, broadcast to everyone; then many small rooms. Measures
# per node RSS, CPU, event-loop lag, disconnects and cluster figures at every phase of the load
# generator, the kernel's socket memory, the generator's own memory and Redis's CPU. The driver is
# bench/scale.py; this wrapper checks, builds, raises the open-files limit and cleans up.
#
#   bench/scale.sh [NODES] [CLIENTS] [HOLD_SECONDS]          defaults: 6 100000 300 (16 667 a node: under the 20 000 open files a process may hold)
#
# Environment (defaults):
#   PROCESSES=NODES      load generator processes (volna bench fanout --processes)
#   MESSAGES=3           broadcasts to the big room (one a second)
#   SMALL_ROOMS=1000     phase B: rooms (--rooms), one publisher each
#   SMALL_CLIENTS=20000  phase B: members over all rooms (0: no phase B)
#   SMALL_MESSAGES=SMALL_ROOMS*MESSAGES, SMALL_RATE=SMALL_ROOMS (messages/s in total)
#   OUT=docs/benchmarks-scale.md
#   NODE_CPUS=0 GEN_CPUS=1   taskset CPU lists: nodes and Redis / load generator
#   NO_BUILD=1           use target/release/volna as it is (VOLNA=path for another binary)
#   COMPAT=1             the old single-process generator (--url/--spread-url, no phases)
#   NODE_FLAGS="..."     extra flags for every `volna serve`
#   CONCURRENCY=512  TIMEOUT=seconds (whole generator run)  PROGRESS=15 (seconds between status lines)
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${1:-${NODES:-6}}
CLIENTS=${2:-${CLIENTS:-100000}}
HOLD=${3:-${HOLD:-300}}
export NODES CLIENTS HOLD
export PROCESSES=${PROCESSES:-$NODES}
export MESSAGES=${MESSAGES:-3}
export SMALL_ROOMS=${SMALL_ROOMS:-1000}
export SMALL_CLIENTS=${SMALL_CLIENTS:-20000}
export OUT=${OUT:-docs/benchmarks-scale.md}
export NODE_CPUS=${NODE_CPUS:-0}
export GEN_CPUS=${GEN_CPUS:-1}
export VOLNA=${VOLNA:-target/release/volna}

for v in NODES CLIENTS HOLD PROCESSES MESSAGES SMALL_ROOMS SMALL_CLIENTS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench/scale.sh: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
if [ "$NODES" -lt 1 ] || [ "$PROCESSES" -lt 1 ] || [ "$CLIENTS" -lt 1 ]; then
  echo "bench/scale.sh: NODES, PROCESSES and CLIENTS must be at least 1" >&2; exit 2
fi

command -v redis-server >/dev/null ||
  { echo "bench/scale.sh needs redis-server (scripts/install-test-deps.sh, or apt-get install redis-server)" >&2; exit 1; }
command -v taskset >/dev/null ||
  { echo "bench/scale.sh needs taskset (Debian: util-linux)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench/scale.sh needs python3" >&2; exit 1; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build -q --release -p volna
fi
[ -x "$VOLNA" ] || { echo "bench/scale.sh: no volna binary at $VOLNA (build it, or unset NO_BUILD)" >&2; exit 1; }

# Every process started from here on (Redis, the nodes, the generator) inherits this limit.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then hard=$(cat /proc/sys/fs/nr_open); fi
ulimit -Sn "$hard" || echo "bench/scale.sh: could not raise the open-files limit to $hard (it stays $(ulimit -Sn))" >&2

# The driver records the process group of everything it starts in this file and empties it once it
# has stopped them; if the driver itself dies hard, the EXIT trap stops what is left.
SCALE_STATE_FILE=$(mktemp "${TMPDIR:-/tmp}/volna-scale-pids.XXXXXX")
export SCALE_STATE_FILE
py=""
leftovers() {
  local pgid _
  while read -r pgid _; do
    [[ $pgid =~ ^[0-9]+$ ]] || continue
    if kill -0 -- "-$pgid" 2>/dev/null; then
      echo "bench/scale.sh: stopping leftover process group $pgid" >&2
      kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
  done <"$SCALE_STATE_FILE"
  rm -f "$SCALE_STATE_FILE"
}
forward() { if [ -n "$py" ]; then kill "-$1" "$py" 2>/dev/null || true; fi; }
trap leftovers EXIT
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward HUP' HUP

python3 bench/scale.py &
py=$!
rc=0
while :; do
  if wait "$py"; then rc=0; else rc=$?; fi
  # A trap interrupts `wait` (status > 128) while the driver is still cleaning up: wait again.
  kill -0 "$py" 2>/dev/null || break
done
exit "$rc"
