// End-to-end test of volna's chat page (GET /) in a real headless browser: Debian's Chromium driven by
// playwright-core. Two desktop pages and a TCP line client meet in one room, see each other's presence and
// messages; one page shares an image and the other sees its thumbnail; a phone-sized page must stay usable;
// a page whose connection drops reconnects and catches up. Run by tests/e2e/run.sh (which starts volna and
// sets VOLNA_HTTP and VOLNA_TCP); screenshots go to tests/e2e/out/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import net from "node:net";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { launchChromium, openPage, httpGet } from "./browser.mjs";

const HTTP = process.env.VOLNA_HTTP || "http://127.0.0.1:3000";
const TCP = process.env.VOLNA_TCP || "127.0.0.1:7000";
const WAIT_MS = Number(process.env.E2E_WAIT_MS || 10000);
const OUT = path.join(path.dirname(fileURLToPath(import.meta.url)), "out");
const ROOM = "general";
const IMAGE_NAME = "sunset.png";

let browser;
const contexts = [];
const pageErrors = [];
let alice, bob, carol; // two browser pages and the TCP client

// ------------------------------------------------------------------------------------------ helpers

/** A PNG built by hand (zlib + CRC-32): a small sunset over the sea, `w`×`h` RGB. */
function sunsetPng(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * Math.min(1, Math.max(0, t))));
  const raw = Buffer.alloc((w * 3 + 1) * h);
  const horizon = Math.round(h * 0.62);
  const sun = { x: w * 0.62, y: horizon - h * 0.02, r: h * 0.2 };
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < w; x++) {
      let px;
      if (y < horizon) {
        px = mix([52, 38, 110], [255, 140, 90], y / horizon);
        const d = Math.hypot(x - sun.x, y - sun.y);
        if (d < sun.r) px = mix([255, 236, 170], [255, 196, 92], d / sun.r);
        else if (d < sun.r * 1.8) px = mix(px, [255, 190, 120], 0.35 * (1 - (d - sun.r) / (sun.r * 0.8)));
      } else {
        const t = (y - horizon) / (h - horizon);
        px = mix([40, 70, 150], [18, 32, 84], t);
        const wave = Math.sin(x / (6 + t * 10) + y * 0.9) > 0.82 - t * 0.2;
        if (wave) px = mix(px, [255, 170, 120], 0.45 * (1 - t));
      }
      raw.set(px, row + 1 + x * 3);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A TCP line-protocol client that records every line and can wait for one. */
class LineClient {
  constructor(sock) {
    this.sock = sock;
    this.lines = [];
    this.waiters = [];
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, "");
        buf = buf.slice(i + 1);
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => !(w.pred(line) && (w.resolve(line), true)));
      }
    });
  }
  static connect(addr) {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ host, port }, () => resolve(new LineClient(sock)));
      sock.once("error", reject);
    });
  }
  send(line) {
    this.sock.write(line + "\n");
  }
  /** Resolves with the first line (already received or coming) that `pred` accepts. */
  waitFor(pred, what) {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`TCP client: no line ${what} within ${WAIT_MS} ms; got:\n  ${this.lines.join("\n  ")}`));
      }, WAIT_MS);
      const w = { pred, resolve: (line) => { clearTimeout(timer); resolve(line); } };
      this.waiters.push(w);
    });
  }
  close() {
    this.sock.destroy();
  }
}

const get = (url) => httpGet(url, WAIT_MS);

const newPage = (label, options = {}) =>
  openPage(browser, contexts, pageErrors, label, WAIT_MS, options);

/** Opens the page, answers the name dialog, and waits until the first room (lobby) is joined. */
async function signIn(page, name, screenshot) {
  await page.goto(HTTP + "/");
  await page.locator("#name-input").waitFor({ state: "visible" });
  await page.fill("#name-input", name);
  if (screenshot) await shot(page, screenshot);
  await page.press("#name-input", "Enter");
  await page.locator("#welcome").waitFor({ state: "hidden" });
  await page.waitForFunction((n) => document.getElementById("me-name").textContent === n, name);
  await page.locator('#conn[data-state="online"]').waitFor();
  await page.locator("#room-title", { hasText: "lobby" }).waitFor();
}

async function joinRoom(page, room) {
  await page.fill("#join-input", room);
  await page.press("#join-input", "Enter");
  await page.locator("#room-title", { hasText: room }).waitFor();
  // Joined once the composer is enabled for the room.
  await page.locator("#send:not([disabled])").waitFor({ state: "attached" });
  await page.waitForFunction((r) => document.getElementById("input").placeholder === `Message #${r}`, room);
}

async function say(page, text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");
  await messageText(page, text).waitFor();
}

const messageText = (page, text) => page.locator("#messages .msg-body", { hasText: text }).first();
const memberNamed = (page, name) => page.locator("#members .member-name", { hasText: new RegExp(`^${name}$`) });

async function shot(page, name) {
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, name) });
}

// ------------------------------------------------------------------------------------------ setup

before(async () => {
  // Playwright gives the browser a fresh temporary profile (its own --user-data-dir, deleted on close; it
  // refuses one in args), so no state leaks between runs. Contexts are separate, like two browsers.
  browser = await launchChromium();
});

after(async () => {
  if (carol) carol.close();
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
});

// ------------------------------------------------------------------------------------------ tests

test("the page and its assets are served with their content types", async () => {
  for (const [p, type] of [
    ["/", "text/html"],
    ["/app.js", "text/javascript"],
    ["/style.css", "text/css"],
    ["/favicon.svg", "image/svg+xml"],
  ]) {
    const res = await get(HTTP + p);
    assert.equal(res.status, 200, p);
    assert.ok(res.headers["content-type"].startsWith(type), `${p}: ${res.headers["content-type"]}`);
    assert.equal(res.headers["cache-control"], "no-cache", p);
    assert.ok(res.body.length > 100, p);
  }
});

test("two browser pages join one room and see each other's presence and messages", async () => {
  alice = await newPage("alice");
  bob = await newPage("bob", { colorScheme: "dark" });
  await signIn(alice, "alice", "name-dialog.png");
  await signIn(bob, "bob");
  await joinRoom(alice, ROOM);
  await joinRoom(bob, ROOM);

  // Presence: alice is told bob joined (notice and member list); bob's list has alice from the join reply.
  await alice.locator("#messages .notice .who.join", { hasText: "bob" }).waitFor();
  await memberNamed(alice, "bob").waitFor();
  await memberNamed(bob, "alice").waitFor();
  await memberNamed(bob, "bob").waitFor();
  // The room list shows the room with its two members.
  await alice.locator('#all-rooms button[data-room="general"] .room-meta', { hasText: "2" }).waitFor();

  await say(alice, "Morning! Is the release still on for today?");
  await messageText(bob, "Is the release still on for today?").waitFor();
  await say(bob, "Yes, the build is green. Shipping at 3 pm.");
  await messageText(alice, "Shipping at 3 pm").waitFor();
  // Grouping: a second message right after shows without repeating the name.
  await say(bob, "I'll post the changelog here.");
  await bob.locator("#messages .msg.cont .msg-body", { hasText: "changelog" }).waitFor();

  // Switching rooms, unread counts, and safe rendering: markup arrives as text, never as HTML.
  await alice.locator('#joined-rooms button[data-room="lobby"]').click();
  await alice.locator("#room-title", { hasText: "lobby" }).waitFor();
  await say(alice, "<b>not bold</b> & <img src=x onerror=alert(1)>");
  const lobbyBadge = bob.locator('#joined-rooms button[data-room="lobby"] .badge');
  await lobbyBadge.filter({ hasText: /^1$/ }).waitFor();
  await bob.locator('#joined-rooms button[data-room="lobby"]').click();
  await messageText(bob, "<b>not bold</b> & <img src=x onerror=alert(1)>").waitFor();
  assert.equal(await bob.locator("#messages .msg-body b, #messages .msg-body img").count(), 0);
  assert.equal(await lobbyBadge.count(), 0);
  for (const page of [alice, bob]) {
    await page.locator(`#joined-rooms button[data-room="${ROOM}"]`).click();
    await page.locator("#room-title", { hasText: ROOM }).waitFor();
  }
});

test("a TCP client in the room sees the browsers' messages and the browsers see its", async () => {
  carol = await LineClient.connect(TCP);
  await carol.waitFor((l) => l.startsWith("welcome "), "welcome");
  carol.send("/nick carol");
  await carol.waitFor((l) => l === "ok nick carol", "ok nick");
  carol.send(`/join ${ROOM}`);
  await carol.waitFor((l) => l.startsWith(`ok join ${ROOM} `), "ok join");

  for (const page of [alice, bob]) {
    await memberNamed(page, "carol").waitFor();
    await page.locator("#messages .notice .who.join", { hasText: "carol" }).waitFor();
  }
  await say(alice, "Welcome carol, you are on the TCP side.");
  await carol.waitFor(
    (l) => /^msg general \d+ \S+ alice: Welcome carol, you are on the TCP side\.$/.test(l),
    "with alice's message",
  );
  carol.send("hi from nc — typing in a terminal, naïve café ✓");
  for (const page of [alice, bob]) {
    await messageText(page, "hi from nc — typing in a terminal, naïve café ✓").waitFor();
  }
  const from = await alice.locator("#messages .msg", { hasText: "hi from nc" }).getAttribute("data-from");
  assert.equal(from, "carol");
});

test("JSON from other clients is shown as compact code, attachments are noted", async () => {
  // A bot on a plain /ws connection (opened from bob's page) sends a JSON object with one attachment.
  await bob.evaluate(
    ({ room }) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/ws?name=ci-bot`);
        ws.onerror = reject;
        ws.onmessage = (ev) => {
          if (typeof ev.data !== "string") return; // its own message's attachment
          const m = JSON.parse(ev.data);
          if (m.type === "welcome") ws.send(JSON.stringify({ op: "join", room, id: 1 }));
          if (m.type === "reply" && m.id === 1) {
            ws.send(JSON.stringify({
              op: "message", room, id: 2, attachments: 1,
              data: { build: 412, status: "passed", log: { _placeholder: true, num: 0 } },
            }));
            ws.send(new Uint8Array(2048));
          }
          if (m.type === "reply" && m.id === 2) { ws.close(); resolve(); }
          if (m.type === "error") reject(new Error(m.message));
        };
      }),
    { room: ROOM },
  );
  const code = alice.locator("#messages .msg-body code.json", { hasText: '"build":412' }).first();
  await code.waitFor();
  assert.equal(await code.textContent(), '{"build":412,"status":"passed","log":"[binary #0]"}');
  await alice.locator("#messages .chip", { hasText: "1 binary attachment, 2.0 KB" }).waitFor();
  await carol.waitFor((l) => l.includes('ci-bot: {"build":412') && l.includes("[+1 binary attachment"), "with the bot's JSON");
  await alice.locator("#messages .notice .who.leave", { hasText: "ci-bot" }).waitFor();
});

test("a phone-sized page is usable: composer visible, sidebar as a drawer", async () => {
  const phone = await newPage("dave", {
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  await signIn(phone, "dave");
  await joinRoom(phone, ROOM);
  await messageText(phone, "Welcome carol").waitFor();

  const vp = phone.viewportSize();
  for (const sel of ["#input", "#send", "#attach", "#drawer-open"]) {
    const box = await phone.locator(sel).boundingBox();
    assert.ok(box, `${sel} is laid out`);
    assert.ok(box.y >= 0 && box.y + box.height <= vp.height && box.x >= 0 && box.x + box.width <= vp.width,
      `${sel} inside the 390x844 viewport: ${JSON.stringify(box)}`);
  }
  // The sidebar is off-screen until the drawer is opened.
  const closed = await phone.locator("#sidebar").boundingBox();
  assert.ok(closed.x + closed.width <= 1, `sidebar hidden: ${JSON.stringify(closed)}`);
  const pageWidth = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(pageWidth <= vp.width, `no horizontal scrolling (${pageWidth}px)`);

  await say(phone, "On my phone, looks good here too.");
  await messageText(alice, "On my phone").waitFor();
  await shot(phone, "phone.png");

  await phone.locator("#drawer-open").tap();
  await phone.waitForFunction(() => {
    const r = document.getElementById("sidebar").getBoundingClientRect();
    return r.x >= 0 && r.width > 200;
  });
  await memberNamed(phone, "carol").waitFor();
  await phone.waitForTimeout(300); // the slide-in transition
  await shot(phone, "phone-drawer.png");
  await phone.locator("#scrim").tap({ position: { x: 370, y: 400 } });
  await phone.waitForFunction(() => document.getElementById("sidebar").getBoundingClientRect().right <= 1);
});

test("one page shares an image, the other sees its thumbnail and TCP gets a notice", async () => {
  const png = sunsetPng(320, 200);
  await alice.setInputFiles("#file", { name: IMAGE_NAME, mimeType: "image/png", buffer: png });
  const thumb = bob.locator(`#messages .image-card:has(.img-name:text-is("${IMAGE_NAME}")) img.thumb`).first();
  await thumb.waitFor();
  await bob.waitForFunction(
    (el) => el.complete && el.naturalWidth > 0,
    await thumb.elementHandle(),
  );
  const meta = await bob.locator("#messages .image-card .img-meta").first().textContent();
  assert.match(meta, /^320×200 · /);
  // The sender sees it as well.
  await alice.locator(`#messages .image-card img.thumb`).first().waitFor();
  await carol.waitFor((l) => l.includes("[image") && l.includes(IMAGE_NAME), `about ${IMAGE_NAME}`);

  // Refused images: the server's reason is shown to the sender; too large is caught before sending.
  await alice.setInputFiles("#file", { name: "broken.png", mimeType: "image/png", buffer: png.subarray(0, 60) });
  await alice.locator(".toast.error", { hasText: "broken.png was not shared:" }).waitFor();
  const big = Buffer.alloc(9 * 1024 * 1024, 7);
  await alice.setInputFiles("#file", { name: "huge.png", mimeType: "image/png", buffer: big });
  await alice.locator(".toast.error", { hasText: "huge.png is 9.0 MB; images can be at most 8.0 MB" }).waitFor();
  assert.equal(await bob.locator('#messages .img-name:text-is("broken.png")').count(), 0);
  await shot(alice, "image-errors.png");
  while ((await alice.locator(".toast").count()) > 0) await alice.locator(".toast").first().click(); // dismissed by a click
  assert.equal(await alice.locator(".toast").count(), 0);
  await say(alice, "Golden hour from the office roof.");
});

test("unread counts for the rooms not on screen; screenshots", async () => {
  // carol (TCP) posts in the lobby: alice and bob look at #general, so the lobby gets an unread badge.
  carol.send("/join lobby");
  await carol.waitFor((l) => l.startsWith("ok join lobby "), "ok join lobby");
  carol.send("/msg lobby anyone up for lunch at noon?");
  carol.send(`/join ${ROOM}`);
  for (const page of [alice, bob]) {
    await page.locator('#joined-rooms button[data-room="lobby"] .badge', { hasText: /^1$/ }).waitFor();
    assert.equal(await page.locator('#joined-rooms button[data-room="general"] .badge').count(), 0);
  }
  await say(bob, "Beautiful! Is that from today?");
  await alice.waitForTimeout(300);
  await alice.evaluate(() => { const m = document.getElementById("messages"); m.scrollTop = m.scrollHeight; });
  await bob.evaluate(() => { const m = document.getElementById("messages"); m.scrollTop = m.scrollHeight; });
  for (const page of [alice, bob]) await page.mouse.move(640, 30); // no hover highlight in the pictures
  await shot(alice, "desktop.png");
  await shot(bob, "desktop-dark.png");
});

test("a page whose connection drops reconnects, re-joins its rooms and catches up", async () => {
  const erin = await newPage("erin");
  let route;
  await erin.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    route = { page: ws, server: ws.connectToServer() };
  });
  await signIn(erin, "erin");
  await joinRoom(erin, ROOM);
  await memberNamed(erin, "alice").waitFor();
  // The history on joining carries attachments too: the image shared earlier shows its thumbnail.
  const thumb = erin.locator("#messages .image-card img.thumb").first();
  await thumb.waitFor();
  await erin.waitForFunction((el) => el.complete && el.naturalWidth > 0, await thumb.elementHandle());
  await erin.locator("#messages .chip", { hasText: "1 binary attachment, 2.0 KB" }).waitFor();

  // Drop the connection as a network failure would.
  await route.server.close({ code: 4000, reason: "test drop" }); // browsers may only send 1000 or 3000-4999
  await route.page.close({ code: 1006 }).catch(() => {});
  await erin.locator('#conn[data-state="reconnecting"]').waitFor();
  assert.match(await erin.locator("#conn-text").textContent(), /^reconnecting in \d+s$/);
  await shot(erin, "reconnecting.png");
  await alice.locator("#messages .notice .who.leave b", { hasText: /^erin$/ }).waitFor();
  await say(alice, "Did everyone get the release notes?");

  // Back online: the room is resumed from where the log stopped (join with since) and the message sent
  // meanwhile arrives first, once.
  await erin.locator('#conn[data-state="online"]').waitFor({ timeout: 15000 });
  await messageText(erin, "Did everyone get the release notes?").waitFor();
  await memberNamed(erin, "alice").waitFor();
  assert.equal(await erin.locator("#messages .msg-body", { hasText: "Did everyone get the release notes?" }).count(), 1);
  await alice.locator("#messages .notice .who.join b", { hasText: /^erin$/ }).last().waitFor();
  await say(erin, "Back online, caught up.");
  await messageText(bob, "Back online, caught up.").waitFor();
  await erin.context().close();
});

test("no script errors in any page", () => {
  assert.deepEqual(pageErrors, []);
});
