# Sourced by the test scripts that need a running `volna serve`:
#   . tests/lib/volna-server.sh
#   volna_start LABEL [extra serve flags…]   # builds, starts on free ports, exports VOLNA_TCP and VOLNA_HTTP
#   volna_stop                               # also run on exit
# The server's output goes to $VOLNA_WORK/stdout and $VOLNA_WORK/stderr.

VOLNA_WORK=$(mktemp -d "${TMPDIR:-/tmp}/volna-test.XXXXXX")
SERVER_PID=""

volna_stop() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
}

volna_cleanup() {
  volna_stop
  rm -rf "$VOLNA_WORK"
}
trap volna_cleanup EXIT
trap 'exit 130' INT TERM

volna_alive() { [ -z "$SERVER_PID" ] || kill -0 "$SERVER_PID" 2>/dev/null; }

# Builds volna (debug), starts it on port 0 and reads the real addresses from its banner:
# "volna X serving: tcp://127.0.0.1:PORT (try: nc …), http://127.0.0.1:PORT".
volna_start() {
  local label=$1
  shift
  echo "== $label: cargo build -p volna"
  cargo build -q -p volna || return 1
  "${CARGO_TARGET_DIR:-$PWD/target}/debug/volna" serve --tcp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 "$@" \
    >"$VOLNA_WORK/stdout" 2>"$VOLNA_WORK/stderr" &
  SERVER_PID=$!
  local banner=""
  for _ in $(seq 200); do
    banner=$(grep -m1 ' serving: ' "$VOLNA_WORK/stdout" 2>/dev/null || true)
    [ -n "$banner" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$banner" ]; then
    echo "$label: volna did not print its banner within 10 s" >&2
    cat "$VOLNA_WORK/stdout" "$VOLNA_WORK/stderr" >&2
    return 1
  fi
  VOLNA_TCP=$(sed -E 's|.*tcp://([^ ,]+).*|\1|' <<<"$banner")
  VOLNA_HTTP=http://$(sed -E 's|.*http://([^ ,]+).*|\1|' <<<"$banner")
  export VOLNA_TCP VOLNA_HTTP
}
