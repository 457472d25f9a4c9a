#!/usr/bin/env bash
# Interop tests with the stock Socket.IO clients: builds volna, starts it on free ports, runs the
# socket.io-client (node --test) and python-socketio (unittest) suites against it, stops it.
#
#   bash tests/interop/run.sh            # both suites
#   INTEROP_SUITES=js bash tests/interop/run.sh    # or: py
#   INTEROP_HTTP=http://127.0.0.1:3000 INTEROP_TCP=127.0.0.1:7000 bash tests/interop/run.sh
#                                        # against a server already running (nothing built or started)
#
# Needs what scripts/install-test-deps.sh installs (tests/interop/node_modules, target/interop-venv);
# runs that script first when either is missing. Bounded: each suite is killed after
# INTEROP_SUITE_TIMEOUT seconds (default 300), every wait inside a test after INTEROP_WAIT_MS.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/interop
SUITES=${INTEROP_SUITES:-js py}
SUITE_TIMEOUT=${INTEROP_SUITE_TIMEOUT:-300}
VENV=$ROOT/target/interop-venv

if [ ! -d "$HERE/node_modules/socket.io-client" ] || [ ! -x "$VENV/bin/python" ]; then
  echo "== interop: installing test dependencies"
  bash scripts/install-test-deps.sh || exit 1
fi

. "$ROOT/tests/lib/volna-server.sh"
WORK=$VOLNA_WORK
server_alive() { volna_alive; }

if [ -n "${INTEROP_HTTP:-}" ] && [ -n "${INTEROP_TCP:-}" ]; then
  VOLNA_HTTP=$INTEROP_HTTP
  VOLNA_TCP=$INTEROP_TCP
  : >"$WORK/stderr"
else
  # The server API is on for test_api.py (cent), with a key of the run's own.
  VOLNA_API_KEY_FOR_TESTS=interop-$$-$RANDOM-key
  export VOLNA_API_KEY_FOR_TESTS
  volna_start interop --api-key "$VOLNA_API_KEY_FOR_TESTS" || exit 1
  # test_hooks.py starts a volna of its own, with hooks pointing at its backend.
  export VOLNA_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/volna"
fi
export VOLNA_TCP VOLNA_HTTP
echo "== interop: server at $VOLNA_HTTP (Socket.IO) and $VOLNA_TCP (TCP)"

passed=0
failed=0
status=0

for suite in $SUITES; do
  case $suite in
    js)
      echo "== interop: socket.io-client (node --test)"
      (cd "$HERE" && timeout -k 5 "$SUITE_TIMEOUT" node --test --test-reporter=spec js/) 2>&1 | tee "$WORK/js.log"
      rc=${PIPESTATUS[0]}
      p=$(sed -nE 's/^[^a-z]*pass ([0-9]+)$/\1/p' "$WORK/js.log" | tail -1)
      f=$(sed -nE 's/^[^a-z]*fail ([0-9]+)$/\1/p' "$WORK/js.log" | tail -1)
      ;;
    py)
      echo "== interop: python-socketio (unittest)"
      (cd "$HERE/py" && timeout -k 5 "$SUITE_TIMEOUT" "$VENV/bin/python" -m unittest -v) 2>&1 | tee "$WORK/py.log"
      rc=${PIPESTATUS[0]}
      ran=$(sed -nE 's/^Ran ([0-9]+) tests?.*/\1/p' "$WORK/py.log" | tail -1)
      f=$(sed -nE 's/^FAILED \((.*)\)$/\1/p' "$WORK/py.log" | grep -oE '(failures|errors)=[0-9]+' |
        awk -F= '{ n += $2 } END { print n + 0 }')
      p=$(( ${ran:-0} - f ))
      # unittest counts a class with no tests as success: insist on having run some.
      if [ "${ran:-0}" = 0 ]; then echo "interop: python-socketio suite ran no test" >&2; rc=1; fi
      ;;
    *)
      echo "interop: unknown suite $suite" >&2
      rc=1 p=0 f=0
      ;;
  esac
  if [ "$rc" -ne 0 ]; then
    status=1
    [ "$rc" = 124 ] && echo "interop: $suite suite timed out after ${SUITE_TIMEOUT}s" >&2
    [ "${f:-0}" = 0 ] && f=1
  fi
  passed=$(( passed + ${p:-0} ))
  failed=$(( failed + ${f:-0} ))
  if ! server_alive; then
    echo "interop: volna exited during the $suite suite; its stderr:" >&2
    tail -50 "$WORK/stderr" >&2
    status=1
    break
  fi
done

volna_stop
if [ "$status" -ne 0 ]; then
  echo "== interop: volna's stderr (last 40 lines)"
  tail -40 "$WORK/stderr"
fi
echo "interop: $passed passed, $failed failed"
exit "$status"
