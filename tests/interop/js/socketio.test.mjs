// Interop: the stock socket.io-client (npm) against volna's default Socket.IO application
// (docs/socketio.md), over websocket-only, polling-only and the default polling→websocket upgrade.
// Run by tests/interop/run.sh, which starts volna and sets VOLNA_HTTP / VOLNA_TCP.
import { describe, it, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  TRANSPORT_CASES,
  connect,
  transportName,
  call,
  waitFor,
  collect,
  until,
  uniqueRoom,
  senderName,
  memberNames,
  TcpClient,
  parseMsgLine,
} from "./helpers.mjs";

const TEST = { timeout: 20000 };

function assertJoinAck(ack, room, count) {
  assert.equal(ack.ok, true, `join ack: ${JSON.stringify(ack)}`);
  assert.equal(ack.room, room);
  assert.ok(Array.isArray(ack.members), `members is an array: ${JSON.stringify(ack)}`);
  if (count !== undefined) {
    assert.equal(ack.members.length, count, `members: ${JSON.stringify(ack.members)}`);
    assert.equal(ack.count, count, `count: ${JSON.stringify(ack)}`);
  }
}

function assertErrorAck(ack, code) {
  assert.ok(ack && typeof ack === "object", `error ack is an object: ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, false, `error ack: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error, "string", `error ack says why: ${JSON.stringify(ack)}`);
  if (code) assert.equal(ack.code, code, `error ack code: ${JSON.stringify(ack)}`);
}

/** A display name unique to this run, for the `auth: {name}` of a connection. */
function uniqueName(prefix) {
  return `${prefix}-${process.pid % 100000}-${Math.floor(Math.random() * 1e9).toString(36)}`;
}

function assertMessage(msg, room) {
  assert.equal(msg.room, room, `message payload: ${JSON.stringify(msg)}`);
  assert.equal(typeof msg.offset, "number", `offset is a number: ${JSON.stringify(msg)}`);
  assert.ok(Number.isInteger(msg.offset) && msg.offset >= 1, `offset ${msg.offset}`);
  assert.equal(typeof msg.ts, "number", `ts is a number: ${JSON.stringify(msg)}`);
  assert.ok(Math.abs(msg.ts - Date.now()) < 60_000, `ts ${msg.ts} is server time in ms`);
  assert.ok(senderName(msg), `message names its sender: ${JSON.stringify(msg)}`);
}

for (const tc of TRANSPORT_CASES) {
  describe(`socket.io-client, ${tc.label}`, { timeout: 120000 }, () => {
    const open = [];
    const conn = async (opts = {}) => {
      const s = await connect({ transports: tc.transports, ...opts });
      open.push(s);
      return s;
    };
    const tcps = [];
    const tcpConn = async () => {
      const c = await TcpClient.connect();
      tcps.push(c);
      return c;
    };
    afterEach(() => {
      while (open.length) open.pop().disconnect();
      while (tcps.length) tcps.pop().close();
    });

    it(`connects and ends on ${tc.final}`, TEST, async () => {
      const s = await conn();
      assert.ok(s.connected);
      assert.ok(s.id, "has a socket id");
      assert.equal(transportName(s), tc.final);
      assert.equal(s.initialTransport, tc.transports ? tc.transports[0] : "polling");
      assert.equal(s.upgraded, !tc.transports, "upgraded exactly when both transports are allowed");
    });

    it("echo acks its argument unchanged", TEST, async () => {
      const s = await conn();
      for (const x of ["hello", 42, true, null, { a: [1, "two", { three: 3.5 }] }, ["x", { y: "ü€😀" }]]) {
        assert.deepEqual(await call(s, "echo", x), x);
      }
    });

    it("echo with binary acks binary", TEST, async () => {
      const s = await conn();
      const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
      const back = await call(s, "echo", bytes);
      assert.ok(Buffer.isBuffer(back), `got ${typeof back}: ${JSON.stringify(back)}`);
      assert.deepEqual(back, bytes);

      const nested = { label: "two blobs", list: [Buffer.from("first"), { inner: Buffer.alloc(3000, 7) }] };
      const back2 = await call(s, "echo", nested);
      assert.equal(back2.label, "two blobs");
      assert.ok(Buffer.isBuffer(back2.list[0]));
      assert.equal(back2.list[0].toString(), "first");
      assert.ok(Buffer.isBuffer(back2.list[1].inner));
      assert.deepEqual(back2.list[1].inner, Buffer.alloc(3000, 7));
    });

    it("echo with several arguments, binary among them, acks them all", TEST, async () => {
      const s = await conn();
      const args = await new Promise((resolve, reject) => {
        s.timeout(5000).emit("echo", "one", { two: 2 }, Buffer.from([3, 3, 3]), (err, ...back) =>
          err ? reject(err) : resolve(back),
        );
      });
      assert.equal(args.length, 3, `acked: ${JSON.stringify(args)}`);
      assert.equal(args[0], "one");
      assert.deepEqual(args[1], { two: 2 });
      assert.ok(Buffer.isBuffer(args[2]));
      assert.deepEqual(args[2], Buffer.from([3, 3, 3]));
    });

    it("join acks {ok, room, members}; others get presence; who lists the members", TEST, async () => {
      const room = uniqueRoom();
      const [nameA, nameB] = [uniqueName("ann"), uniqueName("bob")];
      const a = await conn({ auth: { name: nameA } });
      const b = await conn({ auth: { name: nameB } });
      const ackA = await call(a, "join", room);
      assertJoinAck(ackA, room, 1);
      assert.deepEqual(memberNames(ackA.members), [nameA], "the auth name is the display name");
      const joined = waitFor(a, "presence", (p) => p && p.room === room);
      const ackB = await call(b, "join", room);
      assertJoinAck(ackB, room, 2);
      assert.deepEqual(memberNames(ackB.members).sort(), [nameA, nameB].sort());
      const p = await joined;
      assert.equal(p.room, room);
      assert.equal(p.name, nameB, `presence: ${JSON.stringify(p)}`);
      assert.equal(p.event, "join", `presence: ${JSON.stringify(p)}`);
      assert.equal(p.members, 2, `presence: ${JSON.stringify(p)}`);

      const who = await call(a, "who", room);
      assert.equal(who.ok, true, `who ack: ${JSON.stringify(who)}`);
      assert.equal(who.room, room);
      assert.deepEqual(memberNames(who.members).sort(), [nameA, nameB].sort());
      assertErrorAck(await call(a, "who", uniqueRoom("missing")), "no-such-room");

      const left = waitFor(a, "presence", (p) => p && p.room === room && p.event === "leave");
      b.disconnect();
      const l = await left;
      assert.equal(l.name, nameB);
      assert.equal(l.members, 1);
    });

    it("message reaches every member, sender included, with room, sender, offset, ts and data", TEST, async () => {
      const room = uniqueRoom();
      const nameA = uniqueName("ann");
      const a = await conn({ auth: { name: nameA } });
      const b = await conn();
      assertJoinAck(await call(a, "join", room), room, 1);
      assertJoinAck(await call(b, "join", room), room, 2);
      const atA = collect(a, "message");
      const atB = collect(b, "message");

      const data1 = { text: "hello", n: 1, nested: { list: [1, 2, 3], s: "ü€😀" }, nothing: null };
      const ack = await call(a, "message", { room, data: data1 });
      assert.equal(ack.ok, true, `message ack: ${JSON.stringify(ack)}`);
      assert.equal(ack.room, room);
      a.emit("message", { room, data: "second, no ack" });

      await until(() => atA.length >= 2 && atB.length >= 2, "two messages at each member");
      for (const seen of [atA, atB]) {
        const [m1, m2] = seen;
        assertMessage(m1, room);
        assertMessage(m2, room);
        assert.deepEqual(m1.data, data1);
        assert.equal(m2.data, "second, no ack");
        assert.equal(m2.offset, m1.offset + 1, "offsets increase by one");
        assert.ok(m2.ts >= m1.ts, "timestamps never go backwards");
      }
      // The ack carries the message's offset and timestamp.
      assert.equal(ack.offset, atA[0].offset);
      assert.equal(ack.ts, atA[0].ts);
      // Both members see the same sender, offsets and timestamps.
      assert.equal(senderName(atA[0]), nameA);
      assert.equal(senderName(atB[0]), nameA);
      assert.deepEqual(atA.map((m) => [m.offset, m.ts]), atB.map((m) => [m.offset, m.ts]));
      // The sender is a's entry in the member list.
      const who = await call(b, "who", room);
      const names = memberNames(Array.isArray(who) ? who : who.members);
      assert.ok(names.includes(senderName(atA[0])), `${senderName(atA[0])} in ${names}`);
    });

    it("a burst of 200 messages arrives complete and in offset order", TEST, async () => {
      const room = uniqueRoom();
      const a = await conn();
      const b = await conn();
      await call(a, "join", room);
      await call(b, "join", room);
      const atB = collect(b, "message");
      for (let i = 0; i < 200; i++) a.emit("message", { room, data: { i } });
      await until(() => atB.length >= 200, `200 messages (have ${atB.length})`);
      assert.deepEqual(atB.map((m) => m.data.i), [...Array(200).keys()]);
      atB.forEach((m, i) => assert.equal(m.offset, atB[0].offset + i));
    });

    it("binary inside message data arrives as binary", TEST, async () => {
      const room = uniqueRoom();
      const a = await conn();
      const b = await conn();
      await call(a, "join", room);
      await call(b, "join", room);
      const got = waitFor(b, "message", (m) => m && m.room === room);
      const blob = Buffer.from([0, 255, 1, 254, 10, 13]);
      const big = Buffer.alloc(100_000, 0xab);
      await call(a, "message", { room, data: { caption: "pic", blob, more: [big, "after"] } });
      const m = await got;
      assertMessage(m, room);
      assert.equal(m.data.caption, "pic");
      assert.ok(Buffer.isBuffer(m.data.blob), `blob arrives as a Buffer: ${typeof m.data.blob}`);
      assert.deepEqual(m.data.blob, blob);
      assert.ok(Buffer.isBuffer(m.data.more[0]));
      assert.deepEqual(m.data.more[0], big);
      assert.equal(m.data.more[1], "after");
    });

    it("message to a room you are not in gets an error ack and reaches no one", TEST, async () => {
      const room = uniqueRoom();
      const a = await conn();
      const b = await conn();
      await call(b, "join", room);
      const atB = collect(b, "message");
      assertErrorAck(await call(a, "message", { room, data: "intruder" }), "not-member");
      assertErrorAck(await call(a, "message", { room: uniqueRoom("missing"), data: "nobody" }), "no-such-room");
      // Still usable afterwards, and b saw nothing.
      assert.equal(await call(a, "echo", "still here"), "still here");
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(atB.length, 0, `b saw: ${JSON.stringify(atB)}`);
    });

    it("rooms lists each room with its member count", TEST, async () => {
      const room = uniqueRoom();
      const a = await conn();
      const b = await conn();
      await call(a, "join", room);
      await call(b, "join", room);
      const ack = await call(a, "rooms");
      assert.equal(ack.ok, true, JSON.stringify(ack));
      const mine = ack.rooms.filter((r) => r.room === room);
      assert.deepEqual(mine, [{ room, count: 2 }]);
    });

    it("history acks the last messages as they were delivered, binary included", TEST, async () => {
      const room = uniqueRoom();
      const a = await conn();
      await call(a, "join", room);
      const blob = Buffer.from([7, 0, 7]);
      await call(a, "message", { room, data: "first" });
      await call(a, "message", { room, data: { blob } });
      await call(a, "message", { room, data: { two: [Buffer.from([1]), Buffer.from([2, 2])] } });
      const all = await call(a, "history", room);
      assert.equal(all.ok, true, JSON.stringify(all));
      assert.equal(all.room, room);
      assert.deepEqual(all.messages.map((m) => m.offset), [1, 2, 3]);
      all.messages.forEach((m) => assertMessage(m, room));
      assert.equal(all.messages[0].data, "first");
      assert.deepEqual(all.messages[1].data.blob, blob);
      assert.deepEqual(all.messages[2].data.two, [Buffer.from([1]), Buffer.from([2, 2])]);
      const last = await call(a, "history", room, 1);
      assert.deepEqual(last.messages.map((m) => m.offset), [3]);
      assertErrorAck(await call(a, "history", uniqueRoom("missing")), "no-such-room");
    });

    it("image shares a thumbnail made on the worker pool", TEST, async () => {
      const room = uniqueRoom();
      const a = await conn();
      const b = await conn();
      await call(a, "join", room);
      await call(b, "join", room);
      // A 1×1 PNG.
      const png = Buffer.from(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "base64",
      );
      const got = waitFor(b, "message", (m) => m && m.room === room);
      const ack = await call(a, "image", { room, name: "dot.png", data: png });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.equal(ack.room, room);
      const m = await got;
      assert.equal(m.offset, ack.offset);
      assert.equal(m.data.image.name, "dot.png");
      assert.equal(m.data.image.format, "png");
      assert.equal(m.data.image.width, 1);
      assert.ok(Buffer.isBuffer(m.data.image.thumb) && m.data.image.thumb.length > 0);
      assertErrorAck(await call(a, "image", { room, name: "junk.png", data: Buffer.from("not an image") }));
    });

    it("leave acks and stops delivery", TEST, async () => {
      const room = uniqueRoom();
      const a = await conn();
      const b = await conn();
      await call(a, "join", room);
      await call(b, "join", room);
      const leave = await call(b, "leave", room);
      assert.deepEqual(leave, { ok: true, room, members: 1 });
      const atB = collect(b, "message");
      const own = waitFor(a, "message", (m) => m && m.room === room);
      await call(a, "message", { room, data: "after leave" });
      await own;
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(atB.length, 0);
      assertErrorAck(await call(b, "message", { room, data: "left already" }), "not-member");
    });

    it("a TCP line client and a Socket.IO client in one room see each other's messages", TEST, async () => {
      const room = uniqueRoom();
      const tcp = await tcpConn();
      const nick = `tcp${process.pid % 10000}x${Math.floor(Math.random() * 1e6)}`;
      assert.equal(await tcp.command(`/nick ${nick}`, "ok nick"), `ok nick ${nick}`);
      assert.match(await tcp.command(`/join ${room}`, "ok join"), new RegExp(`^ok join ${room} `));

      const s = await conn();
      const ack = await call(s, "join", room);
      assertJoinAck(ack, room, 2);
      assert.ok(memberNames(ack.members).includes(nick), `members: ${JSON.stringify(ack.members)}`);
      const joined = await tcp.line((l) => l.startsWith(`joined ${room} `));
      const sioName = joined.split(" ")[2];
      assert.ok(memberNames(ack.members).includes(sioName));

      // Socket.IO → TCP: a string's text shows as is.
      const own = waitFor(s, "message", (m) => m && m.room === room);
      await call(s, "message", { room, data: "hello from socket.io" });
      const mine = await own;
      const line = await tcp.line((l) => l.startsWith(`msg ${room} `));
      const parsed = parseMsgLine(line);
      assert.ok(parsed, `msg line: ${line}`);
      assert.equal(parsed.from, sioName);
      assert.equal(senderName(mine), sioName);
      assert.equal(parsed.offset, mine.offset);
      assert.equal(parsed.text, "hello from socket.io");
      assert.equal(parsed.ts, new Date(mine.ts).toISOString(), "the same timestamp, as UTC text");

      // Other JSON shows compactly.
      s.emit("message", { room, data: { n: 1, list: ["a", "b"] } });
      assert.equal(parseMsgLine(await tcp.line((l) => l.startsWith(`msg ${room} `))).text, '{"n":1,"list":["a","b"]}');

      // Binary attachments are summarised on the TCP side.
      s.emit("message", { room, data: { pic: Buffer.alloc(5, 1) } });
      const binLine = await tcp.line((l) => l.startsWith(`msg ${room} `));
      assert.match(binLine, /\[\+1 binary attachments?, 5 bytes\]/);

      // TCP → Socket.IO: the text arrives as data = the string.
      const fromTcp = waitFor(s, "message", (m) => m && m.room === room && senderName(m) === nick);
      tcp.send("hello from tcp ü");
      const m = await fromTcp;
      assertMessage(m, room);
      assert.equal(m.data, "hello from tcp ü");
      assert.equal(m.offset, mine.offset + 3);
      const echoLine = parseMsgLine(await tcp.line((l) => l.startsWith(`msg ${room} `) && l.includes("from tcp")));
      assert.equal(echoLine.offset, m.offset);
    });
  });
}

describe("socket.io-client, namespaces", { timeout: 30000 }, () => {
  for (const tc of TRANSPORT_CASES) {
    it(`an unknown namespace gives connect_error "Invalid namespace" (${tc.label})`, TEST, async () => {
      await assert.rejects(
        connect({ transports: tc.transports, nsp: "/no-such-namespace", upgrade: false }),
        (err) => {
          assert.equal(err.message, "Invalid namespace");
          return true;
        },
      );
    });
  }
});
