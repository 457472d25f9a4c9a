// The headless Chromium every browser test drives: Debian's /usr/bin/chromium (or $CHROMIUM) through
// playwright-core, with a fresh temporary profile per launch (playwright makes and deletes it) and the
// switches that keep it quiet and off the network.
import http from "node:http";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}


/**
 * A page in a context of its own (as a separate browser), `contexts` keeping the context for closing;
 * uncaught script errors and console errors go to `errors`, labelled. Chromium's own note when a send races
 * a connection a test cut (the page saw readyState OPEN) is the browser's, not a script error.
 */
export async function openPage(browser, contexts, errors, label, waitMs, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(waitMs);
  page.on("pageerror", (e) => errors.push(`${label}: ${e.message}`));
  page.on("console", (m) => {
    const racedClose = /WebSocket is already in CLOSING or CLOSED state/.test(m.text());
    if (m.type() === "error" && !racedClose) errors.push(`${label} console: ${m.text()}`);
  });
  return page;
}

/** GET without keep-alive, so no socket outlives the test. */
/** Calls `fn` with every line a child process writes to `stream` (stdout or stderr). */
export function eachLine(stream, fn) {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      fn(line);
    }
  });
}

export function httpGet(url, timeoutMs) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, timeout: timeoutMs }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on("error", reject)
      .on("timeout", function () { this.destroy(new Error(`GET ${url} timed out`)); });
  });
}
