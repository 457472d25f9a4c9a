#!/usr/bin/env bash
# The whole volna test suite: installs what the tests need, then lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== interop tests (socket.io-client, python-socketio)"; bash tests/interop/run.sh
echo "== cluster interop (Node socket.io + @socket.io/redis-adapter/emitter + volna)"; bash tests/cluster-interop/run.sh
echo "== browser end-to-end test (headless Chromium + playwright-core)"; bash tests/e2e/run.sh
echo "== Autobahn WebSocket compliance (kosoku)"; bash tests/autobahn/run.sh
