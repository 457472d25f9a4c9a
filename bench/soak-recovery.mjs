// Recovery soak (docs/benchmarks.md, "Recovery soak"): CLIENTS stock socket.io-client sockets spread over
// the three transport modes (websocket, polling, polling→websocket) in one room of a volna started with
// --recovery; their transports are cut at random every CUT_MIN..CUT_MAX ms (engine.close(), as a network
// failure) while PUBLISHERS clients publish for SECONDS. At the end every client must have every message
// exactly once, in each publisher's order. Prints a table; bounded, loopback only, stops by itself.
//
// NODES=N (N ≥ 2, docs/benchmarks.md "Recovery soak across nodes (streams mode)"): the same across a cluster.
// A throwaway redis-server on a free loopback port, N volna nodes in streams mode sharing one stream
// (--redis-mode streams --recovery true), publishers spread over the nodes round-robin. Every client reaches
// the cluster through a TCP proxy of its own (as a load balancer would) and comes back on the *next* node
// after each cut. CUT chooses how the cut happens:
//   CUT=close (default)  the client closes its transport (engine.close(), as on one node); then its proxy
//                        drops what is left of the old connections and sends new ones to the next node;
//   CUT=drop             the proxy drops the client's TCP connections at once (no goodbye reaches the node:
//                        a network failure) and sends new ones to the next node.
// The client then connects again by hand (s.connect(), as on one node), which lands on the next node.
// The table gains `nodes` and `moves` (reconnections that landed on another node); each node's /health
// cluster counters follow. SOAK_LOG=file writes every client's timeline (cuts, connects, what it got).
//
//   node bench/soak-recovery.mjs            # needs tests/interop/node_modules (scripts/install-test-deps.sh)
//   CLIENTS=50 PUBLISHERS=3 SECONDS=60 RATE=20 node bench/soak-recovery.mjs
//   NODES=2 CLIENTS=50 PUBLISHERS=3 SECONDS=60 RATE=20 node bench/soak-recovery.mjs   # needs redis-server
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "tests/interop/package.json"));
const { io } = require("socket.io-client");
const { startVolna } = await import(path.join(root, "tests/interop/js/helpers.mjs"));
const { splice } = await import(path.join(root, "tests/cluster-interop/net-helpers.mjs"));

const CLIENTS = Number(process.env.CLIENTS || 50);
const PUBLISHERS = Number(process.env.PUBLISHERS || 3);
const SECONDS = Number(process.env.SECONDS || 60);
const RATE = Number(process.env.RATE || 20); // messages per second per publisher
const CUT_MIN = Number(process.env.CUT_MIN || 2000);
const CUT_MAX = Number(process.env.CUT_MAX || 5000);
const NODES = Math.max(1, Number(process.env.NODES || 1));
const CUT = process.env.CUT || "close";
const SOAK_LOG = process.env.SOAK_LOG || "";
const BIN = process.env.VOLNA_BIN || path.join(root, "target/release/volna");
const MODES = [["websocket"], ["polling"], ["polling", "websocket"]];
const ROOM = "soak";
const VOLNA_FLAGS = ["--recovery", "true", "--messages-per-second", "0", "--history", "100000"];

if (NODES > 1 && CUT !== "close" && CUT !== "drop") {
  console.error(`CUT must be "close" or "drop", not ${JSON.stringify(CUT)}`);
  process.exit(2);
}

// Every process started here is killed when this one exits, however it exits.
const children = [];
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});
// The whole run is bounded: publishing, cuts and the checks take far less than this.
setTimeout(() => {
  console.error("soak: still running long after the end; giving up");
  process.exit(3);
}, (SECONDS + 180) * 1000).unref();

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Stops every child (SIGTERM, SIGKILL after 3 s) and waits until they are gone. */
async function stopChildren() {
  await Promise.all(
    children.map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return null;
      return new Promise((resolve) => {
        const t = setTimeout(() => c.kill("SIGKILL"), 3000);
        c.once("exit", () => {
          clearTimeout(t);
          resolve();
        });
        c.kill("SIGTERM");
      });
    }),
  );
}

async function start() {
  const { server, http } = await startVolna(VOLNA_FLAGS, BIN);
  children.push(server);
  return { server, url: http };
}

function connect(url, transports, name) {
  const s = io(url, { forceNew: true, reconnection: false, transports, auth: { name }, timeout: 10000, ackTimeout: 10000 });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Cluster mode: a throwaway Redis, N nodes, one proxy per client.

/** A free TCP port on the loopback interface. */
async function freePort() {
  const srv = net.createServer();
  await new Promise((r, j) => srv.once("error", j).listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** True once the Redis on `port` answers PING (each try bounded). */
function redisPing(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    const done = (ok) => {
      clearTimeout(t);
      c.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), 1000);
    c.on("error", () => done(false));
    c.on("connect", () => c.write("PING\r\n"));
    c.on("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}

async function startRedis() {
  const port = await freePort();
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  children.push(redis);
  let failed = null;
  redis.on("error", (e) => (failed = e));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (failed) throw new Error(`redis-server could not be started: ${failed.message}`);
    if (redis.exitCode !== null) throw new Error(`redis-server exited (${redis.exitCode})`);
    if (await redisPing(port)) return { redis, port };
    if (Date.now() > deadline) throw new Error("redis-server did not answer PING within 10 s");
    await sleep(50);
  }
}

/** GET url/health, bounded; null when it does not answer. */
async function health(url) {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) });
    return await r.json();
  } catch {
    return null;
  }
}

async function startCluster() {
  const { port } = await startRedis();
  const nodes = [];
  for (let n = 0; n < NODES; n++) {
    const { server, http } = await startVolna(
      [...VOLNA_FLAGS, "--redis", `redis://127.0.0.1:${port}`, "--redis-prefix", `soak-${process.pid}`, "--redis-mode", "streams"],
      BIN,
    );
    children.push(server);
    nodes.push({ server, url: http });
  }
  // Every node must be in the cluster (Redis up) before anyone connects.
  const deadline = Date.now() + 10000;
  for (const node of nodes) {
    for (;;) {
      const h = await health(node.url);
      if (h?.cluster?.redis === "up" && h.cluster.mode === "streams") break;
      if (Date.now() > deadline) throw new Error(`${node.url} is not in the cluster: ${JSON.stringify(h?.cluster)}`);
      await sleep(100);
    }
  }
  return { nodes, redisPort: port };
}

/**
 * A TCP proxy in front of one node at a time, as a load balancer: new connections go to the current node;
 * `moveTo` sends the next ones elsewhere, `dropOthers` / `dropAll` cut forwarded connections (both ends
 * destroyed: the client sees its transport close, the node its TCP connection go).
 */
class Proxy {
  constructor(urls, node) {
    this.urls = urls;
    this.node = node;
    this.live = new Set();
    this.routed = new Array(urls.length).fill(0); // connections forwarded, per node
  }

  async listen() {
    this.server = net.createServer((c) => this.#forward(c));
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  #forward(c) {
    const node = this.node;
    const { hostname, port } = new URL(this.urls[node]);
    this.routed[node] += 1;
    splice(c, net.connect(Number(port), hostname), this.live, { node });
  }

  moveTo(node) {
    this.node = node;
  }

  /** Cuts the forwarded connections that go to another node than the current one. */
  dropOthers() {
    for (const pair of [...this.live]) {
      if (pair.node === this.node) continue;
      pair.c.destroy();
      pair.up.destroy();
      this.live.delete(pair);
    }
  }

  dropAll() {
    for (const pair of [...this.live]) {
      pair.c.destroy();
      pair.up.destroy();
    }
    this.live.clear();
  }

  close() {
    this.dropAll();
    this.server?.close();
  }
}

/** Resolves true at the socket's next `connect`, false at `connect_error` or after `ms`. */
function connectAgain(s, ms = 15000) {
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(t);
      s.off("connect", onConnect);
      s.off("connect_error", onError);
      resolve(ok);
    };
    const onConnect = () => done(true);
    const onError = () => done(false);
    const t = setTimeout(() => done(false), ms);
    s.once("connect", onConnect);
    s.once("connect_error", onError);
    s.connect();
  });
}

/** Resolves once the socket is disconnected (at most `ms`); true if it was within the time. */
function disconnected(s, ms) {
  if (!s.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      s.off("disconnect", on);
      resolve(false);
    }, ms);
    const on = () => {
      clearTimeout(t);
      resolve(true);
    };
    s.once("disconnect", on);
  });
}

/** `0:1, 0:2, 0:3, 0:7` → "0:1–3, 0:7" (message ids, each publisher's runs). */
function runs(ids) {
  const by = new Map();
  for (const id of ids) {
    const [p, n] = id.split(":").map(Number);
    if (!by.has(p)) by.set(p, []);
    by.get(p).push(n);
  }
  const out = [];
  for (const [p, ns] of [...by].sort((a, b) => a[0] - b[0])) {
    ns.sort((a, b) => a - b);
    let a = ns[0], b = ns[0];
    for (const n of ns.slice(1).concat([NaN])) {
      if (n === b + 1) { b = n; continue; }
      out.push(a === b ? `${p}:${a}` : `${p}:${a}–${b}`);
      a = b = n;
    }
  }
  return out.join(", ");
}

async function mainCluster() {
  const t0 = Date.now();
  const at = () => Date.now() - t0;
  const { nodes, redisPort } = await startCluster();
  const urls = nodes.map((n) => n.url);
  const stats = { cuts: 0, recovered: 0, fresh: 0, failed: 0, moves: 0, published: 0, slowCuts: 0, strays: 0 };
  const clients = [];
  const proxies = [];
  for (let i = 0; i < CLIENTS; i++) {
    const proxy = await new Proxy(urls, i % NODES).listen();
    proxies.push(proxy);
    const s = await connect(proxy.url, MODES[i % MODES.length], `c${i}`);
    s.name = `c${i}`;
    s.mode = MODES[i % MODES.length].join("→");
    s.node = proxy.node;
    s.got = [];
    s.log = []; // [time, id, offset] of every message
    s.timeline = [[at(), "connect", s.node, s.id, false]];
    s.counts = { cuts: 0, recovered: 0, fresh: 0, failed: 0, moves: 0 };
    s.on("message", (m, offset) => {
      s.got.push(m.data);
      s.log.push([at(), m.data, offset]);
    });
    s.on("disconnect", (reason) => s.timeline.push([at(), "disconnect", s.node, reason]));
    await s.timeout(10000).emitWithAck("join", ROOM);
    clients.push(s);
  }
  const pubs = [];
  for (let p = 0; p < PUBLISHERS; p++) {
    const s = await connect(urls[p % NODES], ["websocket"], `p${p}`);
    await s.timeout(10000).emitWithAck("join", ROOM);
    pubs.push(s);
  }
  const pubTimes = new Map(); // message id → [sent, acked] (ms since start)
  const until = Date.now() + SECONDS * 1000;
  let running = true;
  // Cuts: each client loses its transport at random moments and connects again, to the next node.
  const cutters = clients.map(async (s, i) => {
    const proxy = proxies[i];
    while (running) {
      await sleep(CUT_MIN + Math.random() * (CUT_MAX - CUT_MIN));
      if (!running) break;
      const from = s.node;
      const to = (from + 1) % NODES;
      stats.cuts += 1;
      s.counts.cuts += 1;
      s.timeline.push([at(), "cut", from, CUT]);
      if (CUT === "close") {
        // As on one node: the client closes its transport (the node is told), then comes back elsewhere.
        s.io.engine.close();
        await sleep(50 + Math.random() * 200);
        proxy.moveTo(to);
        proxy.dropOthers();
      } else {
        // The network fails: both ends of every connection are cut, nothing is said.
        proxy.moveTo(to);
        proxy.dropAll();
        if (!(await disconnected(s, 5000))) {
          stats.slowCuts += 1;
          s.timeline.push([at(), "still connected 5 s after the cut: engine.close()", from]);
          s.io.engine.close();
        }
        await sleep(50 + Math.random() * 200);
      }
      let ok = false;
      for (let attempt = 0; attempt < 3 && !ok; attempt++) {
        if (attempt > 0) await sleep(200);
        ok = await connectAgain(s);
        if (!ok) s.timeline.push([at(), "connect_error", proxy.node]);
      }
      if (!ok) {
        stats.failed += 1;
        s.counts.failed += 1;
        continue;
      }
      s.timeline.push([at(), "connect", proxy.node, s.id, s.recovered]);
      // Nothing of the client's may still go to the node it left.
      if ([...proxy.live].some((pair) => pair.node !== proxy.node)) stats.strays += 1;
      if (proxy.node !== s.node) {
        stats.moves += 1;
        s.counts.moves += 1;
        s.node = proxy.node;
      }
      if (s.recovered) { stats.recovered += 1; s.counts.recovered += 1; }
      else { stats.fresh += 1; s.counts.fresh += 1; }
    }
  });
  const publishers = pubs.map(async (s, p) => {
    let n = 0;
    while (Date.now() < until) {
      const sent = at();
      const ack = await s.timeout(10000).emitWithAck("message", { room: ROOM, data: `${p}:${n}` });
      if (ack.ok) {
        pubTimes.set(`${p}:${n}`, [sent, at()]);
        n += 1;
        stats.published += 1;
      }
      await sleep(1000 / RATE);
    }
    return n;
  });
  const sent = await Promise.all(publishers);
  running = false;
  await Promise.all(cutters);
  // The last deliveries travel through Redis: wait until every client has them all, or nothing has come
  // for 3 s (at most 15 s).
  await sleep(1500);
  {
    const deadline = Date.now() + 15000;
    let last = -1, still = 0;
    while (Date.now() < deadline) {
      const total = clients.reduce((a, s) => a + s.got.length, 0);
      if (total >= CLIENTS * stats.published) break;
      still = total === last ? still + 250 : 0;
      if (still >= 3000) break;
      last = total;
      await sleep(250);
    }
  }
  let lost = 0, duplicates = 0, outOfOrder = 0, complete = 0;
  const problems = [];
  for (const s of clients) {
    const seen = new Map();
    const last = new Array(PUBLISHERS).fill(-1);
    const late = [];
    for (const d of s.got) {
      seen.set(d, (seen.get(d) || 0) + 1);
      const [p, n] = d.split(":").map(Number);
      if (n <= last[p]) { outOfOrder += 1; late.push(d); }
      last[p] = Math.max(last[p], n);
    }
    let mine = 0;
    const missing = [], twice = [];
    for (let p = 0; p < PUBLISHERS; p++) {
      for (let n = 0; n < sent[p]; n++) {
        const id = `${p}:${n}`;
        const c = seen.get(id) || 0;
        if (c === 0) { lost += 1; missing.push(id); }
        if (c > 1) { duplicates += c - 1; twice.push(id); }
        if (c === 1) mine += 1;
      }
    }
    if (mine === stats.published) complete += 1;
    s.missing = missing;
    s.twice = twice;
    s.late = late;
    if (missing.length || twice.length || late.length || s.counts.fresh || s.counts.failed) problems.push(s);
  }
  const healths = await Promise.all(urls.map(health));
  for (const s of clients) s.disconnect();
  for (const s of pubs) s.disconnect();
  for (const p of proxies) p.close();
  await stopChildren(); // the nodes, then Redis

  console.log(
    `recovery soak across ${NODES} nodes (streams mode, Redis on 127.0.0.1:${redisPort}): ${CLIENTS} clients ` +
      `(websocket / polling / polling→websocket), each through its own proxy, moved to the next node at every ` +
      `cut (CUT=${CUT}); ${PUBLISHERS} publishers spread over the nodes, ${SECONDS} s\n`,
  );
  console.log("| nodes | published | cuts | moves | recovered | fresh connections | clients with every message once | lost | duplicates | out of order |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  console.log(
    `| ${NODES} | ${stats.published} | ${stats.cuts} | ${stats.moves} | ${stats.recovered} | ${stats.fresh} | ` +
      `${complete} / ${CLIENTS} | ${lost} | ${duplicates} | ${outOfOrder} |`,
  );
  if (stats.failed || stats.slowCuts || stats.strays) {
    console.log(
      `\nreconnections that failed 3 times: ${stats.failed}; drop cuts the client had not noticed within 5 s: ` +
        `${stats.slowCuts}; reconnections with a connection still open to the node left: ${stats.strays}`,
    );
  }
  if (problems.length) {
    const by = new Map();
    for (const s of clients) {
      const m = by.get(s.mode) || { clients: 0, cuts: 0, recovered: 0, fresh: 0, failed: 0, lost: 0, duplicates: 0, outOfOrder: 0 };
      m.clients += 1;
      for (const k of ["cuts", "recovered", "fresh", "failed"]) m[k] += s.counts[k];
      m.lost += s.missing.length;
      m.duplicates += s.twice.length;
      m.outOfOrder += s.late.length;
      by.set(s.mode, m);
    }
    console.log("\nby transport:\n");
    console.log("| transports | clients | cuts | recovered | fresh connections | failed | lost | duplicated ids | out of order |");
    console.log("|---|---|---|---|---|---|---|---|---|");
    for (const [mode, m] of by) {
      console.log(`| ${mode} | ${m.clients} | ${m.cuts} | ${m.recovered} | ${m.fresh} | ${m.failed} | ${m.lost} | ${m.duplicates} | ${m.outOfOrder} |`);
    }
  }
  console.log("\nper node (/health at the end):\n");
  console.log("| node | sessions_restored | sessions_not_restored | delivered_unlogged | published | received | waiting_for_the_stream | redis |");
  console.log("|---|---|---|---|---|---|---|---|");
  healths.forEach((h, n) => {
    const c = h?.cluster || {};
    console.log(
      `| ${n} (${urls[n]}) | ${c.sessions_restored ?? "?"} | ${c.sessions_not_restored ?? "?"} | ${c.delivered_unlogged ?? "?"} | ` +
        `${c.published ?? "?"} | ${c.received ?? "?"} | ${c.waiting_for_the_stream ?? "?"} | ${c.redis ?? "no answer"} |`,
    );
  });
  const restoredOnNodes = healths.reduce((a, h) => a + (h?.cluster?.sessions_restored || 0), 0);
  if (restoredOnNodes !== stats.recovered) {
    console.log(`\nnote: the nodes restored ${restoredOnNodes} sessions from Redis, the clients saw ${stats.recovered} recoveries`);
  }
  // What went wrong, client by client (the first few; SOAK_LOG has them all).
  for (const s of problems.slice(0, Number(process.env.DETAIL || 5))) {
    console.log(
      `\n${s.name} (${s.mode}): cuts ${s.counts.cuts}, recovered ${s.counts.recovered}, fresh ${s.counts.fresh}, ` +
        `failed ${s.counts.failed}, moves ${s.counts.moves}; got ${s.got.length}`,
    );
    if (s.missing.length) {
      const times = s.missing.map((id) => pubTimes.get(id)?.[0]).filter((t) => t !== undefined);
      console.log(`  lost ${s.missing.length}: ${runs(s.missing)} (published at ${Math.min(...times)}–${Math.max(...times)} ms)`);
    }
    if (s.twice.length) console.log(`  twice: ${runs(s.twice)}`);
    if (s.late.length) console.log(`  out of order: ${s.late.slice(0, 20).join(", ")}`);
    // Around the first reconnection that did not recover (or the whole timeline if there is none).
    const bad = s.timeline.findIndex((e, k) => k > 0 && (e[1] === "connect_error" || (e[1] === "connect" && !e[4])));
    const shown = bad < 0 ? s.timeline : s.timeline.slice(Math.max(0, bad - 3), bad + 1);
    console.log(`  ${bad < 0 ? "timeline" : "first reconnection that did not recover"} (ms since start, event, node, …): ${shown.map((e) => JSON.stringify(e)).join(" ")}`);
  }
  if (problems.length > 5 && !process.env.DETAIL) console.log(`\n(${problems.length} clients with problems; DETAIL=n shows more)`);
  if (SOAK_LOG) {
    writeFileSync(
      SOAK_LOG,
      JSON.stringify({
        nodes: urls,
        stats,
        sent,
        health: healths,
        published: Object.fromEntries(pubTimes),
        clients: clients.map((s) => ({
          name: s.name, mode: s.mode, counts: s.counts, timeline: s.timeline, missing: s.missing, twice: s.twice,
          late: s.late, log: s.log,
        })),
      }),
    );
    console.log(`\nevery client's timeline: ${SOAK_LOG}`);
  }
  process.exit(lost || duplicates || outOfOrder || stats.fresh || stats.failed ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------------------
// One node (NODES=1): as it always was.

async function main() {
  const { server, url } = await start();
  const stats = { cuts: 0, recovered: 0, fresh: 0, published: 0 };
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    const s = await connect(url, MODES[i % MODES.length], `c${i}`);
    s.got = [];
    s.on("message", (m) => s.got.push(m.data));
    await s.timeout(10000).emitWithAck("join", ROOM);
    clients.push(s);
  }
  const pubs = [];
  for (let p = 0; p < PUBLISHERS; p++) {
    const s = await connect(url, ["websocket"], `p${p}`);
    await s.timeout(10000).emitWithAck("join", ROOM);
    pubs.push(s);
  }
  const until = Date.now() + SECONDS * 1000;
  let running = true;
  // Cuts: each client loses its transport at random moments and connects again.
  const cutters = clients.map(async (s) => {
    while (running) {
      await sleep(CUT_MIN + Math.random() * (CUT_MAX - CUT_MIN));
      if (!running) break;
      stats.cuts += 1;
      s.io.engine.close();
      await sleep(50 + Math.random() * 200);
      await new Promise((resolve) => {
        s.once("connect", resolve);
        s.once("connect_error", resolve);
        s.connect();
      });
      if (s.recovered) stats.recovered += 1;
      else stats.fresh += 1;
    }
  });
  const publishers = pubs.map(async (s, p) => {
    let n = 0;
    while (Date.now() < until) {
      const ack = await s.timeout(10000).emitWithAck("message", { room: ROOM, data: `${p}:${n}` });
      if (ack.ok) { n += 1; stats.published += 1; }
      await sleep(1000 / RATE);
    }
    return n;
  });
  const sent = await Promise.all(publishers);
  running = false;
  await Promise.all(cutters);
  await sleep(1500); // the last deliveries
  let lost = 0, duplicates = 0, outOfOrder = 0, complete = 0;
  for (const s of clients) {
    const seen = new Map();
    const last = new Array(PUBLISHERS).fill(-1);
    for (const d of s.got) {
      seen.set(d, (seen.get(d) || 0) + 1);
      const [p, n] = d.split(":").map(Number);
      if (n <= last[p]) outOfOrder += 1;
      last[p] = Math.max(last[p], n);
    }
    let mine = 0;
    for (let p = 0; p < PUBLISHERS; p++) {
      for (let n = 0; n < sent[p]; n++) {
        const c = seen.get(`${p}:${n}`) || 0;
        if (c === 0) lost += 1;
        if (c > 1) duplicates += c - 1;
        if (c === 1) mine += 1;
      }
    }
    if (mine === stats.published) complete += 1;
    s.disconnect();
  }
  for (const s of pubs) s.disconnect();
  server.kill();
  console.log(`recovery soak: ${CLIENTS} clients (websocket / polling / polling→websocket), ${PUBLISHERS} publishers, ${SECONDS} s\n`);
  console.log("| published | cuts | recovered | fresh connections | clients with every message once | lost | duplicates | out of order |");
  console.log("|---|---|---|---|---|---|---|---|");
  console.log(`| ${stats.published} | ${stats.cuts} | ${stats.recovered} | ${stats.fresh} | ${complete} / ${CLIENTS} | ${lost} | ${duplicates} | ${outOfOrder} |`);
  process.exit(lost || duplicates || outOfOrder ? 1 : 0);
}

(NODES > 1 ? mainCluster() : main()).catch((e) => { console.error(e); process.exit(2); });
