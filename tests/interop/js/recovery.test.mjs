// Socket.IO connection-state recovery with the stock socket.io-client (docs/recovery.md), against a volna
// of the test's own started with --recovery and a short window. For each transport: the client's
// transport is cut (engine.close(), as a network failure), other clients publish meanwhile, the client
// connects again → `recovered` is true, the socket id is the same, the missed messages arrive once each and
// in order, and its rooms are back; past the window → a fresh connection. Also the reference's holes: a
// client that got no event yet recovers its rooms (socket.io #5538); volatile events and acks never look
// like an offset (#5539).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { TRANSPORT_CASES, WAIT_MS, startVolna, uniqueRoom, until } from "./helpers.mjs";

const WINDOW_MS = 1500;
let server;
let http;

before(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "volna-recovery-"));
  const config = path.join(dir, "volna.toml");
  fs.writeFileSync(config, '[[rooms]]\nmatch = "norec-*"\nrecover = false\n\n[[rooms]]\nmatch = "*"\nvolatile = ["cursor"]\n');
  ({ server, http } = await startVolna(["--config", config, "--recovery", "true", "--max-disconnection-ms", String(WINDOW_MS)]));
});

after(() => server && server.kill());

function client(transports, name) {
  const socket = io(http, { forceNew: true, reconnection: false, timeout: WAIT_MS, ackTimeout: WAIT_MS,
    transports, auth: { name } });
  socket.got = [];
  socket.on("message", (m, offset) => socket.got.push({ data: m.data, room: m.room, offset }));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

/** Connects `socket` again (its manager opens a new engine; the client sends its pid and offset). */
function reconnect(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
    socket.connect();
  });
}

/** Cuts the socket's transport as a network failure would, and waits until the server has seen it. */
async function cut(socket, watcher, room) {
  const left = new Promise((resolve) => {
    const h = (p) => { if (p.room === room && p.event === "leave") { watcher.off("presence", h); resolve(); } };
    watcher.on("presence", h);
  });
  socket.io.engine.close();
  await left;
}

/** A publisher and a client in a new room (the client made with `setup` before it joins). */
async function pair(prefix, name, transports = ["websocket"], setup = () => {}) {
  const room = uniqueRoom(prefix);
  const pub = await client(["websocket"], `pub-${name}`);
  const a = await client(transports, name);
  setup(a);
  assert.equal((await a.timeout(WAIT_MS).emitWithAck("join", room)).ok, true);
  assert.equal((await pub.timeout(WAIT_MS).emitWithAck("join", room)).ok, true);
  return { room, pub, a };
}

async function send(socket, room, texts) {
  for (const t of texts) {
    const ack = await socket.timeout(WAIT_MS).emitWithAck("message", { room, data: t });
    assert.equal(ack.ok, true);
  }
}

for (const { label, transports } of TRANSPORT_CASES) {
  test(`${label}: a cut connection recovers its id, rooms and missed messages, once each, in order`, async () => {
    const { room, pub, a } = await pair("rec", "alice", transports);
    await send(pub, room, ["before"]);
    await until(() => a.got.length === 1, "the first message");
    assert.match(a.got[0].offset, /^v1-\d+$/, "broadcasts carry an offset as their last argument");
    const id = a.id;
    await cut(a, pub, room);
    await send(pub, room, ["m1", "m2", "m3", "m4", "m5"]);
    const health = await (await fetch(`${http}/health`)).json();
    assert.equal(health.recovery.window_ms, WINDOW_MS);
    assert.ok(health.recovery.sessions >= 1 && health.recovery.logged >= 6, JSON.stringify(health.recovery));
    await reconnect(a);
    assert.equal(a.recovered, true);
    assert.equal(a.id, id, "the same socket id");
    await until(() => a.got.length === 6, "the missed messages");
    assert.deepEqual(a.got.map((m) => m.data), ["before", "m1", "m2", "m3", "m4", "m5"]);
    // Its rooms are back: what comes next arrives without joining again.
    await send(pub, room, ["after"]);
    await until(() => a.got.length === 7, "a message after recovery");
    assert.equal(a.got[6].data, "after");
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(a.got.length, 7, "nothing twice");
    a.disconnect();
    pub.disconnect();
  });
}

test("past the window: a fresh connection", async () => {
  const { room, pub, a } = await pair("late", "late");
  await send(pub, room, ["x"]);
  await until(() => a.got.length === 1, "a message");
  const id = a.id;
  await cut(a, pub, room);
  await new Promise((r) => setTimeout(r, WINDOW_MS + 6000)); // the window, and the sweep every 5 s
  await reconnect(a);
  assert.equal(a.recovered, false);
  assert.notEqual(a.id, id);
  a.disconnect();
  pub.disconnect();
});

test("a client that got no event yet still recovers its rooms (socket.io #5538)", async () => {
  const { room, pub, a } = await pair("quiet", "quiet");
  await cut(a, pub, room);
  await send(pub, room, ["while away 1", "while away 2"]);
  await reconnect(a);
  assert.equal(a.recovered, true);
  await until(() => a.got.length === 2, "what it missed");
  assert.deepEqual(a.got.map((m) => m.data), ["while away 1", "while away 2"]);
  a.disconnect();
  pub.disconnect();
});

test("volatile events and acks do not look like an offset (socket.io #5539)", async () => {
  const cursors = [];
  const { room, pub, a } = await pair("vol", "vol", ["websocket"], (s) => s.on("cursor", (...args) => cursors.push(args)));
  await send(pub, room, ["kept"]);
  await until(() => a.got.length === 1, "a message");
  pub.emit("cursor", { room, data: "x:1" });
  await until(() => cursors.length === 1, "a volatile event");
  assert.notEqual(typeof cursors[0][cursors[0].length - 1], "string", "no offset on a volatile event");
  assert.deepEqual(await a.timeout(WAIT_MS).emitWithAck("echo", "a string ack"), "a string ack");
  await cut(a, pub, room);
  await send(pub, room, ["missed"]);
  await reconnect(a);
  assert.equal(a.recovered, true);
  await until(() => a.got.length === 2, "the missed message");
  assert.deepEqual(a.got.map((m) => m.data), ["kept", "missed"]);
  a.disconnect();
  pub.disconnect();
});

test("a room whose policy says recover = false comes back without what it had meanwhile", async () => {
  const { room, pub, a } = await pair("norec", "norec");
  await cut(a, pub, room);
  await send(pub, room, ["not kept"]);
  await reconnect(a);
  assert.equal(a.recovered, true);
  await send(pub, room, ["after"]);
  await until(() => a.got.length === 1, "a message after recovery");
  assert.deepEqual(a.got.map((m) => m.data), ["after"]);
  assert.equal(a.got[0].offset, undefined, "no offset where nothing is logged");
  a.disconnect();
  pub.disconnect();
});
