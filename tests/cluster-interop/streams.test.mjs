// volna's Redis Streams mode against @socket.io/redis-streams-adapter 0.3: two volna nodes (VOLNA_A,
// VOLNA_B: streams mode, connection-state recovery on) and a Node.js socket.io server of this suite's own
// share the stream PREFIX and keep their recovery sessions under PREFIX:session:<pid>. Started by run.sh,
// which passes REDIS_URL, VOLNA_A, VOLNA_B and PREFIX.
//
// A client is moved between servers the way a load balancer would: it connects through a small TCP proxy
// of the test's own; `switchTo` cuts every proxied connection (the client sees "transport close" and
// reconnects by itself) and sends new connections to another backend. While the client is away the proxy
// holds its reconnection, so the test can publish what it must miss; `release` lets it through.
//
// What volna has to match is what the stock socket.io-client sees from a Node server: every room event
// ends with the stream entry id as a string offset, the same id on every node; a recovered socket has
// `recovered === true`, the same id, its rooms, and the missed events (from every node) once each, in
// stream order, each with its offset; a missing session or offset means a fresh connection.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import net from "node:net";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";
import { io as connect } from "socket.io-client";
import { sleep, splice, until as waitUntil } from "./net-helpers.mjs";

const { REDIS_URL, VOLNA_A, VOLNA_B, PREFIX } = process.env;
for (const [k, v] of Object.entries({ REDIS_URL, VOLNA_A, VOLNA_B, PREFIX })) {
  if (!v) throw new Error(`${k} is not set (run tests/cluster-interop/run.sh)`);
}
const SESSION_PREFIX = `${PREFIX}:session:`;
const WAIT_MS = 5000;
const OFFSET = /^\d+-\d+$/;
const NODE_CLIENT_NAME = `streams-test-${process.pid}`;

let redis, adapterClient, io, httpServer, NODE;
const clients = [];
const proxies = [];

/** Waits (polling) until `cond()` is true, at most `ms`. */
const until = (cond, what, ms = WAIT_MS) => waitUntil(cond, what, ms);

/** The arguments of the next `event` on `emitter`, at most `ms` away. */
function once(emitter, event, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no "${event}" within ${ms} ms`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

let roomCounter = 0;
const uniqueRoom = (name) => `${name}-${process.pid}-${Date.now().toString(36)}-${++roomCounter}`;

/** Compares two stream entry ids ("ms-seq"). */
function compareIds(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am === bm ? (as < bs ? -1 : as > bs ? 1 : 0) : am < bm ? -1 : 1;
}

/**
 * A TCP proxy in front of one backend at a time (an http://host:port url), as a load balancer.
 */
class Proxy {
  constructor(target) {
    this.target = target;
    this.held = false;
    this.waiting = [];
    this.live = new Set();
    this.routed = []; // the backend of every connection forwarded, in order
    proxies.push(this);
  }

  async listen() {
    this.server = net.createServer((c) => this.#accept(c));
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  #accept(c) {
    c.on("error", () => {});
    if (this.held) {
      // Not read from until released: what the client sends stays in the socket's buffer.
      this.waiting.push(c);
      return;
    }
    this.#forward(c);
  }

  #forward(c) {
    if (c.destroyed) return;
    const { hostname, port } = new URL(this.target);
    this.routed.push(this.target);
    splice(c, net.connect(Number(port), hostname), this.live);
  }

  /** Cuts every proxied connection; new ones go to `target` (held until `release()` with `hold`). */
  switchTo(target, { hold = false } = {}) {
    this.target = target;
    this.held = hold;
    for (const { c, up } of this.live) {
      c.destroy();
      up.destroy();
    }
    this.live.clear();
  }

  release() {
    this.held = false;
    const waiting = this.waiting;
    this.waiting = [];
    for (const c of waiting) this.#forward(c);
  }

  close() {
    this.switchTo(this.target);
    for (const c of this.waiting) c.destroy();
    this.waiting = [];
    this.server?.close();
  }
}

/**
 * Logs the room events a client gets (`message` from volna, `news` from the Node server), in order, with
 * the string offset each ends with. Payloads carry a `tag` naming them.
 */
function record(socket) {
  socket.log = [];
  socket.onAny((event, ...args) => {
    if (event !== "message" && event !== "news") return;
    const last = args[args.length - 1];
    const tag = event === "message" ? args[0]?.data?.tag : args[0]?.tag;
    socket.log.push({ event, tag, offset: typeof last === "string" ? last : undefined, args });
  });
}

const tags = (socket) => socket.log.map((e) => e.tag);
const entry = (socket, tag) => socket.log.find((e) => e.tag === tag);

/** A stock socket.io-client, WebSocket only; `reconnect` for the one that moves between servers. */
async function client(url, { reconnect = false } = {}) {
  const s = connect(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: reconnect,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
    timeout: WAIT_MS,
    ackTimeout: WAIT_MS,
  });
  clients.push(s);
  record(s);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`could not connect to ${url} within ${WAIT_MS} ms`)), WAIT_MS);
    s.once("connect", () => {
      clearTimeout(t);
      resolve();
    });
    if (!reconnect) s.once("connect_error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
  return s;
}

async function join(s, room) {
  const r = await s.emitWithAck("join", room);
  assert.equal(r?.ok, true, `join ${room}: ${JSON.stringify(r)}`);
}

/** volna's `message`: every member of the room gets `message` {room, from, id, offset, ts, data}. */
async function say(s, room, tag, extra = {}) {
  const r = await s.emitWithAck("message", { room, data: { tag, ...extra } });
  assert.equal(r?.ok, true, `message ${tag}: ${JSON.stringify(r)}`);
}

/** The Node server's `shout`: io.to(room).emit("news", data, Buffer [1,2,3]). */
async function shout(s, room, tag) {
  const r = await s.emitWithAck("shout", { room, data: { tag } });
  assert.equal(r?.ok, true, `shout ${tag}: ${JSON.stringify(r)}`);
}

/** Publishes in order; each is seen by `witness` before the next goes (so it is in the stream by then). */
async function publishAll(steps, witness) {
  for (const [publish, tag] of steps) {
    await publish(tag);
    await until(() => entry(witness, tag), `${tag} at the witness`);
  }
}

/**
 * Cuts `socket`'s connection at the proxy and moves it to `to`: waits for the client's "transport close"
 * and for the old server's session key in Redis, runs `whileAway(sessionKey)`, then lets the client's
 * reconnection through. Returns the socket's id from before the cut.
 */
async function move(socket, proxy, to, whileAway) {
  const pid = socket._pid; // socket.io-client's private session id, sent back as auth.pid on reconnection
  assert.equal(typeof pid, "string", "the server gave the socket a pid in its CONNECT (recovery is on)");
  const id = socket.id;
  const key = SESSION_PREFIX + pid;
  const gone = once(socket, "disconnect");
  proxy.switchTo(to, { hold: true });
  assert.equal((await gone)[0], "transport close");
  await until(async () => (await redis.exists(key)) === 1, `the session ${key} in Redis`);
  await whileAway(key);
  const back = once(socket, "connect");
  proxy.release();
  await back;
  assert.equal(proxy.routed.at(-1), to, "the client came back through the proxy, on the new backend");
  return id;
}

/** Waits for exactly `expected` tags, then a little longer to see that nothing more comes. */
async function expectLog(socket, expected) {
  await until(() => socket.log.length >= expected.length, `${expected.length} events (have ${JSON.stringify(tags(socket))})`);
  await sleep(250);
  assert.deepEqual(tags(socket), expected, "each event once, in order");
}

/** Every event of `socket` ends with a stream id; ids increase; each equals the one `witness` saw. */
function checkOffsets(socket, witness) {
  let prev;
  for (const e of socket.log) {
    assert.match(e.offset ?? "(none)", OFFSET, `${e.event} ${e.tag} ends with a stream entry id`);
    if (prev) assert.equal(compareIds(prev, e.offset), -1, `offsets increase: ${prev} then ${e.offset} (${e.tag})`);
    prev = e.offset;
    const w = entry(witness, e.tag);
    if (w) assert.equal(e.offset, w.offset, `${e.tag}: the same offset on both servers`);
  }
}

/** A `news` event's binary argument, as the Node server sent it. */
function checkNews(e) {
  assert.equal(e.event, "news");
  assert.deepEqual(e.args[0], { tag: e.tag });
  assert.ok(Buffer.isBuffer(e.args[1]) || e.args[1] instanceof ArrayBuffer, `${e.tag}: binary argument`);
  assert.deepEqual([...Buffer.from(e.args[1])], [1, 2, 3]);
}

before(async () => {
  redis = createClient({ url: REDIS_URL });
  redis.on("error", () => {});
  await redis.connect();
  // The adapter duplicates this client (stream reader, pub/sub): the name marks them in CLIENT LIST.
  adapterClient = createClient({ url: REDIS_URL, name: NODE_CLIENT_NAME });
  adapterClient.on("error", () => {});
  await adapterClient.connect();
  httpServer = createServer();
  io = new Server(httpServer, {
    adapter: createAdapter(adapterClient, { streamName: PREFIX, sessionKeyPrefix: SESSION_PREFIX }),
    connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true },
  });
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack?.({ ok: true });
    });
    socket.on("shout", ({ room, data }, ack) => {
      io.to(room).emit("news", data, Buffer.from([1, 2, 3]));
      ack?.({ ok: true });
    });
  });
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  NODE = `http://127.0.0.1:${httpServer.address().port}`;
  // The adapter starts reading the stream asynchronously: wait until its XREAD is blocked in Redis.
  await until(async () => {
    const list = await redis.sendCommand(["CLIENT", "LIST"]);
    return list.split("\n").some((l) => l.includes(`name=${NODE_CLIENT_NAME} `) && l.includes("cmd=xread"));
  }, "the Node server's stream reader");
});

after(async () => {
  for (const p of proxies) p.close();
  for (const c of clients) c.close();
  // Sockets the clients closed are not persisted; wait for the server to see them go before closing it.
  await until(() => io.of("/").sockets.size === 0, "the Node server's sockets to close").catch(() => {});
  await io?.close();
  await Promise.allSettled([adapterClient?.quit(), redis?.quit()]);
});

test("broadcasts cross between both volna nodes and the Node server through the stream", { timeout: 30000 }, async () => {
  const room = uniqueRoom("a");
  const onA = await client(VOLNA_A);
  const onB = await client(VOLNA_B);
  const onNode = await client(NODE);
  for (const s of [onA, onB, onNode]) await join(s, room);

  // volna A → the Node server and volna B, binary data intact.
  await say(onA, room, "a1", { blob: Buffer.from([7, 8]) });
  for (const s of [onA, onB, onNode]) await until(() => entry(s, "a1"), "a1 everywhere");
  const m = entry(onNode, "a1").args[0];
  assert.equal(m.room, room);
  assert.deepEqual([...Buffer.from(m.data.blob)], [7, 8]);
  assert.deepEqual(entry(onB, "a1").args[0].data.tag, "a1");

  // The Node server → both volna nodes, the Buffer as binary.
  await shout(onNode, room, "a2");
  for (const s of [onA, onB, onNode]) await until(() => entry(s, "a2"), "a2 everywhere");
  for (const s of [onA, onB]) checkNews(entry(s, "a2"));

  // volna B → volna A and the Node server.
  await say(onB, room, "a3");
  for (const s of [onA, onB, onNode]) await until(() => entry(s, "a3"), "a3 everywhere");

  // Each exactly once, in the same order everywhere, with the same stream id as its offset.
  await sleep(250);
  for (const s of [onA, onB, onNode]) {
    assert.deepEqual(tags(s), ["a1", "a2", "a3"]);
    checkOffsets(s, onNode);
  }
  const [first] = await redis.xRange(PREFIX, entry(onNode, "a1").offset, entry(onNode, "a1").offset);
  assert.ok(first, "the offset is an entry of the stream PREFIX");
  assert.equal(first.message.type, "3");
  assert.equal(first.message.nsp, "/");
});

test("recovery: a client cut from volna A comes back on volna B", { timeout: 30000 }, async () => {
  const room = uniqueRoom("b");
  const pubA = await client(VOLNA_A);
  const pubB = await client(VOLNA_B);
  await join(pubA, room);
  await join(pubB, room);
  const proxy = await new Proxy(VOLNA_A).listen();
  const mover = await client(proxy.url, { reconnect: true });
  await join(mover, room);
  await say(pubA, room, "b0");
  await until(() => entry(mover, "b0"), "b0");
  assert.match(entry(mover, "b0").offset ?? "(none)", OFFSET, "a room message ends with its stream id");

  const id = await move(mover, proxy, VOLNA_B, async (key) => {
    const ttl = await redis.pTTL(key);
    assert.ok(ttl > 0 && ttl <= 120000, `the session expires with the window (PTTL ${ttl})`);
    await publishAll([
      [(t) => say(pubA, room, t), "b1"],
      [(t) => say(pubA, room, t), "b2"],
      [(t) => say(pubB, room, t), "b3"],
      [(t) => say(pubA, room, t), "b4"],
      [(t) => say(pubB, room, t), "b5"],
    ], pubB);
  });
  assert.equal(mover.recovered, true, "recovered");
  assert.equal(mover.id, id, "the same socket id");
  await expectLog(mover, ["b0", "b1", "b2", "b3", "b4", "b5"]);
  checkOffsets(mover, pubB);
  assert.equal(await redis.exists(SESSION_PREFIX + mover._pid), 0, "the session is used up");

  // Its room is back on B: a message from A arrives without joining again.
  await say(pubA, room, "b6");
  await expectLog(mover, ["b0", "b1", "b2", "b3", "b4", "b5", "b6"]);
  checkOffsets(mover, pubB);
});

test("recovery: a client cut from volna A comes back on the Node server", { timeout: 30000 }, async () => {
  const room = uniqueRoom("c");
  const pubA = await client(VOLNA_A);
  const pubB = await client(VOLNA_B);
  const onNode = await client(NODE);
  for (const s of [pubA, pubB, onNode]) await join(s, room);
  const proxy = await new Proxy(VOLNA_A).listen();
  const mover = await client(proxy.url, { reconnect: true });
  await join(mover, room);
  await say(pubB, room, "c0");
  await until(() => entry(mover, "c0"), "c0");
  assert.match(entry(mover, "c0").offset ?? "(none)", OFFSET);

  const id = await move(mover, proxy, NODE, () =>
    publishAll([
      [(t) => say(pubA, room, t), "c1"],
      [(t) => say(pubB, room, t), "c2"],
      [(t) => shout(onNode, room, t), "c3"],
      [(t) => say(pubA, room, t), "c4"],
      [(t) => shout(onNode, room, t), "c5"],
    ], onNode));
  assert.equal(mover.recovered, true, "recovered on the Node server from volna's session");
  assert.equal(mover.id, id, "the same socket id");
  await expectLog(mover, ["c0", "c1", "c2", "c3", "c4", "c5"]);
  checkOffsets(mover, onNode);
  assert.deepEqual(mover.log.map((e) => e.event), ["message", "message", "message", "news", "message", "news"]);
  assert.equal(mover.log[2].args[0].data.tag, "c2");
  checkNews(mover.log[3]);
  checkNews(mover.log[5]);
  const there = io.of("/").sockets.get(id);
  assert.ok(there, "the socket is on the Node server");
  assert.equal(there.recovered, true);
  assert.ok(there.rooms.has(room), "with the room volna kept in its session");

  await say(pubB, room, "c6");
  await expectLog(mover, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
  checkOffsets(mover, onNode);
});

test("recovery: a client cut from the Node server comes back on volna A", { timeout: 30000 }, async () => {
  const room = uniqueRoom("d");
  const pubA = await client(VOLNA_A);
  const pubB = await client(VOLNA_B);
  const onNode = await client(NODE);
  for (const s of [pubA, pubB, onNode]) await join(s, room);
  const proxy = await new Proxy(NODE).listen();
  const mover = await client(proxy.url, { reconnect: true });
  await join(mover, room); // the Node server's `join` handler
  assert.ok(io.of("/").sockets.get(mover.id)?.rooms.has(room), "the client is on the Node server");
  await shout(onNode, room, "d0");
  await until(() => entry(mover, "d0"), "d0");
  assert.match(entry(mover, "d0").offset ?? "(none)", OFFSET);

  const id = await move(mover, proxy, VOLNA_A, () =>
    publishAll([
      [(t) => shout(onNode, room, t), "d1"],
      [(t) => say(pubA, room, t), "d2"],
      [(t) => say(pubB, room, t), "d3"],
      [(t) => shout(onNode, room, t), "d4"],
      [(t) => say(pubA, room, t), "d5"],
    ], pubA));
  assert.equal(mover.recovered, true, "recovered on volna from the Node server's session");
  assert.equal(mover.id, id, "the same socket id");
  await expectLog(mover, ["d0", "d1", "d2", "d3", "d4", "d5"]);
  checkOffsets(mover, pubA);
  assert.deepEqual(mover.log.map((e) => e.event), ["news", "news", "message", "message", "news", "message"]);
  checkNews(mover.log[1]);
  checkNews(mover.log[4]);
  assert.equal(mover.log[3].args[0].data.tag, "d3");
  assert.equal(io.of("/").sockets.has(id), false, "no longer on the Node server");

  // Its room is back on volna A: the Node server's next news arrives.
  await shout(onNode, room, "d6");
  await expectLog(mover, ["d0", "d1", "d2", "d3", "d4", "d5", "d6"]);
  checkOffsets(mover, pubA);
  checkNews(mover.log[6]);
});

test("no session in Redis (past the window): a fresh connection that works", { timeout: 30000 }, async () => {
  const room = uniqueRoom("e");
  const pubB = await client(VOLNA_B);
  await join(pubB, room);
  const proxy = await new Proxy(VOLNA_A).listen();
  const mover = await client(proxy.url, { reconnect: true });
  await join(mover, room);
  await say(pubB, room, "e0");
  await until(() => entry(mover, "e0"), "e0");
  assert.match(entry(mover, "e0").offset ?? "(none)", OFFSET);

  const id = await move(mover, proxy, VOLNA_B, async (key) => {
    assert.equal(await redis.del(key), 1, "the session was there");
    await publishAll([[(t) => say(pubB, room, t), "e1"]], pubB);
  });
  assert.equal(mover.recovered, false, "not recovered");
  assert.notEqual(mover.id, id, "a new socket id");
  await sleep(250);
  assert.deepEqual(tags(mover), ["e0"], "nothing replayed, not in the room");

  await join(mover, room);
  await say(pubB, room, "e2");
  await expectLog(mover, ["e0", "e2"]);
});

test("the offset is no longer in the stream: a fresh connection", { timeout: 30000 }, async () => {
  const room = uniqueRoom("f");
  const pubA = await client(VOLNA_A);
  await join(pubA, room);
  const proxy = await new Proxy(VOLNA_A).listen();
  const mover = await client(proxy.url, { reconnect: true });
  await join(mover, room);
  await say(pubA, room, "f0");
  await until(() => entry(mover, "f0"), "f0");
  const offset = entry(mover, "f0").offset;
  assert.match(offset ?? "(none)", OFFSET);

  const id = await move(mover, proxy, VOLNA_B, async () => {
    // As if the stream had been trimmed past it (MAXLEN): the client's offset is gone.
    assert.equal(await redis.xDel(PREFIX, offset), 1, "the entry was in the stream");
    await publishAll([[(t) => say(pubA, room, t), "f1"]], pubA);
  });
  assert.equal(mover.recovered, false, "not recovered: it could have missed something");
  assert.notEqual(mover.id, id, "a new socket id");
  await sleep(250);
  assert.deepEqual(tags(mover), ["f0"], "nothing replayed");
});
