//! The server end of one WebSocket connection: the upgraded stream (a
//! [`Wire`], plain or TLS) and everything that writes to it.
//!
//! Writing is done by whoever has frames: [`WsSocket`] is a [`DirectSink`],
//! so an [`Outbox`] push writes straight to the socket when nothing is
//! queued, and the connection's writer task writes everything queued with
//! one write (small batches gathered into one buffer, large ones vectored;
//! frame headers are built on the stack, large payloads are never copied).

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::wire::Wire;
use bytes::Bytes;
use volna_hub::{DirectSink, Frame, Outbox};
use volna_protocols::websocket::{
    close_payload, control_frame, header_len, put_header, MAX_HEADER, OP_BINARY, OP_CLOSE, OP_PING,
    OP_PONG, OP_TEXT,
};

use super::flusher::Flusher;

/// Pings answered per write at most; older ones beyond are dropped.
const MAX_PENDING_PONGS: usize = 16;

/// The server end of a WebSocket connection, shared by its reader, its
/// writer task and (as a [`DirectSink`]) whoever pushes to its outbox.
pub struct WsSocket {
    stream: Wire,
    /// The outbox it is installed in, and who flushes it.
    direct: OnceLock<(Weak<Outbox>, Arc<Flusher>)>,
    /// Pongs to send: the payloads of pings not answered yet, oldest first
    /// (at most [`MAX_PENDING_PONGS`]).
    pongs: Mutex<Vec<Bytes>>,
    /// A ping to send.
    ping: AtomicBool,
    /// The close code to send instead of the one derived from the close
    /// reason (0: none).
    close_code: AtomicU16,
    /// The connection's place among its address's connections, freed when
    /// the socket goes ([`crate::ipgate`]).
    _place: Option<Arc<crate::ipgate::IpTicket>>,
}

impl WsSocket {
    /// Wraps an upgraded stream.
    pub fn new(stream: impl Into<Wire>) -> WsSocket {
        let stream = stream.into();
        let _ = stream.tcp().set_nodelay(true);
        WsSocket {
            stream,
            direct: OnceLock::new(),
            pongs: Mutex::new(Vec::new()),
            ping: AtomicBool::new(false),
            close_code: AtomicU16::new(0),
            _place: None,
        }
    }

    /// The same socket, holding the connection's place among its address's
    /// connections until it goes.
    pub fn holding(mut self, place: Option<Arc<crate::ipgate::IpTicket>>) -> WsSocket {
        self._place = place;
        self
    }

    /// Installs it as `outbox`'s direct sink, flushed by `flusher`.
    ///
    /// Over TLS it is not installed: a direct write may leave ciphertext
    /// behind that only the writer task, which waits for the socket,
    /// finishes ([`Wire::flush`]).
    pub fn install(self: &Arc<Self>, outbox: &Arc<Outbox>, flusher: Arc<Flusher>) {
        if self.stream.is_tls() {
            return;
        }
        let hold = flusher.hold_ms();
        let _ = self.direct.set((Arc::downgrade(outbox), flusher));
        outbox.set_direct(self.clone(), hold);
    }

    /// The stream.
    pub fn stream(&self) -> &Wire {
        &self.stream
    }

    /// Asks the writer to answer a ping (the caller then wakes it, e.g.
    /// with [`Outbox::claim_writer`]).
    pub fn queue_pong(&self, payload: Bytes) {
        let mut pongs = self.pongs.lock().unwrap();
        if pongs.len() == MAX_PENDING_PONGS {
            // A flood of pings: RFC 6455 lets the most recent ones be the
            // ones answered.
            pongs.remove(0);
        }
        pongs.push(payload);
    }

    /// Asks the writer to send a ping (the caller then wakes it, e.g. with
    /// [`Outbox::claim_writer`]).
    pub fn queue_ping(&self) {
        self.ping.store(true, Ordering::Relaxed);
    }

    /// Whether a pong or a ping waits to be written.
    pub fn has_queued_controls(&self) -> bool {
        self.ping.load(Ordering::Relaxed) || !self.pongs.lock().unwrap().is_empty()
    }

    /// Writes the pong and ping asked for, if any. The caller must own the
    /// socket (the outbox's writer does).
    pub async fn write_queued_controls(&self) -> io::Result<()> {
        let pongs = std::mem::take(&mut *self.pongs.lock().unwrap());
        if !pongs.is_empty() {
            // Every pong in one write.
            let mut wire = Vec::new();
            for payload in &pongs {
                wire.extend_from_slice(&control_frame(OP_PONG, payload));
            }
            self.write_all(&wire).await?;
        }
        if self.ping.swap(false, Ordering::Relaxed) {
            self.write_control(OP_PING, b"").await?;
        }
        Ok(())
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stream.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.stream.flush().await
    }

    /// Writes raw bytes completely.
    async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
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

fn opcode_of(frame: &Frame) -> u8 {
    match frame {
        Frame::Text(_) => OP_TEXT,
        Frame::Binary(_) => OP_BINARY,
    }
}

/// Bytes of a data frame on the wire.
fn frame_wire_len(frame: &Frame) -> usize {
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
fn try_write_frames(stream: &Wire, frames: &[Frame], skip: usize) -> io::Result<usize> {
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

/// Bytes gathered into one buffer for a write at most.
const GATHER_MAX: usize = 16 * 1024;

/// Writes every frame, header first, to `out` (a `Vec` or a slice with
/// room for them all).
fn gather(frames: &[Frame], mut out: impl io::Write) {
    let mut head = [0u8; MAX_HEADER];
    for f in frames {
        let n = put_header(opcode_of(f), f.len(), &mut head);
        let _ = out.write_all(&head[..n]);
        let _ = out.write_all(f.bytes());
    }
}

/// [`try_write_frames`] for a batch of at most [`GATHER_MAX`] wire bytes:
/// copied into one buffer (on the stack when it is small) and sent as one
/// slice.
fn write_gathered(stream: &Wire, frames: &[Frame], skip: usize, total: usize) -> io::Result<usize> {
    if total <= skip {
        return Ok(0);
    }
    if total <= SMALL_BATCH {
        let mut buf = [0u8; SMALL_BATCH];
        gather(frames, &mut buf[..]);
        return stream.try_send(&buf[skip..total]);
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
        let result = stream.try_send(&buf[skip..]);
        if buf.capacity() > 4 * GATHER_MAX {
            *buf = Vec::new();
        }
        result
    })
}

/// [`try_write_frames`] with room for `N` frames (`S` = 2 `N` slices).
fn write_frames_with<const N: usize, const S: usize>(
    stream: &Wire,
    frames: &[Frame],
    skip: usize,
) -> io::Result<usize> {
    let frames = &frames[..frames.len().min(N)];
    let mut heads = [[0u8; MAX_HEADER]; N];
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
pub(super) fn advance(
    frames: &[Frame],
    mut frame: usize,
    mut skip: usize,
    mut n: usize,
) -> (usize, usize) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

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
}
