//! A lean server-side WebSocket (RFC 6455) over the raw `TcpStream` of an
//! upgraded HTTP/1.1 connection, and the HTTP server that makes that stream
//! reachable.
//!
//! Why not tungstenite: it keeps a 128 KiB read buffer per connection (and a
//! write buffer), which makes an idle connection cost ~120 KiB, and every
//! outgoing message goes through a task wake-up and a `flush`. Here:
//! - **reading** waits with `poll_read_ready` and reads with `try_read` into a
//!   buffer on the thread's stack; only the bytes of an unfinished frame are
//!   kept (and freed once it is complete), so an idle connection holds no
//!   buffer at all;
//! - **writing** is done by whoever has frames: [`WsSocket`] is a
//!   [`DirectSink`], so an [`Outbox`](volna_hub::Outbox) push writes straight
//!   to the socket when nothing is queued, and the connection's writer task
//!   writes everything queued with one vectored `write` (frame headers are
//!   built on the stack, payloads are never copied).
//!
//! [`serve`] replaces `axum::serve`: it drives each connection with hyper's
//! HTTP/1 server directly so that an upgraded connection can be downcast
//! back to its `TcpStream` (axum's server wraps the stream in a private type).
//! Requests it serves carry the [`RawCapable`] extension.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use sha1::{Digest, Sha1};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volna_hub::{clock_ms, DirectSink, Frame, Outbox};

/// Marks a request served by [`serve`]: its upgrade yields a `TcpStream`.
#[derive(Debug, Clone, Copy)]
pub struct RawCapable;

/// Serves `router` on `listener` with hyper's HTTP/1 server until
/// `shutdown` is cancelled, then waits for open HTTP exchanges to finish
/// (upgraded connections are on their own by then).
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let router = router.layer(axum::Extension(RawCapable));
    let conns = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // E.g. out of file descriptors: wait instead of spinning.
                tracing::error!(error = %e, "http accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!(error = %e, "http connection failed");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

// ---------------------------------------------------------------------------
// The opening handshake
// ---------------------------------------------------------------------------

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Checks an HTTP/1.1 WebSocket upgrade request; returns its
/// `Sec-WebSocket-Key` when valid.
pub fn check_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> Option<Bytes> {
    if method != Method::GET || version != Version::HTTP_11 {
        return None;
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes().trim_ascii() != b"13")
    {
        return None;
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)?
        .as_bytes()
        .trim_ascii();
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
    if decoded.len() != 16 {
        return None;
    }
    Some(Bytes::copy_from_slice(key))
}

/// The `101 Switching Protocols` answer to a valid upgrade request.
pub fn switching_protocols(key: &[u8]) -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Waits for hyper to hand over the upgraded connection and takes back its
/// `TcpStream` and the bytes hyper had already read past the request.
/// `None` if the upgrade failed or the connection is not a plain TCP one.
pub async fn take_stream(on_upgrade: hyper::upgrade::OnUpgrade) -> Option<(TcpStream, Bytes)> {
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Some((parts.io.into_inner(), parts.read_buf)),
        Err(_) => {
            tracing::warn!("upgraded connection is not a TcpStream");
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/// Opcodes.
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Writes a server frame header (FIN set, unmasked) into `out`; returns its
/// length.
fn put_header(opcode: u8, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xFFFF {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= 0xFFFF {
        4
    } else {
        10
    }
}

fn opcode_of(frame: &Frame) -> u8 {
    match frame {
        Frame::Text(_) => OP_TEXT,
        Frame::Binary(_) => OP_BINARY,
    }
}

/// Bytes of a data frame on the wire.
pub fn frame_wire_len(frame: &Frame) -> usize {
    header_len(frame.len()) + frame.len()
}

/// Frames per vectored write (two slices each, within `IOV_MAX`).
const FRAMES_PER_WRITE: usize = 256;

/// One non-blocking write of `frames` (at most [`FRAMES_PER_WRITE`]),
/// starting `skip` bytes into the first frame.
///
/// Small batches (the usual case: one broadcast frame, or a handful queued
/// behind each other) are gathered into one buffer and written with
/// `send(2)`, which goes straight to the socket layer: `writev(2)` costs a
/// file-position lock, an iovec import and a copy per slice on top, which on
/// loopback is about a tenth of a small write. Large batches are written
/// vectored, without copying the payloads.
fn try_write_frames(stream: &TcpStream, frames: &[Frame], skip: usize) -> io::Result<usize> {
    // Wire bytes of a batch small enough to gather (not counted for larger ones).
    let total = if frames.len() <= 64 {
        frames.iter().map(frame_wire_len).sum()
    } else {
        usize::MAX
    };
    match frames {
        [] => Ok(0),
        _ if total <= GATHER_MAX => write_gathered(stream, frames, skip, total),
        // Large payloads: written from where they are, never copied (a
        // partial write would copy them again on every retry).
        _ if frames.len() <= 128 => write_frames_with::<128, 256>(stream, frames, skip),
        _ => write_frames_with::<FRAMES_PER_WRITE, { FRAMES_PER_WRITE * 2 }>(stream, frames, skip),
    }
}

/// Batches up to this many wire bytes are gathered on the stack.
const SMALL_BATCH: usize = 512;

/// Waits until `stream` may be readable. Unlike `TcpStream::readable`,
/// whose future carries its own waiter (~150 bytes in every idle
/// connection's task), this parks the task's waker in the slot the stream's
/// registration already has. Only one task may wait at a time: the reader.
async fn readable(stream: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await
}

/// [`readable`] for writing; only the connection's writer waits.
async fn writable(stream: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| stream.poll_write_ready(cx)).await
}

/// A non-blocking `send(2)` on the stream, with tokio's readiness kept right.
fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        socket2::SockRef::from(stream).send(bytes)
    })
}

/// Bytes gathered into one buffer for a write at most.
const GATHER_MAX: usize = 16 * 1024;

/// Writes every frame, header first, to `out` (a `Vec` or a slice with
/// room for them all).
fn gather(frames: &[Frame], mut out: impl io::Write) {
    let mut head = [0u8; 10];
    for f in frames {
        let n = put_header(opcode_of(f), f.len(), &mut head);
        let _ = out.write_all(&head[..n]);
        let _ = out.write_all(f.bytes());
    }
}

/// [`try_write_frames`] for a batch of at most [`GATHER_MAX`] wire bytes:
/// copied into one buffer (on the stack when it is small) and sent as one
/// slice.
fn write_gathered(
    stream: &TcpStream,
    frames: &[Frame],
    skip: usize,
    total: usize,
) -> io::Result<usize> {
    if total <= skip {
        return Ok(0);
    }
    if total <= SMALL_BATCH {
        let mut buf = [0u8; SMALL_BATCH];
        gather(frames, &mut buf[..]);
        return send(stream, &buf[skip..total]);
    }
    thread_local! {
        static GATHER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    GATHER.with(|buf| {
        let Ok(mut buf) = buf.try_borrow_mut() else {
            return write_frames_with::<64, 128>(stream, frames, skip);
        };
        buf.clear();
        gather(frames, &mut *buf);
        let result = send(stream, &buf[skip..]);
        if buf.capacity() > 4 * GATHER_MAX {
            *buf = Vec::new();
        }
        result
    })
}

/// [`try_write_frames`] with room for `N` frames (`S` = 2 `N` slices).
fn write_frames_with<const N: usize, const S: usize>(
    stream: &TcpStream,
    frames: &[Frame],
    skip: usize,
) -> io::Result<usize> {
    let frames = &frames[..frames.len().min(N)];
    let mut heads = [[0u8; 10]; N];
    let mut head_lens = [0u8; N];
    for (i, f) in frames.iter().enumerate() {
        head_lens[i] = put_header(opcode_of(f), f.len(), &mut heads[i]) as u8;
    }
    let mut iov = [IoSlice::new(&[]); S];
    let mut n = 0;
    for (i, f) in frames.iter().enumerate() {
        let head = &heads[i][..usize::from(head_lens[i])];
        let payload: &[u8] = f.bytes();
        let skip = if i == 0 { skip } else { 0 };
        if skip < head.len() {
            iov[n] = IoSlice::new(&head[skip..]);
            n += 1;
            if !payload.is_empty() {
                iov[n] = IoSlice::new(payload);
                n += 1;
            }
        } else if skip - head.len() < payload.len() {
            iov[n] = IoSlice::new(&payload[skip - head.len()..]);
            n += 1;
        }
    }
    if n == 0 {
        return Ok(0);
    }
    stream.try_write_vectored(&iov[..n])
}

/// Moves a write position (`frame`, `skip` bytes into it) on by `n` bytes.
fn advance(frames: &[Frame], mut frame: usize, mut skip: usize, mut n: usize) -> (usize, usize) {
    while n > 0 && frame < frames.len() {
        let left = frame_wire_len(&frames[frame]) - skip;
        if n >= left {
            n -= left;
            frame += 1;
            skip = 0;
        } else {
            skip += n;
            n = 0;
        }
    }
    (frame, skip)
}

/// A control frame (payload ≤ 125 bytes) ready to write.
fn control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let mut v = Vec::with_capacity(2 + payload.len());
    v.push(0x80 | opcode);
    v.push(payload.len() as u8);
    v.extend_from_slice(payload);
    v
}

/// The payload of a close frame: the code, then a reason cut to fit.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + reason.len());
    v.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    v.extend_from_slice(&reason.as_bytes()[..end]);
    v
}

/// Writes the outboxes of many connections in turn, from one task: a push
/// to an idle connection schedules its outbox here instead of waking the
/// connection's own writer task (see [`DirectSink`]). While the flusher
/// works through a fan-out, later messages pile up behind it, so a busy
/// server writes several frames per syscall.
///
/// Paced pushes (broadcasts, see `Outbox::push_paced`) to a connection
/// written to less than the hold ago wait in a timer wheel with one slot
/// per millisecond until the hold is over: each write then carries every
/// frame of the hold.
pub struct Flusher {
    dirty: Mutex<Vec<Arc<Outbox>>>,
    held: Mutex<Wheel>,
    notify: Notify,
    started: AtomicBool,
    hold_ms: u32,
}

/// Outboxes flushed between two yields of the flusher task.
const FLUSHES_PER_YIELD: usize = 128;

/// Slots of the hold wheel, one per millisecond: more than the longest hold
/// (a busy connection is held twice [`MAX_HOLD_MS`]).
const WHEEL_SLOTS: u32 = 1024;

/// The longest hold accepted, in milliseconds.
pub const MAX_HOLD_MS: u32 = 300;

/// Held outboxes by deadline (`clock_ms` times).
struct Wheel {
    slots: Vec<Vec<(u32, Arc<Outbox>)>>,
    /// Entries in all slots.
    count: usize,
    /// The first millisecond not yet collected.
    cursor: u32,
    /// The flusher waits for a notification (it is not working through a
    /// batch, after which it looks at the wheel anyway)…
    sleeping: bool,
    /// …and its timer, if any, fires then.
    wake_at: Option<u32>,
}

/// `a` is at or before `b` on the wrapping millisecond clock.
fn not_after(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < u32::MAX / 2
}

impl Wheel {
    /// Adds an entry; true if the flusher must be woken to notice it.
    fn insert(&mut self, deadline: u32, outbox: Arc<Outbox>) -> bool {
        let now = clock_ms();
        if self.count == 0 {
            self.cursor = now;
        }
        // Never behind the cursor (the slot would not be seen for a lap).
        let deadline = if not_after(deadline, self.cursor) {
            self.cursor
        } else {
            deadline
        };
        self.slots[(deadline % WHEEL_SLOTS) as usize].push((deadline, outbox));
        self.count += 1;
        if !self.sleeping || self.wake_at.is_some_and(|w| not_after(w, deadline)) {
            return false;
        }
        self.wake_at = Some(deadline);
        true
    }

    /// Moves the entries due at `now` into `out`.
    fn collect(&mut self, now: u32, out: &mut Vec<Arc<Outbox>>) {
        self.sleeping = false;
        self.wake_at = None;
        let mut steps = 0;
        while self.count > 0 && not_after(self.cursor, now) && steps < WHEEL_SLOTS {
            let slot = &mut self.slots[(self.cursor % WHEEL_SLOTS) as usize];
            let before = slot.len();
            slot.retain(|(deadline, outbox)| {
                if not_after(*deadline, now) {
                    out.push(outbox.clone());
                    false
                } else {
                    true
                }
            });
            self.count -= before - slot.len();
            if slot.is_empty() && slot.capacity() > 1024 {
                *slot = Vec::new();
            }
            self.cursor = self.cursor.wrapping_add(1);
            steps += 1;
        }
    }

    /// The earliest deadline waiting, if any.
    fn next(&self) -> Option<u32> {
        if self.count == 0 {
            return None;
        }
        (0..WHEEL_SLOTS)
            .map(|i| self.cursor.wrapping_add(i))
            .find(|t| {
                self.slots[(t % WHEEL_SLOTS) as usize]
                    .iter()
                    .any(|(d, _)| d == t)
            })
            .or(Some(self.cursor))
    }
}

impl Flusher {
    /// A flusher that holds paced pushes for `hold` (see [`MAX_HOLD_MS`]);
    /// [`start`](Flusher::start) runs it.
    pub fn new(hold: Duration) -> Arc<Flusher> {
        Arc::new(Flusher {
            dirty: Mutex::new(Vec::new()),
            held: Mutex::new(Wheel {
                slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
                count: 0,
                cursor: 0,
                sleeping: false,
                wake_at: None,
            }),
            notify: Notify::new(),
            started: AtomicBool::new(false),
            hold_ms: (hold.as_millis() as u32).min(MAX_HOLD_MS),
        })
    }

    /// The hold, in milliseconds.
    pub fn hold_ms(&self) -> u32 {
        self.hold_ms
    }

    /// Spawns its task (once) on `tracker`; it ends at `shutdown`, after
    /// which connections flush through their own writer tasks.
    pub fn start(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tracker.spawn(self.clone().run(shutdown));
        }
    }

    fn schedule(&self, outbox: Arc<Outbox>) {
        let mut dirty = self.dirty.lock().unwrap();
        let was_empty = dirty.is_empty();
        dirty.push(outbox);
        drop(dirty);
        if was_empty {
            self.notify.notify_one();
        }
    }

    fn schedule_at(&self, outbox: Arc<Outbox>, deadline: u32) {
        let wake = self.held.lock().unwrap().insert(deadline, outbox);
        if wake {
            self.notify.notify_one();
        }
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let epoch = tokio::time::Instant::now() - Duration::from_millis(u64::from(clock_ms()));
        let mut work = Vec::new();
        loop {
            std::mem::swap(&mut *self.dirty.lock().unwrap(), &mut work);
            let now = clock_ms();
            let next = {
                let mut held = self.held.lock().unwrap();
                held.collect(now, &mut work);
                if work.is_empty() {
                    let next = held.next();
                    held.sleeping = true;
                    held.wake_at = next;
                    next
                } else {
                    None
                }
            };
            if work.is_empty() {
                if work.capacity() > 4096 {
                    work = Vec::new();
                }
                // The wrapping clock, placed back on tokio's timeline.
                let until = next.map(|t| {
                    let ahead = t.wrapping_sub(now).min(WHEEL_SLOTS);
                    epoch + Duration::from_millis(u64::from(now) + u64::from(ahead))
                });
                tokio::select! {
                    _ = self.notify.notified() => continue,
                    _ = async { tokio::time::sleep_until(until.unwrap()).await }, if until.is_some() => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            let mut n = 0;
            while let Some(outbox) = work.pop() {
                outbox.flush_direct();
                n += 1;
                if n % FLUSHES_PER_YIELD == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// The server end of a WebSocket connection, shared by its reader, its
/// writer task and (as a [`DirectSink`]) whoever pushes to its outbox.
pub struct WsSocket {
    stream: TcpStream,
    /// The outbox it is installed in, and who flushes it.
    direct: OnceLock<(Weak<Outbox>, Arc<Flusher>)>,
    /// A pong to send (the payload of the last ping).
    pong: Mutex<Option<Bytes>>,
    /// The close code to send instead of the one derived from the close
    /// reason (0: none).
    close_code: AtomicU16,
}

impl WsSocket {
    /// Wraps an upgraded stream.
    pub fn new(stream: TcpStream) -> WsSocket {
        let _ = stream.set_nodelay(true);
        WsSocket {
            stream,
            direct: OnceLock::new(),
            pong: Mutex::new(None),
            close_code: AtomicU16::new(0),
        }
    }

    /// Installs it as `outbox`'s direct sink, flushed by `flusher`.
    pub fn install(self: &Arc<Self>, outbox: &Arc<Outbox>, flusher: Arc<Flusher>) {
        let hold = flusher.hold_ms();
        let _ = self.direct.set((Arc::downgrade(outbox), flusher));
        outbox.set_direct(self.clone(), hold);
    }

    /// The stream.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Asks the writer to answer a ping (the caller then wakes it, e.g.
    /// with [`Outbox::claim_writer`]).
    pub fn queue_pong(&self, payload: Bytes) {
        *self.pong.lock().unwrap() = Some(payload);
    }

    /// The pong waiting to be sent, if any.
    pub fn take_pong(&self) -> Option<Bytes> {
        self.pong.lock().unwrap().take()
    }

    /// Overrides the close code the writer sends.
    pub fn set_close_code(&self, code: u16) {
        let _ = self
            .close_code
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The overriding close code, if one was set.
    pub fn close_code(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Relaxed) {
            0 => None,
            c => Some(c),
        }
    }

    /// Writes every frame (from `skip` bytes into the first), as few
    /// vectored writes as the socket allows.
    pub async fn write_frames(&self, frames: &[Frame], skip: usize) -> io::Result<()> {
        let (mut frame, mut skip) = (0, skip);
        while frame < frames.len() {
            match try_write_frames(&self.stream, &frames[frame..], skip) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => (frame, skip) = advance(frames, frame, skip, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(&self.stream).await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes raw bytes completely.
    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.stream.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(&self.stream).await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes one control frame. The caller must own the socket.
    pub async fn write_control(&self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.write_all(&control_frame(opcode, payload)).await
    }

    /// Writes one text message. The caller must own the socket.
    pub async fn write_text(&self, text: &'static str) -> io::Result<()> {
        self.write_frames(&[Frame::Text(Bytes::from_static(text.as_bytes()))], 0)
            .await
    }

    /// Writes a close frame. The caller must own the socket.
    pub async fn write_close(&self, code: u16, reason: &str) -> io::Result<()> {
        self.write_control(OP_CLOSE, &close_payload(code, reason))
            .await
    }
}

impl DirectSink for WsSocket {
    fn try_write_frames(&self, frames: &[Frame], skip: usize) -> io::Result<usize> {
        // Up to FRAMES_PER_WRITE frames per call: the rest is queued.
        try_write_frames(&self.stream, frames, skip)
    }

    fn wire_len(&self, frame: &Frame) -> usize {
        frame_wire_len(frame)
    }

    fn schedule(&self) {
        if let Some((outbox, flusher)) = self.direct.get() {
            if let Some(outbox) = outbox.upgrade() {
                flusher.schedule(outbox);
            }
        }
    }

    fn schedule_at(&self, deadline: u32) {
        if let Some((outbox, flusher)) = self.direct.get() {
            if let Some(outbox) = outbox.upgrade() {
                flusher.schedule_at(outbox, deadline);
            }
        }
    }
}

/// A message (or control frame) from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// A complete text message, valid UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong,
}

/// Why [`Reader::run`] returned.
#[derive(Debug)]
pub enum ReadEnd {
    /// The callback asked to stop; unread bytes stay buffered.
    Stopped,
    /// The peer closed the TCP connection.
    Eof,
    /// The peer sent a close frame (with this code, if any).
    Closed(Option<u16>),
    /// The peer broke the protocol: close with this code.
    Fail(u16, &'static str),
    /// The socket failed.
    Io(io::Error),
}

/// What one [`Reader::read_once`] did.
enum Read {
    /// The callback asked to stop.
    Stopped,
    /// The socket may hold more.
    More,
    /// The socket is empty: wait for it.
    Drained,
}

/// Reads a bit over a typical batch of small frames in one syscall.
const READ_CHUNK: usize = 16 * 1024;

/// The reading half's state: only what a partial frame or a fragmented
/// message needs, nothing while idle.
pub struct Reader {
    /// Bytes of a frame not yet complete (or left when the callback stopped).
    partial: Vec<u8>,
    /// A fragmented message being assembled: text?, payload so far.
    frag: Option<(bool, BytesMut)>,
    max_payload: usize,
}

enum Parsed {
    /// Not enough bytes for a whole frame.
    Incomplete,
    /// One frame: fin, opcode, mask, header length, payload length.
    Frame(bool, u8, [u8; 4], usize, usize),
}

fn parse_header(buf: &[u8], max_payload: usize) -> Result<Parsed, ReadEnd> {
    if buf.len() < 2 {
        return Ok(Parsed::Incomplete);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(ReadEnd::Fail(CLOSE_PROTOCOL, "reserved bits set"));
    }
    let opcode = b0 & 0x0F;
    if b1 & 0x80 == 0 {
        return Err(ReadEnd::Fail(CLOSE_PROTOCOL, "unmasked client frame"));
    }
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(ReadEnd::Fail(CLOSE_PROTOCOL, "fragmented control frame"));
            }
            if b1 & 0x7F > 125 {
                return Err(ReadEnd::Fail(CLOSE_PROTOCOL, "control frame too long"));
            }
        }
        _ => return Err(ReadEnd::Fail(CLOSE_PROTOCOL, "unknown opcode")),
    }
    let (len, at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(Parsed::Incomplete);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(Parsed::Incomplete);
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().unwrap());
            if len >> 63 != 0 {
                return Err(ReadEnd::Fail(CLOSE_PROTOCOL, "invalid frame length"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if len > max_payload as u64 {
        return Err(ReadEnd::Fail(CLOSE_TOO_BIG, "message too big"));
    }
    if buf.len() < at + 4 {
        return Ok(Parsed::Incomplete);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    Ok(Parsed::Frame(fin, opcode, mask, at + 4, len as usize))
}

fn unmask_into(out: &mut BytesMut, payload: &[u8], mask: [u8; 4]) {
    let start = out.len();
    out.extend_from_slice(payload);
    let data = &mut out[start..];
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

impl Reader {
    /// A reader for messages of at most `max_payload` bytes; `pre` holds
    /// bytes already read past the handshake.
    pub fn new(max_payload: usize, pre: Bytes) -> Reader {
        Reader {
            partial: pre.to_vec(),
            frag: None,
            max_payload: max_payload.max(1),
        }
    }

    /// Reads and hands every message to `on` until `on` returns false
    /// (the rest stays buffered for the next call) or the connection ends.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read are parsed before any await.
    pub async fn run<F>(&mut self, stream: &TcpStream, on: &mut F) -> ReadEnd
    where
        F: FnMut(Msg) -> bool + Send,
    {
        if !self.partial.is_empty() {
            match self.feed(&[], on) {
                Ok(true) => return ReadEnd::Stopped,
                Ok(false) => {}
                Err(end) => return end,
            }
        }
        loop {
            if let Err(e) = readable(stream).await {
                return ReadEnd::Io(e);
            }
            loop {
                match self.read_once(stream, on) {
                    Ok(Read::Stopped) => return ReadEnd::Stopped,
                    Ok(Read::More) => {}
                    Ok(Read::Drained) => break,
                    Err(end) => return end,
                }
            }
        }
    }

    /// One `recv` into a stack buffer.
    ///
    /// A read that returns less than the buffer emptied the socket, so the
    /// stream's readiness is cleared right away instead of by a second
    /// `recv` that would only say `EAGAIN` (a third of the syscalls of a
    /// request/reply exchange). This is race-free: the readiness snapshot
    /// is taken before the `recv`, and tokio only clears it if no readiness
    /// event arrived since, so bytes landing after the `recv` still wake the
    /// reader.
    fn read_once(
        &mut self,
        stream: &TcpStream,
        on: &mut dyn FnMut(Msg) -> bool,
    ) -> Result<Read, ReadEnd> {
        let mut buf = [0u8; READ_CHUNK];
        let mut short = 0;
        let result = stream.try_io(tokio::io::Interest::READABLE, || {
            let n = io::Read::read(&mut &*socket2::SockRef::from(stream), &mut buf)?;
            if n > 0 && n < buf.len() {
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let (n, drained) = match result {
            Ok(0) => return Err(ReadEnd::Eof),
            Ok(n) => (n, false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => (short, true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Drained),
            Err(e) => return Err(ReadEnd::Io(e)),
        };
        match self.feed(&buf[..n], on)? {
            true => Ok(Read::Stopped),
            false if drained => Ok(Read::Drained),
            false => Ok(Read::More),
        }
    }

    /// Parses `data` after what is buffered; true if `on` asked to stop.
    fn feed(&mut self, data: &[u8], on: &mut dyn FnMut(Msg) -> bool) -> Result<bool, ReadEnd> {
        if self.partial.is_empty() {
            let (used, stopped) = self.parse(data, on)?;
            if used < data.len() {
                self.partial.extend_from_slice(&data[used..]);
            }
            Ok(stopped)
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let (used, stopped) = self.parse(&buf, on)?;
            if used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
            Ok(stopped)
        }
    }

    /// Parses whole frames from `buf`; returns the bytes used and whether
    /// `on` asked to stop.
    fn parse(
        &mut self,
        buf: &[u8],
        on: &mut dyn FnMut(Msg) -> bool,
    ) -> Result<(usize, bool), ReadEnd> {
        let mut pos = 0;
        loop {
            let (fin, opcode, mask, hlen, plen) = match parse_header(&buf[pos..], self.max_payload)?
            {
                Parsed::Incomplete => return Ok((pos, false)),
                Parsed::Frame(fin, op, mask, hlen, plen) => (fin, op, mask, hlen, plen),
            };
            if buf.len() - pos < hlen + plen {
                return Ok((pos, false));
            }
            let payload = &buf[pos + hlen..pos + hlen + plen];
            pos += hlen + plen;
            let msg = match opcode {
                OP_TEXT | OP_BINARY => {
                    if self.frag.is_some() {
                        return Err(ReadEnd::Fail(
                            CLOSE_PROTOCOL,
                            "expected a continuation frame",
                        ));
                    }
                    let mut data = BytesMut::with_capacity(plen);
                    unmask_into(&mut data, payload, mask);
                    if !fin {
                        self.frag = Some((opcode == OP_TEXT, data));
                        continue;
                    }
                    Self::message(opcode == OP_TEXT, data.freeze())?
                }
                OP_CONT => {
                    let Some((_, data)) = self.frag.as_mut() else {
                        return Err(ReadEnd::Fail(
                            CLOSE_PROTOCOL,
                            "unexpected continuation frame",
                        ));
                    };
                    if data.len() + plen > self.max_payload {
                        return Err(ReadEnd::Fail(CLOSE_TOO_BIG, "message too big"));
                    }
                    unmask_into(data, payload, mask);
                    if !fin {
                        continue;
                    }
                    let (text, data) = self.frag.take().unwrap();
                    Self::message(text, data.freeze())?
                }
                OP_PING => {
                    let mut data = BytesMut::with_capacity(plen);
                    unmask_into(&mut data, payload, mask);
                    Msg::Ping(data.freeze())
                }
                OP_PONG => Msg::Pong,
                _ => {
                    // OP_CLOSE (parse_header refused the rest).
                    let mut data = BytesMut::with_capacity(plen);
                    unmask_into(&mut data, payload, mask);
                    return Err(Self::close(&data));
                }
            };
            if !on(msg) {
                return Ok((pos, true));
            }
        }
    }

    fn message(text: bool, data: Bytes) -> Result<Msg, ReadEnd> {
        if !text {
            return Ok(Msg::Binary(data));
        }
        if std::str::from_utf8(&data).is_err() {
            return Err(ReadEnd::Fail(
                CLOSE_INVALID_DATA,
                "invalid UTF-8 in a text message",
            ));
        }
        Ok(Msg::Text(data))
    }

    fn close(payload: &[u8]) -> ReadEnd {
        match payload.len() {
            0 => ReadEnd::Closed(None),
            1 => ReadEnd::Fail(CLOSE_PROTOCOL, "invalid close frame"),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !valid_close_code(code) {
                    return ReadEnd::Fail(CLOSE_PROTOCOL, "invalid close code");
                }
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return ReadEnd::Fail(CLOSE_INVALID_DATA, "invalid UTF-8 in a close reason");
                }
                ReadEnd::Closed(Some(code))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            v.push(0x80 | payload.len() as u8);
        } else if payload.len() <= 0xFFFF {
            v.push(0x80 | 126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            v.push(0x80 | 127);
            v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    fn feed_all(r: &mut Reader, data: &[u8]) -> (Vec<Msg>, Option<ReadEnd>) {
        let mut got = Vec::new();
        let end = r
            .feed(data, &mut |m| {
                got.push(m);
                true
            })
            .err();
        (got, end)
    }

    #[test]
    fn accept_key_matches_rfc() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_frames_split_anywhere() {
        let big = vec![b'x'; 70_000];
        let mut wire = masked(OP_TEXT, true, b"hello");
        wire.extend(masked(OP_BINARY, true, &[1, 2, 3]));
        wire.extend(masked(OP_TEXT, false, b"fra"));
        wire.extend(masked(OP_PING, true, b"p"));
        wire.extend(masked(OP_CONT, true, b"gment"));
        wire.extend(masked(OP_BINARY, true, &big));
        wire.extend(masked(OP_TEXT, true, &[0xCE, 0xBA]));
        for step in [1, 2, 3, 7, 1000, wire.len()] {
            let mut r = Reader::new(1 << 20, Bytes::new());
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                let (m, end) = feed_all(&mut r, chunk);
                assert!(end.is_none());
                got.extend(m);
            }
            assert_eq!(
                got,
                vec![
                    Msg::Text(Bytes::from_static(b"hello")),
                    Msg::Binary(Bytes::from_static(&[1, 2, 3])),
                    Msg::Ping(Bytes::from_static(b"p")),
                    Msg::Text(Bytes::from_static(b"fragment")),
                    Msg::Binary(Bytes::from(big.clone())),
                    Msg::Text(Bytes::from_static("κ".as_bytes())),
                ]
            );
            assert!(r.partial.is_empty() && r.partial.capacity() == 0);
        }
    }

    fn fails(wire: &[u8], max: usize) -> u16 {
        let mut r = Reader::new(max, Bytes::new());
        match feed_all(&mut r, wire).1 {
            Some(ReadEnd::Fail(code, _)) => code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn protocol_violations() {
        let mut unmasked = masked(OP_TEXT, true, b"a");
        unmasked[1] &= 0x7F;
        assert_eq!(fails(&unmasked[..3], 100), CLOSE_PROTOCOL);
        let mut rsv = masked(OP_TEXT, true, b"a");
        rsv[0] |= 0x40;
        assert_eq!(fails(&rsv, 100), CLOSE_PROTOCOL);
        assert_eq!(fails(&masked(0x3, true, b""), 100), CLOSE_PROTOCOL);
        assert_eq!(fails(&masked(OP_PING, false, b""), 100), CLOSE_PROTOCOL);
        assert_eq!(fails(&masked(OP_CONT, true, b"x"), 100), CLOSE_PROTOCOL);
        let mut two = masked(OP_TEXT, false, b"x");
        two.extend(masked(OP_TEXT, true, b"y"));
        assert_eq!(fails(&two, 100), CLOSE_PROTOCOL);
        assert_eq!(
            fails(&masked(OP_TEXT, true, &[0xFF]), 100),
            CLOSE_INVALID_DATA
        );
        assert_eq!(
            fails(&masked(OP_TEXT, true, &[0; 101])[..4], 100),
            CLOSE_TOO_BIG
        );
        let mut frag = masked(OP_BINARY, false, &[0; 60]);
        frag.extend(masked(OP_CONT, true, &[0; 60]));
        assert_eq!(fails(&frag, 100), CLOSE_TOO_BIG);
        assert_eq!(
            fails(&masked(OP_CLOSE, true, &[3, 0xE7]), 100),
            CLOSE_PROTOCOL
        );
        let mut r = Reader::new(100, Bytes::new());
        match feed_all(&mut r, &masked(OP_CLOSE, true, &[3, 0xE8, b'o', b'k'])).1 {
            Some(ReadEnd::Closed(Some(1000))) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stop_keeps_the_rest() {
        let mut wire = masked(OP_TEXT, true, b"a");
        wire.extend(masked(OP_TEXT, true, b"b"));
        let mut r = Reader::new(100, Bytes::new());
        let mut got = Vec::new();
        assert!(r
            .feed(&wire, &mut |m| {
                got.push(m);
                false
            })
            .unwrap());
        assert_eq!(got, vec![Msg::Text(Bytes::from_static(b"a"))]);
        let (rest, _) = feed_all(&mut r, &[]);
        assert_eq!(rest, vec![Msg::Text(Bytes::from_static(b"b"))]);
    }

    #[test]
    fn write_positions_advance_across_frames() {
        let frames = vec![
            Frame::text("abc"),
            Frame::Binary(Bytes::from(vec![0u8; 200])),
        ];
        assert_eq!(frame_wire_len(&frames[0]), 5);
        assert_eq!(frame_wire_len(&frames[1]), 204);
        assert_eq!(advance(&frames, 0, 0, 3), (0, 3));
        assert_eq!(advance(&frames, 0, 3, 2), (1, 0));
        assert_eq!(advance(&frames, 0, 3, 10), (1, 8));
        assert_eq!(advance(&frames, 1, 8, 196), (2, 0));
    }

    #[tokio::test]
    async fn vectored_writes_resume_mid_frame() {
        // Many frames (vectored), a handful of small ones (gathered on the
        // stack), a few kilobytes (gathered in the thread's buffer) and one
        // large frame among small ones (vectored, not copied); each batch
        // starts some bytes into its first frame, as after a short write.
        let many: Vec<Frame> = (0..600)
            .map(|i| Frame::text(format!("m{i}-{}", "x".repeat(i % 300))))
            .collect();
        let few: Vec<Frame> = (0..3).map(|i| Frame::text(format!("f{i}"))).collect();
        let some: Vec<Frame> = (0..10)
            .map(|i| Frame::text(format!("{i}{}", "s".repeat(700))))
            .collect();
        let large = vec![
            Frame::text("a"),
            Frame::Binary(Bytes::from(vec![7u8; 200_000])),
            Frame::text("b"),
        ];
        for (frames, skip) in [(many, 3), (few, 1), (some, 5), (large, 2)] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut c = TcpStream::connect(addr).await.unwrap();
                let mut all = Vec::new();
                c.read_to_end(&mut all).await.unwrap();
                all
            });
            let (server, _) = listener.accept().await.unwrap();
            let ws = WsSocket::new(server);
            let mut expected = Vec::new();
            for f in &frames {
                let mut h = [0u8; 10];
                let n = put_header(opcode_of(f), f.len(), &mut h);
                expected.extend_from_slice(&h[..n]);
                expected.extend_from_slice(f.bytes());
            }
            ws.write_frames(&frames, skip).await.unwrap();
            drop(ws);
            assert_eq!(
                client.await.unwrap(),
                expected[skip..],
                "{} frames",
                frames.len()
            );
        }
    }

    fn wheel() -> Wheel {
        Wheel {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            count: 0,
            cursor: 0,
            sleeping: false,
            wake_at: None,
        }
    }

    #[test]
    fn wheel_hands_out_entries_when_due_and_wakes_a_sleeper_for_earlier_ones() {
        let mut w = wheel();
        let ob = |n: usize| {
            Arc::new(Outbox::new(volna_hub::OutboxLimits {
                max_frames: n,
                ..Default::default()
            }))
        };
        let now = clock_ms();
        assert!(!w.insert(now + 30, ob(1)), "a working flusher looks anyway");
        w.insert(now + 10, ob(2));
        w.insert(now + 10, ob(3));
        assert_eq!(w.next(), Some(now + 10));
        let mut out = Vec::new();
        w.collect(now + 9, &mut out);
        assert!(out.is_empty());
        w.collect(now + 10, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(w.next(), Some(now + 30));
        // Asleep until +30: an entry due earlier must wake it, a later one not.
        w.sleeping = true;
        w.wake_at = Some(now + 30);
        assert!(!w.insert(now + 40, ob(4)));
        assert!(w.insert(now + 20, ob(5)));
        assert!(!w.insert(now + 25, ob(6)), "already woken for +20");
        // Asleep with no timer: any entry wakes it.
        out.clear();
        w.collect(now + 1000, &mut out);
        assert_eq!(out.len(), 4, "a late flusher gets everything overdue");
        assert_eq!(w.count, 0);
        w.sleeping = true;
        w.wake_at = None;
        assert!(w.insert(clock_ms() + 5, ob(7)));
        // A deadline already past is due at once.
        let mut w = wheel();
        let now = clock_ms();
        w.insert(now.wrapping_sub(50), ob(8));
        out.clear();
        w.collect(now, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn held_broadcasts_are_written_when_the_hold_ends_and_replies_take_them_along() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let flusher = Flusher::new(Duration::from_millis(u64::from(MAX_HOLD_MS)));
        flusher.start(&tracker, shutdown.clone());
        let outbox = Arc::new(Outbox::new(volna_hub::OutboxLimits::default()));
        let ws = Arc::new(WsSocket::new(server));
        ws.install(&outbox, flusher.clone());
        let wire = |texts: &[&str]| {
            let mut v = Vec::new();
            for t in texts {
                v.extend_from_slice(&[0x81, t.len() as u8]);
                v.extend_from_slice(t.as_bytes());
            }
            v
        };
        async fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
            let mut buf = vec![0u8; n];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut buf))
                .await
                .expect("frames arrive")
                .unwrap();
            buf
        }
        // Quiet connection: the first broadcast goes at once.
        outbox.push_paced(&[Frame::text("one")]).unwrap();
        let first = tokio::time::Instant::now();
        assert_eq!(read_n(&mut client, 5).await, wire(&["one"]));
        // Busy: the next ones are held, then written together.
        outbox.push_paced(&[Frame::text("two")]).unwrap();
        outbox.push_paced(&[Frame::text("three")]).unwrap();
        assert_eq!(read_n(&mut client, 12).await, wire(&["two", "three"]));
        assert!(
            first.elapsed() >= Duration::from_millis(u64::from(MAX_HOLD_MS) - 20),
            "held for the hold"
        );
        // Held frames go out with a reply, which does not wait.
        outbox.push_paced(&[Frame::text("four")]).unwrap();
        outbox.push(&[Frame::text("ack")]).unwrap();
        let reply = tokio::time::Instant::now();
        assert_eq!(read_n(&mut client, 11).await, wire(&["four", "ack"]));
        assert!(
            reply.elapsed() < Duration::from_millis(u64::from(MAX_HOLD_MS) / 2),
            "a reply is not held"
        );
        shutdown.cancel();
    }
}
