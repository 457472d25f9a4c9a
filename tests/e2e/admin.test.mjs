// End-to-end test of the Socket.IO Admin UI (@socket.io/admin-ui 0.5.1) against volna: volna runs with
// --admin-username/--admin-password-hash (a bcrypt hash made here with bcryptjs, the reference's own
// library) in development mode; the UI's built page (node_modules/@socket.io/admin-ui/ui/dist) is served
// from a tiny static server on another loopback port (listed in --allowed-origins, so the page may call
// with credentials) and driven in headless Chromium: the connection form is filled, a Socket.IO client (in
// room "lobby"), a /ws client and a TCP client must show on the Sockets page, "lobby" on the Rooms page;
// the disconnect button of the Socket.IO client's row must disconnect it. A wrong password is refused with
// "invalid credentials". The Sockets page goes to docs/screenshot-admin.png.
//
// Needs the volna binary (VOLNA_BIN, default target/debug/volna: tests/e2e/run.sh builds it) and Debian's
// Chromium; starts its own volna on free ports.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import bcrypt from "bcryptjs";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { eachLine, launchChromium, openPage } from "./browser.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const VOLNA = process.env.VOLNA_BIN || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, "target"), "debug/volna");
const UI_DIR = path.join(HERE, "node_modules/@socket.io/admin-ui/ui/dist");
const SCREENSHOT = path.join(ROOT, "docs/screenshot-admin.png");
const WAIT_MS = Number(process.env.E2E_WAIT_MS || 10000);
const USER = "admin";
const PASSWORD = "correct horse battery staple";

let volna, volnaLines = [], HTTP, TCP;
let uiServer, UI;
let browser;
const contexts = [];
const pageErrors = [];
const clients = []; // everything to close at the end

// ------------------------------------------------------------------------------------------ helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the first value `fn` returns that is not falsy, polling within `ms`. */
async function until(what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** A static server for the UI's built page. */
function serveUi() {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml", ".map": "application/json" };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const rel = url.pathname === "/" ? "index.html" : decodeURIComponent(url.pathname).replace(/^\/+/, "");
    const file = path.join(UI_DIR, rel);
    if (!file.startsWith(UI_DIR) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** Starts volna; resolves once its banner names its addresses. */
function startVolna(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(VOLNA, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const timer = setTimeout(() => reject(new Error(`volna printed no banner within ${WAIT_MS} ms:\n${volnaLines.join("\n")}`)), WAIT_MS);
    child.once("exit", (code) => reject(new Error(`volna exited (${code}):\n${volnaLines.join("\n")}`)));
    for (const stream of [child.stdout, child.stderr]) {
      eachLine(stream, (line) => {
        volnaLines.push(line);
        const m = line.match(/ serving: tcp:\/\/([^ ,]+).*http:\/\/([^ ,]+)/);
        if (m) {
          clearTimeout(timer);
          resolve({ child, tcp: m[1], http: "http://" + m[2] });
        }
      });
    }
  });
}

/** A Socket.IO client of /admin; resolves with it and what it was sent, or rejects with the connect error. */
function adminClient(password) {
  return new Promise((resolve, reject) => {
    const seen = {};
    const socket = io(HTTP + "/admin", { auth: { username: USER, password }, transports: ["websocket"], reconnection: false, forceNew: true });
    clients.push(() => socket.disconnect());
    socket.onAny((event, ...args) => (seen[event] = args));
    socket.once("connect", () => resolve({ socket, seen }));
    socket.once("connect_error", (e) => reject(e));
    setTimeout(() => reject(new Error("no answer to the admin CONNECT")), WAIT_MS);
  });
}

// ------------------------------------------------------------------------------------------ set-up

before(async () => {
  const hash = bcrypt.hashSync(PASSWORD, 4);
  uiServer = await serveUi();
  UI = `http://127.0.0.1:${uiServer.address().port}`;
  const started = await startVolna([
    "serve",
    "--tcp-addr", "127.0.0.1:0",
    "--http-addr", "127.0.0.1:0",
    "--admin-username", USER,
    "--admin-password-hash", hash,
    "--admin-mode", "development",
    "--allowed-origins", UI,
  ]);
  volna = started.child;
  HTTP = started.http;
  TCP = started.tcp;
  browser = await launchChromium();
});

after(async () => {
  for (const close of clients) {
    try { close(); } catch { /* already closed */ }
  }
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  if (uiServer) {
    uiServer.closeAllConnections?.();
    await new Promise((r) => uiServer.close(r));
  }
  if (volna && volna.exitCode === null) {
    volna.kill("SIGTERM");
    await Promise.race([new Promise((r) => volna.once("exit", r)), sleep(3000)]);
    if (volna.exitCode === null) volna.kill("SIGKILL");
  }
});

// ------------------------------------------------------------------------------------------ tests

test("a wrong password is refused with 'invalid credentials'; the right one gets the reference's events", async () => {
  await assert.rejects(adminClient("wrong"), (e) => e.message === "invalid credentials");
  const { socket, seen } = await adminClient(PASSWORD);
  await until("config, server_stats and all_sockets", () => seen.config && seen.server_stats && seen.all_sockets);
  assert.equal(typeof seen.session[0], "string");
  assert.deepEqual(seen.config[0].supportedFeatures, [
    "EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS",
  ]);
  const stats = seen.server_stats[0];
  for (const key of ["serverId", "hostname", "pid", "uptime", "clientsCount", "pollingClientsCount", "aggregatedEvents", "namespaces"]) {
    assert.ok(key in stats, `server_stats.${key}`);
  }
  assert.ok(seen.all_sockets[0].some((s) => s.id === socket.id && s.nsp === "/admin"));
  socket.disconnect();
});

test("the Admin UI lists a Socket.IO, a /ws and a TCP client, shows room lobby, and disconnects a socket", async () => {
  // The clients: Socket.IO in room lobby, /ws, TCP.
  const sio = io(HTTP, { auth: { name: "sio-ann" }, transports: ["websocket"], reconnection: false, forceNew: true });
  clients.push(() => sio.disconnect());
  await new Promise((resolve, reject) => (sio.once("connect", resolve), sio.once("connect_error", reject)));
  const joined = await sio.timeout(WAIT_MS).emitWithAck("join", "lobby");
  assert.equal(joined.ok, true);
  const disconnected = new Promise((resolve) => sio.once("disconnect", resolve));
  const sioId = sio.id; // socket.io-client forgets it on disconnect

  const ws = new WebSocket(`${HTTP.replace("http", "ws")}/ws?name=ws-bob`);
  clients.push(() => ws.close());
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));

  const [tcpHost, tcpPort] = TCP.split(":");
  const tcp = net.connect(Number(tcpPort), tcpHost);
  clients.push(() => tcp.destroy());
  let tcpText = "";
  tcp.on("data", (d) => (tcpText += d));
  await until("the TCP welcome", () => tcpText.includes("welcome"));
  tcp.write("/nick tcp-cat\n/join lobby\n");
  await until("the TCP join", () => tcpText.includes("ok join lobby"));

  // Their ids, as the server lists them.
  const { socket: watcher, seen } = await adminClient(PASSWORD);
  await until("all_sockets", () => seen.all_sockets);
  const listed = seen.all_sockets[0];
  const byProtocol = (p) => listed.find((s) => s.data.protocol === p && s.nsp === "/");
  const wsId = byProtocol("ws")?.id;
  const tcpId = byProtocol("tcp")?.id;
  assert.ok(listed.some((s) => s.id === sioId && s.rooms.includes("lobby")), "the Socket.IO client in lobby");
  assert.ok(wsId && tcpId, `the /ws and TCP clients: ${JSON.stringify(listed)}`);
  assert.equal(byProtocol("tcp").transport, "tcp");
  assert.equal(byProtocol("ws").transport, "websocket");
  watcher.disconnect();

  // The UI: fill the connection form.
  const page = await openPage(browser, contexts, pageErrors, "admin-ui", WAIT_MS, { viewport: { width: 1400, height: 820 } });
  await page.goto(UI + "/");
  await page.getByLabel("Server URL").fill(HTTP);
  await page.getByLabel("Username").fill(USER);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByText("Advanced options").click();
  await page.getByLabel("Admin namespace").fill("/admin");
  await page.getByLabel("Path").fill("/socket.io");
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByLabel("Server URL").waitFor({ state: "hidden" });

  // Sockets: the three clients.
  await page.evaluate(() => (location.hash = "#/sockets/"));
  for (const id of [sioId, wsId, tcpId]) {
    await page.locator("tr", { hasText: id }).first().waitFor();
  }
  await sleep(800); // the route's fade-in
  await page.screenshot({ path: SCREENSHOT });

  // Rooms: lobby.
  await page.evaluate(() => (location.hash = "#/rooms/"));
  await page.locator("tr", { hasText: "lobby" }).first().waitFor();

  // Disconnect the Socket.IO client from its row.
  await page.evaluate(() => (location.hash = "#/sockets/"));
  const row = page.locator("tr", { hasText: sioId }).first();
  await row.getByRole("button").click();
  const reason = await Promise.race([disconnected, sleep(WAIT_MS).then(() => "still connected")]);
  assert.equal(reason, "io server disconnect");
  // It leaves the list; the others stay. (The click also opened the socket's page: back to the list.)
  await until("the socket's own page", () => page.evaluate(() => location.hash.includes(`/sockets/`) && location.hash !== "#/sockets/"), 2000).catch(() => {});
  await page.evaluate(() => (location.hash = "#/sockets/"));
  await page.locator("tr", { hasText: tcpId }).first().waitFor();
  await until("the socket to leave the list", async () => (await page.locator("tr", { hasText: sioId }).count()) === 0);
  assert.equal(ws.readyState, WebSocket.OPEN);
  assert.ok(!tcp.destroyed);
  // The page loads its fonts and icons from CDNs, out of reach here.
  assert.deepEqual(pageErrors.filter((e) => !/Failed to load resource|net::ERR_/.test(e)), []);
});
