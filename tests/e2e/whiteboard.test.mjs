// End-to-end test of the collaborative whiteboard example (examples/whiteboard), served by volna itself
// at /app/ (static_dir in examples/whiteboard/volna.toml), in headless Chromium driven by playwright-core.
// Page A draws with the mouse; page B, opened later, redraws A's strokes from the room's history, lists A,
// sees A's cursor move; B draws and A sees it; A clears and everyone's board is empty, also a page opened
// after the clear. Then a page alone on its board loses its connection, draws offline and reconnects; the
// board survives (volna keeps a room with a history_ttl after its last member left; were it dropped, the
// page would put it back), so a page on a phone that opens it later sees both strokes and draws with a finger. Run by tests/e2e/run.sh, which starts volna with the
// example's config and sets VOLNA_HTTP; the screenshots go to tests/e2e/out/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium, openPage, httpGet } from "./browser.mjs";

const HTTP = process.env.VOLNA_HTTP || "http://127.0.0.1:3000";
const WAIT_MS = Number(process.env.E2E_WAIT_MS || 10000);
const OUT = path.join(path.dirname(fileURLToPath(import.meta.url)), "out");
// Boards of their own, so that a run against a server already running starts from empty boards.
const RUN = Date.now().toString(36);
const BOARD = `e2e-${RUN}`;
const LONE_BOARD = `e2e-lone-${RUN}`;
const BOARD_W = 1600; // the page's board units
const BOARD_H = 1000;
const RED = [0xe1, 0x1d, 0x48]; // the page's red swatch, #e11d48

let browser;
const contexts = [];
const pageErrors = [];
let alice, bob;

// ------------------------------------------------------------------------------------------ helpers

const get = (url) => httpGet(url, WAIT_MS);

const newPage = (label, options = {}) =>
  openPage(browser, contexts, pageErrors, label, WAIT_MS, options);

/** Opens a board as `name` and waits until the page has joined it and redrawn it from the history. */
async function openBoard(page, board, name) {
  await page.goto(`${HTTP}/app/?board=${encodeURIComponent(board)}&name=${encodeURIComponent(name)}`);
  await page.waitForFunction(() => window.whiteboard && window.whiteboard.ready(), null, { timeout: WAIT_MS });
  assert.equal(await page.evaluate(() => window.whiteboard.me()), name);
  assert.equal(await page.locator("#status").getAttribute("data-state"), "online");
  assert.equal(await page.locator("#board-name").textContent(), `board:${board}`);
}

/** Waits until `fn(arg)` (run in the page) is true; on a timeout, says what it was waiting for. */
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (e) {
    const seen = await page
      .evaluate(() => window.whiteboard && {
        ready: window.whiteboard.ready(), strokes: window.whiteboard.strokes(),
        unconfirmed: window.whiteboard.unconfirmed(), peers: window.whiteboard.peers(),
        cursors: window.whiteboard.cursors(),
      })
      .catch(() => "(page gone)");
    throw new Error(`${what}: not within ${WAIT_MS} ms (page state ${JSON.stringify(seen)})\n${e.message}`);
  }
}

const strokesAre = (page, n) =>
  until(page, `${n} strokes on the board`, (n) => window.whiteboard.strokes() === n, n);
/** Every stroke this page drew has been confirmed by the server. */
const allSent = (page) => until(page, "our strokes confirmed", () => window.whiteboard.unconfirmed() === 0);
const peersAre = (page, names) =>
  until(page, `the people ${names}`, (names) => JSON.stringify(window.whiteboard.peers()) === JSON.stringify(names), names);

/** The canvas' box on the screen, and board units to screen pixels. */
async function board(page) {
  const box = await page.locator("#board").boundingBox();
  assert.ok(box && box.width > 300 && box.height > 200, `the board is laid out: ${JSON.stringify(box)}`);
  return {
    box,
    at: (x, y) => ({ x: box.x + (x / BOARD_W) * box.width, y: box.y + (y / BOARD_H) * box.height }),
  };
}

/** Draws a stroke with the mouse through `points` (board units). */
async function drawWithMouse(page, points) {
  const b = await board(page);
  const [first, ...rest] = points.map(([x, y]) => b.at(x, y));
  await page.mouse.move(first.x, first.y);
  await page.mouse.down();
  for (const p of rest) await page.mouse.move(p.x, p.y, { steps: 12 });
  await page.mouse.up();
}

/** How many pixels of the canvas are not transparent (the board's paper is CSS, strokes are the canvas). */
const inkPixels = (page) =>
  page.evaluate(() => {
    const c = document.getElementById("board");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });

/** The opaque colours of the canvas around board point (x, y), within `r` device pixels. */
const colorsAround = (page, x, y, r = 2) =>
  page.evaluate(({ x, y, r, W, H }) => {
    const c = document.getElementById("board");
    const cx = Math.round((x / W) * c.width);
    const cy = Math.round((y / H) * c.height);
    const d = c.getContext("2d").getImageData(cx - r, cy - r, 2 * r + 1, 2 * r + 1).data;
    const out = [];
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255) out.push([d[i], d[i + 1], d[i + 2]]);
    return out;
  }, { x, y, r, W: BOARD_W, H: BOARD_H });

const near = (a, b, tol = 24) => a.every((v, i) => Math.abs(v - b[i]) <= tol);
const personNamed = (page, name) => page.locator("#people-list .person .name", { hasText: new RegExp(`^${name}$`) });

async function shot(page, name) {
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, name) });
}

// ------------------------------------------------------------------------------------------ setup

before(async () => {
  // As in chat.test.mjs: a fresh temporary profile per launch, separate contexts like separate browsers.
  browser = await launchChromium();
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
});

// ------------------------------------------------------------------------------------------ tests

test("volna serves the example's page and assets under /app/", async () => {
  for (const [p, type] of [
    ["/app/", "text/html"],
    ["/app/index.html", "text/html"],
    ["/app/whiteboard.js", "text/javascript"],
    ["/app/style.css", "text/css"],
  ]) {
    const res = await get(HTTP + p);
    assert.equal(res.status, 200, p);
    assert.ok(res.headers["content-type"].startsWith(type), `${p}: ${res.headers["content-type"]}`);
    assert.ok(res.body.length > 500, p);
  }
  assert.equal((await get(HTTP + "/app/nothing-here.js")).status, 404);
});

test("A draws two strokes; B opens the board later and sees them (history) and A", async () => {
  alice = await newPage("alice");
  await openBoard(alice, BOARD, "alice");
  await peersAre(alice, ["alice"]);
  assert.equal(await alice.evaluate(() => window.whiteboard.strokes()), 0);
  assert.equal(await inkPixels(alice), 0, "a new board is blank");

  // Stroke 1: the default ink, a zigzag. Stroke 2: red and wide, a horizontal line.
  await drawWithMouse(alice, [[200, 200], [500, 420], [800, 200], [1100, 420]]);
  await alice.locator('.swatch[data-color="#e11d48"]').click();
  await alice.evaluate(() => {
    const w = document.getElementById("width");
    w.value = "14";
    w.dispatchEvent(new Event("input", { bubbles: true }));
  });
  await drawWithMouse(alice, [[300, 700], [1300, 700]]);
  await strokesAre(alice, 2);
  await allSent(alice);
  assert.ok((await inkPixels(alice)) > 1000, "A sees its own strokes");

  bob = await newPage("bob");
  await openBoard(bob, BOARD, "bob");
  await strokesAre(bob, 2);
  await peersAre(bob, ["alice", "bob"]);
  await personNamed(bob, "alice").waitFor();
  await personNamed(bob, "bob").waitFor();
  // A is told B came (a presence event).
  await peersAre(alice, ["alice", "bob"]);
  await personNamed(alice, "bob").waitFor();

  // What B sees: ink on the canvas, and A's red line where A drew it.
  const ink = await inkPixels(bob);
  assert.ok(ink > 1000, `B's canvas is not blank after A's strokes (${ink} pixels)`);
  const red = await colorsAround(bob, 800, 700);
  assert.ok(red.some((c) => near(c, RED)), `A's red line on B's canvas at (800, 700): ${JSON.stringify(red)}`);
  const paper = await colorsAround(bob, 800, 900);
  assert.equal(paper.length, 0, "no ink where nobody drew");
});

test("B sees A's cursor move, with A's name", async () => {
  const b = await board(alice);
  const from = b.at(600, 500);
  const to = b.at(1234, 321);
  await alice.mouse.move(from.x, from.y);
  await alice.mouse.move(to.x, to.y, { steps: 10 });
  await until(
    bob,
    "A's cursor near (1234, 321)",
    () => {
      const c = window.whiteboard.cursors().alice;
      return !!c && Math.abs(c.x - 1234) < 2 && Math.abs(c.y - 321) < 2;
    },
  );
  const label = bob.locator("#cursors .cursor .label", { hasText: /^alice$/ });
  await label.waitFor({ state: "visible" });
  // The cursor is drawn where A's mouse is, on B's (differently sized) board alike.
  const want = (await board(bob)).at(1234, 321);
  await until(
    bob,
    `A's cursor drawn at ${JSON.stringify(want)}`,
    (want) => {
      const label = [...document.querySelectorAll("#cursors .cursor .label")].find((l) => l.textContent === "alice");
      const r = label && label.parentElement.getBoundingClientRect();
      return !!r && Math.abs(r.x - want.x) < 2 && Math.abs(r.y - want.y) < 2;
    },
    want,
  );
  // A does not see a cursor of its own.
  assert.deepEqual(await alice.evaluate(() => window.whiteboard.cursors()), {});
});

test("B draws and A sees it", async () => {
  await bob.locator('.swatch[data-color="#2563eb"]').click();
  await drawWithMouse(bob, [[1400, 100], [1450, 400], [1350, 600], [1500, 900]]);
  await strokesAre(bob, 3);
  await strokesAre(alice, 3);
  await allSent(bob);
  const blue = await colorsAround(alice, 1450, 400);
  assert.ok(blue.some((c) => near(c, [0x25, 0x63, 0xeb])), `B's blue stroke on A's canvas: ${JSON.stringify(blue)}`);
  // Keep A's cursor on B's board for the picture.
  const b = await board(alice);
  const p = b.at(1000, 560);
  await alice.mouse.move(p.x, p.y, { steps: 4 });
  await until(bob, "A's cursor at (1000, 560)", () => {
    const c = window.whiteboard.cursors().alice;
    return !!c && Math.abs(c.x - 1000) < 2;
  });
  await bob.waitForTimeout(150); // the cursor's short glide
  await shot(bob, "whiteboard.png");
});

test("A clears the board: both boards are empty, and so is a page opened after the clear", async () => {
  await alice.locator("#clear:not([disabled])").click();
  await strokesAre(alice, 0);
  await strokesAre(bob, 0);
  assert.equal(await inkPixels(alice), 0, "A's canvas is blank");
  assert.equal(await inkPixels(bob), 0, "B's canvas is blank");

  const carol = await newPage("carol");
  await openBoard(carol, BOARD, "carol");
  await peersAre(carol, ["alice", "bob", "carol"]);
  await peersAre(alice, ["alice", "bob", "carol"]);
  assert.equal(await carol.evaluate(() => window.whiteboard.strokes()), 0, "the strokes before the clear are not redrawn");
  assert.equal(await inkPixels(carol), 0, "C's canvas is blank");
  await shot(carol, "whiteboard-cleared.png");

  // C leaves: the others' lists and cursors follow.
  await carol.context().close();
  await peersAre(alice, ["alice", "bob"]);
  await peersAre(bob, ["alice", "bob"]);
});

test("a page alone on its board loses its connection, draws offline, catches up; a phone sees the board and draws", async () => {
  const dave = await newPage("dave");
  let route;
  let offline = false; // while true, a new connection of the page is answered by nobody
  let unanswered = null;
  await dave.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    if (offline) unanswered = ws;
    else route = { page: ws, server: ws.connectToServer() };
  });
  await openBoard(dave, LONE_BOARD, "dave");
  await drawWithMouse(dave, [[200, 500], [700, 300]]);
  await strokesAre(dave, 1);
  await allSent(dave);

  // The connection drops as on a network failure. dave was the board's only member: the room stays (its
  // policy's history_ttl), and the page sends again only what the server never confirmed.
  const dropped = route;
  offline = true;
  await dropped.server.close({ code: 4000, reason: "test drop" });
  await dropped.page.close({ code: 1006 }).catch(() => {});
  await until(dave, "dave offline", () => !window.whiteboard.ready());
  // Drawn while offline: kept and sent once connected again.
  await drawWithMouse(dave, [[900, 300], [1400, 600]]);
  await strokesAre(dave, 2);
  assert.ok((await dave.evaluate(() => window.whiteboard.unconfirmed())) >= 1, "the offline stroke waits to be sent");
  assert.equal(await dave.locator("#status").getAttribute("data-state") === "online", false);

  // The network is back: a connection that got no answer is dropped, and the page tries again.
  offline = false;
  if (unanswered) await unanswered.close({ code: 1006 }).catch(() => {});
  await until(dave, "dave back online", () => window.whiteboard.ready()); // within 1-2 s of backoff
  assert.notEqual(route, dropped, "a new connection");
  await allSent(dave);
  assert.equal(await dave.evaluate(() => window.whiteboard.strokes()), 2);

  // A phone opens the board: both strokes, from the history the reconnected page put back.
  const erin = await newPage("erin", { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  await openBoard(erin, LONE_BOARD, "erin");
  await strokesAre(erin, 2);
  await peersAre(erin, ["dave", "erin"]);
  assert.ok((await inkPixels(erin)) > 200, "the phone's canvas shows the strokes");
  const vp = erin.viewportSize();
  const box = await erin.locator("#board").boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= vp.width, `the board fits the phone's width: ${JSON.stringify(box)}`);
  // A tap draws a dot (a stroke of one point) that the other page sees.
  const b = await board(erin);
  const p = b.at(800, 800);
  await erin.touchscreen.tap(p.x, p.y);
  await strokesAre(erin, 3);
  await strokesAre(dave, 3);
  await shot(erin, "whiteboard-phone.png");
});

test("no script errors in any page", () => {
  assert.deepEqual(pageErrors, []);
});
