#!/usr/bin/env python3
"""Side-by-side benchmark of volna against the peer Socket.IO servers.

Builds and starts each server pinned to one core (taskset), drives it with
`volna bench` pinned to the other core, and writes a Markdown table with every
figure to docs/benchmarks.md. Figures are meant to be compared as ratios
within one run: the machine is shared and noisy.

Usage: bench/compare.sh [--only volna,node] [--quick] [--out docs/benchmarks.md]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = (ROOT.parent / "shared" / "peers").resolve()
WORK = ROOT / "target" / "compare"
VOLNA = ROOT / "target" / "release" / "volna"

SERVER_CORE = "0"
LOAD_CORE = "1"


def log(*a):
    print("[compare]", *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$", " ".join(map(str, cmd)))
    subprocess.run(cmd, check=True, **kw)


def free_port():
    """A port free on every interface, below the ephemeral range: the load
    generator's tens of thousands of client sockets (and their TIME_WAIT
    remains) take ephemeral ports, and Node listens on all interfaces."""
    import random
    for port in random.sample(range(20000, 32000), 200):
        try:
            with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as s:
                s.bind(("::" if socket.has_ipv6 else "0.0.0.0", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port between 20000 and 32000")


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1_048_576
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------- servers

def build_volna():
    run(["cargo", "build", "--release", "-p", "volna"], cwd=ROOT)


def setup_node():
    d = WORK / "node-socketio"
    if not (d / "node_modules").exists():
        shutil.copytree(PEERS / "node-socketio", d, dirs_exist_ok=True)
        run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=d)
    return d


def setup_python():
    d = WORK / "python-socketio"
    venv = d / "venv"
    if not (venv / "bin" / "python").exists():
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(PEERS / "python-socketio" / "server.py", d / "server.py")
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", "python-socketio", "aiohttp"])
    return d


def setup_socketioxide():
    d = WORK / "socketioxide"
    target = WORK / "socketioxide-target"
    if not d.exists():
        shutil.copytree(PEERS / "socketioxide", d)
        # The copy lives under volna's tree: make it its own workspace.
        with open(d / "Cargo.toml", "a") as f:
            f.write("\n[workspace]\n")
    run(["cargo", "build", "--release", "--quiet"], cwd=d,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    return target / "release" / "peer-socketioxide"


class Server:
    def __init__(self, name, cmd, port, cwd=None, env=None):
        self.name, self.port = name, port
        full_env = {**os.environ, "PORT": str(port), **(env or {})}
        log(f"starting {name} on {port}")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *map(str, cmd)], cwd=cwd, env=full_env,
            stdout=subprocess.DEVNULL, stderr=open(WORK / f"{name}.log", "w"),
            preexec_fn=raise_nofile)
        wait_port(port)
        time.sleep(0.5)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(name):
    port = free_port()
    if name == "volna":
        # No per-connection rate limit: the peers have none, and the
        # benchmark's publishers send up to 1000 messages a second each.
        return Server(name, [VOLNA, "serve", "--http-addr", f"127.0.0.1:{port}",
                             "--tcp-addr", "127.0.0.1:0", "--log", "warn",
                             "--messages-per-second", "0"], port)
    if name == "node":
        d = setup_node()
        return Server(name, ["node", "server.js"], port, cwd=d)
    if name == "python":
        d = setup_python()
        return Server(name, [d / "venv" / "bin" / "python", "server.py"], port, cwd=d)
    if name == "socketioxide":
        exe = setup_socketioxide()
        return Server(name, [exe], port)
    raise ValueError(name)


# ---------------------------------------------------------------- load

def bench(server, *args, timeout=600):
    cmd = ["taskset", "-c", LOAD_CORE, str(VOLNA), "bench", *args,
           "--url", f"socketio://127.0.0.1:{server.port}", "--pid", str(server.pid),
           "--json", "--quiet"]
    log("$", " ".join(cmd[3:]))
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             timeout=timeout, preexec_fn=raise_nofile)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.CalledProcessError as e:
        log(f"  failed: {e.stderr.strip()[-500:]}")
        return {"error": e.stderr.strip().splitlines()[-1] if e.stderr.strip() else "failed"}
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout}s"}


def scenarios(quick):
    members = 200 if quick else 1000
    msgs = 100 if quick else 200
    out = []
    for rate in (50, 200, 1000):
        out.append((f"fanout {rate}/s", ["fanout", "-n", str(members), "-m", str(msgs),
                                          "--rate", str(rate), "--size", "64"]))
    out.append(("burst", ["fanout", "-n", "200", "-m", "500", "--size", "64"]))
    out.append(("echo", ["echo", "-n", "10", "-m", "300" if quick else "1000"]))
    # Four source addresses: with one, the client kernel's search for a free
    # ephemeral port slows every connect past ~10 000 connections, whatever
    # the server.
    out.append(("conns", ["conns", "-n", "2000" if quick else "15000", "--hold", "3",
                          "--concurrency", "200", "--source-ips", "4"]))
    return out


def best_of(runs):
    """The run with the least server CPU per unit of work among those that
    lost nothing (a server that drops messages spends less per delivered one,
    so a lossy run is only chosen when every run lost some); every run's key
    figures stay under "runs", and losses count from the worst run, so that
    a lossy run is never hidden behind a good one."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    cpu_keys = ("server CPU per delivery (us)", "server CPU per round trip (us)")

    def cpu(r):
        return next((r[k] for k in cpu_keys if k in r), float("inf"))

    lossless = [r for r in ok if not r.get("lost")]
    best = dict(min(lossless or ok, key=cpu))
    if len(runs) > 1:
        keep = cpu_keys + ("latency p99 (ms)", "rtt p99 (ms)", "lost", "round trips/s", "deliveries/s")
        best["runs"] = [{k: r[k] for k in keep if k in r} if "error" not in r else r for r in runs]
        if any("lost" in r for r in ok):
            best["lost"] = max(r.get("lost", 0) for r in ok)
        if len(ok) < len(runs):
            best["failed runs"] = len(runs) - len(ok)
    return best


# ---------------------------------------------------------------- report

def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def get(r, key, digits=1):
    if "error" in r:
        return "error"
    return fmt(r.get(key), digits)


def ratio(results, names, scen, key, better_low=True):
    """volna's figure over the best peer's, e.g. 0.42×."""
    def val(n):
        r = results.get(n, {}).get(scen, {})
        v = r.get(key)
        return v if isinstance(v, (int, float)) and "error" not in r else None
    mine = val("volna")
    peers = [val(n) for n in names if n != "volna"]
    peers = [p for p in peers if p is not None and p > 0]
    if mine is None or not peers:
        return "—"
    best = min(peers) if better_low else max(peers)
    return f"{mine / best:.2f}×"


def figure(results, name, scen, key):
    r = results.get(name, {}).get(scen, {})
    v = r.get(key)
    return v if isinstance(v, (int, float)) and "error" not in r else None


def against_targets(results):
    """Issue 5's targets, checked against this run's figures."""
    out = ["\n## Against the targets (issue 5)\n",
           "Computed from this run's figures by `bench/compare.py`.\n"]
    peers = [n for n in results if n != "volna"]

    def line(ok, text):
        out.append(f"- {'met' if ok else '**not met**' if ok is not None else 'not measured'}: {text}")

    sx = "socketioxide"
    for rate, want in ((50, 0.5), (200, 0.7), (1000, 0.5)):
        scen = f"fanout {rate}/s"
        mine = figure(results, "volna", scen, "server CPU per delivery (us)")
        theirs = figure(results, sx, scen, "server CPU per delivery (us)")
        if mine is None or theirs is None:
            mine_s = "—" if mine is None else f"{mine:.2f} µs"
            theirs_s = results.get(sx, {}).get(scen, {}).get("error", theirs)
            line(None, f"{scen}: CPU per delivery ≤ {want}× socketioxide's (volna {mine_s}; "
                       f"socketioxide: {theirs_s})")
        else:
            line(mine <= want * theirs, f"{scen}: CPU per delivery {mine:.2f} µs vs socketioxide "
                                         f"{theirs:.2f} µs = {mine / theirs:.2f}× (target ≤ {want}×)")
        p99 = figure(results, "volna", scen, "latency p99 (ms)")
        others = {n: figure(results, n, scen, "latency p99 (ms)") for n in peers}
        others = {n: v for n, v in others.items() if v is not None}
        if p99 is not None and others:
            best = min(others, key=others.get)
            line(p99 < others[best], f"{scen}: p99 latency {p99:.1f} ms, lowest peer {best} "
                                     f"{others[best]:.1f} ms (target: lower than every peer)")
        lost = figure(results, "volna", scen, "lost")
        line(lost == 0 if lost is not None else None, f"{scen}: volna lost {lost} messages (target 0)")
    lost = figure(results, "volna", "burst", "lost")
    sx_lost = figure(results, sx, "burst", "lost")
    line(lost == 0 if lost is not None else None,
         f"burst of 500 messages to 200 members: volna lost {lost}, socketioxide {sx_lost} (target 0)")
    rss = figure(results, "volna", "conns", "server RSS per connection (KiB)")
    line(rss <= 4 if rss is not None else None,
         f"idle memory: {rss:.1f} KiB RSS per joined Socket.IO WebSocket client (target ≤ 4 KiB; "
         "measured after the other scenarios, whose freed memory the allocator reuses; a fresh "
         "server shows a few tenths of a KiB more)" if rss is not None else "idle memory")
    rate = figure(results, "volna", "conns", "connects/s")
    others = {n: figure(results, n, "conns", "connects/s") for n in peers}
    others = {n: v for n, v in others.items() if v is not None}
    if rate is not None and others:
        best = max(others, key=others.get)
        line(rate >= 2 * others[best], f"connect rate {rate:,.0f}/s vs best peer {best} "
                                       f"{others[best]:,.0f}/s = {rate / others[best]:.1f}× (target ≥ 2×)")
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 100_000:
        line(False, f"100 000 concurrent connections: this machine allows a process at most {hard:,} open "
                    "files (hard limit, not raisable here), so one server process stops just below that")
    return out


def write_report(results, names, out_path, quick, started, repeat):
    lines = []
    lines.append("# Benchmarks: volna side by side\n")
    lines.append(f"Run on {started:%Y-%m-%d %H:%M} UTC by `bench/compare.sh`"
                 f"{' --quick' if quick else ''}. Machine: {platform.machine()}, "
                 f"{os.cpu_count()} cores, {platform.platform()}; "
                 f"each server pinned to core {SERVER_CORE}, the load generator (`volna bench`) "
                 f"to core {LOAD_CORE}. Peers from `../shared/peers/`. "
                 "Compare figures as ratios within this run; the machine is shared and noisy.\n")
    lines.append("The *ratio* column is volna's figure divided by the best peer's "
                 "(lower is better for CPU, latency, memory and loss; higher for rates).\n")
    lines.append(f"Fan-out, burst and echo ran {repeat} times per server; each row shows the run with the "
                 "least server CPU among those that lost no message (any run, if all lost some), and "
                 "*lost messages* is the worst of all runs. Every run's figures are in the raw results.\n")
    header = "| scenario | figure | " + " | ".join(names) + " | ratio |"
    sep = "|---|---|" + "---|" * len(names) + "---|"

    def table(title, rows):
        lines.append(f"\n## {title}\n")
        lines.append(header)
        lines.append(sep)
        for scen, key, label, digits, low in rows:
            cells = [get(results.get(n, {}).get(scen, {"error": "not run"}), key, digits) for n in names]
            lines.append(f"| {scen} | {label} | " + " | ".join(cells) + f" | {ratio(results, names, scen, key, low)} |")

    fan = []
    for scen in ("fanout 50/s", "fanout 200/s", "fanout 1000/s"):
        fan += [
            (scen, "server CPU per delivery (us)", "CPU per delivery (µs)", 2, True),
            (scen, "latency p99 (ms)", "p99 latency (ms)", 1, True),
            (scen, "latency p50 (ms)", "p50 latency (ms)", 1, True),
            (scen, "lost", "lost messages", 0, True),
            (scen, "members that failed to join", "members that failed to join", 0, True),
            (scen, "deliveries/s", "deliveries/s", 0, False),
        ]
    table("Fan-out: members in one room, 64-byte messages at a fixed rate", fan)
    table("Burst: 500 messages to 200 members as fast as the publisher can send", [
        ("burst", "lost", "lost messages", 0, True),
        ("burst", "deliveries/s", "deliveries/s", 0, False),
        ("burst", "latency p99 (ms)", "p99 latency (ms)", 1, True),
        ("burst", "server CPU per delivery (us)", "CPU per delivery (µs)", 2, True),
    ])
    table("Echo: 10 clients doing round trips with acks", [
        ("echo", "round trips/s", "round trips/s", 0, False),
        ("echo", "rtt p99 (ms)", "p99 RTT (ms)", 2, True),
        ("echo", "server CPU per round trip (us)", "CPU per round trip (µs)", 1, True),
    ])
    table("Connections: connect, join a room, hold", [
        ("conns", "connects/s", "connects/s", 0, False),
        ("conns", "failures", "failures", 0, True),
        ("conns", "server RSS per connection (KiB)", "RSS per connection (KiB)", 1, True),
        ("conns", "server CPU per connect (us)", "CPU per connect (µs)", 0, True),
    ])
    lines += against_targets(results)
    lines.append("\n## Cluster\n")
    lines.append("Cross-node fan-out through Redis (2 nodes vs 1): see "
                 "[benchmarks-cluster.md](benchmarks-cluster.md), written by `bench/cluster.sh`.\n")
    lines.append("\n## Raw results\n")
    lines.append("```json")
    lines.append(json.dumps(results, indent=1, sort_keys=True))
    lines.append("```\n")
    Path(out_path).write_text("\n".join(lines))
    log(f"wrote {out_path}")


def rerender(args):
    import re
    text = Path(args.out).read_text()
    raw = text.split("## Raw results", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    results = json.loads(raw)
    m = re.search(r"Run on (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", text)
    started = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M") if m else datetime.datetime.now()
    r = re.search(r"ran (\d+) times per server", text)
    order = [n.strip() for n in args.only.split(",")]
    names = [n for n in order if n in results] + [n for n in results if n not in order]
    write_report(results, names, args.out, "--quick" in text.split("\n", 3)[2], started,
                 int(r.group(1)) if r else args.repeat)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="volna,socketioxide,node,python")
    ap.add_argument("--quick", action="store_true", help="smaller runs (for a smoke test)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release/volna")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs of each fan-out, burst and echo scenario; the table shows the run with the "
                         "least server CPU and the most lost messages of any run (default 2)")
    ap.add_argument("--rerender", action="store_true",
                    help="run nothing: rewrite --out from the raw results it already holds (e.g. after "
                         "a change to the report's layout)")
    args = ap.parse_args()
    if args.rerender:
        rerender(args)
        return
    if shutil.which("taskset") is None:
        sys.exit("taskset is needed (Debian package util-linux)")
    raise_nofile()
    WORK.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    if not args.no_build:
        build_volna()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    results = {}
    for name in names:
        try:
            server = start_server(name)
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            log(f"{name}: cannot start: {e}")
            results[name] = {s: {"error": f"cannot start: {e}"} for s, _ in scenarios(args.quick)}
            continue
        results[name] = {}
        try:
            for scen, bargs in scenarios(args.quick):
                repeat = args.repeat if scen.startswith(("fanout", "burst", "echo")) else 1
                results[name][scen] = best_of([bench(server, *bargs) for _ in range(repeat)])
                log(f"{name} {scen}: {results[name][scen]}")
        finally:
            server.stop()
    write_report(results, names, args.out, args.quick, started, args.repeat)


if __name__ == "__main__":
    main()
