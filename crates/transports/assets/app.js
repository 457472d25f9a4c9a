// volna chat page: speaks the /ws JSON protocol (docs/websocket-protocol.md).
// Written for volna, no dependencies. Everything a user or another client typed is put on the page with
// textContent or attributes, never as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const MIB = 1024 * 1024;
  const IMAGE_LIMIT = 8 * MIB; // the server's upload limit for images
  const HISTORY = 50; // messages fetched when (re)joining a room
  const GROUP_MS = 5 * 60 * 1000; // consecutive messages of one sender within this are grouped
  const NAME_RE = /^[\p{Alphabetic}\p{N}_.#@-]+$/u; // as the server: letters, digits and - _ . # @
  const encoder = new TextEncoder();

  const ui = {
    app: $('app'), sidebar: $('sidebar'), scrim: $('scrim'),
    conn: $('conn'), connText: $('conn-text'), connMini: $('conn-mini'), banner: $('banner'),
    joined: $('joined-rooms'), all: $('all-rooms'), allCount: $('all-count'),
    members: $('members'), memberCount: $('member-count'),
    joinForm: $('join-form'), joinInput: $('join-input'),
    meAvatar: $('me-avatar'), meName: $('me-name'), rename: $('rename'),
    title: $('room-title'), sub: $('room-sub'), leave: $('leave'),
    messages: $('messages'), empty: $('empty'),
    composer: $('composer'), input: $('input'), send: $('send'), attach: $('attach'), file: $('file'),
    upload: $('upload'), uploadText: $('upload-text'), dropzone: $('dropzone'), chat: $('chat'),
    drawerOpen: $('drawer-open'), drawerClose: $('drawer-close'), totalUnread: $('total-unread'),
    dialog: $('welcome'), nameForm: $('name-form'), nameInput: $('name-input'), nameError: $('name-error'),
    nameCancel: $('name-cancel'), toasts: $('toasts'),
  };

  // ------------------------------------------------------------------ small helpers

  const store = {
    get(key, fallback) {
      try {
        const v = localStorage.getItem('volna.' + key);
        return v === null ? fallback : JSON.parse(v);
      } catch { return fallback; }
    },
    set(key, value) {
      try { localStorage.setItem('volna.' + key, JSON.stringify(value)); } catch { /* private mode */ }
    },
  };

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function validName(s) {
    return typeof s === 'string' && s.length > 0 && encoder.encode(s).length <= 64 && NAME_RE.test(s);
  }

  function hue(name) {
    let h = 2166136261; // FNV-1a
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
    return (h >>> 0) % 360;
  }

  function initials(name) {
    const parts = name.split(/[-_.#@\s]+/u).filter(Boolean);
    const chars = (s) => Array.from(s);
    if (parts.length >= 2) return (chars(parts[0])[0] + chars(parts[1])[0]).toUpperCase();
    return chars(parts[0] || name || '?').slice(0, 2).join('').toUpperCase();
  }

  function avatar(name, e = el('span', 'avatar')) {
    e.textContent = initials(name);
    e.style.setProperty('--hue', hue(name));
    e.setAttribute('aria-hidden', 'true');
    return e;
  }

  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < MIB) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
    return `${(n / MIB).toFixed(1)} MB`;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  function fmtTime(ts) {
    const d = new Date(ts);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (d.toDateString() === today.toDateString()) return timeFmt.format(d);
    if (d.toDateString() === yesterday.toDateString()) return `Yesterday ${timeFmt.format(d)}`;
    return `${dayFmt.format(d)}, ${timeFmt.format(d)}`;
  }
  function timeEl(ts, className) {
    const t = el('time', className, fmtTime(ts));
    const d = new Date(ts);
    t.dateTime = d.toISOString();
    t.title = fullFmt.format(d);
    return t;
  }

  function toast(text, kind = 'error', ms = 5000) {
    const t = el('div', `toast ${kind}`, text);
    t.title = 'Click to dismiss';
    t.addEventListener('click', () => t.remove());
    ui.toasts.append(t);
    setTimeout(() => t.remove(), ms);
  }

  // ------------------------------------------------------------------ state

  const state = {
    ws: null,
    status: 'connecting',
    me: null, // {id, name} from the welcome
    wantName: validName(store.get('name', null)) ? store.get('name', null) : null,
    limits: { image: IMAGE_LIMIT },
    rooms: new Map(), // room name -> Room
    order: [], // joined rooms, in sidebar order
    current: null,
    all: [], // every room on the server: [{name, members}]
    nextId: 1,
    pending: new Map(), // request id -> {resolve, reject}
    incoming: null, // binary frames still due: {need, frames, done}
    attempt: 0,
    retryTimer: 0,
    countdown: 0,
    retryAt: 0,
    roomsTimer: 0,
    uploads: 0,
  };

  function makeRoom(name) {
    const log = el('div', 'room-log');
    log.dataset.room = name;
    return {
      name,
      log,
      members: new Map(), // id -> name
      count: 0,
      joined: false,
      syncing: false,
      buffer: [], // events that arrived while (re)joining, applied after the history
      seen: new Set(), // messages shown since the last restart of the room (messageKey)
      lastOffset: 0,
      lastLog: null, // in a cluster with a shared log: the place in it up to which we have everything
      epochId: null, // the server's epoch of the room's offsets, from the last join
      epoch: null, // the divider that started the current offset sequence
      unread: 0,
      stick: true, // keep scrolled to the bottom
      scrollTop: 0,
    };
  }

  // ------------------------------------------------------------------ connection

  function setStatus(status, text) {
    state.status = status;
    ui.conn.dataset.state = status;
    ui.connText.textContent = text || status;
    ui.connMini.dataset.state = status;
    ui.connMini.title = text || status;
    const connected = status === 'online';
    const room = currentRoom();
    const canSend = connected && room && room.joined;
    ui.input.disabled = !room;
    ui.send.disabled = !canSend;
    ui.attach.disabled = !canSend;
    ui.input.placeholder = room ? (connected ? `Message #${room.name}` : 'Waiting for the connection…') : 'Join a room to chat';
    if (connected || status === 'connecting' && state.attempt === 0) {
      ui.banner.hidden = true;
    } else {
      ui.banner.hidden = false;
      ui.banner.dataset.state = status;
      ui.banner.replaceChildren(el('span', '', status === 'offline'
        ? 'You are offline. volna reconnects when the network is back.'
        : status === 'connecting' ? 'Reconnecting…' : `Connection lost. ${text[0].toUpperCase()}${text.slice(1)}.`));
      if (status !== 'connecting') {
        const retry = el('button', 'ghost-btn', 'Retry now');
        retry.type = 'button';
        retry.addEventListener('click', () => connect());
        ui.banner.append(retry);
      }
    }
  }

  function connect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdown);
    if (state.ws) {
      const old = state.ws;
      state.ws = null;
      old.onclose = old.onmessage = old.onerror = null;
      old.close();
    }
    setStatus('connecting', 'connecting');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const query = state.wantName ? `?name=${encodeURIComponent(state.wantName)}` : '';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/ws${query}`);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws.binaryType = 'arraybuffer';
    state.ws = ws;
    ws.onmessage = (ev) => onFrame(ev.data);
    ws.onclose = (ev) => onClose(ws, ev);
  }

  function onClose(ws, ev) {
    if (state.ws !== ws) return;
    state.ws = null;
    state.me && (state.me.connected = false);
    state.incoming = null;
    for (const p of state.pending.values()) p.reject(Object.assign(new Error('disconnected'), { code: 'disconnected' }));
    state.pending.clear();
    for (const room of state.rooms.values()) {
      room.joined = false;
      room.syncing = false;
      room.buffer = [];
    }
    if (ev.reason && ev.code !== 1001) toast(`Disconnected: ${ev.reason}`);
    scheduleReconnect();
    renderRoom();
  }

  function scheduleReconnect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdown);
    if (!navigator.onLine) {
      setStatus('offline', 'offline');
      return; // the 'online' event reconnects
    }
    // Exponential backoff with jitter: 1 s, 2 s, 4 s … capped at 30 s, each scaled by a random 50–100 %,
    // so a restarted server is not hit by every page at the same moment.
    const base = Math.min(30000, 1000 * 2 ** state.attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    state.attempt++;
    state.retryAt = Date.now() + delay;
    const tick = () => {
      const s = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      setStatus('reconnecting', `reconnecting in ${s}s`);
    };
    tick();
    state.countdown = setInterval(tick, 1000);
    state.retryTimer = setTimeout(connect, delay);
  }

  window.addEventListener('online', () => { if (state.status !== 'online') connect(); });
  window.addEventListener('offline', () => { if (state.status === 'reconnecting') scheduleReconnect(); });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.status === 'reconnecting' && state.retryAt - Date.now() > 2000) connect();
    if (!document.hidden) updateTitle();
  });

  /// Every frame: text frames are JSON; binary frames belong to the text frame that announced them.
  function onFrame(data) {
    if (typeof data !== 'string') {
      const inc = state.incoming;
      if (!inc) return;
      inc.frames.push(data);
      if (inc.frames.length >= inc.need) {
        state.incoming = null;
        inc.done(inc.frames);
      }
      return;
    }
    if (state.incoming) { // should not happen: the server sends attachments right after their text
      const inc = state.incoming;
      state.incoming = null;
      inc.done(inc.frames);
    }
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    const need = Number.isInteger(msg.attachments) && (msg.type === 'message' || msg.type === 'reply') ? msg.attachments : 0;
    if (need > 0) state.incoming = { need, frames: [], done: (frames) => dispatch(msg, frames) };
    else dispatch(msg, []);
  }

  function dispatch(msg, frames) {
    switch (msg.type) {
      case 'welcome': return onWelcome(msg);
      case 'message': return onMessage(msg, frames);
      case 'presence': return onPresence(msg);
      case 'reply':
      case 'error': {
        const p = msg.id === null || msg.id === undefined ? null : state.pending.get(msg.id);
        if (p) {
          state.pending.delete(msg.id);
          if (msg.type === 'reply') p.resolve({ msg, frames });
          else p.reject(Object.assign(new Error(msg.message || msg.code), { code: msg.code }));
        } else if (msg.type === 'error') {
          console.warn('volna:', msg.code, msg.message);
          if (msg.fatal) toast(msg.message || msg.code);
        }
        return;
      }
      default:
        return;
    }
  }

  /// Sends one request (and its binary attachments); resolves with {msg, frames} on the reply.
  function request(op, fields = {}, binaries = []) {
    return new Promise((resolve, reject) => {
      const ws = state.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN || !state.me) {
        reject(Object.assign(new Error('not connected'), { code: 'disconnected' }));
        return;
      }
      const id = state.nextId++;
      const body = { op, ...fields, id };
      if (binaries.length) body.attachments = binaries.length;
      state.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify(body));
      for (const b of binaries) ws.send(b);
    });
  }

  function onWelcome(w) {
    const again = state.attempt > 0;
    state.attempt = 0;
    state.me = { id: w.id, name: w.name, connected: true };
    // Nothing larger than one WebSocket message can reach the server.
    const frameLimit = Number.isInteger(w.max_message_size) ? w.max_message_size : Infinity;
    // A server that announces its image limit is taken at its word; otherwise the default 8 MiB.
    const imageLimit = Number.isInteger(w.max_image_bytes) ? w.max_image_bytes : IMAGE_LIMIT;
    state.limits.image = Math.min(imageLimit, frameLimit - 4096);
    renderMe();
    setStatus('online', 'online');
    if (state.wantName && w.name !== state.wantName) {
      // Usually our own previous connection, not yet gone after a reconnect: ask again in a moment.
      const want = state.wantName;
      const ws = state.ws;
      setTimeout(async () => {
        if (state.ws !== ws || !state.me || state.me.name === want) return;
        try {
          const { msg } = await request('nick', { name: want });
          renamed(msg.name);
        } catch (e) {
          if (e.code !== 'disconnected') {
            toast(`The name “${want}” is in use right now, so you are “${state.me.name}” for this visit.`, 'info', 7000);
          }
        }
      }, 1500);
    }
    if (!state.wantName) {
      openNameDialog(true);
    } else {
      startRooms();
    }
    refreshRooms();
    if (again) renderRoom();
  }

  /// Our name changed: the server tells the others nothing, so only our own views are updated.
  function renamed(name) {
    state.me.name = name;
    for (const room of state.rooms.values()) {
      if (room.members.has(state.me.id)) room.members.set(state.me.id, name);
    }
    renderMe();
    renderMembers();
  }

  /// (Re)joins every room of the sidebar, or the lobby on a first visit.
  function startRooms() {
    if (state.order.length === 0) {
      const saved = store.get('rooms', []).filter(validName);
      const want = saved.length ? saved : ['lobby'];
      const current = store.get('current', want[0]);
      for (const name of want) addRoom(name);
      switchRoom(state.rooms.has(current) ? current : want[0]);
    }
    for (const name of state.order) syncRoom(state.rooms.get(name));
  }

  // ------------------------------------------------------------------ rooms

  function currentRoom() {
    return state.current ? state.rooms.get(state.current) : null;
  }

  function saveRooms() {
    store.set('rooms', state.order);
    if (state.current) store.set('current', state.current);
  }

  function addRoom(name) {
    let room = state.rooms.get(name);
    if (!room) {
      room = makeRoom(name);
      state.rooms.set(name, room);
      state.order.push(name);
      saveRooms();
    }
    return room;
  }

  async function joinRoom(name) {
    name = name.trim().replace(/^#/, '');
    if (!validName(name)) {
      toast('A room name is 1–64 letters, digits and - _ . # @');
      return false;
    }
    const room = addRoom(name);
    switchRoom(name);
    if (!room.joined && !room.syncing && state.status === 'online') await syncRoom(room);
    return true;
  }

  /// Joins `room` on the server and catches up with its history. Events that arrive meanwhile are held
  /// back and applied after the history, so the log stays in offset order.
  async function syncRoom(room) {
    if (room.syncing) return;
    room.syncing = true;
    room.buffer = [];
    try {
      // Back after an outage: resume where the log stops (the missed messages arrive before the reply,
      // held back like any other meanwhile); if the room no longer keeps them, join afresh.
      // In a cluster with a shared log the place in it resumes on any node; else the offsets, on this one.
      let resumed = null;
      const since = room.lastLog ? { log: room.lastLog }
        : room.lastOffset > 0 && room.epochId ? { offset: room.lastOffset, epoch: room.epochId } : null;
      if (since) {
        try {
          resumed = await request('join', { room: room.name, since });
        } catch (e) {
          if (e.code !== 'unrecoverable') throw e;
        }
      }
      const { msg } = resumed || await request('join', { room: room.name });
      if (state.rooms.get(room.name) !== room) return;
      room.joined = true;
      const recreated = room.epochId !== null && room.epochId !== msg.epoch;
      room.epochId = msg.epoch;
      if (msg.log) room.lastLog = laterLog(room.lastLog, msg.log);
      room.members = new Map(msg.members.map((m) => [m.id, m.name]));
      room.count = msg.count ?? msg.members.length;
      renderRoom();
      if (!resumed) {
        const hist = await request('history', { room: room.name, limit: HISTORY });
        applyHistory(room, hist.msg, hist.frames, recreated);
      }
      if (room.name === state.current && room.stick) scrollToBottom();
    } catch (e) {
      if (e.code === 'disconnected') return; // the reconnection joins again
      if (state.rooms.get(room.name) === room && !room.joined) {
        toast(`Could not join #${room.name}: ${e.message}`);
        removeRoom(room);
      }
      return;
    } finally {
      room.syncing = false;
      const held = room.buffer;
      room.buffer = [];
      for (const ev of held) ev();
    }
    renderRoom();
    refreshRooms();
  }

  /// `recreated`: the join answered another epoch than the last one (the server restarted, or the room was
  /// empty and made again). Offsets alone cannot tell: in a cluster a room's history holds every node's
  /// messages, each numbered by its node.
  function applyHistory(room, reply, frames, recreated) {
    const msgs = Array.isArray(reply.messages) ? reply.messages : [];
    if (recreated) {
      // The room's numbering started again: the server restarted, or the room was empty and re-created.
      newEpoch(room, 'New conversation (the room was re-created)');
    } else if (room.lastOffset > 0 && msgs.length && msgs[0].offset > room.lastOffset + 1) {
      room.log.append(el('div', 'divider', `${msgs[0].offset - room.lastOffset - 1} messages missed while offline`));
    } else if (room.lastOffset === 0 && msgs.length && (reply.truncated || msgs[0].offset > 1)) {
      room.log.append(el('div', 'divider', 'Earlier messages'));
    }
    let next = 0;
    for (const m of msgs) {
      const n = Number.isInteger(m.attachments) ? m.attachments : 0;
      addMessage(room, m, frames.slice(next, next + n), false);
      next += n;
    }
  }

  function newEpoch(room, text) {
    const d = el('div', 'divider', text);
    room.log.append(d);
    room.epoch = d;
    room.seen.clear();
    room.lastOffset = 0;
    room.lastLog = null;
  }

  async function leaveRoom(room) {
    if (room.joined) {
      try { await request('leave', { room: room.name }); } catch (e) {
        if (e.code !== 'disconnected' && e.code !== 'not-member') { toast(`Could not leave: ${e.message}`); return; }
      }
    }
    removeRoom(room);
    refreshRooms();
  }

  function removeRoom(room) {
    const i = state.order.indexOf(room.name);
    state.rooms.delete(room.name);
    if (i >= 0) state.order.splice(i, 1);
    room.log.remove();
    for (const img of room.log.querySelectorAll('img[src^="blob:"]')) URL.revokeObjectURL(img.src);
    if (state.current === room.name) state.current = null;
    switchRoom(state.order[Math.min(i, state.order.length - 1)] || null);
    saveRooms();
  }

  function switchRoom(name) {
    const prev = currentRoom();
    if (prev) {
      prev.scrollTop = ui.messages.scrollTop;
      prev.stick = atBottom();
    }
    state.current = name;
    const room = currentRoom();
    if (room) {
      room.unread = 0;
      ui.messages.replaceChildren(room.log);
      if (room.stick) scrollToBottom(); else ui.messages.scrollTop = room.scrollTop;
      store.set('current', name);
    } else {
      ui.messages.replaceChildren(ui.empty);
    }
    closeDrawer();
    renderRoom();
  }

  function refreshRooms() {
    clearTimeout(state.roomsTimer);
    state.roomsTimer = setTimeout(async () => {
      try {
        const { msg } = await request('rooms');
        state.all = msg.rooms;
        renderAll();
      } catch { /* offline: refreshed on reconnect */ }
    }, 150);
  }
  // Rooms you are not in send no presence: look at the list now and then.
  setInterval(() => { if (state.status === 'online' && !document.hidden) refreshRooms(); }, 15000);

  // ------------------------------------------------------------------ events

  function onMessage(m, frames) {
    const room = state.rooms.get(m.room);
    if (!room) return;
    if (room.syncing) {
      room.buffer.push(() => onMessage(m, frames));
      return;
    }
    const mine = state.me && m.from && m.from.id === state.me.id;
    const stick = room.name === state.current && (atBottom() || mine);
    if (!addMessage(room, m, frames, true)) return;
    if (room.name === state.current) {
      if (stick) scrollToBottom();
      if (document.hidden && !mine) { room.unread++; updateTitle(); }
    } else if (!mine) {
      room.unread++;
      renderJoined();
    }
  }

  function onPresence(p) {
    const room = state.rooms.get(p.room);
    if (!room) return;
    if (room.syncing) {
      room.buffer.push(() => onPresence(p));
      return;
    }
    if (p.event === 'join') room.members.set(p.id, p.name);
    else room.members.delete(p.id);
    room.count = p.members;
    const stick = room.name === state.current && atBottom();
    addNotice(room, p.event === 'join' ? 'join' : 'leave', p.name);
    if (stick) scrollToBottom();
    if (room.name === state.current) {
      renderMembers(p.event === 'join' ? p.id : null);
      renderHeader();
    }
    renderJoined();
    refreshRooms();
  }

  /// "bob joined": consecutive notices within two minutes share one line.
  function addNotice(room, kind, name) {
    const now = Date.now();
    const last = room.log.lastElementChild;
    let pill;
    if (last && last.classList.contains('notice') && now - Number(last.dataset.t) < 120000 &&
        last.querySelectorAll('.who').length < 6) {
      pill = last.firstElementChild;
      pill.querySelector('.when').remove();
      pill.append(', ');
    } else {
      const n = el('div', 'notice');
      pill = el('span');
      n.append(pill);
      room.log.append(n);
    }
    pill.parentElement.dataset.t = now;
    const who = el('span', `who ${kind}`);
    who.append(el('b', '', name), kind === 'join' ? ' joined' : ' left');
    const when = el('span', 'when', ' · ');
    when.append(timeEl(now));
    pill.append(who, when);
  }

  // ------------------------------------------------------------------ message rendering

  /// A place in the cluster's shared log, `<ms>-<n>`, as numbers.
  function logKey(log) {
    const [ms, n] = log.split('-').map(Number);
    return [ms || 0, n || 0];
  }

  /// The later of two places in the shared log (either may be null).
  function laterLog(a, b) {
    if (!a) return b;
    if (!b) return a;
    const [x, y] = [logKey(a), logKey(b)];
    return x[0] > y[0] || (x[0] === y[0] && x[1] >= y[1]) ? a : b;
  }

  /// What tells a message from any other: its place in the shared log, else (offsets are per node in a
  /// cluster) its offset with its time and sender.
  function messageKey(m) {
    return m.log || `${m.offset}/${m.ts}/${m.from && m.from.id}/${m.from && m.from.name}`;
  }

  /// Whether message element `c` comes after message `m`.
  function after(c, m) {
    if (m.log && c.dataset.log) return laterLog(c.dataset.log, m.log) === c.dataset.log && c.dataset.log !== m.log;
    return Number(c.dataset.offset) > m.offset;
  }

  /// Adds a message to its room's log in order; false if it was already there.
  function addMessage(room, m, frames, live) {
    if (!Number.isInteger(m.offset)) return false;
    const key = messageKey(m);
    if (room.seen.has(key)) return false;
    room.seen.add(key);
    room.lastOffset = Math.max(room.lastOffset, m.offset);
    if (m.log) room.lastLog = laterLog(room.lastLog, m.log);
    const e = renderMessage(m, frames);
    // Find the place: usually the end, earlier only when history and live events cross.
    let before = null;
    for (let c = room.log.lastElementChild; c && c !== room.epoch; c = c.previousElementSibling) {
      if (!c.classList.contains('msg')) continue;
      if (after(c, m)) before = c; else break;
    }
    room.log.insertBefore(e, before);
    group(e);
    if (e.nextElementSibling) group(e.nextElementSibling);
    // A thumbnail grows the log when it has loaded: stay at the bottom if we were there.
    const img = e.querySelector('img.thumb');
    if (img) {
      img.addEventListener('load', () => {
        if (room.name === state.current && room.stick) scrollToBottom();
      }, { once: true });
    }
    return true;
  }

  /// Consecutive messages of one sender, a few minutes apart, show the name and avatar once.
  function group(e) {
    if (!e.classList.contains('msg')) return;
    const prev = e.previousElementSibling;
    const cont = prev && prev.classList.contains('msg') && prev.dataset.from === e.dataset.from &&
      Number(e.dataset.ts) - Number(prev.dataset.ts) < GROUP_MS &&
      new Date(Number(e.dataset.ts)).toDateString() === new Date(Number(prev.dataset.ts)).toDateString();
    e.classList.toggle('cont', Boolean(cont));
  }

  function renderMessage(m, frames) {
    const from = m.from && typeof m.from.name === 'string' ? m.from.name : 'unknown';
    const mine = state.me && m.from && m.from.id === state.me.id;
    const e = el('article', 'msg');
    e.dataset.offset = m.offset;
    if (m.log) e.dataset.log = m.log;
    e.dataset.ts = m.ts;
    e.dataset.from = from;
    const head = el('div', 'msg-head');
    head.append(el('span', `msg-from${mine ? ' self' : ''}`, from), timeEl(m.ts, 'msg-time'));
    const body = el('div', 'msg-body');
    renderData(body, m.data, frames, e);
    const side = timeEl(m.ts, 'side-time');
    side.textContent = timeFmt.format(new Date(m.ts));
    e.append(avatar(from), head, side, body);
    e.setAttribute('aria-label', `${from}, ${fmtTime(m.ts)}`);
    return e;
  }

  function isPlaceholder(v) {
    return v && typeof v === 'object' && v._placeholder === true && Number.isInteger(v.num);
  }

  function renderData(body, data, frames, article) {
    if (typeof data === 'string') {
      body.textContent = data;
    } else if (data && typeof data === 'object' && !Array.isArray(data) && data.image && typeof data.image === 'object') {
      article.classList.add('has-image');
      body.append(renderImage(data.image, frames));
      if (typeof data.caption === 'string' && data.caption) body.append(el('div', '', data.caption));
      return;
    } else {
      // Another client's JSON (Socket.IO sends any value): shown compactly, placeholders as [binary #i].
      let text = JSON.stringify(data, (k, v) => (isPlaceholder(v) ? `[binary #${v.num}]` : v));
      if (text === undefined) text = 'null';
      if (text.length > 4000) text = text.slice(0, 4000) + '…';
      body.append(el('code', 'json', text));
    }
    if (frames.length) {
      const bytes = frames.reduce((n, f) => n + (f.byteLength ?? f.size ?? 0), 0);
      const chip = el('div', 'chip');
      chip.append(clipIcon(), `${frames.length} binary attachment${frames.length > 1 ? 's' : ''}, ${fmtBytes(bytes)}`);
      body.append(document.createElement('br'), chip);
    }
  }

  function clipIcon() {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', 'M20.5 11.5l-8.3 8.3a5 5 0 01-7.1-7.1l8.5-8.5a3.3 3.3 0 014.7 4.7l-8.5 8.5a1.7 1.7 0 01-2.4-2.4l7.8-7.8');
    svg.append(p);
    return svg;
  }

  function renderImage(img, frames) {
    const name = typeof img.name === 'string' && img.name ? img.name : 'image';
    const fig = el('figure', 'image-card');
    const thumb = isPlaceholder(img.thumb) ? frames[img.thumb.num] : undefined;
    const tw = Number(img.thumb_width) || 0;
    const th = Number(img.thumb_height) || 0;
    if (thumb) {
      const mime = typeof img.thumb_mime === 'string' && /^image\/[a-z0-9.+-]+$/.test(img.thumb_mime) ? img.thumb_mime : 'image/jpeg';
      const i = el('img', 'thumb');
      i.src = URL.createObjectURL(new Blob([thumb], { type: mime }));
      i.alt = `Image ${name}`;
      if (tw && th) { i.width = tw; i.height = th; }
      i.decoding = 'async';
      fig.append(i);
    } else {
      fig.append(el('div', 'thumb missing', 'no preview'));
    }
    const cap = el('figcaption');
    const parts = [];
    if (img.width && img.height) parts.push(`${img.width}×${img.height}`);
    if (Number.isFinite(img.bytes)) parts.push(fmtBytes(img.bytes));
    cap.append(el('span', 'img-name', name), el('span', 'img-meta', parts.join(' · ')));
    cap.title = [name, typeof img.format === 'string' ? img.format.toUpperCase() : '', ...parts].filter(Boolean).join(' · ');
    fig.append(cap);
    return fig;
  }

  // ------------------------------------------------------------------ sidebar rendering

  function renderMe() {
    const name = state.me ? state.me.name : state.wantName || '…';
    ui.meName.textContent = name;
    avatar(name, ui.meAvatar);
  }

  function roomButton(name, meta, { current = false, unread = 0 } = {}) {
    const li = el('li');
    const b = el('button');
    b.type = 'button';
    b.dataset.room = name;
    if (current) b.setAttribute('aria-current', 'true');
    b.append(el('span', 'hash', '#'), el('span', 'room-name', name));
    if (unread) {
      li.classList.add('unread');
      const badge = el('span', 'badge', unread > 99 ? '99+' : String(unread));
      badge.setAttribute('aria-label', `${unread} unread`);
      b.append(badge);
    } else if (meta) {
      b.append(el('span', 'room-meta', meta));
    }
    li.append(b);
    return { li, b };
  }

  function renderJoined() {
    const items = state.order.map((name) => {
      const room = state.rooms.get(name);
      const { li, b } = roomButton(name, room.joined ? String(room.count) : '…', {
        current: name === state.current, unread: room.unread,
      });
      b.title = room.joined ? `${room.count} member${room.count === 1 ? '' : 's'}` : 'joining…';
      b.addEventListener('click', () => switchRoom(name));
      return li;
    });
    if (!items.length) items.push(el('li', 'empty-note', 'No rooms yet'));
    ui.joined.replaceChildren(...items);
    updateTitle();
  }

  function renderAll() {
    const items = state.all.map((r) => {
      const joined = state.rooms.has(r.name);
      const { li, b } = roomButton(r.name, `${r.members}`, { current: false });
      b.title = `${r.members} member${r.members === 1 ? '' : 's'}${joined ? ' · joined' : ' · click to join'}`;
      b.setAttribute('aria-label', `#${r.name}, ${r.members} member${r.members === 1 ? '' : 's'}${joined ? ', joined' : ''}`);
      b.addEventListener('click', () => joinRoom(r.name));
      return li;
    });
    if (!items.length) items.push(el('li', 'empty-note', 'No rooms yet: create one'));
    ui.all.replaceChildren(...items);
    ui.allCount.textContent = state.all.length ? String(state.all.length) : '';
  }

  function renderMembers(fresh) {
    const room = currentRoom();
    const list = room && room.joined ? [...room.members].sort((a, b) => a[1].localeCompare(b[1])) : [];
    ui.members.replaceChildren(...list.map(([id, name]) => {
      const li = el('li');
      if (id === fresh) li.classList.add('joining');
      li.append(avatar(name), el('span', 'member-name', name));
      if (state.me && id === state.me.id) li.append(el('span', 'you', 'you'));
      return li;
    }));
    ui.memberCount.textContent = list.length ? String(list.length) : '';
  }

  function renderRoom() {
    renderHeader();
    renderJoined();
    renderMembers();
    setStatus(state.status, ui.connText.textContent);
  }

  function renderHeader() {
    const room = currentRoom();
    if (room) {
      ui.title.textContent = `# ${room.name}`;
      const others = [...room.members].filter(([id]) => !state.me || id !== state.me.id).map(([, n]) => n).sort();
      const names = others.length > 3 ? `${others.slice(0, 3).join(', ')} and ${others.length - 3} more` : others.join(', ');
      ui.sub.textContent = !room.joined
        ? (state.status === 'online' ? 'joining…' : 'waiting for the connection')
        : others.length ? `${room.count} members · with ${names}` : 'just you so far';
      ui.leave.hidden = false;
      document.title = `#${room.name} · volna`;
    } else {
      ui.title.textContent = 'volna';
      ui.sub.textContent = 'pick a room to start';
      ui.leave.hidden = true;
    }
  }

  function updateTitle() {
    let total = 0;
    for (const room of state.rooms.values()) total += room.unread;
    const room = currentRoom();
    const base = room ? `#${room.name} · volna` : 'volna chat';
    document.title = total ? `(${total}) ${base}` : base;
    ui.totalUnread.hidden = !total;
    ui.totalUnread.textContent = total > 99 ? '99+' : String(total);
    if (!document.hidden && room && room.unread) { room.unread = 0; renderJoined(); }
  }

  function atBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }
  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  // ------------------------------------------------------------------ name dialog

  function openNameDialog(first) {
    ui.nameInput.value = state.me && state.wantName ? state.me.name : state.wantName || '';
    ui.nameError.textContent = '';
    ui.nameCancel.hidden = first;
    ui.dialog.dataset.first = first ? '1' : '';
    if (!ui.dialog.open) ui.dialog.showModal();
    ui.nameInput.focus();
    ui.nameInput.select();
  }

  ui.dialog.addEventListener('cancel', (ev) => { if (ui.dialog.dataset.first) ev.preventDefault(); });
  ui.nameCancel.addEventListener('click', () => ui.dialog.close());
  ui.nameInput.addEventListener('input', () => { ui.nameError.textContent = ''; });
  ui.nameForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = ui.nameInput.value.trim();
    if (!validName(name)) {
      ui.nameError.textContent = 'Use 1–64 letters, digits and - _ . # @ (no spaces).';
      return;
    }
    const first = Boolean(ui.dialog.dataset.first);
    if (state.status === 'online' && state.me && state.me.name !== name) {
      try {
        const { msg } = await request('nick', { name });
        renamed(msg.name);
      } catch (e) {
        ui.nameError.textContent = e.code === 'name-taken' ? `“${name}” is taken right now: pick another.` : e.message;
        return;
      }
    }
    state.wantName = name;
    store.set('name', name);
    ui.dialog.close();
    renderMe();
    renderMembers();
    if (first && state.status === 'online') startRooms();
    ui.input.focus();
  });
  ui.rename.addEventListener('click', () => openNameDialog(false));

  // ------------------------------------------------------------------ composer

  function autosize() {
    ui.input.style.height = 'auto';
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 180)}px`;
  }

  ui.input.addEventListener('input', autosize);
  ui.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.composer.requestSubmit();
    }
  });

  ui.composer.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const room = currentRoom();
    const text = ui.input.value;
    if (!room || !text.trim()) return;
    if (state.status !== 'online' || !room.joined) {
      toast('Not connected: your message is kept in the box.', 'info', 3000);
      return;
    }
    ui.input.value = '';
    autosize();
    try {
      await request('message', { room: room.name, data: text });
    } catch (e) {
      if (!ui.input.value) { ui.input.value = text; autosize(); }
      toast(`Not sent: ${e.message}`);
    }
  });

  // Images: the attach button, drag and drop anywhere on the conversation, and paste.
  function isImage(file) {
    return /^image\/(png|jpeg|gif|webp)$/.test(file.type) || /\.(png|jpe?g|gif|webp)$/i.test(file.name || '');
  }

  async function shareImage(file) {
    const room = currentRoom();
    if (!room || !room.joined || state.status !== 'online') {
      toast('Join a room (and be online) to share an image.');
      return;
    }
    const name = (file.name || 'image').replace(/^.*[\\/]/, '') || 'image';
    if (!isImage(file)) {
      toast(`${name}: only PNG, JPEG, GIF and WebP images can be shared.`);
      return;
    }
    if (file.size === 0) {
      toast(`${name} is empty.`);
      return;
    }
    if (file.size > state.limits.image) {
      toast(`${name} is ${fmtBytes(file.size)}; images can be at most ${fmtBytes(state.limits.image)}.`);
      return;
    }
    state.uploads++;
    ui.upload.hidden = false;
    ui.uploadText.textContent = `Sharing ${name} (${fmtBytes(file.size)})…`;
    try {
      await request('image', { room: room.name, name }, [file]);
    } catch (e) {
      toast(e.code === 'disconnected' ? `${name} was not shared: the connection dropped.` : `${name} was not shared: ${e.message}`);
    } finally {
      if (--state.uploads === 0) ui.upload.hidden = true;
    }
  }

  ui.attach.addEventListener('click', () => ui.file.click());
  ui.file.addEventListener('change', () => {
    for (const f of ui.file.files) shareImage(f);
    ui.file.value = '';
  });
  ui.input.addEventListener('paste', (ev) => {
    const files = [...(ev.clipboardData ? ev.clipboardData.files : [])].filter((f) => f.type.startsWith('image/'));
    if (files.length) {
      ev.preventDefault();
      files.forEach(shareImage);
    }
  });
  let dragDepth = 0;
  const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes('Files');
  ui.chat.addEventListener('dragenter', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    dragDepth++;
    ui.dropzone.hidden = false;
  });
  ui.chat.addEventListener('dragover', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = 'copy';
  });
  ui.chat.addEventListener('dragleave', () => {
    if (--dragDepth <= 0) { dragDepth = 0; ui.dropzone.hidden = true; }
  });
  ui.chat.addEventListener('drop', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    dragDepth = 0;
    ui.dropzone.hidden = true;
    const files = [...ev.dataTransfer.files];
    const images = files.filter(isImage);
    if (!images.length && files.length) toast('Only PNG, JPEG, GIF and WebP images can be shared.');
    images.forEach(shareImage);
  });

  // ------------------------------------------------------------------ sidebar controls

  ui.joinForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = ui.joinInput.value;
    if (!name.trim()) return;
    if (await joinRoom(name)) ui.joinInput.value = '';
  });
  ui.leave.addEventListener('click', () => {
    const room = currentRoom();
    if (room) leaveRoom(room);
  });

  function closeDrawer() {
    ui.app.classList.remove('drawer');
    ui.scrim.hidden = true;
    ui.drawerOpen.setAttribute('aria-expanded', 'false');
  }
  ui.drawerOpen.addEventListener('click', () => {
    ui.app.classList.add('drawer');
    ui.scrim.hidden = false;
    ui.drawerOpen.setAttribute('aria-expanded', 'true');
  });
  ui.drawerClose.addEventListener('click', closeDrawer);
  ui.scrim.addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeDrawer(); });
  ui.messages.addEventListener('scroll', () => {
    const room = currentRoom();
    if (room) room.stick = atBottom();
  });

  // ------------------------------------------------------------------ start

  renderMe();
  renderJoined();
  renderAll();
  renderRoom();
  connect();
})();
