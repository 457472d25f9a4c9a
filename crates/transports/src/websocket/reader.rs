//! The reading half of a server WebSocket: bytes from the socket, messages
//! out, through [`volna_protocols::websocket::Decoder`].
//!
//! Reading waits with `poll_read_ready` and reads with `try_read` into a
//! buffer on the thread's stack; only the bytes of an unfinished frame are
//! kept (and freed once it is complete), so an idle connection holds no
//! buffer at all.

use std::io;

use crate::wire::Wire;
use bytes::Bytes;
use volna_protocols::websocket::{Decoder, Message, Progress, Violation};

/// Why [`Reader::run`] returned.
#[derive(Debug)]
pub enum ReadEnd {
    /// The callback asked to stop; unread bytes stay buffered.
    Stopped,
    /// The peer closed the TCP connection.
    Eof,
    /// The peer sent a close frame (with this code, if any).
    Closed(Option<u16>),
    /// The peer broke the protocol: close with this code and reason.
    Fail(Violation),
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
    decoder: Decoder,
}

impl Reader {
    /// A reader for messages of at most `max_message` bytes; `pre` holds
    /// bytes already read past the handshake.
    pub fn new(max_message: usize, pre: Bytes) -> Reader {
        Reader {
            partial: pre.to_vec(),
            decoder: Decoder::new(max_message),
        }
    }

    /// The bound on one message.
    pub fn max_message(&self) -> usize {
        self.decoder.max_message()
    }

    /// Reads and hands every message to `on` until `on` returns false
    /// (the rest stays buffered for the next call) or the connection ends.
    /// `on` never sees [`Message::Close`]: a close frame ends the run with
    /// [`ReadEnd::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read are parsed before any await.
    pub async fn run<F>(&mut self, stream: &Wire, on: &mut F) -> ReadEnd
    where
        F: FnMut(Message) -> bool + Send,
    {
        if !self.partial.is_empty() {
            match self.feed(&[], on) {
                Ok(true) => return ReadEnd::Stopped,
                Ok(false) => {}
                Err(end) => return end,
            }
        }
        loop {
            if let Err(e) = stream.readable().await {
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

    /// One read into a stack buffer ([`Wire::try_read`]: a plain read
    /// shorter than the buffer emptied the socket, so its readiness is
    /// cleared right away instead of by a second `recv` that would only say
    /// `EAGAIN`, a third of the syscalls of a request/reply exchange).
    fn read_once(
        &mut self,
        stream: &Wire,
        on: &mut dyn FnMut(Message) -> bool,
    ) -> Result<Read, ReadEnd> {
        let mut buf = [0u8; READ_CHUNK];
        let (n, drained) = match stream.try_read(&mut buf) {
            Ok((0, _)) => return Err(ReadEnd::Eof),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Drained),
            Err(e) => return Err(ReadEnd::Io(e)),
        };
        match self.feed(&buf[..n], on)? {
            true => Ok(Read::Stopped),
            false if drained => Ok(Read::Drained),
            false => Ok(Read::More),
        }
    }

    /// Decodes `data` after what is buffered; true if `on` asked to stop.
    fn feed(&mut self, data: &[u8], on: &mut dyn FnMut(Message) -> bool) -> Result<bool, ReadEnd> {
        if self.partial.is_empty() {
            let (used, stopped) = self.decode(data, on)?;
            if used < data.len() {
                self.partial.extend_from_slice(&data[used..]);
            }
            Ok(stopped)
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let (used, stopped) = self.decode(&buf, on)?;
            if used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
            Ok(stopped)
        }
    }

    /// Decodes whole frames from `buf`; returns the bytes used and whether
    /// `on` asked to stop.
    fn decode(
        &mut self,
        buf: &[u8],
        on: &mut dyn FnMut(Message) -> bool,
    ) -> Result<(usize, bool), ReadEnd> {
        let mut closed = None;
        let mut pass = |m: Message| match m {
            Message::Close(code) => {
                closed = Some(code);
                false
            }
            m => on(m),
        };
        match self.decoder.decode(buf, &mut pass) {
            Ok(Progress::NeedMore { used }) => Ok((used, false)),
            Ok(Progress::Stopped { used }) => Ok((used, true)),
            Ok(Progress::Closed { .. }) => Err(ReadEnd::Closed(closed.flatten())),
            Err(v) => Err(ReadEnd::Fail(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volna_protocols::websocket::{
        put_client_frame, CLOSE_INVALID_DATA, CLOSE_PROTOCOL, CLOSE_TOO_BIG, OP_BINARY, OP_CLOSE,
        OP_CONT, OP_PING, OP_TEXT,
    };

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_client_frame(&mut v, fin, opcode, payload, [0x12, 0x34, 0x56, 0x78]);
        v
    }

    fn feed_all(r: &mut Reader, data: &[u8]) -> (Vec<Message>, Option<ReadEnd>) {
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
                    Message::Text(Bytes::from_static(b"hello")),
                    Message::Binary(Bytes::from_static(&[1, 2, 3])),
                    Message::Ping(Bytes::from_static(b"p")),
                    Message::Text(Bytes::from_static(b"fragment")),
                    Message::Binary(Bytes::from(big.clone())),
                    Message::Text(Bytes::from_static("κ".as_bytes())),
                ]
            );
            assert!(r.partial.is_empty() && r.partial.capacity() == 0);
        }
    }

    fn fails(wire: &[u8], max: usize) -> u16 {
        let mut r = Reader::new(max, Bytes::new());
        match feed_all(&mut r, wire).1 {
            Some(ReadEnd::Fail(v)) => v.code,
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
        assert_eq!(got, vec![Message::Text(Bytes::from_static(b"a"))]);
        let (rest, _) = feed_all(&mut r, &[]);
        assert_eq!(rest, vec![Message::Text(Bytes::from_static(b"b"))]);
    }
}
