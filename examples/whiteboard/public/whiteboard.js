// volna whiteboard example: a shared drawing board that speaks volna's /ws JSON protocol
// (docs/websocket-protocol.md, docs/applications.md) over a plain browser WebSocket. No dependencies.
//
// One board is one room, "board:<id>". Three events of the application's own:
//   stroke  {sid, seq, color, width, points: [[x, y], …]}   a piece of a line; kept in the room's history
//   clear   {}                                              wipes the board; kept in the history too
//   cursor  {x, y} or {out: true}                           volatile: never kept, may be dropped
// Coordinates are board units (1600 × 1000) whatever the size of the screen.
//
// Everything another client sent (names, colours, numbers) is checked before use and put on the page
// with textContent or style properties only, never as HTML.
'use strict';

(() => {
  const BOARD_W = 1600;
  const BOARD_H = 1000;
  const CURSOR_MS = 50; // at most 20 cursor events a second
  const SEGMENT_MS = 100; // a stroke being drawn goes out in segments this often…
  const SEGMENT_POINTS = 64; // …or as soon as this many points wait
  const MAX_POINTS = 2000; // a received segment with more points is ignored
  const MIN_STEP = 0.75; // board units: closer points are not recorded
  const HISTORY_LIMIT = 5000; // the board policy keeps as many (examples/whiteboard/volna.toml)
  const CURSOR_IDLE_MS = 10000; // a cursor that did not move for this long is hidden
  const DRAWING_MS = 1500; // someone is "drawing" for this long after their last stroke
  const REQUEST_MS = 10000; // a request without an answer by then is given up
  const WELCOME_MS = 10000; // a connection that says nothing for this long is given up
  const RESEND_BATCH = 32; // strokes re-sent after a reconnection, per round trip
  const NAME_RE = /^[\p{Alphabetic}\p{N}_.#@-]+$/u; // volna's rule for names (and rooms, plus ':')
  const BOARD_RE = /^[\p{Alphabetic}\p{N}_.#@:-]+$/u;
  const COLOR_RE = /^#[0-9a-fA-F]{6}$/;
  const encoder = new TextEncoder();
  const $ = (id) => document.getElementById(id);

  const ui = {
    boardName: $('board-name'), status: $('status'), statusText: $('status-text'),
    swatches: $('swatches'), color: $('color'), width: $('width'), widthDot: $('width-dot'), clear: $('clear'),
    stage: $('stage'), canvas: $('board'), cursors: $('cursors'), notice: $('notice'),
    peopleList: $('people-list'), peopleCount: $('people-count'), meName: $('me-name'),
  };
  const ctx = ui.canvas.getContext('2d');

  // ------------------------------------------------------------------ small helpers

  const bytes = (s) => encoder.encode(s).length;
  const validName = (s) => typeof s === 'string' && s.length > 0 && bytes(s) <= 64 && NAME_RE.test(s);
  const finite = (v) => typeof v === 'number' && Number.isFinite(v);
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const round1 = (v) => Math.round(v * 10) / 10;

  function store(key, value) {
    try {
      if (value === undefined) return localStorage.getItem('volna.whiteboard.' + key);
      localStorage.setItem('volna.whiteboard.' + key, value);
    } catch { /* storage off: nothing remembered */ }
    return null;
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** A stable hue for a name, so a person has the same colour on every page. */
  function hue(name) {
    let h = 2166136261; // FNV-1a
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
    return (h >>> 0) % 360;
  }

  function randomName() {
    const a = ['swift', 'quiet', 'bright', 'lucky', 'brave', 'calm', 'bold', 'merry', 'keen', 'sunny'];
    const b = ['heron', 'otter', 'lynx', 'finch', 'panda', 'gecko', 'koala', 'raven', 'tapir', 'wren'];
    const pick = (l) => l[Math.floor(Math.random() * l.length)];
    return `${pick(a)}-${pick(b)}-${Math.floor(Math.random() * 90 + 10)}`;
  }

  function notice(text, action) {
    if (!text) {
      ui.notice.hidden = true;
      ui.notice.replaceChildren();
      return;
    }
    ui.notice.replaceChildren(el('span', '', text));
    if (action) {
      const b = el('button', '', action.label);
      b.type = 'button';
      b.addEventListener('click', action.run);
      ui.notice.append(b);
    }
    ui.notice.hidden = false;
  }

  // ------------------------------------------------------------------ which board, who am I

  const params = new URLSearchParams(location.search);
  let boardId = params.get('board') || '1';
  let badBoard = false;
  if (!BOARD_RE.test(boardId) || bytes(boardId) > 64 - 'board:'.length) {
    badBoard = true;
    boardId = '1';
  }
  const ROOM = 'board:' + boardId;
  let wantName = params.get('name');
  if (!validName(wantName)) {
    // Without ?name= a tab keeps the name it generated the first time (sessionStorage: per tab).
    let saved = null;
    try { saved = sessionStorage.getItem('volna.whiteboard.name'); } catch { /* no storage */ }
    wantName = validName(saved) ? saved : randomName();
    try { sessionStorage.setItem('volna.whiteboard.name', wantName); } catch { /* no storage */ }
  }
  ui.boardName.textContent = ROOM;
  document.title = `${ROOM} · Whiteboard · volna`;

  // A stroke id is this page's key plus a counter: unique across pages and reconnections, so a segment
  // that reaches a page twice (sent again after a reconnection) is drawn once.
  const pageKey = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(36).padStart(2, '0')).join('');
  let strokeCounter = 0;

  // ------------------------------------------------------------------ state

  const state = {
    ws: null,
    me: null, // {id, name}
    online: false, // the socket is open and welcomed
    synced: false, // joined, and the board redrawn from the history
    syncing: false,
    held: [], // stroke and clear events that arrived while syncing, applied after the history
    full: false,
    nextId: 1,
    pending: new Map(), // request id -> {resolve, reject, timer}
    attempt: 0,
    retryTimer: 0,
    welcomeTimer: 0,
    members: new Map(), // connection id -> {name, drawingUntil}
    cursors: new Map(), // connection id -> {name, x, y, el, seen}
    strokes: [], // segments on the board since the last clear, in the room's order
    keys: new Set(), // "sid/seq" of every segment the room holds (also those before a clear)
    mine: new Map(), // "sid/seq" -> {seg, sent}: our segments the server has not confirmed yet
    lastOffset: 0, // the newest stroke or clear offset seen
    truncated: false,
    color: COLOR_RE.test(store('color') || '') ? store('color') : '#1f2937',
    width: clamp(Number(store('width')) || 6, 1, 32),
  };

  // ------------------------------------------------------------------ the canvas

  let scale = 1; // device pixels per board unit

  function resize() {
    const r = ui.stage.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(r.width * dpr);
    const h = Math.round(r.height * dpr);
    if (ui.canvas.width !== w || ui.canvas.height !== h) {
      ui.canvas.width = w;
      ui.canvas.height = h;
    }
    scale = w / BOARD_W;
    redraw();
  }

  function redraw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, ui.canvas.width, ui.canvas.height);
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    for (const s of state.strokes) drawSegment(s);
    for (const { seg } of state.mine.values()) drawSegment(seg);
    if (drawing) drawSegment({ color: drawing.color, width: drawing.width, points: drawing.buf });
  }

  function drawSegment(s) {
    const p = s.points;
    if (!p.length) return;
    ctx.strokeStyle = ctx.fillStyle = s.color;
    ctx.lineWidth = s.width;
    ctx.beginPath();
    if (p.length === 1) {
      ctx.arc(p[0][0], p[0][1], s.width / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.moveTo(p[0][0], p[0][1]);
    for (let i = 1; i < p.length; i++) ctx.lineTo(p[i][0], p[i][1]);
    ctx.stroke();
  }

  function drawLine(a, b, color, width) {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
  }

  new ResizeObserver(resize).observe(ui.stage);

  // ------------------------------------------------------------------ board events

  const segKey = (s) => `${s.sid}/${s.seq}`;

  /** A stroke's data as sent by anyone, checked; null when it is not a usable segment. */
  function parseStroke(d) {
    if (!d || typeof d !== 'object' || typeof d.sid !== 'string' || d.sid.length > 64) return null;
    if (!Number.isInteger(d.seq) || d.seq < 0) return null;
    if (!Array.isArray(d.points) || d.points.length === 0 || d.points.length > MAX_POINTS) return null;
    const points = [];
    for (const p of d.points) {
      if (!Array.isArray(p) || !finite(p[0]) || !finite(p[1])) return null;
      points.push([clamp(p[0], -100, BOARD_W + 100), clamp(p[1], -100, BOARD_H + 100)]);
    }
    return {
      sid: d.sid,
      seq: d.seq,
      color: typeof d.color === 'string' && COLOR_RE.test(d.color) ? d.color : '#1f2937',
      width: finite(d.width) ? clamp(d.width, 1, 64) : 4,
      points,
    };
  }

  /** A segment the room published (live or from the history), in the room's order. */
  function addStroke(seg, offset) {
    const key = segKey(seg);
    state.lastOffset = Math.max(state.lastOffset, offset || 0);
    if (state.keys.has(key)) return; // a copy: already on the board (or cleared away)
    state.keys.add(key);
    seg.offset = offset;
    state.strokes.push(seg);
    if (state.mine.delete(key)) return; // ours, already on screen
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    drawSegment(seg);
  }

  function clearBoard(offset) {
    state.lastOffset = Math.max(state.lastOffset, offset || 0);
    state.strokes = [];
    // Our segments still unconfirmed were published after this clear (events arrive in the room's
    // order, so earlier ones would have come back before it): they stay.
    redraw();
  }

  function markDrawing(id) {
    const m = state.members.get(id);
    if (!m) return;
    const was = m.drawingUntil > Date.now();
    m.drawingUntil = Date.now() + DRAWING_MS;
    if (!was) renderPeople();
    clearTimeout(m.drawingTimer);
    m.drawingTimer = setTimeout(renderPeople, DRAWING_MS + 50);
  }

  /** A board event (type "event") of our room. */
  function onBoardEvent(msg) {
    const from = msg.from && Number.isInteger(msg.from.id) ? msg.from : null;
    if (from && validName(from.name)) {
      // Names change without notice (a nick is not announced to rooms): events carry the current one.
      const m = state.members.get(from.id);
      if (m && m.name !== from.name) { m.name = from.name; renderPeople(); }
    }
    if (msg.event === 'cursor') {
      if (from && (!state.me || from.id !== state.me.id)) moveCursor(from, msg.data);
      return;
    }
    if (msg.event !== 'stroke' && msg.event !== 'clear') return;
    if (state.syncing) {
      state.held.push(msg);
      return;
    }
    if (!state.synced) return; // before the join: the history brings it
    if (msg.event === 'clear') {
      clearBoard(msg.offset);
      return;
    }
    const seg = parseStroke(msg.data);
    if (!seg) return;
    addStroke(seg, msg.offset);
    if (from) markDrawing(from.id);
  }

  /** Rebuilds the board from the history reply: only what came after the last clear is drawn. */
  function applyHistory(reply) {
    const msgs = Array.isArray(reply.messages) ? reply.messages : [];
    const board = msgs.filter((m) => m && m.type === 'event' && (m.event === 'stroke' || m.event === 'clear'));
    const newest = board.length ? board[board.length - 1].offset : 0;
    let lastClear = -1;
    board.forEach((m, i) => { if (m.event === 'clear') lastClear = i; });
    // The room's numbering went back: it was re-created (everyone had left, which drops a room and its
    // history, or the server restarted). What this page still shows is put back, unless someone has
    // cleared the new board meanwhile.
    const recreated = state.lastOffset > 0 && newest < state.lastOffset;
    const before = state.strokes;
    state.strokes = [];
    state.keys = new Set();
    state.lastOffset = 0;
    board.forEach((m, i) => {
      state.lastOffset = Math.max(state.lastOffset, m.offset || 0);
      if (m.event !== 'stroke') return;
      const seg = parseStroke(m.data);
      if (!seg) return;
      const key = segKey(seg);
      state.keys.add(key);
      state.mine.delete(key); // ours, published before the connection dropped
      if (i > lastClear) {
        seg.offset = m.offset;
        state.strokes.push(seg);
      }
    });
    if (recreated && lastClear < 0) {
      for (const seg of before) {
        const key = segKey(seg);
        if (!state.keys.has(key) && !state.mine.has(key)) state.mine.set(key, { seg, sent: false });
      }
    }
    state.truncated = reply.truncated === true;
    notice(state.truncated ? 'This board is long: only its newest strokes could be loaded.' : '');
    redraw();
    return newest;
  }

  // ------------------------------------------------------------------ cursors

  function moveCursor(from, d) {
    if (!d || typeof d !== 'object') return;
    let c = state.cursors.get(from.id);
    if (d.out === true) {
      if (c) { c.el.remove(); state.cursors.delete(from.id); }
      return;
    }
    if (!finite(d.x) || !finite(d.y)) return;
    const name = validName(from.name) ? from.name : `#${from.id}`;
    if (!c) {
      const e = el('div', 'cursor');
      const label = el('span', 'label');
      e.append(el('span', 'arrow'), label);
      ui.cursors.append(e);
      c = { el: e, label, name: null };
      state.cursors.set(from.id, c);
    }
    if (c.name !== name) {
      c.name = name;
      c.label.textContent = name;
      c.el.style.setProperty('--hue', hue(name));
    }
    c.x = clamp(d.x, 0, BOARD_W);
    c.y = clamp(d.y, 0, BOARD_H);
    c.seen = Date.now();
    c.el.style.left = `${(c.x / BOARD_W) * 100}%`;
    c.el.style.top = `${(c.y / BOARD_H) * 100}%`;
  }

  function dropCursor(id) {
    const c = state.cursors.get(id);
    if (c) { c.el.remove(); state.cursors.delete(id); }
  }

  setInterval(() => {
    const old = Date.now() - CURSOR_IDLE_MS;
    for (const [id, c] of state.cursors) if (c.seen < old) dropCursor(id);
  }, 1000);

  // ------------------------------------------------------------------ people

  function renderPeople() {
    const now = Date.now();
    const list = [...state.members.entries()].sort((a, b) => (a[1].name < b[1].name ? -1 : a[1].name > b[1].name ? 1 : a[0] - b[0]));
    const items = list.map(([id, m]) => {
      const li = el('li', 'person');
      const dot = el('span', 'avatar');
      dot.style.setProperty('--hue', hue(m.name));
      li.append(dot, el('span', 'name', m.name));
      if (state.me && id === state.me.id) li.append(el('span', 'you', 'you'));
      if (m.drawingUntil > now) {
        li.classList.add('drawing');
        li.append(el('span', 'drawing-badge', 'drawing'));
      }
      return li;
    });
    ui.peopleList.replaceChildren(...items);
    ui.peopleCount.textContent = String(state.members.size);
  }

  // ------------------------------------------------------------------ connection

  function setStatus(s, text) {
    ui.status.dataset.state = s;
    ui.statusText.textContent = text || s;
    ui.clear.disabled = !state.synced;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    if (state.ws) {
      const old = state.ws;
      state.ws = null;
      old.onopen = old.onclose = old.onmessage = old.onerror = null;
      old.close();
    }
    state.full = false;
    setStatus('connecting', 'connecting');
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`);
    } catch {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onmessage = (ev) => { if (typeof ev.data === 'string') onFrame(ev.data); };
    ws.onclose = () => onClose(ws);
    clearTimeout(state.welcomeTimer);
    state.welcomeTimer = setTimeout(() => { if (state.ws === ws && !state.online) ws.close(); }, WELCOME_MS);
  }

  function onClose(ws) {
    if (state.ws !== ws) return;
    state.ws = null;
    state.online = state.synced = state.syncing = false;
    state.held = [];
    for (const p of state.pending.values()) {
      clearTimeout(p.timer);
      p.reject(Object.assign(new Error('disconnected'), { code: 'disconnected' }));
    }
    state.pending.clear();
    state.members.clear();
    for (const id of [...state.cursors.keys()]) dropCursor(id);
    renderPeople();
    if (state.full) {
      setStatus('full', 'board full');
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimeout(state.retryTimer);
    // 1 s, 2 s, 4 s … at most 15 s, each 50–100 % of that, so a restarted server is not hit all at once.
    const base = Math.min(15000, 1000 * 2 ** state.attempt);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    state.attempt++;
    setStatus('reconnecting', `reconnecting in ${Math.ceil(delay / 1000)}s`);
    state.retryTimer = setTimeout(connect, delay);
  }

  window.addEventListener('online', () => { if (!state.ws) connect(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden && !state.ws && !state.full) connect(); });

  function onFrame(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'welcome':
        onWelcome(msg);
        return;
      case 'event':
        if (msg.room === ROOM) onBoardEvent(msg);
        return;
      case 'presence':
        if (msg.room === ROOM) onPresence(msg);
        return;
      case 'reply':
      case 'error': {
        const p = msg.id === null || msg.id === undefined ? null : state.pending.get(msg.id);
        if (p) {
          state.pending.delete(msg.id);
          clearTimeout(p.timer);
          if (msg.type === 'reply') p.resolve(msg);
          else p.reject(Object.assign(new Error(msg.message || msg.code), { code: msg.code }));
        } else if (msg.type === 'error' && msg.code) {
          // Answers to requests sent without an id (cursor positions), and fatal errors before a close.
          console.warn('volna:', msg.code, msg.message);
        }
        return;
      }
      default:
        return; // "message" (plain chat text sent to the board's room) and anything newer: not ours
    }
  }

  /** Sends a request; resolves with its reply, rejects with the error (its `code` set). */
  function request(op, fields = {}) {
    return new Promise((resolve, reject) => {
      const ws = state.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(Object.assign(new Error('not connected'), { code: 'disconnected' }));
        return;
      }
      const id = state.nextId++;
      const timer = setTimeout(() => {
        if (state.pending.delete(id)) reject(Object.assign(new Error(`no answer to ${op}`), { code: 'timeout' }));
      }, REQUEST_MS);
      state.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ op, ...fields, id }));
    });
  }

  /** Sends a request whose answer nobody waits for (no id: its reply is ignored). */
  function fire(op, fields) {
    const ws = state.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op, ...fields }));
  }

  function onWelcome(w) {
    clearTimeout(state.welcomeTimer);
    state.me = { id: w.id, name: w.name };
    state.online = true;
    setStatus('connecting', 'joining');
    sync(state.ws);
  }

  /** Takes our name (or the nearest free one: our previous connection may still hold it). */
  async function takeName() {
    for (let n = 1; n <= 9; n++) {
      const name = n === 1 ? wantName : `${wantName.slice(0, 60)}-${n}`;
      try {
        const r = await request('nick', { name });
        state.me.name = r.name;
        return;
      } catch (e) {
        if (e.code !== 'name-taken') throw e;
      }
    }
  }

  /** On every (re)connection: nick, join, history, then the board is redrawn and our unsent strokes go out. */
  async function sync(ws) {
    state.syncing = true;
    state.held = [];
    let newest = 0;
    try {
      await takeName();
      ui.meName.textContent = state.me.name;
      const joined = await request('join', { room: ROOM });
      state.members = new Map((joined.members || []).map((m) => [m.id, { name: m.name, drawingUntil: 0 }]));
      renderPeople();
      const history = await request('history', { room: ROOM, limit: HISTORY_LIMIT });
      newest = applyHistory(history);
    } catch (e) {
      state.syncing = false;
      state.held = [];
      if (state.ws !== ws) return;
      if (e.code === 'room-full') {
        state.full = true;
        notice(`${ROOM} is full right now.`, { label: 'Try again', run: () => { notice(''); state.attempt = 0; connect(); } });
        ws.close();
        return;
      }
      if (e.code !== 'disconnected') {
        notice(`Could not open ${ROOM}: ${e.message}`);
        ws.close(); // and try again later
      }
      return;
    }
    if (state.ws !== ws) return;
    state.syncing = false;
    state.synced = true;
    state.attempt = 0;
    const held = state.held;
    state.held = [];
    for (const m of held) if (!(m.offset <= newest)) onBoardEvent(m);
    setStatus('online', 'online');
    if (state.me.name !== wantName) reclaimName(ws);
    sendMine(ws);
  }

  /** Our name was taken (usually by our own dropped connection, gone within a minute): ask again later. */
  function reclaimName(ws, tries = 12) {
    setTimeout(async () => {
      if (state.ws !== ws || !state.me || state.me.name === wantName || tries <= 0) return;
      try {
        const r = await request('nick', { name: wantName });
        state.me.name = r.name;
        ui.meName.textContent = r.name;
        const m = state.members.get(state.me.id);
        if (m) m.name = r.name;
        renderPeople();
      } catch (e) {
        if (e.code === 'name-taken') reclaimName(ws, tries - 1);
      }
    }, 5000);
  }

  function onPresence(p) {
    if (!Number.isInteger(p.id) || typeof p.name !== 'string') return;
    if (p.event === 'join') {
      state.members.set(p.id, { name: p.name, drawingUntil: 0 });
    } else if (p.event === 'leave') {
      state.members.delete(p.id);
      dropCursor(p.id);
    }
    renderPeople();
  }

  // ------------------------------------------------------------------ sending strokes

  /** Publishes one of our segments; it stays in `mine` (drawn on top) until the room has it. */
  function publish(seg) {
    const entry = { seg, sent: false };
    state.mine.set(segKey(seg), entry);
    if (state.synced) send(entry);
  }

  function send(entry) {
    entry.sent = true;
    const { sid, seq, color, width, points } = entry.seg;
    return request('emit', { event: 'stroke', room: ROOM, data: { sid, seq, color, width, points } }).then(
      (r) => {
        // Our event normally came back before this reply; if not, the reply says where it went.
        if (state.mine.get(segKey(entry.seg)) === entry) addStroke(entry.seg, r.offset);
      },
      (e) => {
        entry.sent = false;
        if (e.code === 'disconnected' || e.code === 'timeout') return; // sent again once reconnected
        state.mine.delete(segKey(entry.seg));
        redraw();
        notice(`A stroke was refused: ${e.message}`);
      },
    );
  }

  /** After a (re)connection: what was drawn offline, or lost in flight, goes out, a batch per round trip. */
  async function sendMine(ws) {
    const waiting = [...state.mine.values()].filter((e) => !e.sent);
    for (let i = 0; i < waiting.length; i += RESEND_BATCH) {
      if (state.ws !== ws || !state.synced) return;
      await Promise.all(waiting.slice(i, i + RESEND_BATCH).filter((e) => !e.sent).map(send));
    }
  }

  // ------------------------------------------------------------------ pointer input

  let drawing = null; // {pointer, sid, seq, color, width, buf: points not sent yet (from the last one sent), last, timer}

  function boardPoint(e) {
    const r = ui.canvas.getBoundingClientRect();
    return [
      round1(clamp(((e.clientX - r.left) / r.width) * BOARD_W, 0, BOARD_W)),
      round1(clamp(((e.clientY - r.top) / r.height) * BOARD_H, 0, BOARD_H)),
    ];
  }

  function flush(final) {
    const d = drawing;
    if (!d) return;
    if (d.buf.length > 1 || (final && d.seq === 0 && d.buf.length === 1)) {
      const seg = { sid: d.sid, seq: d.seq++, color: d.color, width: d.width, points: d.buf };
      d.buf = [d.buf[d.buf.length - 1]]; // the next segment starts where this one ends
      publish(seg);
    }
  }

  ui.canvas.addEventListener('pointerdown', (e) => {
    if (drawing || (e.pointerType === 'mouse' && e.button !== 0)) return;
    e.preventDefault();
    ui.canvas.setPointerCapture(e.pointerId);
    const p = boardPoint(e);
    drawing = {
      pointer: e.pointerId,
      sid: `${pageKey}-${++strokeCounter}`,
      seq: 0,
      color: state.color,
      width: state.width,
      buf: [p],
      last: p,
      timer: setInterval(() => flush(false), SEGMENT_MS),
    };
    // A dot, in case the pointer does not move.
    drawSegment({ color: drawing.color, width: drawing.width, points: [p] });
    if (state.me) markDrawing(state.me.id);
    queueCursor({ x: p[0], y: p[1] });
  });

  ui.canvas.addEventListener('pointermove', (e) => {
    const p = boardPoint(e);
    queueCursor({ x: p[0], y: p[1] });
    const d = drawing;
    if (!d || e.pointerId !== d.pointer) return;
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const ce of events.length ? events : [e]) {
      const q = boardPoint(ce);
      if (Math.hypot(q[0] - d.last[0], q[1] - d.last[1]) < MIN_STEP) continue;
      drawLine(d.last, q, d.color, d.width);
      d.buf.push(q);
      d.last = q;
    }
    if (d.buf.length >= SEGMENT_POINTS) flush(false);
    if (state.me) markDrawing(state.me.id);
  });

  function endStroke(e) {
    const d = drawing;
    if (!d || e.pointerId !== d.pointer) return;
    clearInterval(d.timer);
    flush(true);
    drawing = null;
    if (e.pointerType !== 'mouse') queueCursor({ out: true }); // a finger or pen lifted: no cursor left
  }
  ui.canvas.addEventListener('pointerup', endStroke);
  ui.canvas.addEventListener('pointercancel', endStroke);
  ui.canvas.addEventListener('pointerleave', (e) => {
    if (!drawing && e.pointerType === 'mouse') queueCursor({ out: true });
  });

  // Cursor positions: at most one per CURSOR_MS, always the latest, the last one never lost.
  let cursorWant = null;
  let cursorLast = 0;
  let cursorTimer = 0;
  function queueCursor(data) {
    cursorWant = data;
    if (cursorTimer) return;
    const wait = CURSOR_MS - (performance.now() - cursorLast);
    if (wait <= 0) sendCursor();
    else cursorTimer = setTimeout(sendCursor, wait);
  }
  function sendCursor() {
    cursorTimer = 0;
    const data = cursorWant;
    cursorWant = null;
    if (!data || !state.synced) return;
    // A socket that cannot keep up skips positions instead of queueing them: only the latest matters.
    if (state.ws && state.ws.bufferedAmount > 64 * 1024) return;
    cursorLast = performance.now();
    fire('emit', { event: 'cursor', room: ROOM, data, self: false });
  }

  // ------------------------------------------------------------------ tools

  function setColor(c) {
    if (!COLOR_RE.test(c)) return;
    state.color = c.toLowerCase();
    store('color', state.color);
    ui.color.value = state.color;
    for (const b of ui.swatches.querySelectorAll('button.swatch')) {
      b.setAttribute('aria-checked', String(b.dataset.color.toLowerCase() === state.color));
    }
    ui.widthDot.style.setProperty('--c', state.color);
  }
  function setWidth(w) {
    state.width = clamp(Math.round(Number(w)) || 6, 1, 32);
    store('width', String(state.width));
    ui.width.value = String(state.width);
    ui.widthDot.style.setProperty('--w', `${Math.max(4, state.width)}px`);
  }
  for (const b of ui.swatches.querySelectorAll('button.swatch')) {
    b.setAttribute('role', 'radio');
    b.addEventListener('click', () => setColor(b.dataset.color));
  }
  ui.color.addEventListener('input', () => setColor(ui.color.value));
  ui.width.addEventListener('input', () => setWidth(ui.width.value));
  setColor(state.color);
  setWidth(state.width);

  ui.clear.addEventListener('click', async () => {
    if (!state.synced) return;
    ui.clear.disabled = true;
    try {
      // Everyone clears when the event arrives, this page too (in the room's order, like any stroke).
      await request('emit', { event: 'clear', room: ROOM, data: {} });
    } catch (e) {
      if (e.code !== 'disconnected') notice(`Could not clear the board: ${e.message}`);
    } finally {
      ui.clear.disabled = !state.synced;
    }
  });

  // ------------------------------------------------------------------ what tests (and the curious) can read

  window.whiteboard = Object.freeze({
    room: ROOM,
    /** Our name on the server, once connected. */
    me: () => (state.me ? state.me.name : null),
    /** True once joined and redrawn from the history (and online). */
    ready: () => state.synced,
    /** Strokes on the board (one stroke may have been sent as several segments). */
    strokes: () => new Set([...state.strokes, ...[...state.mine.values()].map((e) => e.seg)].map((s) => s.sid)).size,
    /** Segments on the board. */
    segments: () => state.strokes.length + state.mine.size,
    /** Our segments the server has not confirmed yet (drawn offline, or on their way). */
    unconfirmed: () => state.mine.size,
    /** The names of everyone on the board, ourselves included, sorted. */
    peers: () => [...state.members.values()].map((m) => m.name).sort(),
    /** The others' cursors that are shown: {name: {x, y}} in board units. */
    cursors: () => Object.fromEntries([...state.cursors.values()].map((c) => [c.name, { x: c.x, y: c.y }])),
  });

  if (badBoard) notice('That board name cannot be used (letters, digits and - _ . # @ : only): this is board 1.');
  resize();
  connect();
})();
