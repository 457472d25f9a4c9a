#!/usr/bin/env python3
"""The driver of bench/scale.sh: N volna nodes behind one Redis, a very large room.

Starts redis-server and the nodes (pinned with taskset), runs `volna bench fanout` once for the big
room (phase A) and once for many small rooms (phase B), snapshots every node, Redis, the kernel and
the load generator at the start and at every `phase: NAME` line the generator prints on stderr, and
writes a Markdown report. Python 3 standard library only. Configuration comes from the environment
(bench/scale.sh sets it; see there). Every process it starts is stopped on exit, Ctrl-C and errors
included, and every wait has a deadline.
"""

import ctypes
import datetime
import http.client
import json
import math
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# ---------------------------------------------------------------------------------------------
# Configuration


def env_number(name, default, kind, what):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise Fail(f"{name} must be {what}, got {raw!r}")


def env_int(name, default):
    return env_number(name, default, int, "a whole number")


def env_float(name, default):
    return env_number(name, default, float, "a number")


class Fail(Exception):
    """A failure with a message for the user (no traceback)."""


class Interrupted(BaseException):
    """A signal asked us to stop."""


class Config:
    def __init__(self):
        self.nodes = env_int("NODES", 6)
        self.clients = env_int("CLIENTS", 100000)
        self.hold = env_float("HOLD", 300)
        self.processes = env_int("PROCESSES", self.nodes)
        self.messages = env_int("MESSAGES", 3)
        self.small_rooms = env_int("SMALL_ROOMS", 1000)
        self.small_clients = env_int("SMALL_CLIENTS", 20000)
        self.small_messages = env_int("SMALL_MESSAGES", self.small_rooms * self.messages)
        self.small_rate = env_float("SMALL_RATE", float(self.small_rooms))
        self.concurrency = env_int("CONCURRENCY", 512)
        self.out = os.environ.get("OUT") or "docs/benchmarks-scale.md"
        self.node_cpus = os.environ.get("NODE_CPUS") or "0"
        self.gen_cpus = os.environ.get("GEN_CPUS") or "1"
        self.volna = os.environ.get("VOLNA") or "target/release/volna"
        self.compat = os.environ.get("COMPAT", "0") not in ("", "0")
        self.node_flags = shlex.split(os.environ.get("NODE_FLAGS", ""))
        self.progress = env_float("PROGRESS", 15)
        self.node_start_timeout = env_float("NODE_START_TIMEOUT", 30)
        self.drain_timeout = env_float("DRAIN_TIMEOUT", 120)
        default_a = 600 + self.clients / 100 + self.hold + 10 * self.messages
        self.timeout_a = env_float("TIMEOUT", default_a)
        pub_b = self.small_messages / self.small_rate if self.small_rate > 0 else 0
        self.timeout_b = env_float("TIMEOUT_B", 600 + self.small_clients / 100 + 2 * pub_b)
        self.state_file = os.environ.get("SCALE_STATE_FILE")
        if self.nodes < 1 or self.processes < 1 or self.clients < 1:
            raise Fail("NODES, PROCESSES and CLIENTS must be at least 1")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def page_size():
    try:
        return int(subprocess.run(["getconf", "PAGESIZE"], capture_output=True, text=True,
                                  timeout=5).stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return os.sysconf("SC_PAGE_SIZE")


PAGE = page_size()

# ---------------------------------------------------------------------------------------------
# /proc


def read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def proc_stat(pid):
    """(ppid, utime+stime ticks, cutime+cstime ticks) of a process, or None once it is gone."""
    s = read(f"/proc/{pid}/stat")
    if not s:
        return None
    rest = s[s.rfind(")") + 2:].split()
    # rest[0] is the state (field 3); utime, stime, cutime, cstime are fields 14 to 17.
    try:
        return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])
    except (IndexError, ValueError):
        return None


def proc_status_kib(pid, key="VmRSS"):
    s = read(f"/proc/{pid}/status")
    if not s:
        return None
    for line in s.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def proc_nofile(pid):
    s = read(f"/proc/{pid}/limits")
    if not s:
        return None
    for line in s.splitlines():
        if line.startswith("Max open files"):
            parts = line.split()
            return parts[3]
    return None


def descendants(root):
    """root and every process below it (by parent id), from one scan of /proc."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st:
            children.setdefault(st[0], []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        if proc_stat(pid) is None:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def sockstat():
    out = {}
    s = read("/proc/net/sockstat") or ""
    for line in s.splitlines():
        proto, _, rest = line.partition(":")
        words = rest.split()
        out[proto.strip()] = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return out


def meminfo():
    out = {}
    for line in (read("/proc/meminfo") or "").splitlines():
        k, _, v = line.partition(":")
        if k in ("MemTotal", "MemAvailable", "Slab", "SUnreclaim", "SReclaimable"):
            out[k] = int(v.split()[0])
    return out


# ---------------------------------------------------------------------------------------------
# Network


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=15.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode("utf-8", errors="replace")
        if r.status != 200:
            raise OSError(f"GET {path}: HTTP {r.status}")
        return body
    finally:
        conn.close()


def redis_info(port, timeout=5.0):
    """Redis's INFO as a dict (inline command over RESP)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"INFO\r\n")
        buf = b""
        deadline = time.monotonic() + timeout
        while True:
            if b"\r\n" in buf:
                head, _, body = buf.partition(b"\r\n")
                if not head.startswith(b"$"):
                    raise OSError(f"redis answered {head[:80]!r}")
                need = int(head[1:])
                if len(body) >= need:
                    text = body[:need].decode("utf-8", errors="replace")
                    break
            if time.monotonic() > deadline:
                raise OSError("redis INFO timed out")
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("redis closed the connection")
            buf += chunk
    info = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            info[k] = v
    return info


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Prometheus text

LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prom(text):
    """[[name, {labels}, value], ...] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            labels_s, _, value_s = rest.rpartition("}")
            labels = dict(LABEL_RE.findall(labels_s))
        else:
            name, _, value_s = line.partition(" ")
            labels = {}
        parts = value_s.split()
        if not parts:
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue
        out.append([name.strip(), labels, value])
    return out


def msum(series, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`; None if there is none."""
    if series is None:
        return None
    total, seen = 0.0, False
    for n, lab, v in series:
        if n == name and all(lab.get(k) == want for k, want in labels.items()):
            total += v
            seen = True
    return total if seen else None


def mby(series, name, label):
    """{label value: sample} for `name`; None if there is none."""
    if series is None:
        return None
    out = {}
    for n, lab, v in series:
        if n == name and label in lab:
            out[lab[label]] = out.get(lab[label], 0.0) + v
    return out or None


def lag_buckets(series):
    """[(upper bound in seconds, cumulative count)] of the event-loop lag histogram."""
    if series is None:
        return None
    out = []
    for n, lab, v in series:
        if n.startswith("volna_event_loop_lag") and n.endswith("_bucket") and "le" in lab:
            le = math.inf if lab["le"] in ("+Inf", "Inf", "inf") else float(lab["le"])
            out.append((le, v))
    return sorted(out) or None


# ---------------------------------------------------------------------------------------------
# Processes

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: the child gets SIGKILL if this driver dies without cleaning up.
    if _prctl is not None:
        _prctl(1, signal.SIGKILL, 0, 0, 0)


class Processes:
    """Everything started, each in a process group of its own, recorded for the wrapper's trap."""

    def __init__(self, state_file):
        self.state_file = state_file
        self.live = []  # [(name, Popen)]

    def _record(self):
        if not self.state_file:
            return
        with open(self.state_file, "w") as f:
            for name, p in self.live:
                f.write(f"{p.pid} {name}\n")

    def start(self, name, argv, stdout, stderr):
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                 start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            raise Fail(f"could not start {name}: {shlex.join(argv)}: {e}")
        self.live.append((name, p))
        self._record()
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=10.0):
        """Signal p's process group (and anything below p), wait up to `grace`, then SIGKILL."""
        if p.poll() is None:
            below = [q for q in descendants(p.pid) if q != p.pid]
            for target in [-p.pid] + below:
                try:
                    if target < 0:
                        os.killpg(-target, sig)
                    else:
                        os.kill(target, sig)
                except OSError:
                    pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            for target in below:
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # stragglers of the group
        except OSError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.live = [(n, q) for n, q in self.live if q is not p]
        self._record()

    def stop_all(self):
        # The generator first, then the nodes (SIGINT: stop at once, no drain), Redis last.
        order = sorted(self.live, key=lambda np: (0 if np[0].startswith("generator") else
                                                  2 if np[0].startswith("redis") else 1))
        for name, p in order:
            sig = signal.SIGINT if name.startswith("node") else signal.SIGTERM
            self.stop(p, sig, grace=10.0)


def log(msg):
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def tail(path, lines=15):
    s = (read(path) or "").strip()
    return "\n".join(s.splitlines()[-lines:]) if s else "(empty)"


# ---------------------------------------------------------------------------------------------
# The cluster


class Node:
    def __init__(self, index, http_port, tcp_port, proc, log_path, argv):
        self.index = index
        self.http = http_port
        self.tcp = tcp_port
        self.proc = proc
        self.log = log_path
        self.argv = argv


class Bench:
    def __init__(self, cfg, work):
        self.cfg = cfg
        self.work = work
        self.procs = Processes(cfg.state_file)
        self.nodes = []
        self.redis = None
        self.redis_port = None
        self.redis_argv = None
        self.t0 = time.monotonic()
        self.samples = []  # progress samples: (t, total connections, node RSS MiB, gen RSS MiB)

    # -- start-up --------------------------------------------------------------------------

    def start_redis(self):
        port = free_port()
        path = os.path.join(self.work, "redis.log")
        argv = ["taskset", "-c", self.cfg.node_cpus, "redis-server", "--port", str(port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(path, "wb") as f:
            p = self.procs.start("redis-server", argv, f, subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not redis_ping(port):
            if p.poll() is not None:
                raise Fail(f"redis-server exited with code {p.returncode} at start "
                           f"({shlex.join(argv)}); its log ({path}):\n{tail(path)}")
            if time.monotonic() > deadline:
                raise Fail(f"redis-server did not answer PING on port {port} within 10 s; "
                           f"its log ({path}):\n{tail(path)}")
            time.sleep(0.05)
        self.redis, self.redis_port, self.redis_argv = p, port, argv
        log(f"redis-server pid {p.pid} on 127.0.0.1:{port}")

    def start_nodes(self):
        for i in range(1, self.cfg.nodes + 1):
            http_port, tcp_port = free_port(), free_port()
            while tcp_port == http_port:
                tcp_port = free_port()
            path = os.path.join(self.work, f"node{i}.log")
            argv = ["taskset", "-c", self.cfg.node_cpus, self.cfg.volna, "serve",
                    "--http-addr", f"127.0.0.1:{http_port}", "--tcp-addr", f"127.0.0.1:{tcp_port}",
                    "--redis", f"redis://127.0.0.1:{self.redis_port}", "--log", "warn",
                    "--messages-per-second", "0"] + self.cfg.node_flags
            with open(path, "wb") as f:
                p = self.procs.start(f"node{i}", argv, f, subprocess.STDOUT)
            self.nodes.append(Node(i, http_port, tcp_port, p, path, argv))
        # Wait for every node's /health, all within one deadline.
        deadline = time.monotonic() + self.cfg.node_start_timeout
        for n in self.nodes:
            while True:
                if n.proc.poll() is not None:
                    raise Fail(f"node {n.index} did not start: it exited with code "
                               f"{n.proc.returncode}.\n  command: {shlex.join(n.argv)}\n"
                               f"  last lines of its log ({n.log}):\n{indent(tail(n.log))}")
                try:
                    http_get(n.http, "/health", timeout=2)
                    break
                except (OSError, http.client.HTTPException):
                    pass
                if time.monotonic() > deadline:
                    raise Fail(f"node {n.index} did not answer GET http://127.0.0.1:{n.http}/health "
                               f"within {self.cfg.node_start_timeout:g} s.\n"
                               f"  command: {shlex.join(n.argv)}\n"
                               f"  last lines of its log ({n.log}):\n{indent(tail(n.log))}")
                time.sleep(0.1)
            log(f"node {n.index} pid {n.proc.pid} on http 127.0.0.1:{n.http}, tcp 127.0.0.1:{n.tcp}")
        # Let the nodes see each other's heartbeats (every 2 s) before loading them.
        time.sleep(2.5)

    def check_nodes_alive(self):
        dead = []
        for n in self.nodes:
            if n.proc.poll() is not None:
                dead.append(f"node {n.index} exited with code {n.proc.returncode} "
                            f"(log {n.log}):\n{indent(tail(n.log, 8))}")
        return dead

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self, name, gen_pid):
        t = time.monotonic() - self.t0
        snap = {"name": name, "t": round(t, 3),
                "wall": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "nodes": [], "redis": {}, "gen": None}
        # First what /proc says (quick, close together in time), then the HTTP figures.
        for n in self.nodes:
            st = proc_stat(n.proc.pid)
            snap["nodes"].append({
                "node": n.index, "pid": n.proc.pid, "alive": n.proc.poll() is None,
                "rss_kib": proc_status_kib(n.proc.pid),
                "ticks": st[1] if st else None,
            })
        rst = proc_stat(self.redis.pid) if self.redis else None
        snap["redis"] = {"ticks": rst[1] if rst else None,
                         "rss_kib": proc_status_kib(self.redis.pid) if self.redis else None}
        snap["sockstat"] = sockstat()
        snap["meminfo"] = meminfo()
        if gen_pid is not None:
            pids = descendants(gen_pid)
            rss = ticks = 0
            for pid in pids:
                rss += proc_status_kib(pid) or 0
                st = proc_stat(pid)
                # A worker that exited and was waited for moved its time into its parent's
                # cutime/cstime: counting both keeps the sum from going backwards.
                ticks += (st[1] + st[2]) if st else 0
            snap["gen"] = {"pids": pids, "processes": len(pids), "rss_kib": rss, "ticks": ticks}
        for n, s in zip(self.nodes, snap["nodes"]):
            try:
                s["metrics"] = parse_prom(http_get(n.http, "/metrics"))
            except (OSError, http.client.HTTPException) as e:
                s["metrics"] = None
                s["metrics_error"] = str(e) or type(e).__name__
            try:
                h = json.loads(http_get(n.http, "/health"))
                s["health"] = {"cluster": h.get("cluster"),
                               "connections_open": h.get("connections_open"),
                               "event_loop_lag_us": h.get("event_loop_lag_us")}
            except (OSError, http.client.HTTPException, ValueError) as e:
                s["health"] = None
                s["health_error"] = str(e) or type(e).__name__
            s["conns"] = node_conns(s)
        if self.redis_port:
            try:
                info = redis_info(self.redis_port)
                snap["redis"]["info"] = {k: info.get(k) for k in (
                    "total_commands_processed", "used_memory", "connected_clients",
                    "pubsub_channels", "pubsub_patterns", "instantaneous_ops_per_sec",
                    "total_net_input_bytes", "total_net_output_bytes")}
            except (OSError, ValueError) as e:
                snap["redis"]["info_error"] = str(e)
        snap["took"] = round(time.monotonic() - self.t0 - t, 3)
        return snap

    def sample(self, gen_pid, label):
        """A light progress line (and a point of the time series kept in the raw data)."""
        t = time.monotonic() - self.t0
        conns, rss = [], 0
        for n in self.nodes:
            rss += proc_status_kib(n.proc.pid) or 0
            try:
                conns.append(node_conns({"metrics": parse_prom(http_get(n.http, "/metrics", 5))}))
            except (OSError, http.client.HTTPException):
                conns.append(None)
        gen_rss = sum(proc_status_kib(p) or 0 for p in descendants(gen_pid)) if gen_pid else 0
        tcp = sockstat().get("TCP", {})
        total = sum(c for c in conns if c is not None)
        self.samples.append({"phase": label, "t": round(t, 1), "conns": conns,
                             "node_rss_kib": rss, "gen_rss_kib": gen_rss,
                             "tcp_inuse": tcp.get("inuse"), "tcp_mem_pages": tcp.get("mem")})
        log(f"{label} +{t:.0f}s: {total:,.0f} connections on the nodes "
            f"({', '.join('?' if c is None else f'{c:.0f}' for c in conns)}), node RSS "
            f"{rss / 1024:.0f} MiB, generator RSS {gen_rss / 1024:.0f} MiB, "
            f"TCP inuse {tcp.get('inuse')}")

    def total_conns(self):
        total = 0
        for n in self.nodes:
            try:
                c = node_conns({"metrics": parse_prom(http_get(n.http, "/metrics", 5))})
            except (OSError, http.client.HTTPException):
                return None
            total += c or 0
        return total

    # -- the load generator ---------------------------------------------------------------

    def run_generator(self, label, argv, timeout):
        """Runs one `volna bench fanout`; returns its snapshots, JSON and how it ended."""
        result = {"label": label, "argv": argv, "snaps": [], "json": None, "rc": None,
                  "error": None, "stderr": os.path.join(self.work, f"generator-{label}.stderr")}
        result["snaps"].append(self.snapshot("start", None))
        lines = queue.Queue()
        out = []
        errf = open(result["stderr"], "w")
        p = self.procs.start(f"generator {label}", argv, subprocess.PIPE, subprocess.PIPE)
        log(f"phase {label}: {shlex.join(argv)}")

        def read_out():
            out.append(p.stdout.read().decode("utf-8", errors="replace"))

        def read_err():
            for raw in p.stderr:
                lines.put(raw.decode("utf-8", errors="replace").rstrip("\n"))
            lines.put(None)

        threads = [threading.Thread(target=read_out, daemon=True),
                   threading.Thread(target=read_err, daemon=True)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout
        next_sample = time.monotonic() + self.cfg.progress
        echoed = 0
        dead_reported = set()
        phase = "start"
        finished = False
        try:
            while True:
                now = time.monotonic()
                if now > deadline:
                    result["error"] = (f"the generator did not finish within {timeout:.0f} s "
                                       f"(TIMEOUT); stopped it")
                    break
                try:
                    line = lines.get(timeout=min(1.0, max(0.05, deadline - now)))
                except queue.Empty:
                    line = ""
                if line is None:
                    finished = True
                    break
                if line:
                    errf.write(line + "\n")
                    errf.flush()
                    m = re.match(r"^\s*phase:\s*(\S+)", line)
                    if m:
                        phase = m.group(1)
                        snap = self.snapshot(phase, p.pid)
                        result["snaps"].append(snap)
                        log(f"phase {label}: {phase} at +{snap['t']:.1f}s: "
                            f"{sum(s['conns'] or 0 for s in snap['nodes']):,.0f} connections "
                            f"on the nodes (snapshot took {snap['took']:.2f} s)")
                    elif echoed < 50:
                        echoed += 1
                        print(f"[generator] {line}", file=sys.stderr, flush=True)
                        if echoed == 50:
                            log(f"(further generator output only in {result['stderr']})")
                if time.monotonic() >= next_sample and p.poll() is None:
                    self.sample(p.pid, f"{label}/{phase}")
                    next_sample = time.monotonic() + self.cfg.progress
                for d in self.check_nodes_alive():
                    if d not in dead_reported:
                        dead_reported.add(d)
                        log("WARNING: " + d)
        finally:
            if finished and p.poll() is None:
                # Its stderr closed: it is exiting (give it a little time, then stop it).
                try:
                    p.wait(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    pass
            self.procs.stop(p, signal.SIGTERM, grace=10.0)
            for t in threads:
                t.join(timeout=5)
            errf.close()
        result["rc"] = p.returncode
        result["snaps"].append(self.snapshot("end", None))
        text = "".join(out).strip()
        result["stdout"] = text
        result["json"] = parse_json(text)
        if result["error"] is None and p.returncode != 0:
            result["error"] = (f"the generator exited with code {p.returncode}; last lines of its "
                               f"stderr ({result['stderr']}):\n{indent(tail(result['stderr']))}")
        if result["error"] is None and result["json"] is None:
            result["error"] = f"the generator printed no JSON object; stdout was:\n{indent(text[-2000:])}"
        dead = self.check_nodes_alive()
        if dead:
            result["dead_nodes"] = dead
        return result

    def wait_drained(self):
        """After a phase: wait (bounded) for the nodes to count no connection left."""
        deadline = time.monotonic() + self.cfg.drain_timeout
        last = None
        while time.monotonic() < deadline:
            last = self.total_conns()
            if last == 0:
                return 0
            time.sleep(0.5)
        log(f"WARNING: {last} connections still open on the nodes after "
            f"{self.cfg.drain_timeout:g} s; going on")
        return last


def node_conns(s):
    series = s.get("metrics")
    c = msum(series, "volna_connections")
    if c is None and s.get("health"):
        c = s["health"].get("connections_open")
    return c


def parse_json(text):
    if not text:
        return None
    try:
        v = json.loads(text)
        return v if isinstance(v, dict) else None
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    a, b = text.find("{"), text.rfind("}")
    if 0 <= a < b:
        try:
            return json.loads(text[a:b + 1])
        except ValueError:
            return None
    return None


def indent(text, by="    "):
    return "\n".join(by + line for line in text.splitlines())


def bench_help(cfg):
    try:
        r = subprocess.run([cfg.volna, "bench", "fanout", "--help"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise Fail(f"could not run {cfg.volna} bench fanout --help: {e}")
    return r.stdout + r.stderr


def has_flag(help_text, flag):
    return re.search(r"(^|[\s,])" + re.escape(flag) + r"([\s=<,]|$)", help_text, re.M) is not None


# ---------------------------------------------------------------------------------------------
# Figures from snapshots

STEP_NAMES = {
    ("start", "connecting"): "start-up",
    ("connecting", "joined"): "ramp",
    ("joined", "held"): "hold",
    ("held", "published"): "broadcast",
    ("published", "done"): "drain",
    ("done", "end"): "exit",
    ("start", "end"): "whole run",
}


def steps(snaps):
    """Consecutive snapshot pairs with a label."""
    out = []
    for a, b in zip(snaps, snaps[1:]):
        name = STEP_NAMES.get((a["name"], b["name"]))
        label = f"{name} ({a['name']}→{b['name']})" if name else f"{a['name']}→{b['name']}"
        out.append((label, a, b))
    return out


def find(snaps, name):
    for s in snaps:
        if s["name"] == name:
            return s
    return None


def delta(a, b):
    if a is None or b is None:
        return None
    return b - a


def lag_step(a_series, b_series):
    """(p99 bound, max bound, samples) in seconds from the bucket deltas between two scrapes."""
    a, b = lag_buckets(a_series), lag_buckets(b_series)
    if not a or not b:
        return None
    before = dict(a)
    cum = [(le, v - before.get(le, 0.0)) for le, v in b]
    count = cum[-1][1] if cum else 0
    if count <= 0:
        return (None, None, 0)
    p99 = next((le for le, c in cum if c >= 0.99 * count), math.inf)
    top = next((le for le, c in cum if c >= count), math.inf)
    return (p99, top, int(count))


def fmt_lag(v, finite_max):
    if v is None:
        return "—"
    if math.isinf(v):
        return f"> {finite_max * 1000:g}"
    return f"{v * 1000:g}"


def fmt(v, digits=0, unit=""):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def node_snap(snap, i):
    return snap["nodes"][i] if snap and i < len(snap["nodes"]) else None


def disconnect_text(a, b):
    if a is None or b is None:
        return "—"
    da, db = mby(a.get("metrics"), "volna_disconnects_total", "reason"), \
        mby(b.get("metrics"), "volna_disconnects_total", "reason")
    if db is None:
        return "n/a"
    da = da or {}
    parts = [f"{r} {v - da.get(r, 0):,.0f}" for r, v in sorted(db.items()) if v - da.get(r, 0) > 0]
    return ", ".join(parts) if parts else "none"


def cluster_val(s, key):
    if s is None:
        return None
    h = (s.get("health") or {}).get("cluster") or {}
    if key in h:
        return h[key]
    v = msum(s.get("metrics"), f"volna_cluster_{key}_total")
    return v


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The report


def machine():
    cpus = os.cpu_count()
    model = ""
    for line in (read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = meminfo().get("MemTotal", 0) / 1024 / 1024
    return f"{cpus} CPUs ({model or os.uname().machine}), {mem:.1f} GiB memory, Linux {os.uname().release}"


def redis_version():
    try:
        return subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "redis-server"


def report(cfg, bench, a, b, b_skipped, notes, started):
    L = []
    w = L.append
    nn = len(bench.nodes)
    w(f"# Scale: {nn} volna nodes behind one Redis, one room of {cfg.clients:,} members")
    w("")
    w(f"Run on {started} by `bench/scale.sh {cfg.nodes} {cfg.clients} {cfg.hold:g}`"
      f"{' (COMPAT=1: the old single-process generator, no phases)' if cfg.compat else ''}. "
      f"Machine: {machine()}. Nodes and Redis pinned to CPU {cfg.node_cpus}, the load generator "
      f"to CPU {cfg.gen_cpus}. {redis_version()}. Open-files limit (soft) of the processes: "
      f"{resource_nofile()}. Snapshots are taken when the generator reports a phase "
      f"(`phase: NAME` on its stderr), plus one before it starts (`start`) and one after it exits "
      f"(`end`); per-phase figures are differences between consecutive snapshots.")
    w("")
    w("## Parameters and commands")
    w("")
    w(f"- nodes {cfg.nodes}, generator processes {cfg.processes}, clients {cfg.clients:,}, "
      f"hold {cfg.hold:g} s, broadcasts {cfg.messages} at 1/s, connect concurrency {cfg.concurrency}")
    w(f"- small rooms: {cfg.small_rooms:,} rooms, {cfg.small_clients:,} members, "
      f"{cfg.small_messages:,} messages at {cfg.small_rate:g}/s in total")
    w("")
    w("```sh")
    w(shlex.join(bench.redis_argv))
    for n in bench.nodes:
        w(shlex.join(n.argv))
    w(shlex.join(a["argv"]))
    if b:
        w(shlex.join(b["argv"]))
    w("```")
    w("")
    if notes:
        w("Notes:")
        w("")
        for note in notes:
            w(f"- {note}")
        w("")

    snaps = a["snaps"]
    st, con, joi, hel = find(snaps, "start"), find(snaps, "connecting"), find(snaps, "joined"), \
        find(snaps, "held")
    end = find(snaps, "end")
    ramp = delta(con and con["t"], joi and joi["t"])
    js = a["json"] or {}

    w(f"## Phase A: one room of {cfg.clients:,}")
    w("")
    if a.get("error"):
        w(f"**The run failed**: {a['error']}")
        w("")
    if a.get("dead_nodes"):
        for d in a["dead_nodes"]:
            w(f"**{d.splitlines()[0]}**")
        w("")
    w("### Connections and memory per node")
    w("")
    w("RSS per connection: the node's RSS growth over the ramp (`connecting` → `joined` "
      "snapshots) divided by the growth of its open connections (`volna_connections`).")
    w("")
    rows = []
    tot = {"j": 0.0, "h": 0.0, "dc": 0.0, "drss": 0.0, "rss_j": 0.0}
    have = {"j": False, "h": False, "dc": False, "drss": False, "rss_j": False}

    def acc(key, v):
        if v is not None:
            tot[key] += v
            have[key] = True

    for i, n in enumerate(bench.nodes):
        sj, sh, sc, s0, se = (node_snap(x, i) for x in (joi, hel, con, st, end))
        cj = sj and sj.get("conns")
        ch = sh and sh.get("conns")
        dc = delta(sc and sc.get("conns"), cj)
        drss = delta(sc and sc.get("rss_kib"), sj and sj.get("rss_kib"))
        acc("j", cj)
        acc("h", ch)
        acc("dc", dc)
        acc("drss", drss)
        acc("rss_j", sj and sj.get("rss_kib"))
        rows.append([
            f"node {n.index}", proc_nofile(n.proc.pid) or "—", fmt(cj), fmt(ch),
            fmt(div(dc, ramp)), fmt(div(s0 and s0.get("rss_kib"), 1024), 1),
            fmt(div(sj and sj.get("rss_kib"), 1024), 1), fmt(div(drss, dc), 2),
            fmt(div(se and se.get("rss_kib"), 1024), 1)])
    g = lambda k: tot[k] if have[k] else None  # noqa: E731
    rows.append(["**total**", "", fmt(g("j")), fmt(g("h")), fmt(div(g("dc"), ramp)),
                 fmt(div(sum((node_snap(st, i) or {}).get("rss_kib") or 0 for i in range(nn)), 1024), 1),
                 fmt(div(g("rss_j"), 1024), 1), fmt(div(g("drss"), g("dc")), 2),
                 fmt(div(sum((node_snap(end, i) or {}).get("rss_kib") or 0 for i in range(nn)), 1024), 1)])
    w(table(["node", "open files limit", "connections at end of ramp", "after hold",
             "connects/s (ramp)", "RSS at start (MiB)", "RSS at end of ramp (MiB)",
             "RSS per connection (KiB)", "RSS at end (MiB)"], rows))
    w("")
    if ramp is not None:
        w(f"Ramp: {ramp:.1f} s between the `connecting` and `joined` snapshots.")
        w("")

    cpu_tables(w, bench, a, "### CPU seconds per phase")

    w("### Event-loop lag per phase")
    w("")
    w("From the `volna_event_loop_lag` histogram's bucket deltas between snapshots (a 10 ms ticker's "
      "lateness): the upper bound of the bucket holding the 99th percentile / of the highest "
      "non-empty bucket, in ms.")
    w("")
    lag_table(w, bench, a)

    w("### Disconnects and the cluster")
    w("")
    w("Disconnects by reason (`volna_disconnects_total{reason}`; *n/a*: this binary does not count "
      "them) during the hold (`joined` → `held`) and over the whole phase (`start` → `end`); "
      "cluster figures from `/health` (`cluster`), counters as differences over the phase.")
    w("")
    rows = []
    for i, n in enumerate(bench.nodes):
        s0, sj, sh, se = (node_snap(x, i) for x in (st, joi, hel, end))
        rows.append([
            f"node {n.index}", disconnect_text(sj, sh), disconnect_text(s0, se),
            fmt(delta(msum(s0 and s0.get("metrics"), "volna_deliveries_total", kind="message"),
                      msum(se and se.get("metrics"), "volna_deliveries_total", kind="message"))),
            fmt(delta(cluster_val(s0, "publish_dropped"), cluster_val(se, "publish_dropped"))),
            fmt(cluster_val(se, "redis")),
            fmt(delta(cluster_val(s0, "redis_outages"), cluster_val(se, "redis_outages"))),
            fmt(delta(cluster_val(s0, "probes_slow"), cluster_val(se, "probes_slow"))),
            fmt(msum((sj or se or {}).get("metrics"), "volna_cluster_nodes")),
            fmt(delta(cluster_val(s0, "published"), cluster_val(se, "published"))),
            fmt(delta(cluster_val(s0, "received"), cluster_val(se, "received"))),
        ])
    w(table(["node", "disconnects during hold", "disconnects, whole phase",
             "message deliveries (node counter)", "publish_dropped", "redis at end", "redis_outages", "slow probes (busy, not down)",
             "nodes known",
             "published to Redis", "received from Redis"], rows))
    w("")

    w("### Load generator")
    w("")
    gc, gj = (con or {}).get("gen"), (joi or {}).get("gen")
    grow = delta(gc and gc.get("rss_kib"), gj and gj.get("rss_kib"))
    w("Client-side memory: the generator processes' total RSS (the process `bench/scale.py` started and "
      "everything below it) at the `connecting` and `joined` snapshots; per connection = the growth "
      "divided by the growth of the nodes' open connections.")
    w("")
    w(table(["processes", "RSS at connecting (MiB)", "RSS at end of ramp (MiB)",
             "RSS per connection (KiB)"],
            [[fmt(gj and gj.get("processes")), fmt(div(gc and gc.get("rss_kib"), 1024), 1),
              fmt(div(gj and gj.get("rss_kib"), 1024), 1), fmt(div(grow, g("dc")), 2)]]))
    w("")
    keys = ["connected+joined", "failures", "first failure", "seconds to connect all", "connects/s",
            "still open after hold", "generator RSS (MiB)", "generator processes"]
    w(table(["generator figure", "value"],
            [[k, fmt_json(js.get(k))] for k in keys if k in js] or [["(none reported)", "—"]]))
    w("")

    w("### Kernel")
    w("")
    w("`/proc/net/sockstat` (whole machine; on loopback every connection is two sockets) and the "
      f"slab memory of `/proc/meminfo`; page size {PAGE} bytes.")
    w("")
    rows = []
    for s in snaps:
        tcp = s.get("sockstat", {}).get("TCP", {})
        mi = s.get("meminfo", {})
        rows.append([s["name"], fmt(tcp.get("inuse")), fmt(tcp.get("tw")), fmt(tcp.get("orphan")),
                     fmt(tcp.get("mem")), fmt(div((tcp.get("mem") or 0) * PAGE, 1 << 20), 1),
                     fmt(div(mi.get("Slab"), 1024), 1), fmt(div(mi.get("MemAvailable"), 1024), 0)])
    w(table(["snapshot", "TCP inuse", "TCP tw", "TCP orphan", "TCP mem (pages)", "TCP mem (MiB)",
             "Slab (MiB)", "MemAvailable (MiB)"], rows))
    w("")
    if con and joi:
        tc, tj = con["sockstat"].get("TCP", {}), joi["sockstat"].get("TCP", {})
        dmem = delta(tc.get("mem"), tj.get("mem"))
        dslab = delta(con["meminfo"].get("Slab"), joi["meminfo"].get("Slab"))
        mem_kib = None if dmem is None else dmem * PAGE / 1024
        w(f"Over the ramp: TCP buffer memory {fmt(div(mem_kib, g('dc')), 2)} KiB "
          f"and slab {fmt(div(dslab, g('dc')), 2)} KiB per connection (both ends); "
          f"TCP sockets in use grew by {fmt(delta(tc.get('inuse'), tj.get('inuse')))} "
          f"for {fmt(g('dc'))} connections.")
        w("")

    w("### Broadcast to everyone")
    w("")
    delivery_table(w, [("one room", a)])

    w("### Redis")
    w("")
    redis_table(w, a)

    w("## Phase B: many small rooms")
    w("")
    if b_skipped:
        w(f"Skipped: {b_skipped}")
        w("")
    elif b is None:
        w("Not run: phase A failed.")
        w("")
    else:
        if b.get("error"):
            w(f"**The run failed**: {b['error']}")
            w("")
        w(f"{cfg.small_clients:,} members over {cfg.small_rooms:,} rooms (`small-0` … "
          f"`small-{cfg.small_rooms - 1}`), one publisher per room, {cfg.small_messages:,} messages "
          f"at {cfg.small_rate:g}/s in total.")
        w("")
        delivery_table(w, [("small rooms", b)])
        cpu_tables(w, bench, b, "### CPU seconds per phase (small rooms)")
        w("### Event-loop lag per phase (small rooms)")
        w("")
        lag_table(w, bench, b)
        w("### Redis (small rooms)")
        w("")
        redis_table(w, b)

    w("## Generator output")
    w("")
    w("```json")
    w(json.dumps({"one room": a["json"], "small rooms": b and b["json"]}, indent=1, sort_keys=True))
    w("```")
    w("")
    w(kept_by_hand(cfg.out))
    return "\n".join(L)


def kept_by_hand(out):
    """The report's hand-written tail: everything from `## Model` on in the
    current OUT (a rerun keeps it), or a placeholder."""
    try:
        with open(out) as f:
            old = f.read()
    except OSError:
        old = ""
    at = old.find("\n## Model")
    if at >= 0:
        return old[at + 1:].rstrip("\n") + "\n"
    return "## Model\n\n(filled in by hand from these measurements)\n"


def fmt_json(v):
    if isinstance(v, float):
        return fmt(v, 2 if abs(v) < 100 else 0)
    if isinstance(v, int) and not isinstance(v, bool):
        return fmt(v)
    return fmt(v if v is None else str(v))


def cpu_tables(w, bench, run, title):
    w(title)
    w("")
    w("User + system time from `/proc/PID/stat`, for the nodes, redis-server and the generator "
      "processes (for the generator, what its exited workers used is counted too: their parent's "
      f"cutime + cstime); clock ticks of {1000 / CLK_TCK:g} ms.")
    w("")
    ss = steps(run["snaps"])
    header = ["process"] + [label for label, _, _ in ss]
    rows = [["*seconds elapsed*"] + [fmt(b["t"] - a["t"], 1) for _, a, b in ss]]
    totals = [0.0] * len(ss)
    for i, n in enumerate(bench.nodes):
        row = [f"node {n.index}"]
        for k, (_, a, b) in enumerate(ss):
            d = delta((node_snap(a, i) or {}).get("ticks"), (node_snap(b, i) or {}).get("ticks"))
            row.append(fmt(div(d, CLK_TCK), 2))
            totals[k] += (d or 0) / CLK_TCK
        rows.append(row)
    rows.append(["**nodes total**"] + [fmt(t, 2) for t in totals])
    rows.append(["redis-server"] + [fmt(div(delta(a["redis"].get("ticks"), b["redis"].get("ticks")),
                                            CLK_TCK), 2) for _, a, b in ss])
    gen_row = ["generator"]
    for _, a, b in ss:
        # Shown only when both snapshots saw the generator.
        ga, gb = a.get("gen"), b.get("gen")
        gen_row.append(fmt(div(delta(ga and ga["ticks"], gb and gb["ticks"]), CLK_TCK), 2)
                       if ga and gb else "—")
    rows.append(gen_row)
    w(table(header, rows))
    w("")


def lag_table(w, bench, run):
    ss = steps(run["snaps"])
    rows = []
    finite = 1.0
    for i, n in enumerate(bench.nodes):
        row = [f"node {n.index}"]
        for _, a, b in ss:
            bk = lag_buckets((node_snap(b, i) or {}).get("metrics"))
            if bk:
                finite = max(le for le, _ in bk if not math.isinf(le))
            r = lag_step((node_snap(a, i) or {}).get("metrics"), (node_snap(b, i) or {}).get("metrics"))
            if r is None:
                row.append("—")
            elif r[2] == 0:
                row.append("no samples")
            else:
                row.append(f"{fmt_lag(r[0], finite)} / {fmt_lag(r[1], finite)}")
        rows.append(row)
    w(table(["node (p99 / max, ms)"] + [label for label, _, _ in ss], rows))
    w("")


def delivery_table(w, runs):
    rows = []
    for name, r in runs:
        js = r["json"] or {}
        rows.append([name, fmt_json(js.get("expected deliveries")), fmt_json(js.get("delivered")),
                     fmt_json(js.get("lost")), fmt_json(js.get("latency p50 (ms)")),
                     fmt_json(js.get("latency p99 (ms)")), fmt_json(js.get("latency max (ms)")),
                     fmt_json(js.get("deliveries/s"))])
    w(table(["run", "expected", "delivered", "lost", "p50 (ms)", "p99 (ms)", "max (ms)",
             "deliveries/s"], rows))
    w("")


def redis_table(w, run):
    rows = []
    for label, a, b in steps(run["snaps"]):
        ia, ib = a["redis"].get("info") or {}, b["redis"].get("info") or {}
        cmds = delta(num(ia.get("total_commands_processed")), num(ib.get("total_commands_processed")))
        rows.append([label, fmt(b["t"] - a["t"], 1),
                     fmt(div(delta(a["redis"].get("ticks"), b["redis"].get("ticks")), CLK_TCK), 2),
                     fmt(cmds), fmt(div(b["redis"].get("rss_kib"), 1024), 1),
                     fmt(num(ib.get("connected_clients")))])
    w(table(["phase", "seconds", "CPU seconds", "commands processed", "RSS at end (MiB)",
             "clients at end"], rows))
    w("")


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def resource_nofile():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return f"{soft} (hard {hard})"
    except (ImportError, OSError, ValueError):
        return "unknown"


def raise_nofile():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, OSError, ValueError):
        pass


# ---------------------------------------------------------------------------------------------
# Main

_stopping = False


def _on_signal(signum, _frame):
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise Interrupted(signal.Signals(signum).name)


def main():
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    cfg = Config()
    raise_nofile()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    help_text = bench_help(cfg)
    notes = []
    if cfg.compat:
        notes.append("COMPAT=1: `volna bench fanout --url … --spread-url …` in one process, so only "
                     "the first two nodes get clients, there is no hold and no phase snapshot.")
    else:
        missing = [f for f in ("--urls", "--processes", "--hold") if not has_flag(help_text, f)]
        if missing:
            raise Fail(f"{cfg.volna} bench fanout has no {', '.join(missing)}: rebuild volna with the "
                       f"multi-process generator, or set COMPAT=1 to use the old single-process form")
    b_skipped = None
    if not has_flag(help_text, "--rooms"):
        b_skipped = "`volna bench fanout --help` lists no `--rooms` in this binary."
    elif cfg.small_clients == 0:
        b_skipped = "SMALL_CLIENTS=0: not run."
    per_node = -(-cfg.clients // cfg.nodes)
    per_gen = -(-cfg.clients // cfg.processes)
    limit = resource_nofile().split()[0]
    if limit.isdigit():
        lim = int(limit)
        if per_node + 64 > lim:
            notes.append(f"{per_node:,} connections per node is at or above the open-files limit "
                         f"({lim:,}) less a few dozen for the node's own files: some connects may fail.")
        if not cfg.compat and per_gen + 64 > lim:
            notes.append(f"{per_gen:,} connections per generator process is at or above the open-files "
                         f"limit ({lim:,}) less a few dozen: some connects may fail.")
    for note in notes:
        log("note: " + note)

    work = tempfile.mkdtemp(prefix="volna-scale-")
    log(f"logs and raw snapshots in {work}")
    bench = Bench(cfg, work)
    a = b = None
    failed = None
    try:
        bench.start_redis()
        bench.start_nodes()
        urls = [f"socketio://127.0.0.1:{n.http}" for n in bench.nodes]
        gen = ["taskset", "-c", cfg.gen_cpus, cfg.volna, "bench", "fanout"]
        if cfg.compat:
            argv_a = gen + ["--url", urls[0]] + (["--spread-url", urls[1]] if len(urls) > 1 else []) + [
                "-n", str(cfg.clients), "-m", str(cfg.messages), "--rate", "1", "--room", "big",
                "--concurrency", str(cfg.concurrency), "--json", "--quiet"]
        else:
            argv_a = gen + ["--urls", ",".join(urls), "--processes", str(cfg.processes),
                            "-n", str(cfg.clients), "--hold", f"{cfg.hold:g}", "-m", str(cfg.messages),
                            "--rate", "1", "--room", "big", "--json", "--quiet",
                            "--concurrency", str(cfg.concurrency)]
        a = bench.run_generator("A", argv_a, cfg.timeout_a)
        if a["error"]:
            failed = f"phase A: {a['error']}"
        elif a.get("dead_nodes"):
            failed = "phase A: " + "; ".join(d.splitlines()[0] for d in a["dead_nodes"])
        if failed is None and b_skipped is None:
            bench.wait_drained()
            if cfg.compat:
                urls_b = ["--url", urls[0]] + (["--spread-url", urls[1]] if len(urls) > 1 else [])
            else:
                urls_b = ["--urls", ",".join(urls), "--processes", str(cfg.processes)]
            argv_b = gen + urls_b + ["-n", str(cfg.small_clients), "--rooms", str(cfg.small_rooms),
                                     "--publishers", str(min(cfg.small_rooms, cfg.small_clients)),
                                     "-m", str(cfg.small_messages), "--rate", f"{cfg.small_rate:g}",
                                     "--room", "small", "--json", "--quiet"]
            b = bench.run_generator("B", argv_b, cfg.timeout_b)
            if b["error"]:
                failed = f"phase B: {b['error']}"
        elif b_skipped:
            log(f"phase B skipped: {b_skipped}")
        with open(os.path.join(work, "snapshots.json"), "w") as f:
            json.dump({"config": vars(cfg), "A": a, "B": b, "samples": bench.samples}, f, default=str)
        text = report(cfg, bench, a, b, b_skipped, notes, started)
        print(text)
        if failed:
            path = os.path.join(work, "report.md")
            with open(path, "w") as f:
                f.write(text + "\n")
            log(f"FAILED: {failed}")
            log(f"partial report in {path} ({cfg.out} left as it was)")
            return 1
        out_dir = os.path.dirname(os.path.abspath(cfg.out))
        os.makedirs(out_dir, exist_ok=True)
        tmp = cfg.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, cfg.out)
        log(f"wrote {cfg.out}; logs and raw snapshots (snapshots.json) in {work}")
        return 0
    except Fail as e:
        log(f"FAILED: {e}")
        log(f"logs in {work}")
        return 1
    except Interrupted as e:
        log(f"interrupted ({e}); stopping everything")
        return 130 if str(e) == "SIGINT" else 143
    finally:
        global _stopping
        _stopping = True  # further signals wait for the clean-up
        bench.procs.stop_all()
        if cfg.state_file:
            try:
                open(cfg.state_file, "w").close()
            except OSError:
                pass


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    except Interrupted:
        sys.exit(130)
