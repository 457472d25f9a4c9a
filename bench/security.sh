#!/usr/bin/env bash
# What identity and limits cost, in one run (docs/benchmarks.md, "Identity and limits"): the server CPU per
# connect without a token, with an HS256 token and with an RS256 token (2000 /ws clients each), and the
# request-rate limiter's cost per request (echo round trips against a server whose limiter is off and one
# whose limiter is on but never refuses). Server pinned to core 0, load generator to core 1. Tokens are
# minted with PyJWT (target/interop-venv, made by scripts/install-test-deps.sh).
#
#   bash bench/security.sh            # CLIENTS=2000 ROUND_TRIPS=20000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p volna
bin=target/release/volna
py=target/interop-venv/bin/python
[ -x "$py" ] || bash scripts/install-test-deps.sh
clients=${CLIENTS:-2000}
trips=${ROUND_TRIPS:-20000}
work=$(mktemp -d)
secret=bench-secret-0123456789abcdef-0123456789
"$py" - "$work" "$secret" <<'PY'
import sys, time, jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
work, secret = sys.argv[1], sys.argv[2]
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
open(f"{work}/rsa.pem", "wb").write(key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
claims = {"sub": "bench", "exp": int(time.time()) + 3600}
open(f"{work}/hs256", "w").write(jwt.encode(claims, secret, algorithm="HS256"))
open(f"{work}/rs256", "w").write(jwt.encode(claims, key, algorithm="RS256"))
PY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
serve() { # PORT ARGS…: a server on core 0; its pid in $server
  local port=$1; shift
  taskset -c 0 "$bin" serve --tcp-addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" --log warn "$@" >/dev/null &
  server=$!
  pids+=($server)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
}
load() { taskset -c 1 "$bin" bench "$@" --pid "$server" --quiet; }

port=$(free_port)
serve "$port" --jwt-secret "$secret" --jwt-public-key "$work/rsa.pem" --messages-per-second 0
for kind in none hs256 rs256; do
  token=()
  [ "$kind" != none ] && token=(--token "$(cat "$work/$kind")")
  echo "### connects with token: $kind ($clients /ws clients)"
  load conns --url "ws://127.0.0.1:$port/ws" -n "$clients" --hold 0.5 --room "c-$kind" "${token[@]}"
done
kill "$server"; wait "$server" 2>/dev/null || true

for limiter in off on; do
  port=$(free_port)
  if [ "$limiter" = off ]; then serve "$port" --messages-per-second 0; else serve "$port" --messages-per-second 1000000 --messages-burst 1000000; fi
  echo "### echo round trips, rate limiter $limiter (10 /ws clients)"
  load echo --url "ws://127.0.0.1:$port/ws" -n 10 -m $((trips / 10))
  kill "$server"; wait "$server" 2>/dev/null || true
done
