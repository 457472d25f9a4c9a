// Interop: the application's own events (docs/operations.md, op `emit`) with the stock socket.io-client,
// over websocket-only, polling-only and the default polling→websocket upgrade: an event a client emits
// under a name the server does not know reaches every member of the room (the sender too) under that name,
// with the message envelope plus `event`; it is acked like a message, kept in the history, refused for a
// reserved or malformed name, and seen by TCP and plain /ws members of the room.
// Run by tests/interop/run.sh, which starts volna and sets VOLNA_HTTP / VOLNA_TCP.
import { describe, it, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  TRANSPORT_CASES,
  connect,
  call,
  waitFor,
  collect,
  until,
  uniqueRoom,
  TcpClient,
  parseMsgLine,
  parseEventLine,
  WsClient,
  WebSocketImpl,
} from "./helpers.mjs";

const TEST = { timeout: 20000 };

/** A display name unique to this run, for the `auth: {name}` of a connection. */
function uniqueName(prefix) {
  return `${prefix}-${process.pid % 100000}-${Math.floor(Math.random() * 1e9).toString(36)}`;
}

/** The ack of a published event: exactly `{ok:true, room, offset, ts}`. */
function assertEmitAck(ack, room) {
  assert.ok(ack && typeof ack === "object", `emit ack is an object: ${JSON.stringify(ack)}`);
  assert.deepEqual(Object.keys(ack).sort(), ["offset", "ok", "room", "ts"], `emit ack: ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, true, `emit ack: ${JSON.stringify(ack)}`);
  assert.equal(ack.room, room);
  assert.ok(Number.isInteger(ack.offset) && ack.offset >= 1, `offset: ${JSON.stringify(ack)}`);
  assert.ok(Math.abs(ack.ts - Date.now()) < 60_000, `ts ${ack.ts} is server time in ms`);
}

function assertErrorAck(ack, code) {
  assert.ok(ack && typeof ack === "object", `error ack is an object: ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, false, `error ack: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error, "string", `error ack says why: ${JSON.stringify(ack)}`);
  assert.ok(ack.error.length > 0, `error ack says why: ${JSON.stringify(ack)}`);
  if (code) assert.equal(ack.code, code, `error ack code: ${JSON.stringify(ack)}`);
}

/** A received custom event: `{room, from, id, offset, ts, data, event}`, nothing else. */
function assertEventEnvelope(ev, { room, event, from, offset }) {
  assert.ok(ev && typeof ev === "object", `event payload: ${JSON.stringify(ev)}`);
  assert.deepEqual(
    Object.keys(ev).sort(),
    ["data", "event", "from", "id", "offset", "room", "ts"],
    `event payload: ${JSON.stringify(ev)}`,
  );
  assert.equal(ev.room, room);
  assert.equal(ev.event, event);
  assert.equal(ev.from, from, `from is the sender's name: ${JSON.stringify(ev)}`);
  assert.ok(Number.isInteger(ev.id), `id is the sender's connection id: ${JSON.stringify(ev)}`);
  assert.ok(Number.isInteger(ev.offset) && ev.offset >= 1, `offset: ${JSON.stringify(ev)}`);
  if (offset !== undefined) assert.equal(ev.offset, offset);
  assert.equal(typeof ev.ts, "number");
  assert.ok(Math.abs(ev.ts - Date.now()) < 60_000, `ts ${ev.ts} is server time in ms`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

for (const tc of TRANSPORT_CASES) {
  describe(`custom events, socket.io-client, ${tc.label}`, { timeout: 120000 }, () => {
    const open = [];
    const conn = async (opts = {}) => {
      const s = await connect({ transports: tc.transports, ...opts });
      open.push(s);
      return s;
    };
    const others = [];
    afterEach(() => {
      while (open.length) open.pop().disconnect();
      while (others.length) others.pop().close();
    });

    /** Two named sockets, both members of a fresh room. */
    async function pair() {
      const room = uniqueRoom("ev");
      const [nameA, nameB] = [uniqueName("ann"), uniqueName("bob")];
      const a = await conn({ auth: { name: nameA } });
      const b = await conn({ auth: { name: nameB } });
      assert.equal((await call(a, "join", room)).ok, true);
      assert.equal((await call(b, "join", room)).ok, true);
      return { room, a, b, nameA, nameB };
    }

    it("a custom event reaches every member, sender included, under its name with the message envelope", TEST, async () => {
      const { room, a, b, nameA } = await pair();
      const cursorsA = collect(a, "cursor");
      const cursorsB = collect(b, "cursor");
      const messagesB = collect(b, "message");

      const data = { x: 10, y: -3.5, label: "ü€😀", list: [1, null, { deep: true }] };
      const ack = await call(a, "cursor", { room, data });
      assertEmitAck(ack, room);
      await until(() => cursorsA.length >= 1 && cursorsB.length >= 1, "the cursor event at both members");
      for (const ev of [cursorsA[0], cursorsB[0]]) {
        assertEventEnvelope(ev, { room, event: "cursor", from: nameA, offset: ack.offset });
        assert.equal(ev.ts, ack.ts, "the ack carries the event's timestamp");
        assert.deepEqual(ev.data, data, "data arrives unchanged");
      }
      assert.equal(cursorsA[0].id, cursorsB[0].id);

      // Fire and forget works too; the offsets are the room's, shared with messages.
      a.emit("cursor", { room, data: "no ack" });
      const msgAck = await call(a, "message", { room, data: "a plain message" });
      await until(() => cursorsB.length >= 2 && messagesB.length >= 1, "the second cursor and the message");
      assert.equal(cursorsB[1].data, "no ack");
      assert.equal(cursorsB[1].offset, ack.offset + 1);
      assert.equal(msgAck.offset, ack.offset + 2, "a message after two events takes the next offset");
      // A custom event is not also delivered as a message, and a message is not a cursor.
      await sleep(100);
      assert.deepEqual(messagesB.map((m) => m.data), ["a plain message"]);
      assert.equal(messagesB[0].event, undefined, `a plain message has no event field: ${JSON.stringify(messagesB[0])}`);
      assert.equal(cursorsB.length, 2);
      assert.equal(cursorsA.length, 2);
    });

    it("each event name is its own event: other names are not delivered to a cursor listener", TEST, async () => {
      const { room, a, b } = await pair();
      const cursors = collect(b, "cursor");
      const got = waitFor(b, "game:move", (ev) => ev && ev.room === room);
      assertEmitAck(await call(a, "game:move", { room, data: { from: "e2", to: "e4" } }), room);
      const ev = await got;
      assert.equal(ev.event, "game:move");
      assert.deepEqual(ev.data, { from: "e2", to: "e4" });
      // The longest allowed name (64 bytes) is accepted too.
      const long = "n".repeat(64);
      const gotLong = waitFor(b, long, (e) => e && e.room === room);
      assertEmitAck(await call(a, long, { room, data: 1 }), room);
      assert.equal((await gotLong).event, long);
      await sleep(100);
      assert.equal(cursors.length, 0, `cursor listener saw: ${JSON.stringify(cursors)}`);
    });

    it("binary inside event data (Buffer and Uint8Array) arrives intact", TEST, async () => {
      const { room, a, b } = await pair();
      const got = waitFor(b, "cursor", (ev) => ev && ev.room === room);
      const own = waitFor(a, "cursor", (ev) => ev && ev.room === room);
      const blob = Buffer.from([0, 255, 1, 254, 10, 13, 0x5b, 0x22]);
      const typed = new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
      const big = Buffer.alloc(70_000, 0xcd);
      const ack = await call(a, "cursor", { room, data: { caption: "bin", blob, nested: { typed, list: [big, "after"] } } });
      assertEmitAck(ack, room);
      for (const ev of [await got, await own]) {
        assert.equal(ev.event, "cursor");
        assert.equal(ev.offset, ack.offset);
        assert.equal(ev.data.caption, "bin");
        assert.ok(Buffer.isBuffer(ev.data.blob), `blob arrives as binary: ${typeof ev.data.blob}`);
        assert.deepEqual(ev.data.blob, blob);
        assert.ok(Buffer.isBuffer(ev.data.nested.typed), `typed array arrives as binary: ${JSON.stringify(ev.data.nested.typed)}`);
        assert.deepEqual([...ev.data.nested.typed], [...typed]);
        assert.ok(Buffer.isBuffer(ev.data.nested.list[0]));
        assert.equal(ev.data.nested.list[0].length, big.length);
        assert.ok(ev.data.nested.list[0].equals(big));
        assert.equal(ev.data.nested.list[1], "after");
      }
      // Binary as the whole data.
      const whole = waitFor(b, "cursor", (ev) => ev && ev.room === room);
      await call(a, "cursor", { room, data: Buffer.from("raw bytes") });
      const w = await whole;
      assert.ok(Buffer.isBuffer(w.data), `data: ${JSON.stringify(w.data)}`);
      assert.equal(w.data.toString(), "raw bytes");
    });

    it("reserved and malformed event names, bad arguments and foreign rooms are refused and reach no one", TEST, async () => {
      const { room, a, b } = await pair();
      const seen = [];
      b.onAny((event, ...args) => seen.push([event, ...args]));
      // socket.io-client itself refuses connect, disconnect, …; these reach the server.
      for (const name of ["presence", "welcome", "reply", "error", "event", "emit"]) {
        assertErrorAck(await call(a, name, { room, data: { fake: true } }), "reserved-event");
      }
      for (const name of ["", "x".repeat(65), "cur\nsor", "tab\there", "nul\u0000", "my event"]) {
        assertErrorAck(await call(a, name, { room, data: 1 }), "bad-event");
      }
      assertErrorAck(await call(a, "cursor", "not an object"), "bad-request");
      assertErrorAck(await call(a, "cursor", { data: 1 }), "bad-request");
      assertErrorAck(await call(a, "cursor"), "bad-request");
      const outsider = await conn();
      assertErrorAck(await call(outsider, "cursor", { room, data: "intruder" }), "not-member");
      assertErrorAck(await call(a, "cursor", { room: uniqueRoom("missing"), data: 1 }), "no-such-room");
      // Still usable, and b saw nothing of it (the outsider's connect is no event in this room).
      assert.equal(await call(a, "echo", "still here"), "still here");
      assertEmitAck(await call(a, "cursor", { room, data: "after the refusals" }), room);
      await until(() => seen.length >= 1, "the accepted cursor at b");
      await sleep(100);
      assert.deepEqual(
        seen.map(([event, p]) => [event, p && p.data]),
        [["cursor", "after the refusals"]],
        `b received: ${JSON.stringify(seen)}`,
      );
      // The refusals took no offsets.
      assert.equal(seen[0][1].offset, 1);
    });

    it("history lists custom events with their event field, binary included, among messages", TEST, async () => {
      const { room, a } = await pair();
      await call(a, "message", { room, data: "first" });
      const e1 = await call(a, "cursor", { room, data: { x: 1 } });
      const e2 = await call(a, "ink", { room, data: { stroke: Buffer.from([4, 5, 6]) } });
      const h = await call(a, "history", room);
      assert.equal(h.ok, true, JSON.stringify(h));
      assert.deepEqual(h.messages.map((m) => [m.offset, m.event]), [
        [1, undefined],
        [e1.offset, "cursor"],
        [e2.offset, "ink"],
      ]);
      assert.equal(h.messages[0].data, "first");
      assert.deepEqual(h.messages[1].data, { x: 1 });
      assert.equal(h.messages[1].ts, e1.ts);
      assert.ok(Buffer.isBuffer(h.messages[2].data.stroke), JSON.stringify(h.messages[2]));
      assert.deepEqual(h.messages[2].data.stroke, Buffer.from([4, 5, 6]));
      const last = await call(a, "history", room, 1);
      assert.deepEqual(last.messages.map((m) => m.event), ["ink"]);
    });

    it("a TCP line client in the room sees the events as `event ROOM NAME: JSON` and can emit its own", TEST, async () => {
      const { room, a, nameA } = await pair();
      const tcp = await TcpClient.connect();
      others.push(tcp);
      const nick = `tcp${process.pid % 10000}x${Math.floor(Math.random() * 1e6)}`;
      assert.equal(await tcp.command(`/nick ${nick}`, "ok nick"), `ok nick ${nick}`);
      assert.match(await tcp.command(`/join ${room}`, "ok join"), new RegExp(`^ok join ${room} `));

      // Socket.IO → TCP.
      await call(a, "cursor", { room, data: { x: 1, s: "two words" } });
      const line = await tcp.line((l) => l.startsWith(`event ${room} `));
      assert.deepEqual(parseEventLine(line), { room, event: "cursor", json: '{"x":1,"s":"two words"}' });
      a.emit("cursor", { room, data: { pic: Buffer.alloc(7, 1) } });
      const bin = await tcp.line((l) => l.startsWith(`event ${room} `));
      assert.match(bin, new RegExp(`^event ${room} cursor: \\{"pic":\\{"_placeholder":true,"num":0\\}\\} \\[\\+1 binary attachment, 7 bytes\\]$`));

      // TCP → Socket.IO: /emit to the current room.
      const got = waitFor(a, "cursor", (ev) => ev && ev.room === room && ev.from === nick);
      tcp.send(`/emit cursor {"x": 2, "from": "tcp"}`);
      const ev = await got;
      assertEventEnvelope(ev, { room, event: "cursor", from: nick });
      assert.deepEqual(ev.data, { x: 2, from: "tcp" });
      // The TCP sender sees its own event too.
      assert.deepEqual(parseEventLine(await tcp.line((l) => l.startsWith(`event ${room} `))), {
        room,
        event: "cursor",
        json: '{"x": 2, "from": "tcp"}',
      });
      // Refusals on the TCP side.
      assert.match(await tcp.command(`/emit presence {}`, "ok"), /^error reserved-event /);
      assert.match(await tcp.command(`/emit connect {}`, "ok"), /^error reserved-event /);
      assert.match(await tcp.command(`/emit cursor {not json`, "ok"), /^error bad-json /);
      // Plain messages still render as msg lines for TCP, after the events.
      await call(a, "message", { room, data: "plain" });
      const msg = parseMsgLine(await tcp.line((l) => l.startsWith(`msg ${room} `)));
      assert.equal(msg.from, nameA);
      assert.equal(msg.text, "plain");
      assert.equal(msg.offset, ev.offset + 1);
    });

    it("a plain /ws client in the room gets type:event frames and can emit to socket.io-client", { ...TEST, skip: !WebSocketImpl && "the ws package is not installed" }, async () => {
      const { room, a, nameA } = await pair();
      const wsName = uniqueName("wsc");
      const w = await WsClient.connect(wsName);
      others.push(w);
      assert.equal(w.welcome.name, wsName);
      const join = await w.request({ op: "join", room });
      assert.equal(join.ok, true, JSON.stringify(join));

      // Socket.IO → /ws, JSON and binary.
      const ack = await call(a, "cursor", { room, data: { x: 3 } });
      const f = await w.frame((x) => x.type === "event" && x.room === room);
      assert.equal(f.event, "cursor");
      assert.equal(f.offset, ack.offset);
      assert.equal(f.ts, ack.ts);
      assert.equal(f.from.name, nameA);
      assert.deepEqual(f.data, { x: 3 });
      const blob = Buffer.from([1, 2, 3, 0, 255]);
      await call(a, "cursor", { room, data: { blob } });
      const fb = await w.frame((x) => x.type === "event" && x.room === room);
      assert.equal(fb.attachments, 1, JSON.stringify(fb));
      assert.deepEqual(fb.data, { blob: { _placeholder: true, num: 0 } });
      assert.deepEqual(fb.parts, [blob]);

      // /ws → Socket.IO, with a binary attachment.
      const got = waitFor(a, "cursor", (ev) => ev && ev.room === room && ev.from === wsName);
      const reply = await w.request(
        { op: "emit", event: "cursor", room, data: { y: 4, bin: { _placeholder: true, num: 0 } }, attachments: 1 },
        [Buffer.from("from ws")],
      );
      assert.equal(reply.type, "reply", JSON.stringify(reply));
      assert.equal(reply.ok, true);
      assert.equal(reply.op, "emit");
      assert.equal(reply.room, room);
      const ev = await got;
      assertEventEnvelope(ev, { room, event: "cursor", from: wsName, offset: reply.offset });
      assert.equal(ev.id, w.welcome.id, "id is the /ws sender's connection id");
      assert.equal(ev.data.y, 4);
      assert.ok(Buffer.isBuffer(ev.data.bin));
      assert.equal(ev.data.bin.toString(), "from ws");

      // /ws refusals.
      const refused = await w.request({ op: "emit", event: "presence", room, data: 1 });
      assert.equal(refused.type, "error", JSON.stringify(refused));
      assert.equal(refused.code, "reserved-event");
      const connectName = await w.request({ op: "emit", event: "connect", room, data: 1 });
      assert.equal(connectName.code, "reserved-event", JSON.stringify(connectName));
      const bad = await w.request({ op: "emit", event: "", room, data: 1 });
      assert.equal(bad.code, "bad-event", JSON.stringify(bad));
    });
  });
}
