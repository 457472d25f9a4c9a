// Recovery soak (docs/benchmarks.md, "Recovery soak"): CLIENTS stock socket.io-client sockets spread over
// the three transport modes (websocket, polling, polling→websocket) in one room of a volna started with
// --recovery; their transports are cut at random every CUT_MIN..CUT_MAX ms (engine.close(), as a network
// failure) while PUBLISHERS clients publish for SECONDS. At the end every client must have every message
// exactly once, in each publisher's order. Prints a table; bounded, loopback only, stops by itself.
//
//   node bench/soak-recovery.mjs            # needs tests/interop/node_modules (scripts/install-test-deps.sh)
//   CLIENTS=50 PUBLISHERS=3 SECONDS=60 RATE=20 node bench/soak-recovery.mjs
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "tests/interop/package.json"));
const { io } = require("socket.io-client");
const { startVolna } = await import(path.join(root, "tests/interop/js/helpers.mjs"));

const CLIENTS = Number(process.env.CLIENTS || 50);
const PUBLISHERS = Number(process.env.PUBLISHERS || 3);
const SECONDS = Number(process.env.SECONDS || 60);
const RATE = Number(process.env.RATE || 20); // messages per second per publisher
const CUT_MIN = Number(process.env.CUT_MIN || 2000);
const CUT_MAX = Number(process.env.CUT_MAX || 5000);
const BIN = process.env.VOLNA_BIN || path.join(root, "target/release/volna");
const MODES = [["websocket"], ["polling"], ["polling", "websocket"]];
const ROOM = "soak";

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function start() {
  const { server, http } = await startVolna(["--recovery", "true", "--messages-per-second", "0", "--history", "100000"], BIN);
  return { server, url: http };
}

function connect(url, transports, name) {
  const s = io(url, { forceNew: true, reconnection: false, transports, auth: { name }, timeout: 10000, ackTimeout: 10000 });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

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

main().catch((e) => { console.error(e); process.exit(2); });
