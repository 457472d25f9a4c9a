#!/usr/bin/env bash
# Autobahn WebSocket compliance run against volna's /ws/echo, driven by kosoku
# (PyPI: the Autobahn TestSuite cases, natively). Compression (sections 12 and
# 13) is excluded: volna does not offer permessage-deflate.
#
# Usage: tests/autobahn/run.sh [extra kosoku args, e.g. -i '1.*']
# Env:   VOLNA_BIN (default: build target/debug/volna), KOSOKU_VENV,
#        AUTOBAHN_REPORTS (default target/autobahn-reports), AUTOBAHN_PARALLELISM (4).
#
# Fails unless every case's behaviour is OK, NON-STRICT or INFORMATIONAL and
# its closing behaviour OK or INFORMATIONAL.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv=${KOSOKU_VENV:-$root/target/autobahn-venv}
reports=${AUTOBAHN_REPORTS:-$root/target/autobahn-reports}
parallel=${AUTOBAHN_PARALLELISM:-4}
kosoku_version=0.1.0

if ! "$venv/bin/kosoku" --help >/dev/null 2>&1; then
  echo "== installing kosoku $kosoku_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kosoku==$kosoku_version"
fi

bin=${VOLNA_BIN:-}
if [ -z "$bin" ]; then
  echo "== cargo build -p volna"
  cargo build --quiet -p volna
  bin=$root/target/debug/volna
fi

workdir=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

# Port 0: the server picks free ports and prints them.
"$bin" serve --tcp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --log warn \
  >"$workdir/stdout" 2>"$workdir/stderr" &
server_pid=$!
http=
for _ in $(seq 1 100); do
  http=$(sed -n 's#.*http://\([0-9.:]*\).*#\1#p' "$workdir/stdout" | head -n1)
  [ -n "$http" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "volna serve exited early:" >&2
    cat "$workdir/stdout" "$workdir/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$http" ]; then
  echo "volna serve did not report its HTTP address" >&2
  cat "$workdir/stdout" "$workdir/stderr" >&2
  exit 1
fi
url="ws://$http/ws/echo"
echo "== kosoku fuzzingclient against $url (parallelism $parallel, excluding 12.* and 13.*)"

rm -rf "$reports"
set +e
"$venv/bin/kosoku" -m fuzzingclient -p "$parallel" -x '12.*' -x '13.*' -o "$reports" "$@" "$url" \
  >"$workdir/kosoku.log" 2>&1
kosoku_rc=$?
set -e
tail -n 5 "$workdir/kosoku.log"

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "volna serve died during the run:" >&2
  cat "$workdir/stderr" >&2
  exit 1
fi

python3 - "$reports/index.json" "$kosoku_rc" <<'PY'
import collections, json, sys

path, kosoku_rc = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as f:
        index = json.load(f)
except OSError as e:
    sys.exit(f"no report ({e}); kosoku exited {kosoku_rc}")

good = {"OK", "NON-STRICT", "INFORMATIONAL"}
good_close = {"OK", "INFORMATIONAL"}
counts = collections.Counter()
close_counts = collections.Counter()
bad = []
for agent, cases in index.items():
    for case_id, r in cases.items():
        counts[r["behavior"]] += 1
        close_counts[r["behaviorClose"]] += 1
        if r["behavior"] not in good or r["behaviorClose"] not in good_close:
            bad.append((case_id, r["behavior"], r["behaviorClose"], r.get("remoteCloseCode")))

def key(case):
    return [int(p) if p.isdigit() else p for p in case[0].split(".")]

total = sum(counts.values())
print(f"autobahn: {total} cases; behaviour: " +
      ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
      "; closing: " + ", ".join(f"{k} {v}" for k, v in sorted(close_counts.items())))
if total == 0:
    sys.exit("autobahn: no case ran")
if bad:
    for case_id, b, c, code in sorted(bad, key=key):
        print(f"  case {case_id}: behaviour {b}, closing {c}, close code {code}")
    sys.exit(f"autobahn: {len(bad)} cases worse than OK/NON-STRICT/INFORMATIONAL")
print(f"autobahn: all {total} cases OK, NON-STRICT or INFORMATIONAL (kosoku exit {kosoku_rc})")
PY
