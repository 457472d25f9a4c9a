// Shared helpers for the socket.io-client interop tests. Every wait is bounded.
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

/** Base URL of volna's HTTP listener (Engine.IO at /socket.io/). */
export const HTTP = process.env.VOLNA_HTTP || "http://127.0.0.1:3000";
/** host:port of volna's TCP line listener. */
export const TCP = process.env.VOLNA_TCP || "127.0.0.1:7000";

/** How long any single wait may take. */
export const WAIT_MS = Number(process.env.INTEROP_WAIT_MS || 5000);

/** The transport lists the suites run under, with the transport each must end on. */
export const TRANSPORT_CASES = [
  { label: "websocket-only", transports: ["websocket"], final: "websocket" },
  { label: "polling-only", transports: ["polling"], final: "polling" },
  { label: "polling→websocket upgrade", transports: undefined, final: "websocket" },
];

let counter = 0;
/** A room name unique to this process and call, so tests never share rooms. */
export function uniqueRoom(prefix = "js") {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * Connects a stock socket.io-client socket and resolves once it is connected
 * (and, for the default transports, once the upgrade to WebSocket is done).
 */
export async function connect({ transports, nsp = "/", upgrade = true, auth } = {}) {
  const opts = {
    forceNew: true,
    reconnection: false,
    timeout: WAIT_MS,
    ackTimeout: WAIT_MS,
  };
  if (transports) opts.transports = transports;
  if (auth) opts.auth = auth;
  const socket = io(HTTP + nsp, opts);
  // The manager opens its Engine.IO socket synchronously: note where it starts and whether it upgrades.
  const engine0 = socket.io.engine;
  socket.initialTransport = engine0 && engine0.transport && engine0.transport.name;
  socket.upgraded = false;
  if (engine0) engine0.on("upgrade", () => (socket.upgraded = true));
  try {
    await withTimeout(
      new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", reject);
      }),
      WAIT_MS,
      `connect (${JSON.stringify(transports || "default")})`,
    );
    const engine = socket.io.engine;
    if (!transports && upgrade && engine.transport.name !== "websocket") {
      await withTimeout(
        new Promise((resolve, reject) => {
          engine.once("upgrade", resolve);
          engine.once("upgradeError", reject);
        }),
        WAIT_MS,
        "the upgrade to websocket",
      );
    }
  } catch (e) {
    socket.disconnect();
    throw e;
  }
  return socket;
}

/** The name of the transport the socket uses now. */
export function transportName(socket) {
  return socket.io.engine.transport.name;
}

/** Emits with an ack and a timeout; resolves to the ack's first argument. */
export function call(socket, event, ...args) {
  return socket.timeout(WAIT_MS).emitWithAck(event, ...args);
}

/** Resolves with the first `event` payload on `socket` for which `pred` holds. */
export function waitFor(socket, event, pred = () => true, ms = WAIT_MS) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => {
      if (pred(...args)) resolve(args.length <= 1 ? args[0] : args);
    };
    socket.on(event, handler);
  });
  return withTimeout(p, ms, `event ${event}`).finally(() => socket.off(event, handler));
}

/** Collects every payload of `event` on `socket` into an array. */
export function collect(socket, event) {
  const seen = [];
  socket.on(event, (payload) => seen.push(payload));
  return seen;
}

/** Waits until `cond()` is true, polling every 10 ms. */
export async function until(cond, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The display name of a message's sender (`from` is `{id, name}` or a bare name). */
export function senderName(msg) {
  const f = msg.from;
  return typeof f === "string" ? f : f && f.name;
}

/** The names in a `members` list (entries are `{id, name}` objects or bare names). */
export function memberNames(members) {
  return members.map((m) => (typeof m === "string" ? m : m.name));
}

/** A raw TCP client speaking volna's line protocol. */
export class TcpClient {
  static async connect(addr = TCP) {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
    const c = new TcpClient();
    c.sock = net.createConnection({ host, port });
    c.sock.setEncoding("utf8");
    c.lines = [];
    c.buf = "";
    c.waiters = new Set();
    c.sock.on("data", (chunk) => {
      c.buf += chunk;
      let i;
      while ((i = c.buf.indexOf("\n")) >= 0) {
        c.lines.push(c.buf.slice(0, i).replace(/\r$/, ""));
        c.buf = c.buf.slice(i + 1);
      }
      for (const w of c.waiters) w();
    });
    c.sock.on("error", () => {});
    await withTimeout(
      new Promise((resolve, reject) => {
        c.sock.once("connect", resolve);
        c.sock.once("error", reject);
      }),
      WAIT_MS,
      `TCP connect to ${addr}`,
    );
    const welcome = await c.line((l) => l.startsWith("welcome "));
    c.name = /you are ([^.\s]+)\./.exec(welcome)?.[1];
    return c;
  }

  send(line) {
    this.sock.write(line + "\n");
  }

  /** Resolves with the first received line (not yet taken) matching `pred`, consuming it. */
  line(pred, ms = WAIT_MS) {
    const take = () => {
      const i = this.lines.findIndex(pred);
      if (i < 0) return undefined;
      return this.lines.splice(i, 1)[0];
    };
    let waiter;
    const p = new Promise((resolve) => {
      waiter = () => {
        const l = take();
        if (l !== undefined) resolve(l);
      };
      this.waiters.add(waiter);
      waiter();
    });
    return withTimeout(p, ms, `a TCP line (have: ${JSON.stringify(this.lines.slice(-5))})`).finally(() =>
      this.waiters.delete(waiter),
    );
  }

  async command(line, prefix) {
    this.send(line);
    return this.line((l) => l.startsWith(prefix) || l.startsWith("error "));
  }

  close() {
    this.sock.destroy();
  }
}

/** Parses `msg ROOM OFFSET TS FROM: TEXT`. */
export function parseMsgLine(line) {
  const m = /^msg (\S+) (\d+) (\S+) ([^:\s]+): (.*)$/.exec(line);
  if (!m) return null;
  return { room: m[1], offset: Number(m[2]), ts: m[3], from: m[4], text: m[5] };
}

/** Parses `event ROOM NAME: JSON` (the TCP rendering of an application's own event). */
export function parseEventLine(line) {
  const m = /^event (\S+) (\S+): (.*)$/.exec(line);
  if (!m) return null;
  return { room: m[1], event: m[2], json: m[3] };
}

/**
 * The `ws` package, when tests/interop/node_modules has it (socket.io-client pulls it in), else null:
 * the tests that need a plain `/ws` client skip without it.
 */
export const WebSocketImpl = await import("ws").then(
  (m) => m.default || m.WebSocket,
  () => null,
);

/**
 * A plain WebSocket client (the npm `ws` package) speaking volna's `/ws` JSON protocol. Received text
 * frames are parsed; the binary frames announced by `"attachments":N` are gathered into the frame's
 * `parts` (Buffers, in order).
 */
export class WsClient {
  static async connect(name) {
    if (!WebSocketImpl) throw new Error("the ws package is not installed");
    const url = HTTP.replace(/^http/, "ws") + "/ws" + (name ? `?name=${encodeURIComponent(name)}` : "");
    const c = new WsClient();
    c.ws = new WebSocketImpl(url);
    c.frames = [];
    c.pending = null; // a frame still waiting for its binary parts
    c.waiters = new Set();
    c.nextId = 1;
    const ready = () => {
      for (const w of c.waiters) w();
    };
    c.ws.on("message", (data, isBinary) => {
      if (isBinary) {
        if (c.pending) {
          c.pending.parts.push(Buffer.from(data));
          if (c.pending.parts.length >= c.pending.attachments) {
            c.frames.push(c.pending);
            c.pending = null;
          }
        } else {
          c.frames.push({ unexpectedBinary: Buffer.from(data) });
        }
      } else {
        const f = JSON.parse(data.toString());
        const n = f.attachments;
        if (typeof n === "number" && n > 0 && f.type !== "reply" && f.type !== "error") {
          f.parts = [];
          c.pending = f;
        } else {
          c.frames.push(f);
        }
      }
      ready();
    });
    c.ws.on("error", () => {});
    await withTimeout(
      new Promise((resolve, reject) => {
        c.ws.once("open", resolve);
        c.ws.once("error", reject);
      }),
      WAIT_MS,
      `WebSocket connect to ${url}`,
    );
    c.welcome = await c.frame((f) => f.type === "welcome");
    return c;
  }

  /** Resolves with the first received frame (not yet taken) matching `pred`, consuming it. */
  frame(pred, ms = WAIT_MS) {
    const take = () => {
      const i = this.frames.findIndex(pred);
      return i < 0 ? undefined : this.frames.splice(i, 1)[0];
    };
    let waiter;
    const p = new Promise((resolve) => {
      waiter = () => {
        const f = take();
        if (f !== undefined) resolve(f);
      };
      this.waiters.add(waiter);
      waiter();
    });
    return withTimeout(p, ms, `a /ws frame (have: ${JSON.stringify(this.frames.slice(-5))})`).finally(() =>
      this.waiters.delete(waiter),
    );
  }

  /** Sends a request (with a fresh id) and its binary parts; resolves with its reply or error frame. */
  request(req, parts = []) {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ ...req, id }));
    for (const p of parts) this.ws.send(p, { binary: true });
    return this.frame((f) => (f.type === "reply" || f.type === "error") && f.id === id);
  }

  close() {
    this.ws.terminate();
  }
}

/**
 * Starts a volna of the caller's own (VOLNA_BIN, else target/debug/volna) on free loopback ports with `args`;
 * resolves to `{ server, http }` once its banner names the HTTP address. Kill `server` when done.
 */
export function startVolna(args, bin = process.env.VOLNA_BIN) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
  const server = spawn(bin || path.join(root, "target/debug/volna"),
    ["serve", "--tcp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log", "warn", ...args],
    { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("volna did not start")), 20000);
    server.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/ (https?:\/\/[^\s,]+)/);
      if (m) { clearTimeout(timer); resolve({ server, http: m[1] }); }
    });
    server.on("exit", () => { clearTimeout(timer); reject(new Error("volna exited")); });
  });
}
