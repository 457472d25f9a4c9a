#!/usr/bin/env bash
# The whole volna test suite: installs what the tests need, then lints and runs every suite.
# Every suite runs even if an earlier one failed; the script fails if any did.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh || { echo "installing the test dependencies failed"; exit 1; }

passed=0
failed=0
failed_names=()
suite() {
  local name=$1
  shift
  echo
  echo "== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

suite "cargo fmt --check" cargo fmt --all -- --check
suite "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
suite "cargo test" cargo test --workspace
suite "interop: socket.io-client and python-socketio" bash tests/interop/run.sh
suite "cluster interop: Node socket.io + redis adapter/emitter + volna" bash tests/cluster-interop/run.sh
suite "browser end-to-end (headless Chromium + playwright-core)" bash tests/e2e/run.sh
suite "Autobahn WebSocket compliance (kosoku)" bash tests/autobahn/run.sh

echo
if [ "$failed" -gt 0 ]; then
  echo "failed suites: ${failed_names[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
