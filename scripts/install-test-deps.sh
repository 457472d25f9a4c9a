#!/usr/bin/env bash
# Installs everything the test suite needs, on a fresh Debian machine with a Rust toolchain.
# Idempotent: packages already present are not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# Debian packages: interpreters and servers the tests start.
apt_needed=()
command -v python3 >/dev/null || apt_needed+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_needed+=(python3-venv)
command -v node >/dev/null || apt_needed+=(nodejs)
command -v npm >/dev/null || apt_needed+=(npm)
command -v openssl >/dev/null || apt_needed+=(openssl)
if [ ${#apt_needed[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${apt_needed[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${apt_needed[@]}"
fi

# Rust components for the lint steps.
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Interop tests (tests/interop/run.sh): the stock socket.io-client from npm, python-socketio from PyPI.
# Reinstalled only when the lock file / requirements change (a hash stamp next to the install); quiet,
# and served from the npm and pip caches when they hold the packages.
interop_stamp() { sha256sum "$1" | cut -d' ' -f1; }
if [ "$(cat tests/interop/node_modules/.volna-stamp 2>/dev/null)" != "$(interop_stamp tests/interop/package-lock.json)" ]; then
  echo "== installing interop npm packages (tests/interop/node_modules)"
  (cd tests/interop && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
  interop_stamp tests/interop/package-lock.json >tests/interop/node_modules/.volna-stamp
fi
INTEROP_VENV=target/interop-venv
if [ "$(cat "$INTEROP_VENV/.volna-stamp" 2>/dev/null)" != "$(interop_stamp tests/interop/requirements.txt)" ]; then
  echo "== installing interop Python packages ($INTEROP_VENV)"
  [ -x "$INTEROP_VENV/bin/python" ] || python3 -m venv "$INTEROP_VENV"
  "$INTEROP_VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
  interop_stamp tests/interop/requirements.txt >"$INTEROP_VENV/.volna-stamp"
fi

# Cluster tests (crates/volna/tests/cluster_nodes.rs, tests/cluster-interop/run.sh, bench/cluster.sh): a real
# redis-server (Debian's package; the tests start their own on a free port), and the Node.js socket.io server,
# redis adapter, redis emitter and client from npm.
if ! command -v redis-server >/dev/null; then
  echo "== installing redis-server"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends redis-server
fi
if [ "$(cat tests/cluster-interop/node_modules/.volna-stamp 2>/dev/null)" != "$(sha256sum tests/cluster-interop/package-lock.json | cut -d' ' -f1)" ]; then
  echo "== installing cluster interop npm packages (tests/cluster-interop/node_modules)"
  (cd tests/cluster-interop && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
  sha256sum tests/cluster-interop/package-lock.json | cut -d' ' -f1 >tests/cluster-interop/node_modules/.volna-stamp
fi

# Browser end-to-end test (tests/e2e/run.sh): Debian's Chromium, driven by playwright-core from npm (no
# browser download: `npx playwright install` needs the internet; the test launches /usr/bin/chromium).
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi
if [ "$(cat tests/e2e/node_modules/.volna-stamp 2>/dev/null)" != "$(sha256sum tests/e2e/package-lock.json | cut -d' ' -f1)" ]; then
  echo "== installing e2e npm packages (tests/e2e/node_modules)"
  (cd tests/e2e && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
  sha256sum tests/e2e/package-lock.json | cut -d' ' -f1 >tests/e2e/node_modules/.volna-stamp
fi
