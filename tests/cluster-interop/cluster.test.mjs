// A Node.js socket.io server using @socket.io/redis-adapter, a
// @socket.io/redis-emitter backend, and a volna node: one cluster over one
// Redis. Started by run.sh, which passes REDIS_URL, VOLNA_URL and PREFIX.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { io as connect } from "socket.io-client";

const { REDIS_URL, VOLNA_URL, PREFIX } = process.env;
const ROOM = "interop";

let io, httpServer, pub, sub, emitterClient, nodeUrl;
const clients = [];

function once(socket, event, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no "${event}" within ${timeout} ms`)), timeout);
    socket.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

async function client(url) {
  const s = connect(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  clients.push(s);
  await once(s, "connect");
  return s;
}

before(async () => {
  pub = createClient({ url: REDIS_URL });
  sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  httpServer = createServer();
  io = new Server(httpServer, { adapter: createAdapter(pub, sub, { key: PREFIX, requestsTimeout: 2000 }) });
  io.on("connection", (socket) => {
    socket.data.name = "node-" + socket.id.slice(0, 4);
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack({ ok: true });
    });
    // The Node app broadcasts with the adapter, as any app would.
    socket.on("shout", ({ room, data }, ack) => {
      io.to(room).emit("news", data, Buffer.from([1, 2, 3]));
      ack?.({ ok: true });
    });
  });
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;
  emitterClient = createClient({ url: REDIS_URL });
  await emitterClient.connect();
});

after(async () => {
  for (const c of clients) c.close();
  io?.close();
  await Promise.allSettled([pub?.quit(), sub?.quit(), emitterClient?.quit()]);
});

test("a Node socket.io server with the redis adapter and a volna node are one cluster", async () => {
  const onNode = await client(nodeUrl);
  const onVolna = await client(VOLNA_URL);
  assert.deepEqual(await onNode.emitWithAck("join", ROOM), { ok: true });
  // volna's join presence reaches the Node server's socket in the room.
  const presence = once(onNode, "presence");
  const joined = await onVolna.emitWithAck("join", ROOM);
  assert.equal(joined.ok, true);
  const [p] = await presence;
  assert.equal(p.room, ROOM);
  assert.equal(p.event, "join");

  // Node -> volna: io.to(room).emit("news", data, binary) on the Node server.
  const news = once(onVolna, "news");
  await onNode.emitWithAck("shout", { room: ROOM, data: { headline: "from node", n: 1 } });
  const [data, bin] = await news;
  assert.deepEqual(data, { headline: "from node", n: 1 });
  assert.deepEqual([...Buffer.from(bin)], [1, 2, 3]);

  // volna -> Node: volna's message event, published by the volna node.
  const msg = once(onNode, "message");
  const sent = await onVolna.emitWithAck("message", { room: ROOM, data: { text: "from volna", blob: Buffer.from([7, 8]) } });
  assert.equal(sent.ok, true);
  const [m] = await msg;
  assert.equal(m.room, ROOM);
  assert.equal(m.data.text, "from volna");
  assert.deepEqual([...Buffer.from(m.data.blob)], [7, 8]);
  assert.equal(typeof m.offset, "number");

  // volna -> Node: the application's own event, under its own name, binary intact.
  const cursor = once(onNode, "cursor");
  const acked = await onVolna.emitWithAck("cursor", { room: ROOM, data: { x: 4, mark: Buffer.from([5]) } });
  assert.equal(acked.ok, true, JSON.stringify(acked));
  const [c] = await cursor;
  assert.equal(c.room, ROOM);
  assert.equal(c.event, "cursor");
  assert.equal(c.data.x, 4);
  assert.deepEqual([...Buffer.from(c.data.mark)], [5]);
  assert.equal(c.offset, acked.offset);

  // fetchSockets on the Node server sees the volna member, and volna's
  // `who` sees the Node server's socket (request/response channels).
  const sockets = await io.in(ROOM).fetchSockets();
  const names = sockets.map((s) => s.data?.name).sort();
  assert.equal(sockets.length, 2, JSON.stringify(names));
  const who = await onVolna.emitWithAck("who", ROOM);
  assert.equal(who.ok, true);
  assert.equal(who.partial, false);
  assert.equal(who.members.length, 2, JSON.stringify(who));
  assert.ok(who.members.some((n) => n.startsWith("node-")), JSON.stringify(who));
});

test("a @socket.io/redis-emitter backend emits to a volna room", async () => {
  const onVolna = await client(VOLNA_URL);
  await onVolna.emitWithAck("join", "emitted");
  const alert = once(onVolna, "alert");
  const emitter = new Emitter(emitterClient, { key: PREFIX });
  emitter.to("emitted").emit("alert", { level: 3, text: "from the emitter" }, "second arg");
  const [a, b] = await alert;
  assert.deepEqual(a, { level: 3, text: "from the emitter" });
  assert.equal(b, "second arg");
  // And to everyone in the namespace.
  const all = once(onVolna, "broadcast");
  emitter.emit("broadcast", 42);
  assert.deepEqual(await all, [42]);
});

test("the emitter reaches one volna socket by its id, and disconnects it", async () => {
  const target = await client(VOLNA_URL);
  const bystander = await client(VOLNA_URL);
  const emitter = new Emitter(emitterClient, { key: PREFIX });
  // A socket's id is its personal room, as on Node.
  const got = once(target, "private");
  let leaked = false;
  bystander.on("private", () => (leaked = true));
  emitter.to(target.id).emit("private", "just you");
  assert.deepEqual(await got, ["just you"]);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(leaked, false, "nobody else got it");
  // disconnectSockets() reaches it too: the client is told by the server, so it does not reconnect.
  const gone = once(target, "disconnect");
  emitter.in(target.id).disconnectSockets(true);
  assert.equal((await gone)[0], "io server disconnect");
  assert.equal(bystander.connected, true);
});
