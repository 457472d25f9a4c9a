//! WebSocket framing (RFC 6455), server side, sans-IO.
//!
//! - [`Decoder`] turns the bytes a client sent into [`Message`]s: it checks
//!   every frame header (reserved bits, masking, opcodes, control-frame
//!   rules, lengths), unmasks payloads, assembles fragmented messages within
//!   a size bound, validates the UTF-8 of text messages fragment by fragment
//!   (an invalid fragment fails at once, not at the end of the message) and
//!   reads close payloads. A broken rule is a [`Violation`] carrying the
//!   close code to answer with.
//! - [`put_header`], [`control_frame`] and [`close_payload`] build what the
//!   server writes (unmasked, FIN set).
//! - [`put_client_frame`] builds masked client frames, for clients and tests.
//!
//! The decoder keeps nothing between calls except a message being
//! assembled from fragments: the caller keeps the bytes of an unfinished
//! frame and hands them in again with what follows.

use bytes::{Bytes, BytesMut};

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown, idle timeout).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// A protocol error.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Data inconsistent with the message type (invalid UTF-8 in text).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// A message violated the server's policy.
pub const CLOSE_POLICY: u16 = 1008;
/// A message too big to process.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Longest control-frame payload.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest close reason: a close payload is a control payload, 2 bytes of
/// which are the code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Longest frame header (a server frame: no mask).
pub const MAX_HEADER: usize = 10;

/// A message (or control frame) from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A complete text message, valid UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong (its payload is of no use to a server).
    Pong,
    /// A close frame, with its code if it had one. Nothing after it is
    /// read.
    Close(Option<u16>),
}

/// A rule of the protocol the client broke: close the connection with
/// `code`; `reason` says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// Close code to send.
    pub code: u16,
    /// Close reason to send (short, ASCII).
    pub reason: &'static str,
}

impl Violation {
    const fn protocol(reason: &'static str) -> Violation {
        Violation {
            code: CLOSE_PROTOCOL,
            reason,
        }
    }

    const TOO_BIG: Violation = Violation {
        code: CLOSE_TOO_BIG,
        reason: "message too big",
    };
}

/// How a call of [`Decoder::decode`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every whole frame was used; the first `used` bytes are consumed, the
    /// rest start a frame not yet complete.
    NeedMore {
        /// Bytes consumed.
        used: usize,
    },
    /// The callback asked to stop after the frame ending at `used`.
    Stopped {
        /// Bytes consumed.
        used: usize,
    },
    /// A close frame ended at `used`; it was handed to the callback.
    Closed {
        /// Bytes consumed.
        used: usize,
    },
}

/// A fragmented message being assembled.
struct Fragments {
    text: bool,
    data: BytesMut,
    /// Bytes of `data` known to be valid UTF-8 (text only): everything
    /// before a sequence cut by a fragment boundary.
    checked: usize,
}

/// The reading side of a server connection; see the [module docs](self).
pub struct Decoder {
    fragments: Option<Fragments>,
    max_message: usize,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Last frame of its message.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Masking key (client frames are always masked).
    pub mask: [u8; 4],
    /// Bytes of the header itself.
    pub len: usize,
    /// Bytes of the payload that follows.
    pub payload: usize,
}

/// Parses a client frame header from the start of `buf`: `Ok(None)` when
/// more bytes are needed. Data payloads above `max_payload` are refused as
/// soon as their length is known (control frames carry up to 125 bytes
/// whatever `max_payload` is). Lengths need not be minimally encoded (a
/// tolerant reader; RFC 6455 asks it of senders).
pub fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, Violation> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(Violation::protocol("reserved bits set"));
    }
    let opcode = b0 & 0x0F;
    if b1 & 0x80 == 0 {
        return Err(Violation::protocol("unmasked client frame"));
    }
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(Violation::protocol("fragmented control frame"));
            }
            if usize::from(b1 & 0x7F) > MAX_CONTROL_PAYLOAD {
                return Err(Violation::protocol("control frame too long"));
            }
        }
        _ => return Err(Violation::protocol("unknown opcode")),
    }
    let (payload, at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(Violation::protocol("invalid frame length"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    // Control frames are bounded by 125 bytes above, whatever the bound on
    // messages.
    if payload > max_payload as u64 && opcode & 0x8 == 0 {
        return Err(Violation::TOO_BIG);
    }
    if buf.len() < at + 4 {
        return Ok(None);
    }
    Ok(Some(Header {
        fin,
        opcode,
        mask: [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]],
        len: at + 4,
        payload: payload as usize,
    }))
}

/// XORs `data` with the masking key, as if it started at offset 0 of the
/// payload (masking is its own inverse).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
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

fn unmask_into(out: &mut BytesMut, payload: &[u8], mask: [u8; 4]) {
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

fn unmasked(payload: &[u8], mask: [u8; 4]) -> Bytes {
    let mut data = BytesMut::with_capacity(payload.len());
    unmask_into(&mut data, payload, mask);
    data.freeze()
}

/// Whether a client may send this close code (RFC 6455 §7.4; 1004–1006 and
/// 1015 are reserved for reporting, never sent).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Reads a close frame's payload: its code, if any.
pub fn parse_close(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(Violation::protocol("invalid close frame")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !valid_close_code(code) {
                return Err(Violation::protocol("invalid close code"));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(Violation {
                    code: CLOSE_INVALID_DATA,
                    reason: "invalid UTF-8 in a close reason",
                });
            }
            Ok(Some(code))
        }
    }
}

const BAD_UTF8: Violation = Violation {
    code: CLOSE_INVALID_DATA,
    reason: "invalid UTF-8 in a text message",
};

/// Checks `data[*checked..]`; a sequence cut at the end is fine unless the
/// message is complete (`fin`). Advances `checked` past what is valid.
fn check_utf8(data: &[u8], checked: &mut usize, fin: bool) -> Result<(), Violation> {
    match std::str::from_utf8(&data[*checked..]) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() && !fin => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(BAD_UTF8),
    }
}

impl Decoder {
    /// A decoder for messages of at most `max_message` bytes (fragments
    /// together).
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            fragments: None,
            max_message: max_message.max(1),
        }
    }

    /// The bound on one message.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Whether a fragmented message is being assembled.
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// Decodes the whole frames at the start of `buf`, handing each message
    /// to `on` until it returns false.
    pub fn decode(
        &mut self,
        buf: &[u8],
        on: &mut dyn FnMut(Message) -> bool,
    ) -> Result<Progress, Violation> {
        let mut pos = 0;
        loop {
            let Some(h) = parse_header(&buf[pos..], self.max_message)? else {
                return Ok(Progress::NeedMore { used: pos });
            };
            if buf.len() - pos < h.len + h.payload {
                return Ok(Progress::NeedMore { used: pos });
            }
            let payload = &buf[pos + h.len..pos + h.len + h.payload];
            pos += h.len + h.payload;
            let msg = match h.opcode {
                OP_TEXT | OP_BINARY => {
                    if self.fragments.is_some() {
                        return Err(Violation::protocol("expected a continuation frame"));
                    }
                    let text = h.opcode == OP_TEXT;
                    let data = unmasked(payload, h.mask);
                    if !h.fin {
                        let mut checked = 0;
                        if text {
                            check_utf8(&data, &mut checked, false)?;
                        }
                        self.fragments = Some(Fragments {
                            text,
                            data: BytesMut::from(data),
                            checked,
                        });
                        continue;
                    }
                    if text {
                        if std::str::from_utf8(&data).is_err() {
                            return Err(BAD_UTF8);
                        }
                        Message::Text(data)
                    } else {
                        Message::Binary(data)
                    }
                }
                OP_CONT => {
                    let Some(f) = self.fragments.as_mut() else {
                        return Err(Violation::protocol("unexpected continuation frame"));
                    };
                    if f.data.len() + h.payload > self.max_message {
                        return Err(Violation::TOO_BIG);
                    }
                    unmask_into(&mut f.data, payload, h.mask);
                    if f.text {
                        check_utf8(&f.data, &mut f.checked, h.fin)?;
                    }
                    if !h.fin {
                        continue;
                    }
                    let f = self.fragments.take().expect("checked above");
                    let data = f.data.freeze();
                    if f.text {
                        Message::Text(data)
                    } else {
                        Message::Binary(data)
                    }
                }
                OP_PING => Message::Ping(unmasked(payload, h.mask)),
                OP_PONG => Message::Pong,
                _ => {
                    // OP_CLOSE: parse_header refused every other opcode.
                    let code = parse_close(&unmasked(payload, h.mask))?;
                    on(Message::Close(code));
                    return Ok(Progress::Closed { used: pos });
                }
            };
            if !on(msg) {
                return Ok(Progress::Stopped { used: pos });
            }
        }
    }
}

/// Writes a server frame header (FIN set, unmasked) for a payload of `len`
/// bytes into `out`; returns the header's length.
pub fn put_header(opcode: u8, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
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

/// Length of the header [`put_header`] writes for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= 0xFFFF {
        4
    } else {
        10
    }
}

/// A whole server control frame; the payload is cut to
/// [`MAX_CONTROL_PAYLOAD`] bytes.
pub fn control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut v = Vec::with_capacity(2 + payload.len());
    v.push(0x80 | opcode);
    v.push(payload.len() as u8);
    v.extend_from_slice(payload);
    v
}

/// The payload of a close frame: the code, then the reason cut (at a
/// character boundary) to fit a control frame.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + reason.len().min(MAX_CLOSE_REASON));
    v.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    v.extend_from_slice(&reason.as_bytes()[..end]);
    v
}

/// Appends a masked client frame.
pub fn put_client_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let mut header = [0u8; MAX_HEADER];
    let n = put_header(opcode, payload.len(), &mut header);
    if !fin {
        header[0] &= 0x7F;
    }
    header[1] |= 0x80;
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_client_frame(&mut v, fin, opcode, payload, MASK);
        v
    }

    fn decode_all(max: usize, bytes: &[u8]) -> (Vec<Message>, Result<Progress, Violation>) {
        let mut d = Decoder::new(max);
        let mut got = Vec::new();
        let r = d.decode(bytes, &mut |m| {
            got.push(m);
            true
        });
        (got, r)
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (got, r) = decode_all(100, &bytes);
        assert_eq!(got, vec![Message::Text(Bytes::from_static(b"Hello"))]);
        assert_eq!(r, Ok(Progress::NeedMore { used: bytes.len() }));
        assert_eq!(frame(true, OP_TEXT, b"Hello"), bytes);
    }

    #[test]
    fn fragments_assemble_and_controls_interleave() {
        let mut bytes = frame(false, OP_TEXT, "h\u{e9}".as_bytes()[..2].as_ref());
        bytes.extend(frame(true, OP_PING, b"p"));
        bytes.extend(frame(true, OP_CONT, &"h\u{e9}".as_bytes()[2..]));
        let (got, r) = decode_all(100, &bytes);
        assert_eq!(
            got,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Bytes::from("h\u{e9}")),
            ]
        );
        assert!(matches!(r, Ok(Progress::NeedMore { .. })));
    }

    #[test]
    fn invalid_utf8_fails_in_the_first_fragment() {
        let bytes = frame(false, OP_TEXT, &[b'a', 0xff]);
        let (_, r) = decode_all(100, &bytes);
        assert_eq!(r.unwrap_err().code, CLOSE_INVALID_DATA);
        // A sequence cut at the end of the message is invalid too.
        let mut bytes = frame(false, OP_TEXT, b"a");
        bytes.extend(frame(true, OP_CONT, &[0xc3]));
        assert_eq!(
            decode_all(100, &bytes).1.unwrap_err().code,
            CLOSE_INVALID_DATA
        );
    }

    #[test]
    fn protocol_errors() {
        let cases: &[(&[u8], u16)] = &[
            (&[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'], CLOSE_PROTOCOL), // unmasked
            (&[0xC1, 0x80, 0, 0, 0, 0], CLOSE_PROTOCOL),                   // RSV1
            (&[0x83, 0x80, 0, 0, 0, 0], CLOSE_PROTOCOL),                   // opcode 3
            (&[0x09, 0x80, 0, 0, 0, 0], CLOSE_PROTOCOL),                   // fragmented ping
            (&[0x89, 0xFE, 0, 126], CLOSE_PROTOCOL),                       // ping > 125
            (&[0x80, 0x80, 0, 0, 0, 0], CLOSE_PROTOCOL),                   // lone continuation
            (&[0x82, 0xFE, 0x01, 0x00], CLOSE_TOO_BIG),                    // 256 > 100
        ];
        for (bytes, code) in cases {
            let (_, r) = decode_all(100, bytes);
            assert_eq!(r.unwrap_err().code, *code, "{bytes:x?}");
        }
    }

    #[test]
    fn close_frames() {
        let (got, r) = decode_all(100, &frame(true, OP_CLOSE, &close_payload(1000, "bye")));
        assert_eq!(got, vec![Message::Close(Some(1000))]);
        assert!(matches!(r, Ok(Progress::Closed { .. })));
        for (payload, code) in [
            (vec![3u8], CLOSE_PROTOCOL),
            (1005u16.to_be_bytes().to_vec(), CLOSE_PROTOCOL),
            (
                [&1000u16.to_be_bytes()[..], &[0xff]].concat(),
                CLOSE_INVALID_DATA,
            ),
        ] {
            let (_, r) = decode_all(100, &frame(true, OP_CLOSE, &payload));
            assert_eq!(r.unwrap_err().code, code);
        }
    }

    #[test]
    fn stop_and_resume() {
        let mut bytes = frame(true, OP_TEXT, b"a");
        bytes.extend(frame(true, OP_BINARY, b"b"));
        let mut d = Decoder::new(100);
        let mut got = Vec::new();
        let r = d.decode(&bytes, &mut |m| {
            got.push(m);
            false
        });
        let Ok(Progress::Stopped { used }) = r else {
            panic!("{r:?}")
        };
        let r = d.decode(&bytes[used..], &mut |m| {
            got.push(m);
            true
        });
        assert!(matches!(r, Ok(Progress::NeedMore { .. })));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn close_payload_cuts_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let p = close_payload(1001, &reason);
        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
        assert_eq!(parse_close(&p), Ok(Some(1001)));
    }
}
