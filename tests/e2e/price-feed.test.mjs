// End-to-end test of the live price feed example (examples/price-feed) in a real headless browser.
//
// The test starts everything itself, on free ports: volna with the example's settings file (flags
// override its addresses, API key and rpc hook URL), the example's backend (backend.py, publishing ~20
// ticks/s for a few seconds through the server API and answering the rpc hook), and — when
// redis-server and tests/cluster-interop/node_modules are there — a redis-server, so that one headline
// can also come through Node's @socket.io/redis-emitter. Then it checks that:
//
// - the page (served by volna under /app/) shows prices that change, live over /ws;
// - a python-socketio client (socketio_client.py, 2 s) gets the same feed, cannot publish into a price
//   room, and gets an order accepted over Socket.IO;
// - a page opened after publishing stopped fills its table from the rooms' history at once;
// - a valid order from the page's form is accepted by the backend, and invalid ones (quantity 0, price
//   50% off) are refused with the backend's own message;
// - a browser client trying to publish into prices.BTC is refused with publish-forbidden;
// - (optional) a headline from the Redis emitter reaches the page, as text, not HTML;
// - the backend stops cleanly on SIGTERM.
//
// Needs the volna binary (VOLNA_BIN, default target/debug/volna: tests/e2e/run.sh builds it), Debian's
// Chromium and the interop venv (target/interop-venv), which scripts/install-test-deps.sh installs.
// Screenshot: tests/e2e/out/price-feed.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM, eachLine, launchChromium, openPage } from "./browser.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const EXAMPLE = path.join(ROOT, "examples/price-feed");
const OUT = path.join(HERE, "out");
const VOLNA = process.env.VOLNA_BIN || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, "target"), "debug/volna");
const PYTHON = process.env.PRICE_FEED_PYTHON || path.join(ROOT, "target/interop-venv/bin/python");
const WAIT_MS = Number(process.env.E2E_WAIT_MS || 10000);
const API_KEY = `e2e-price-feed-${process.pid}-key`;
const SYMBOLS = ["BTC", "ETH", "SOL", "XAU"];
const TICK_RATE = 20; // per second, all symbols together
const PUBLISH_SECONDS = 8;
const EMITTER_MODULES = path.join(ROOT, "tests/cluster-interop");

let browser;
const contexts = [];
const pageErrors = [];
const procs = [];
let volna, backend, redis, redisUrl, HTTP, hookPort;
let pageA; // opened before the ticks, stays all along

// ------------------------------------------------------------------------------------------ helpers

/** A child process whose output lines are kept, with bounded waits on them. */
class Proc {
  constructor(label, cmd, args, options = {}) {
    this.label = label;
    this.lines = [];
    this.waiters = [];
    this.child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], ...options });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.code = code;
        this.signal = signal;
        for (const w of this.waiters) w.fail(new Error(`${label} exited (${signal || code}) before printing ${w.what}`));
        this.waiters = [];
        resolve({ code, signal });
      });
    });
    this.child.once("error", (e) => this.lines.push(`[spawn error] ${e.message}`));
    for (const stream of [this.child.stdout, this.child.stderr]) {
      eachLine(stream, (line) => {
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => !(w.re.test(line) && (w.done(line), true)));
      });
    }
    procs.push(this);
  }
  get running() {
    return this.code === undefined && this.signal === undefined;
  }
  output(last = 30) {
    return `--- ${this.label} (last ${last} lines)\n  ${this.lines.slice(-last).join("\n  ")}`;
  }
  /** The first line (already printed or coming) that `re` matches, within `ms`. */
  waitFor(re, what, ms = WAIT_MS) {
    const seen = this.lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    if (!this.running) return Promise.reject(new Error(`${this.label} has exited; no line ${what}\n${this.output()}`));
    return new Promise((resolve, reject) => {
      const w = {
        re,
        what,
        done: (line) => (clearTimeout(timer), resolve(line)),
        fail: (e) => (clearTimeout(timer), reject(new Error(`${e.message}\n${this.output()}`))),
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.label}: no line ${what} within ${ms} ms\n${this.output()}`));
      }, ms);
      this.waiters.push(w);
    });
  }
  /** Exits on its own within `ms`, or is killed. */
  async finished(ms) {
    let timer;
    const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)));
    const r = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (r === "timeout") {
      await this.stop();
      throw new Error(`${this.label} did not finish within ${ms} ms\n${this.output()}`);
    }
    return r;
  }
  /** SIGTERM, then SIGKILL after 5 s. */
  async stop() {
    if (!this.running) return this.exited;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.running && this.child.kill("SIGKILL"), 5000);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }
}

// Killed from outside (the suite's timeout, Ctrl-C): take the children along.
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(sig, () => {
    for (const p of procs) if (p.running) p.child.kill("SIGKILL");
    process.exit(130);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One HTTP request without keep-alive, bounded by WAIT_MS. */
function request(method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const raw = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      url,
      { method, agent: false, timeout: WAIT_MS, headers: raw ? { "Content-Type": "application/json", "Content-Length": raw.length, ...headers } : headers },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.end(raw);
  });
}

const api = async (method, params) => {
  const res = await request("POST", `${HTTP}/api/${method}`, params, { "X-API-Key": API_KEY });
  assert.equal(res.status, 200, `api ${method}: ${res.body}`);
  return JSON.parse(res.body);
};

const newPage = (label, options = {}) =>
  openPage(browser, contexts, pageErrors, label, WAIT_MS, { viewport: { width: 1280, height: 860 }, ...options });

async function openFeed(label) {
  const page = await newPage(label);
  await page.goto(`${HTTP}/app/`);
  await page.locator('#conn[data-state="online"]').waitFor();
  await page.waitForFunction(() => window.feed && window.feed.ready());
  return page;
}

const prices = (page) => page.evaluate((syms) => Object.fromEntries(syms.map((s) => [s, window.feed.price(s)])), SYMBOLS);

async function sendOrder(page, { symbol, side, qty, price }) {
  await page.selectOption("#order-symbol", symbol);
  await page.selectOption("#order-side", side);
  await page.fill("#order-qty", String(qty));
  if (price === "last") await page.click("#order-last");
  else await page.fill("#order-price", String(price));
  const before = await page.evaluate(() => window.feed.lastVerdict());
  await page.click("#order-send");
  await page.waitForFunction((b) => {
    const v = window.feed.lastVerdict();
    return v !== null && JSON.stringify(v) !== JSON.stringify(b);
  }, before);
  // The verdict's state is set with the verdict itself.
  return { verdict: await page.evaluate(() => window.feed.lastVerdict()), text: await page.textContent("#verdict") };
}

// ------------------------------------------------------------------------------------------ setup

before(async () => {
  for (const [what, file] of [["volna", VOLNA], ["the interop venv's python", PYTHON], ["Chromium", CHROMIUM]]) {
    if (!fs.existsSync(file)) throw new Error(`${what} not found at ${file} (tests/e2e/run.sh builds volna; scripts/install-test-deps.sh installs the rest)`);
  }
  hookPort = await freePort();
  const serveArgs = [
    "serve",
    "--config", path.join(EXAMPLE, "volna.toml"),
    "--http-addr", "127.0.0.1:0",
    "--tcp-addr", "127.0.0.1:0",
    "--api-key", API_KEY,
    "--rpc-hook-url", `http://127.0.0.1:${hookPort}/rpc`,
    "--log", "warn",
  ];

  // Optional: a redis-server of our own, so that the Redis emitter part can run.
  const haveRedis = process.env.PRICE_FEED_REDIS !== "0" &&
    spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0 &&
    fs.existsSync(path.join(EMITTER_MODULES, "node_modules/@socket.io/redis-emitter"));
  if (haveRedis) {
    const port = await freePort();
    redis = new Proc("redis-server", "redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    try {
      await redis.waitFor(/Ready to accept connections/, "saying it is ready");
      redisUrl = `redis://127.0.0.1:${port}`;
      serveArgs.push("--redis", redisUrl, "--redis-prefix", `price-feed-${process.pid}`);
    } catch (e) {
      console.log(`# redis-server did not start, the emitter part is skipped: ${e.message.split("\n")[0]}`);
      await redis.stop();
    }
  }

  volna = new Proc("volna", VOLNA, serveArgs);
  const banner = await volna.waitFor(/ serving: /, "with its banner");
  HTTP = "http://" + banner.match(/http:\/\/([^ ,]+)/)[1];
  if (redisUrl) {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const health = await request("GET", `${HTTP}/health`).catch(() => null);
      if (health && /"redis":"up"/.test(health.body)) break;
      if (Date.now() > deadline) throw new Error(`volna did not join redis within ${WAIT_MS} ms\n${volna.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  browser = await launchChromium();
});

after(async () => {
  if (pageA) {
    fs.mkdirSync(OUT, { recursive: true });
    await pageA.screenshot({ path: path.join(OUT, "price-feed.png") }).catch(() => {});
  }
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  for (const p of procs.reverse()) await p.stop().catch(() => {});
});

// ------------------------------------------------------------------------------------------ tests

test("volna serves the example's page under /app/", async () => {
  for (const [p, type] of [
    ["/app/", "text/html"],
    ["/app/feed.js", "text/javascript"],
    ["/app/style.css", "text/css"],
  ]) {
    const res = await request("GET", HTTP + p);
    assert.equal(res.status, 200, p);
    assert.ok(res.headers["content-type"].startsWith(type), `${p}: ${res.headers["content-type"]}`);
    assert.ok(res.body.length > 500, p);
  }
  const info = await api("info", {});
  assert.equal(info.result.nodes.length >= 1, true, JSON.stringify(info));
});

test("the page's table shows live prices that change", { timeout: 60000 }, async () => {
  pageA = await openFeed("page A");
  // The rooms exist now (the page is in them): the ticks the backend publishes are kept in their history.
  backend = new Proc("backend.py", PYTHON, [
    path.join(EXAMPLE, "backend.py"),
    "--api", `${HTTP}/api`,
    "--api-key", API_KEY,
    "--hook-addr", `127.0.0.1:${hookPort}`,
    "--rate", String(TICK_RATE),
    "--duration", String(PUBLISH_SECONDS),
    "--linger", "300",
    "--headline-every", "2",
    "--seed", "42",
  ]);
  await backend.waitFor(/^rpc hook listening on /, "about its hook");
  await backend.waitFor(/^publishing: first tick/, "about its first tick");

  await pageA.waitForFunction((syms) => syms.every((s) => window.feed.price(s) !== null), SYMBOLS);
  const first = await pageA.evaluate((syms) => Object.fromEntries(syms.map((s) => [s, document.getElementById(`row-${s}`).dataset.price])), SYMBOLS);
  // Every row changes: the DOM's price, not only the page's state.
  await pageA.waitForFunction(
    (f) => Object.entries(f).every(([s, p]) => document.getElementById(`row-${s}`).dataset.price !== p),
    first,
  );
  for (const sym of SYMBOLS) {
    const row = pageA.locator(`#row-${sym}`);
    const text = await row.locator(".price").textContent();
    assert.match(text, /^\d{1,3}(,\d{3})*\.\d{2,3}$/, `${sym} price cell: ${text}`);
    assert.equal(Number(text.replace(/,/g, "")), await pageA.evaluate((s) => window.feed.price(s), sym), sym);
    assert.match(await row.locator(".change").textContent(), /\((\+|−)?\d+\.\d\d%\)$/, `${sym} change`);
  }
  assert.ok((await pageA.evaluate(() => window.feed.ticks())) >= SYMBOLS.length * 2);
});

test("a python-socketio client receives the same ticks, cannot publish, and can order", { timeout: 60000 }, async () => {
  const py = new Proc("socketio_client.py", PYTHON, [
    path.join(EXAMPLE, "socketio_client.py"),
    "--url", HTTP,
    "--seconds", "2",
    "--try-publish",
    "--order", "ETH:sell:2",
  ]);
  const { code } = await py.finished(WAIT_MS + 20000);
  assert.equal(code, 0, py.output());
  const ticks = py.lines.filter((l) => /^tick prices\.[A-Z]+ \d/.test(l));
  assert.ok(ticks.length >= 10, `only ${ticks.length} ticks in 2 s\n${py.output()}`);
  for (const sym of SYMBOLS) assert.ok(ticks.some((l) => l.startsWith(`tick prices.${sym} `)), `no ${sym} tick\n${py.output()}`);
  // The same feed: the last BTC price the Socket.IO client saw is one the page showed too.
  const lastBtc = Number(ticks.filter((l) => l.startsWith("tick prices.BTC ")).pop().split(" ")[2]);
  assert.ok((await pageA.evaluate(() => window.feed.points("BTC"))).includes(lastBtc), `BTC ${lastBtc} not on the page`);
  assert.equal(py.lines.filter((l) => / refused: publish-forbidden: /.test(l)).length, 2, py.output());
  assert.ok(py.lines.some((l) => /^order accepted: ord-\d+ sell 2(\.0)? ETH at /.test(l)), py.output());
});

test("a page opened after the last tick fills its table from the history at once", { timeout: 60000 }, async () => {
  await backend.waitFor(/^publishing done: /, "saying publishing is over", (PUBLISH_SECONDS + 15) * 1000);
  const pageB = await openFeed("page B");
  const [a, b] = [await prices(pageA), await prices(pageB)];
  assert.deepEqual(b, a, "page B shows page A's last prices");
  assert.equal(await pageB.evaluate(() => window.feed.ticks()), 0, "no live tick after publishing ended");
  assert.ok((await pageB.evaluate(() => window.feed.historyTicks())) >= SYMBOLS.length * 10);
  assert.ok((await pageB.evaluate(() => window.feed.points("BTC").length)) >= 10, "a sparkline from the history");
  assert.ok((await pageB.evaluate(() => window.feed.headlines().length)) >= 1, "headlines from the history");
  for (const sym of SYMBOLS) assert.notEqual(await pageB.locator(`#row-${sym} .price`).textContent(), "—");
  // And that is the room's history as the server API reads it.
  const hist = await api("history", { channel: "prices.BTC", limit: 1, reverse: true });
  assert.equal(hist.result.publications[0].data.price, a.BTC);
});

test("the backend accepts a valid order and refuses invalid ones with its reason", { timeout: 60000 }, async () => {
  const ok = await sendOrder(pageA, { symbol: "BTC", side: "buy", qty: 0.5, price: "last" });
  assert.equal(ok.verdict.ok, true, JSON.stringify(ok.verdict));
  assert.equal(ok.verdict.data.accepted, true);
  assert.match(ok.verdict.data.order_id, /^ord-\d{6}$/);
  assert.equal(ok.verdict.data.price, (await prices(pageA)).BTC);
  assert.ok(ok.text.includes(ok.verdict.data.order_id), ok.text);
  await pageA.locator('#verdict[data-state="accepted"]').waitFor();

  const zero = await sendOrder(pageA, { symbol: "BTC", side: "buy", qty: 0, price: "last" });
  assert.equal(zero.verdict.ok, false);
  assert.equal(zero.verdict.code, "refused");
  assert.equal(zero.verdict.message, "quantity must be a positive number");
  assert.equal(zero.text, "Refused: quantity must be a positive number");
  await pageA.locator('#verdict[data-state="refused"]').waitFor();

  const last = (await prices(pageA)).ETH;
  const far = await sendOrder(pageA, { symbol: "ETH", side: "sell", qty: 1, price: Math.round(last * 0.5) });
  assert.equal(far.verdict.ok, false);
  assert.equal(far.verdict.code, "refused");
  assert.match(far.verdict.message, /is more than 5% away from the last ETH price/);
  assert.ok(far.text.includes("more than 5% away"), far.text);
  await backend.waitFor(/^order refused \(1008\)/, "about the refused price");
  assert.equal(await pageA.locator("#verdicts li").count(), 3);
});

test("a client cannot publish into a price room: publish-forbidden", { timeout: 60000 }, async () => {
  const before = await pageA.evaluate(() => [window.feed.ticks(), window.feed.price("BTC")]);
  const answers = await pageA.evaluate(async (wait) => {
    const ws = new WebSocket(`ws://${location.host}/ws?name=mallory`);
    const frames = [];
    const next = (id) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no answer ${id}`)), wait);
        const check = () => {
          const f = frames.find((x) => x.id === id);
          if (f) return clearTimeout(t), resolve(f);
          setTimeout(check, 20);
        };
        check();
      });
    await new Promise((resolve, reject) => ((ws.onopen = resolve), (ws.onerror = () => reject(new Error("ws error")))));
    ws.onmessage = (e) => frames.push(JSON.parse(e.data));
    ws.send(JSON.stringify({ op: "join", room: "prices.BTC", id: 1 }));
    ws.send(JSON.stringify({ op: "message", room: "prices.BTC", data: "buy now!", id: 2 }));
    ws.send(JSON.stringify({ op: "emit", event: "tick", room: "prices.BTC", data: { symbol: "BTC", price: 1 }, id: 3 }));
    const out = [await next(1), await next(2), await next(3)];
    ws.close();
    return out;
  }, WAIT_MS);
  assert.equal(answers[0].ok, true, JSON.stringify(answers[0]));
  for (const a of answers.slice(1)) {
    assert.equal(a.ok, false, JSON.stringify(a));
    assert.equal(a.code, "publish-forbidden", JSON.stringify(a));
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await pageA.evaluate(() => [window.feed.ticks(), window.feed.price("BTC")]), before);
  const hist = await api("history", { channel: "prices.BTC", limit: 50 });
  assert.ok(hist.result.publications.length > 0);
  for (const p of hist.result.publications) {
    assert.equal(p.tags.from, "server");
    assert.equal(p.tags.event, "tick");
  }
});

test("a headline through Node's Redis emitter reaches the page, as text", { timeout: 60000 }, async (t) => {
  if (!redisUrl) return t.skip("no redis-server or no tests/cluster-interop/node_modules");
  const text = `E2E <img src=x onerror="window.pwned=1"> <b>headline</b> ${process.pid}`;
  const emit = new Proc("emit_headline.mjs", process.execPath, [
    path.join(EXAMPLE, "emit_headline.mjs"),
    "--redis", redisUrl,
    "--prefix", `price-feed-${process.pid}`,
    text,
  ]);
  const { code } = await emit.finished(WAIT_MS);
  assert.equal(code, 0, emit.output());
  await pageA.waitForFunction((t) => window.feed.headlines()[0] === t, text);
  assert.equal(await pageA.locator("#news li .headline").first().textContent(), text);
  assert.equal(await pageA.locator("#news img, #news b").count(), 0, "the headline is not HTML");
  assert.equal(await pageA.evaluate(() => window.pwned), undefined);
});

test("the backend stops cleanly on SIGTERM, and the pages had no errors", { timeout: 30000 }, async () => {
  backend.child.kill("SIGTERM");
  const { code, signal } = await backend.finished(5000);
  assert.equal(signal, null, backend.output());
  assert.equal(code, 0, backend.output());
  assert.ok(backend.lines.includes("backend stopped"), backend.output());
  assert.deepEqual(pageErrors, []);
  assert.ok(volna.running, volna.output());
});
