// Rolling restarts (docs/operations.md): SIGTERM drains a volna node. Its listeners close (new connections
// are refused), its clients are told to reconnect a slice at a time over --drain-ms, then it exits.
//
// The first test starts its own two volna nodes A and B in streams mode with connection-state recovery (one
// stream PREFIX, sessions under PREFIX:session:), and a load balancer of its own: a TCP server that sends
// every new connection to A, or to B when A refuses it (as a balancer with health checks would). 200 stock
// socket.io-clients connect through it (to A) and join a room; a publisher on B sends numbered messages to
// the room all along. A is sent SIGTERM: every client must come back on B by itself within the drain window
// + 3 s, recovered (the same socket id), and must have received every message once, in order; A must exit
// by itself with code 0; B must count the 201 Socket.IO connections in GET /metrics.
//
// The second test drains a single node C (no Redis, --drain-ms 500) with a /ws client (close code 1012)
// and a TCP line client (`bye server-restart: …`) on it; new TCP connections are refused meanwhile.
//
// Started by run.sh, which passes REDIS_URL, PREFIX and VOLNA_BIN. Each test prints a summary line;
// RESTART_DEBUG=1 adds the Manager's events (reconnection attempts, engine opens) of the slowest clients.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { io as connect } from "socket.io-client";
import { sleep, splice, until as waitUntil } from "./net-helpers.mjs";

const { REDIS_URL, PREFIX, VOLNA_BIN } = process.env;
for (const [k, v] of Object.entries({ REDIS_URL, PREFIX, VOLNA_BIN })) {
  if (!v) throw new Error(`${k} is not set (run tests/cluster-interop/run.sh)`);
}

const CLIENTS = 200;
const POLLING_EVERY = 5; // every 5th client starts on ["polling", "websocket"], the others on WebSocket only
const ROOM = "restart";
const DRAIN_MS = 2000;
const MOVE_LIMIT_MS = DRAIN_MS + 3000; // every client back within the drain window + 3 s
const EXIT_LIMIT_MS = DRAIN_MS + 4000; // the drained node gone within the window + its grace
const PUBLISH_EVERY_MS = 20; // ~50 messages/s
const QUIET_MS = 3000;
const WAIT_MS = 10000;

/** Waits (polling) until `cond()` is true, at most `ms`. */
const until = (cond, what, ms = WAIT_MS) => waitUntil(cond, what, ms);

/** `promise`, or a rejection after `ms`. */
function within(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

const nodes = [];
const sockets = []; // every socket.io-client
const closers = []; // everything else to close at the end

/** A volna process; its addresses come from the banner line on stdout. */
class Volna {
  constructor(name, args) {
    this.name = name;
    this.args = ["serve", "--tcp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--node-name", name,
      "--log", "warn,volna::server=info", ...args];
    this.stderr = "";
    this.exit = null; // {code, signal, at}
    nodes.push(this);
  }

  start() {
    this.proc = spawn(VOLNA_BIN, this.args, { stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        resolve(this.exit);
      });
    });
    this.proc.stderr.setEncoding("utf8");
    this.proc.stderr.on("data", (d) => {
      if (this.stderr.length < 1_000_000) this.stderr += d;
    });
    this.proc.stdout.setEncoding("utf8");
    let out = "";
    return within(new Promise((resolve, reject) => {
      this.proc.on("error", reject);
      this.proc.stdout.on("data", (d) => {
        out += d;
        const m = /serving: tcp:\/\/(\S+) .*http:\/\/(\S+)/.exec(out);
        if (m && !this.http) {
          this.tcp = m[1];
          this.http = m[2];
          this.url = `http://${this.http}`;
          resolve(this);
        }
      });
      this.exited.then((e) => reject(new Error(`${this.name} exited (${JSON.stringify(e)}): ${this.stderr}`)));
    }), WAIT_MS, `${this.name}'s banner`);
  }

  /** Until GET /health says Redis is up (the node has joined the cluster). */
  async joined() {
    await until(async () => {
      try {
        const r = await fetch(`${this.url}/health`);
        return (await r.text()).includes('"redis":"up"');
      } catch {
        return false;
      }
    }, `${this.name} to join the cluster`);
  }

  terminate() {
    this.termAt = Date.now();
    this.proc.kill("SIGTERM");
  }

  /** Stops the process if it is still there: SIGINT (at once), SIGKILL if that was not enough. */
  async stop() {
    if (!this.proc || this.exit) return;
    this.proc.kill("SIGINT");
    await within(this.exited, 3000, `${this.name} to stop`).catch(() => {
      this.proc.kill("SIGKILL");
      return within(this.exited, 3000, `${this.name} to die`).catch(() => {});
    });
  }

  log() {
    return `--- ${this.name} (${this.args.join(" ")}) exit ${JSON.stringify(this.exit)} stderr:\n${this.stderr}`;
  }
}

const hostPort = (addr) => {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
};

/**
 * A load balancer: every new connection goes to the first backend that accepts it (a refused connect tries
 * the next), and is piped both ways until either side closes.
 */
class Balancer {
  constructor(backends) {
    this.backends = backends; // [{name, host, port}]
    this.live = new Set();
    this.routed = []; // {name, at} for every connection forwarded
    this.refused = []; // {name, at} for every refused connect
    closers.push(() => this.close());
  }

  async listen() {
    this.server = net.createServer((c) => {
      c.on("error", () => {});
      this.#forward(c, 0);
    });
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  #forward(c, i) {
    if (c.destroyed) return;
    const backend = this.backends[i];
    if (!backend) {
      c.destroy();
      return;
    }
    const up = net.connect(backend.port, backend.host);
    let connected = false;
    up.once("error", (e) => {
      if (!connected && e.code === "ECONNREFUSED") {
        this.refused.push({ name: backend.name, at: Date.now() });
        this.#forward(c, i + 1);
      } else {
        c.destroy();
      }
    });
    up.once("connect", () => {
      connected = true;
      this.routed.push({ name: backend.name, at: Date.now() });
      splice(c, up, this.live);
    });
  }

  close() {
    for (const { c, up } of this.live) {
      c.destroy();
      up.destroy();
    }
    this.live.clear();
    this.server?.close();
  }
}

/** A stock socket.io-client with its own Manager; `state` records what it goes through. */
function client(url, opts, index) {
  const s = connect(url, {
    forceNew: true,
    timeout: 5000,
    ackTimeout: 5000,
    ...opts,
  });
  // manager: the Manager's reconnection attempts, errors and engine opens.
  s.state = { index, transports: opts.transports, got: [], offsets: [], disconnects: [], connects: [], manager: [] };
  s.on("connect", () => s.state.connects.push({ at: Date.now(), id: s.id, recovered: s.recovered }));
  s.on("disconnect", (reason) => s.state.disconnects.push({ at: Date.now(), reason }));
  s.io.on("reconnect_attempt", (n) => s.state.manager.push({ at: Date.now(), n }));
  s.io.on("open", () => s.state.manager.push({ at: Date.now(), open: true }));
  s.io.on("reconnect_error", (e) => s.state.manager.push({ at: Date.now(), error: `${e?.message} ${e?.description?.message ?? e?.description ?? ""}` }));
  s.on("message", (...args) => {
    const m = args[0];
    if (m?.room !== ROOM) return;
    s.state.got.push(m.data);
    s.state.offsets.push(args.at(-1));
  });
  sockets.push(s);
  return s;
}

function connected(s, what) {
  return within(new Promise((resolve) => (s.connected ? resolve() : s.once("connect", resolve))), WAIT_MS, what);
}

async function join(s) {
  const r = await s.emitWithAck("join", ROOM);
  assert.equal(r?.ok, true, `join ${ROOM}: ${JSON.stringify(r)}`);
}

/** volna_connections{protocol="socketio"} from GET /metrics (OpenMetrics text). */
async function socketioConnections(node) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const m = /^volna_connections\{protocol="socketio"\} (\d+)/m.exec(text);
  assert.ok(m, `volna_connections{protocol="socketio"} in ${node.name}'s /metrics`);
  return Number(m[1]);
}

/** Stream entry ids ("ms-seq") in increasing order. */
function compareIds(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am === bm ? (as < bs ? -1 : as > bs ? 1 : 0) : am < bm ? -1 : 1;
}

/** Lost, duplicated and out-of-order messages of `got` against `expected` (each once, in order). */
function compare(got, expected) {
  const seen = new Map();
  for (const n of got) seen.set(n, (seen.get(n) ?? 0) + 1);
  const lost = expected.filter((n) => !seen.has(n));
  let duplicates = 0;
  for (const c of seen.values()) duplicates += c - 1;
  let outOfOrder = 0;
  for (let i = 1; i < got.length; i++) if (!(got[i] > got[i - 1])) outOfOrder++;
  const unexpected = got.filter((n) => !expected.includes(n));
  return { lost, duplicates, outOfOrder, unexpected };
}

after(async () => {
  for (const s of sockets) s.close();
  for (const c of closers) await c();
  await Promise.allSettled(nodes.map((n) => n.stop()));
});

test("SIGTERM drains node A: 200 Socket.IO clients move to B, recovered, every message once and in order", { timeout: 60000 }, async (t) => {
  const common = ["--redis", REDIS_URL, "--redis-prefix", PREFIX, "--redis-mode", "streams",
    "--redis-session-prefix", `${PREFIX}:session:`, "--recovery", "true", "--max-disconnection-ms", "120000"];
  const A = new Volna("restart-a", [...common, "--drain-ms", String(DRAIN_MS)]);
  const B = new Volna("restart-b", common);
  try {
    await Promise.all([A.start(), B.start()]);
    await Promise.all([A.joined(), B.joined()]);
    const lb = await new Balancer([{ name: "A", ...hostPort(A.http) }, { name: "B", ...hostPort(B.http) }]).listen();

    // 200 clients through the balancer (to A), each in the room.
    const clients = [];
    for (let i = 0; i < CLIENTS; i++) {
      const polling = i % POLLING_EVERY === 0;
      clients.push(client(lb.url, {
        transports: polling ? ["polling", "websocket"] : ["websocket"],
        reconnection: true,
        reconnectionDelay: 100 + (i % 3) * 100,
        reconnectionDelayMax: 1000,
      }, i));
    }
    await Promise.all(clients.map((s, i) => connected(s, `client ${i} to connect`)));
    await Promise.all(clients.map(join));
    assert.ok(lb.routed.every((r) => r.name === "A"), "before the restart every connection goes to A");
    for (const s of clients) {
      assert.equal(typeof s._pid, "string", "the server gave the socket a pid in its CONNECT (recovery is on)");
      s.state.firstId = s.id;
    }

    // The publisher, directly on B, in the room too.
    const pub = client(B.url, { transports: ["websocket"], reconnection: false }, "publisher");
    await connected(pub, "the publisher to connect");
    await join(pub);

    const sent = [];
    const acks = new Map(); // n → reply
    const ackWaits = [];
    let publishing = true;
    const publisher = (async () => {
      for (let n = 1; publishing; n++) {
        sent.push(n);
        ackWaits.push(new Promise((resolve) => {
          pub.timeout(5000).emit("message", { room: ROOM, data: n }, (err, r) => {
            acks.set(n, err ? { error: String(err) } : r);
            resolve();
          });
        }));
        await sleep(PUBLISH_EVERY_MS);
      }
    })();

    await sleep(1000);
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const cutAt = Date.now();
    const sentBeforeCut = sent.length;
    A.terminate();

    // Every client back (a connect after the cut), at most the limit; waited for longer to tell how long.
    const back = (s) => s.state.connects.some((c) => c.at >= cutAt);
    await until(() => clients.every(back), "every client to reconnect", MOVE_LIMIT_MS + 5000).catch(() => {});
    const reconnectTimes = clients.filter(back).map((s) => s.state.connects.find((c) => c.at >= cutAt).at - cutAt);
    const notBack = clients.filter((s) => !back(s)).map((s) => s.state.index);
    const movedIn = Math.max(0, ...reconnectTimes);
    // When the drain cut each client (its first disconnect after the cut), and how long each was away.
    const cutTimes = clients.map((s) => s.state.disconnects.find((d) => d.at >= cutAt)?.at - cutAt).filter((x) => x >= 0);
    const away = clients.filter(back).map((s) => {
      const d = s.state.disconnects.find((x) => x.at >= cutAt)?.at ?? cutAt;
      return s.state.connects.find((c) => c.at >= cutAt).at - d;
    });
    lag.disable();
    const exit = await within(A.exited, Math.max(0, cutAt + EXIT_LIMIT_MS - Date.now()), "A to exit").catch((e) => e);

    // Publish on for a moment with everybody on B, then stop and wait for the acks.
    await sleep(1000);
    publishing = false;
    await publisher;
    await within(Promise.all(ackWaits), 6000, "the publisher's acks");
    const refusedAcks = [...acks].filter(([, r]) => r?.ok !== true);
    const expected = sent.filter((n) => acks.get(n)?.ok === true);

    // Quiet: everybody has everything (at most QUIET_MS), then nothing more comes.
    await until(() => [pub, ...clients].every((s) => s.state.got.length >= expected.length), "every message to arrive", QUIET_MS)
      .catch(() => {});
    await sleep(300);

    const bConnections = await socketioConnections(B);

    // What happened to each client.
    let recovered = 0, lost = 0, duplicates = 0, outOfOrder = 0, badOffsets = 0;
    const problems = [];
    const pubOffset = new Map(pub.state.got.map((n, i) => [n, pub.state.offsets[i]]));
    for (const s of clients) {
      const st = s.state;
      const after = st.connects.filter((c) => c.at >= cutAt);
      const ok = after.length > 0 && after.every((c) => c.recovered === true && c.id === st.firstId);
      if (ok && s.recovered === true && s.id === st.firstId) recovered++;
      else problems.push(`client ${st.index} (${st.transports}): connects after the cut ${JSON.stringify(after.map((c) => ({ t: c.at - cutAt, id: c.id, recovered: c.recovered })))}, first id ${st.firstId}`);
      const reasons = st.disconnects.map((d) => `${d.reason}@${d.at - cutAt}`);
      if (st.disconnects.length !== 1 || st.disconnects[0].reason !== "transport close") {
        problems.push(`client ${st.index} (${st.transports}): disconnects ${JSON.stringify(reasons)}`);
      }
      const c = compare(st.got, expected);
      lost += c.lost.length;
      duplicates += c.duplicates;
      outOfOrder += c.outOfOrder;
      if (c.lost.length || c.duplicates || c.outOfOrder || c.unexpected.length) {
        problems.push(`client ${st.index} (${st.transports}): got ${st.got.length}/${expected.length}, lost ${JSON.stringify(c.lost.slice(0, 20))}${c.lost.length > 20 ? "…" : ""}, ` +
          `${c.duplicates} duplicates, ${c.outOfOrder} out of order, unexpected ${JSON.stringify(c.unexpected.slice(0, 10))}, disconnected ${JSON.stringify(reasons)}`);
      }
      let prev;
      for (let i = 0; i < st.got.length; i++) {
        const off = st.offsets[i];
        const bad = typeof off !== "string" || off !== pubOffset.get(st.got[i]) || (prev && compareIds(prev, off) !== -1);
        if (bad) {
          badOffsets++;
          if (badOffsets <= 5) problems.push(`client ${st.index}: message ${st.got[i]} offset ${off} (publisher saw ${pubOffset.get(st.got[i])}, previous ${prev})`);
        }
        if (typeof off === "string") prev = off;
      }
    }
    const pubCheck = compare(pub.state.got, expected);

    // How long B took to answer each recovering CONNECT (the engine open on B to the socket's connect).
    const answer = clients.filter(back).flatMap((s) => {
      const c = s.state.connects.find((x) => x.at >= cutAt);
      const o = s.state.manager.filter((a) => a.open && a.at >= cutAt && a.at <= c.at).at(-1);
      return o ? [c.at - o.at] : [];
    }).sort((a, b) => a - b);
    if (process.env.RESTART_DEBUG) {
      for (const s of clients.filter(back)) {
        const d = s.state.disconnects.find((x) => x.at >= cutAt);
        const c = s.state.connects.find((x) => x.at >= cutAt);
        if (d && c.at - d.at > 1200) {
          t.diagnostic(`slow client ${s.state.index} (${s.state.transports}) cut@${d.at - cutAt} back@${c.at - cutAt} ` +
            `manager ${JSON.stringify(s.state.manager.map((a) => ({ ...a, at: a.at - cutAt })))}`);
        }
      }
    }

    const summary = `restart (streams, recovery): clients=${CLIENTS} (${Math.ceil(CLIENTS / POLLING_EVERY)} polling first) ` +
      `messages=${expected.length} (${sentBeforeCut} before the SIGTERM) moved-all-in=${notBack.length ? `>${MOVE_LIMIT_MS + 5000}` : movedIn}ms ` +
      `(first ${Math.min(...reconnectTimes)}ms, limit ${MOVE_LIMIT_MS}ms; cut between ${Math.min(...cutTimes)} and ${Math.max(...cutTimes)}ms, ` +
      `away ${Math.min(...away)}-${Math.max(...away)}ms, B's recovery answer median ${answer[answer.length >> 1]}ms ` +
      `p90 ${answer[Math.floor(answer.length * 0.9)]}ms max ${answer.at(-1)}ms) recovered=${recovered}/${CLIENTS} lost=${lost} ` +
      `duplicates=${duplicates} out-of-order=${outOfOrder} bad-offsets=${badOffsets} ` +
      `A-exit=${exit instanceof Error ? "none" : `code ${exit.code} signal ${exit.signal} after ${exit.at - A.termAt}ms`} ` +
      `B-socketio-connections=${bConnections} lb: ${lb.routed.filter((r) => r.at >= cutAt && r.name === "B").length} to B, ` +
      `${lb.refused.length} refused by A; the test's event-loop delay while moving p99 ${Math.round(lag.percentile(99) / 1e6)}ms ` +
      `max ${Math.round(lag.max / 1e6)}ms`;
    t.diagnostic(summary);
    for (const p of problems.slice(0, 40)) t.diagnostic(p);
    if (problems.length > 40) t.diagnostic(`… ${problems.length - 40} more`);

    assert.deepEqual(refusedAcks, [], "the publisher's messages are all accepted");
    assert.ok(expected.length > sentBeforeCut + 50, `messages published after the cut too (${expected.length})`);
    assert.deepEqual(pubCheck, { lost: [], duplicates: 0, outOfOrder: 0, unexpected: [] }, "the publisher gets its own messages once, in order");
    assert.deepEqual(notBack, [], `every client reconnects (${notBack.length} did not)`);
    assert.ok(movedIn <= MOVE_LIMIT_MS, `every client back within ${MOVE_LIMIT_MS} ms of the SIGTERM (took ${movedIn} ms)`);
    assert.ok(!(exit instanceof Error), `A exits by itself within ${EXIT_LIMIT_MS} ms of the SIGTERM`);
    assert.equal(exit.code, 0, `A's exit code (signal ${exit.signal})`);
    assert.equal(recovered, CLIENTS, "every client recovered, with its socket id");
    assert.deepEqual(problems, [], "every client: one transport close, recovered, every message once, in order");
    assert.ok(bConnections >= CLIENTS + 1, `B counts every Socket.IO client (${bConnections})`);
  } catch (e) {
    console.error([A, B].map((n) => n.log()).join("\n"));
    throw e;
  }
});

test("SIGTERM drains a single node: /ws gets close 1012, TCP gets bye server-restart, new connections are refused", { timeout: 60000 }, async (t) => {
  const C = new Volna("restart-c", ["--drain-ms", "500"]);
  try {
    await C.start();
    const { host, port } = hostPort(C.tcp);

    let WebSocket = null;
    try {
      WebSocket = (await import("ws")).default;
    } catch {
      t.diagnostic("SKIPPED the /ws assertion: the ws package is not in tests/cluster-interop/node_modules");
    }

    // A /ws client, in a room.
    let ws, wsClosed;
    if (WebSocket) {
      ws = new WebSocket(`ws://${C.http}/ws?name=drained`);
      closers.push(() => ws.terminate());
      const frames = [];
      ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
      wsClosed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })));
      ws.on("error", () => {});
      await until(() => frames.some((f) => f.type === "welcome"), "the /ws welcome");
      ws.send(JSON.stringify({ op: "join", room: ROOM, id: 1 }));
      await until(() => frames.some((f) => f.type === "reply" && f.id === 1), "the /ws join reply");
    }

    // A TCP line client, in the room.
    const tcp = net.connect(port, host);
    closers.push(() => tcp.destroy());
    tcp.on("error", () => {});
    tcp.setEncoding("utf8");
    let text = "";
    tcp.on("data", (d) => (text += d));
    const tcpClosed = new Promise((resolve) => tcp.on("close", () => resolve(Date.now())));
    await until(() => text.includes("welcome"), "the TCP welcome");
    tcp.write(`/join ${ROOM}\n`);
    await until(() => text.includes(`ok join ${ROOM}`), "the TCP join reply");

    const connectOutcome = () => new Promise((resolve) => {
      const s = net.connect(port, host);
      const done = (what) => {
        s.destroy();
        resolve(what);
      };
      s.once("connect", () => done("connected"));
      s.once("error", (e) => done(e.code));
      setTimeout(() => done("timeout"), 2000);
    });

    C.terminate();
    const bye = () => text.split("\n").find((l) => l.startsWith("bye "));
    // During the drain: as soon as one of the clients is told to go.
    await until(() => bye() || (ws && ws.readyState >= 2), "the first client to be told to go", 5000);
    const during = await connectOutcome();
    const wsClose = ws ? await within(wsClosed, 5000, "the /ws close") : null;
    await within(tcpClosed, 5000, "the TCP close");
    const exit = await within(C.exited, 5000, "C to exit").catch((e) => e);
    const afterwards = await connectOutcome();

    const summary = `restart (single node, drain 500 ms): /ws close ${wsClose ? `${wsClose.code} "${wsClose.reason}" after ${wsClose.at - C.termAt}ms` : "skipped"}, ` +
      `tcp "${bye()}", new TCP connect during the drain: ${during}, after: ${afterwards}, ` +
      `C-exit=${exit instanceof Error ? "none" : `code ${exit.code} after ${exit.at - C.termAt}ms`}`;
    t.diagnostic(summary);

    if (wsClose) {
      assert.equal(wsClose.code, 1012, "/ws: close code 1012 (service restart)");
      assert.match(wsClose.reason, /^server-restart/, "/ws: the close reason");
    }
    assert.match(bye() ?? "(no bye line)", /^bye server-restart/, "TCP: the bye line");
    assert.equal(during, "ECONNREFUSED", "a new TCP connection during the drain is refused");
    assert.equal(afterwards, "ECONNREFUSED", "a new TCP connection after the drain is refused");
    assert.ok(!(exit instanceof Error), "C exits by itself");
    assert.equal(exit.code, 0, "C's exit code");
  } catch (e) {
    console.error(C.log());
    throw e;
  }
});
