#!/usr/bin/env bash
# End-to-end test of the chat page in a real headless browser: builds volna, starts it on free ports,
# drives Debian's Chromium with playwright-core (tests/e2e/chat.test.mjs, node --test), always stops it.
# Then the same for the whiteboard example: a second volna with examples/whiteboard/volna.toml (its room
# policy, and its page at /app/), driven by tests/e2e/whiteboard.test.mjs. Fails if either suite fails.
#
#   bash tests/e2e/run.sh
#   E2E_HTTP=http://127.0.0.1:3000 E2E_TCP=127.0.0.1:7000 bash tests/e2e/run.sh
#                                  # against a server already running (nothing built or started); the
#                                  # whiteboard suite runs only if E2E_WHITEBOARD_HTTP names a server
#                                  # started with --config examples/whiteboard/volna.toml
#
# tests/e2e/price-feed.test.mjs (the examples/price-feed application) starts its own volna (the binary this
# script builds), backend and clients on free ports, also when E2E_HTTP/E2E_TCP are given; so does
# tests/e2e/admin.test.mjs (the Socket.IO Admin UI's page against volna's /admin, screenshot to
# docs/screenshot-admin.png).
#
# Screenshots go to tests/e2e/out/. Needs what scripts/install-test-deps.sh installs (/usr/bin/chromium,
# tests/e2e/node_modules); runs that script first when either is missing. The suite is killed after
# E2E_TIMEOUT seconds (default 180).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/e2e
SUITE_TIMEOUT=${E2E_TIMEOUT:-180}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ] || [ ! -d "$HERE/node_modules/playwright-core" ] || [ ! -x "$ROOT/target/interop-venv/bin/python" ]; then
  echo "== e2e: installing test dependencies"
  bash scripts/install-test-deps.sh || exit 1
fi

. "$ROOT/tests/lib/volna-server.sh"
WORK=$VOLNA_WORK

if [ -n "${E2E_HTTP:-}" ] && [ -n "${E2E_TCP:-}" ]; then
  VOLNA_HTTP=$E2E_HTTP
  VOLNA_TCP=$E2E_TCP
  : >"$WORK/stderr"
else
  volna_start e2e || exit 1
fi
export VOLNA_TCP VOLNA_HTTP
echo "== e2e: chat page at $VOLNA_HTTP/, TCP at $VOLNA_TCP, browser $CHROMIUM"

mkdir -p "$HERE/out"
(cd "$HERE" && timeout -k 5 "$SUITE_TIMEOUT" node --test --test-reporter=spec --test-concurrency=1 chat.test.mjs price-feed.test.mjs admin.test.mjs)
status=$?
[ "$status" = 124 ] && echo "e2e: the suite timed out after ${SUITE_TIMEOUT}s" >&2
if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "e2e: volna exited during the test" >&2
  status=1
fi
volna_stop
if [ "$status" -ne 0 ]; then
  echo "== e2e: volna's stderr (last 40 lines)"
  tail -40 "$WORK/stderr"
fi

# The whiteboard example, on a volna of its own (its config's static_dir is relative to the config file).
wb_status=0
if [ -n "${E2E_WHITEBOARD_HTTP:-}" ]; then
  VOLNA_HTTP=$E2E_WHITEBOARD_HTTP
  : >"$WORK/stderr"
elif [ -n "${E2E_HTTP:-}" ]; then
  VOLNA_HTTP=""
  echo "== e2e: whiteboard skipped (E2E_HTTP without E2E_WHITEBOARD_HTTP)"
else
  volna_start e2e-whiteboard --config examples/whiteboard/volna.toml || wb_status=1
fi
if [ "$wb_status" = 0 ] && [ -n "$VOLNA_HTTP" ]; then
  export VOLNA_HTTP
  echo "== e2e: whiteboard at $VOLNA_HTTP/app/, browser $CHROMIUM"
  (cd "$HERE" && timeout -k 5 "$SUITE_TIMEOUT" node --test --test-reporter=spec --test-concurrency=1 whiteboard.test.mjs)
  wb_status=$?
  [ "$wb_status" = 124 ] && echo "e2e: the whiteboard suite timed out after ${SUITE_TIMEOUT}s" >&2
  if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "e2e: the whiteboard's volna exited during the test" >&2
    wb_status=1
  fi
  volna_stop
  if [ "$wb_status" -ne 0 ]; then
    echo "== e2e: the whiteboard's volna stderr (last 40 lines)"
    tail -40 "$WORK/stderr"
  fi
fi
[ "$status" -eq 0 ] && status=$wb_status

echo "e2e: screenshots in tests/e2e/out/"
exit "$status"
