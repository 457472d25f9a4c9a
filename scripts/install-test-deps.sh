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
if [ ${#apt_needed[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${apt_needed[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${apt_needed[@]}"
fi

# Rust components for the lint steps.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
