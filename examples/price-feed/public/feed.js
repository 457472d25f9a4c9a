// The live price feed page: one plain browser WebSocket to volna's /ws endpoint (no libraries).
//
// - joins one room per symbol (prices.BTC, …), the `news` room and the `orders` room;
// - on each join reads the room's history, so the table shows the last price (and a sparkline of the
//   last ticks) at once, then applies the `tick` events as they come;
// - sends orders as the application's own event `order` to the room `orders`: volna hands them to the
//   backend's rpc hook and the backend's answer comes back as the reply (or an error with its reason).
//
// Everything that comes from the network is put on the page with textContent, never as HTML.
// For tests: window.feed = {price(sym), ticks(), lastVerdict(), …} (at the end).
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const SYMBOLS = (params.get("symbols") || "BTC,ETH,SOL,XAU")
    .split(",")
    .map((s) => s.trim().toUpperCase())
    .filter((s, i, all) => /^[A-Z0-9]{1,12}$/.test(s) && all.indexOf(s) === i);
  const NAME = /^[A-Za-z0-9_.-]{1,32}$/.test(params.get("name") || "") ? params.get("name") : "viewer";
  const PRICE_ROOM = "prices.";
  const NEWS_ROOM = "news";
  const ORDERS_ROOM = "orders";
  const HISTORY = 50; // ticks read per room on join (the room keeps 50)
  const SPARK_POINTS = 50;
  const NEWS_KEPT = 8;
  const VERDICTS_KEPT = 6;
  const REQUEST_TIMEOUT_MS = 10000;

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // ------------------------------------------------------------------------------------ state

  /** Per symbol: the last tick and the recent prices. */
  const quotes = new Map();
  /** Per room: whether its history has been applied; live ticks wait in `buffer` until then. */
  const rooms = new Map();
  let liveTicks = 0;
  let historyTicks = 0;
  let lastTickAt = null;
  let lastVerdict = null;
  const headlines = [];
  let ordersJoined = false;
  let priceTyped = false; // the user typed the order's price: stop following the market

  for (const sym of SYMBOLS) {
    quotes.set(sym, { price: null, open: null, decimals: 2, ts: null, offset: 0, points: [], row: null });
  }

  // ------------------------------------------------------------------------------------ the table

  const rowsBody = $("quote-rows");
  for (const sym of SYMBOLS) {
    const q = quotes.get(sym);
    const tr = el("tr");
    tr.id = `row-${sym}`;
    tr.dataset.symbol = sym;
    const canvas = el("canvas", "spark");
    canvas.width = 120;
    canvas.height = 28;
    canvas.setAttribute("aria-hidden", "true");
    const spark = el("td", "spark-col");
    spark.append(canvas);
    q.cells = {
      price: el("td", "num price", "—"),
      change: el("td", "num change", ""),
      updated: el("td", "num updated", ""),
      canvas,
    };
    tr.append(el("th", "sym", sym), q.cells.price, q.cells.change, spark, q.cells.updated);
    tr.querySelector("th").scope = "row";
    rowsBody.append(tr);
    q.row = tr;
  }

  const fmt = (n, d) => n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  const clock = (ms) => new Date(ms).toLocaleTimeString("en-GB", { hour12: false });

  function render(sym, direction) {
    const q = quotes.get(sym);
    if (q.price === null) return;
    q.row.dataset.price = String(q.price);
    q.cells.price.textContent = fmt(q.price, q.decimals);
    if (q.open) {
      const diff = q.price - q.open;
      const pct = (diff / q.open) * 100;
      const sign = diff > 0 ? "+" : diff < 0 ? "−" : "";
      q.cells.change.textContent = `${sign}${fmt(Math.abs(diff), q.decimals)} (${sign}${Math.abs(pct).toFixed(2)}%)`;
      q.cells.change.dataset.trend = diff > 0 ? "up" : diff < 0 ? "down" : "flat";
    }
    q.cells.updated.textContent = q.ts ? clock(q.ts) : "";
    if (direction) {
      q.cells.price.classList.remove("flash-up", "flash-down");
      void q.cells.price.offsetWidth; // restart the animation
      q.cells.price.classList.add(direction > 0 ? "flash-up" : "flash-down");
    }
    drawSpark(q);
  }

  function drawSpark(q) {
    const c = q.cells.canvas;
    const ratio = window.devicePixelRatio || 1;
    const w = c.clientWidth || 120;
    const h = c.clientHeight || 28;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pts = q.points;
    if (pts.length < 2) return;
    let lo = Math.min(...pts);
    let hi = Math.max(...pts);
    if (hi === lo) {
      hi += 1;
      lo -= 1;
    }
    const x = (i) => 2 + (i * (w - 4)) / (SPARK_POINTS - 1);
    const y = (v) => 2 + (h - 4) * (1 - (v - lo) / (hi - lo));
    const up = pts[pts.length - 1] >= pts[0];
    const style = getComputedStyle(document.documentElement);
    ctx.strokeStyle = style.getPropertyValue(up ? "--up" : "--down").trim() || (up ? "#1a9b5b" : "#d0453b");
    ctx.lineWidth = 1.5;
    ctx.lineJoin = "round";
    ctx.beginPath();
    const start = SPARK_POINTS - pts.length;
    pts.forEach((v, i) => (i ? ctx.lineTo(x(start + i), y(v)) : ctx.moveTo(x(start + i), y(v))));
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.beginPath();
    ctx.arc(x(SPARK_POINTS - 1), y(pts[pts.length - 1]), 2, 0, Math.PI * 2);
    ctx.fill();
  }

  function renderStats() {
    const parts = [`${liveTicks} live tick${liveTicks === 1 ? "" : "s"}`, `${historyTicks} from history`];
    if (lastTickAt) parts.push(`last at ${clock(lastTickAt)}`);
    $("feed-stats").textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------------------------------ ticks

  /** The payload of an event frame: `data` (published through the API or by a client), or the first
   *  of `args` (an event emitted by another server of a cluster, e.g. a Redis emitter). */
  const payload = (f) => ("data" in f ? f.data : Array.isArray(f.args) ? f.args[0] : undefined);

  /** Applies one tick frame of `sym`'s room; `live` false for ticks read from the history. */
  function applyTick(sym, f, live) {
    const q = quotes.get(sym);
    const t = payload(f);
    if (!q || !t || typeof t !== "object") return;
    const price = t.price;
    if (typeof price !== "number" || !Number.isFinite(price) || price <= 0) return;
    if (typeof f.offset === "number") {
      if (f.offset <= q.offset) return; // already applied (a tick both live and in the history)
      q.offset = f.offset;
    }
    const before = q.price;
    q.price = price;
    if (typeof t.open === "number" && t.open > 0) q.open = t.open;
    else if (q.open === null) q.open = price;
    if (Number.isInteger(t.decimals) && t.decimals >= 0 && t.decimals <= 8) q.decimals = t.decimals;
    q.ts = typeof f.ts === "number" ? f.ts : typeof t.ts === "number" ? t.ts : Date.now();
    q.points.push(price);
    if (q.points.length > SPARK_POINTS) q.points.splice(0, q.points.length - SPARK_POINTS);
    if (live) {
      liveTicks++;
      lastTickAt = q.ts;
    } else {
      historyTicks++;
    }
    render(sym, live && before !== null ? Math.sign(price - before) : 0);
    // The order's price follows the market until the user types one.
    if ($("order-symbol").value === sym && !priceTyped) usePrice();
  }

  function applyHeadline(f) {
    const h = payload(f);
    const text = h && typeof h === "object" ? h.text : h;
    if (typeof text !== "string" || !text) return;
    if (typeof f.offset === "number" && headlines.some((x) => x.offset === f.offset)) return;
    headlines.unshift({
      text: text.slice(0, 300),
      source: h && typeof h.source === "string" ? h.source.slice(0, 40) : "",
      ts: typeof f.ts === "number" ? f.ts : Date.now(),
      offset: typeof f.offset === "number" ? f.offset : null,
    });
    headlines.splice(NEWS_KEPT);
    const list = $("news");
    list.replaceChildren(
      ...headlines.map((x) => {
        const li = el("li");
        li.append(el("time", null, clock(x.ts)), el("span", "headline", x.text));
        if (x.source) li.append(el("span", "source", x.source));
        return li;
      }),
    );
  }

  function onEvent(f) {
    const room = typeof f.room === "string" ? f.room : "";
    const r = rooms.get(room);
    if (r && !r.ready) {
      r.buffer.push(f); // applied after the history, in order
      return;
    }
    if (f.event === "tick" && room.startsWith(PRICE_ROOM)) applyTick(room.slice(PRICE_ROOM.length), f, true);
    else if (f.event === "headline" && room === NEWS_ROOM) applyHeadline(f);
    renderStats();
  }

  // ------------------------------------------------------------------------------------ connection

  let ws = null;
  let nextId = 1;
  const pending = new Map();
  let retries = 0;
  let online = false;

  function setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text;
  }

  /** Sends one request; resolves with its reply or error frame (check `ok`). */
  function request(op, fields) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return reject(new Error("not connected"));
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`no answer to ${op} within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ op, id, ...fields }));
    });
  }

  function onFrame(f) {
    if (!f || typeof f !== "object") return;
    if ((f.type === "reply" || f.type === "error") && pending.has(f.id)) {
      const p = pending.get(f.id);
      pending.delete(f.id);
      clearTimeout(p.timer);
      p.resolve(f);
      return;
    }
    switch (f.type) {
      case "welcome":
        online = true;
        retries = 0;
        setConn("online", "live");
        subscribe().catch((e) => console.warn("subscribing failed:", e.message));
        break;
      case "event":
        onEvent(f);
        break;
      case "error":
        console.warn(`volna: ${f.code}: ${f.message}`);
        break;
    }
  }

  /** Joins a room and reads its history; live events that arrive meanwhile wait and follow it. */
  async function joinWithHistory(room, limit, apply) {
    rooms.set(room, { ready: false, buffer: [] });
    const joined = await request("join", { room });
    if (!joined.ok) throw new Error(`join ${room}: ${joined.code}: ${joined.message}`);
    const hist = await request("history", { room, limit });
    const r = rooms.get(room);
    r.ready = true;
    apply(hist.ok ? hist.messages : [], false);
    for (const f of r.buffer.splice(0)) onEvent(f);
  }

  async function subscribe() {
    const jobs = SYMBOLS.map((sym) =>
      joinWithHistory(PRICE_ROOM + sym, HISTORY, (messages) => {
        // Rebuilt from the history (it holds as many ticks as the sparkline shows).
        const q = quotes.get(sym);
        q.points = [];
        q.offset = 0;
        for (const m of messages) if (m.event === "tick") applyTick(sym, m, false);
      }),
    );
    jobs.push(
      joinWithHistory(NEWS_ROOM, NEWS_KEPT, (messages) => {
        for (const m of messages) if (m.event === "headline") applyHeadline(m);
      }),
    );
    jobs.push(
      request("join", { room: ORDERS_ROOM }).then((r) => {
        ordersJoined = r.ok;
        $("order-send").disabled = !r.ok;
        if (!r.ok) showVerdict({ ok: false, code: r.code, message: `cannot join ${ORDERS_ROOM}: ${r.message}` });
      }),
    );
    await Promise.all(jobs);
    renderStats();
    document.body.dataset.ready = "true";
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    setConn("connecting", "connecting…");
    ws = new WebSocket(`${scheme}://${location.host}/ws?name=${encodeURIComponent(NAME)}`);
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return; // this page asks for nothing binary
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      onFrame(f);
    };
    ws.onclose = (ev) => {
      online = false;
      ordersJoined = false;
      delete document.body.dataset.ready;
      $("order-send").disabled = true;
      for (const p of pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error("connection closed"));
      }
      pending.clear();
      rooms.clear();
      const delay = Math.min(10000, 500 * 2 ** retries++) * (0.75 + Math.random() * 0.5);
      setConn("offline", `offline${ev.reason ? ` (${ev.reason})` : ""}, retrying in ${Math.ceil(delay / 1000)} s`);
      setTimeout(connect, delay);
    };
  }

  // ------------------------------------------------------------------------------------ orders

  const symbolSelect = $("order-symbol");
  for (const sym of SYMBOLS) symbolSelect.append(el("option", null, sym));

  function usePrice() {
    const q = quotes.get(symbolSelect.value);
    if (q && q.price !== null) $("order-price").value = String(q.price);
  }
  const followMarket = () => {
    priceTyped = false;
    usePrice();
  };
  symbolSelect.addEventListener("change", followMarket);
  $("order-last").addEventListener("click", followMarket);
  $("order-price").addEventListener("input", () => (priceTyped = $("order-price").value !== ""));

  function showVerdict(v) {
    lastVerdict = v;
    const p = $("verdict");
    p.dataset.state = v.ok ? "accepted" : "refused";
    let text;
    if (v.ok) {
      const d = v.data || {};
      const q = quotes.get(d.symbol);
      const price = typeof d.price === "number" ? fmt(d.price, q ? q.decimals : 2) : String(d.price);
      text = `Accepted: ${d.order_id} — ${d.side} ${d.qty} ${d.symbol} at ${price}`;
    } else if (v.code === "hook-unavailable") {
      text = `The backend is unavailable: ${v.message}`;
    } else {
      text = `Refused: ${v.message}`;
    }
    p.textContent = text;
    const li = el("li", v.ok ? "accepted" : "refused", text);
    const list = $("verdicts");
    list.prepend(li);
    while (list.children.length > VERDICTS_KEPT) list.lastChild.remove();
  }

  $("order-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!ordersJoined) return;
    const order = {
      symbol: symbolSelect.value,
      side: $("order-side").value,
      qty: Number($("order-qty").value),
      price: Number($("order-price").value),
    };
    const button = $("order-send");
    button.disabled = true;
    $("verdict").dataset.state = "pending";
    $("verdict").textContent = "Sending…";
    try {
      const r = await request("emit", { event: "order", room: ORDERS_ROOM, data: order });
      showVerdict(r.ok ? { ok: true, data: r.data, order } : { ok: false, code: r.code, message: r.message, order });
    } catch (e) {
      showVerdict({ ok: false, code: "no-answer", message: e.message, order });
    } finally {
      button.disabled = !ordersJoined;
    }
  });

  // ------------------------------------------------------------------------------------ for tests

  window.feed = {
    /** The last price of `sym`, or null. */
    price: (sym) => (quotes.has(sym) ? quotes.get(sym).price : null),
    /** The recent prices of `sym` (the sparkline's), oldest first. */
    points: (sym) => (quotes.has(sym) ? quotes.get(sym).points.slice() : []),
    /** How many live ticks arrived (ticks read from the history are not counted). */
    ticks: () => liveTicks,
    /** How many ticks were read from the rooms' histories. */
    historyTicks: () => historyTicks,
    /** The backend's last verdict: {ok, data} or {ok: false, code, message}, with the order sent. */
    lastVerdict: () => lastVerdict,
    headlines: () => headlines.map((h) => h.text),
    symbols: () => SYMBOLS.slice(),
    connected: () => online,
    /** Every room joined and its history applied. */
    ready: () => document.body.dataset.ready === "true",
  };

  renderStats();
  connect();
})();
