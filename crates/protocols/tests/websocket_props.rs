//! Property tests for the WebSocket framing (RFC 6455, server side): client
//! messages cut into fragments, with pings and pongs between them, built
//! with `put_client_frame` and fed to a `Decoder` in reads of any size come
//! out exactly as sent; invalid UTF-8 and oversized messages fail with the
//! right close code however the bytes arrive (invalid UTF-8 as soon as the
//! fragment holding it is in); arbitrary bytes never panic; the server-side
//! builders agree with a parser written here.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use volna_protocols::websocket::{
    apply_mask, close_payload, control_frame, header_len, parse_close, parse_header,
    put_client_frame, put_header, valid_close_code, Decoder, Header, Message, Progress, Violation,
    CLOSE_INVALID_DATA, CLOSE_PROTOCOL, CLOSE_TOO_BIG, MAX_CLOSE_REASON, MAX_CONTROL_PAYLOAD,
    MAX_HEADER, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
};

// -------------------------------------------------------------------- reader

/// Feeds a [`Decoder`] the way a connection's read loop does: bytes arrive in
/// reads, whole frames are decoded, and the bytes not used are kept and
/// handed in again with the next read. Checks the decoder's bookkeeping on
/// every call.
struct Reader {
    decoder: Decoder,
    buf: Vec<u8>,
    got: Vec<Message>,
    /// What the callback answers, cycled (false asks the decoder to stop);
    /// empty means always true.
    answers: Vec<bool>,
    calls: usize,
    closed: bool,
}

impl Reader {
    fn new(max_message: usize, answers: Vec<bool>) -> Reader {
        Reader {
            decoder: Decoder::new(max_message),
            buf: Vec::new(),
            got: Vec::new(),
            answers,
            calls: 0,
            closed: false,
        }
    }

    /// One read: appends `bytes` to what is kept, then decodes until the
    /// decoder needs more (calling it again after each stop).
    fn read(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        assert!(!self.closed, "read after a close frame");
        self.buf.extend_from_slice(bytes);
        loop {
            let before = self.got.len();
            let mut last = true;
            let (got, answers, calls) = (&mut self.got, &self.answers, &mut self.calls);
            let progress = self.decoder.decode(&self.buf, &mut |m| {
                got.push(m);
                last = if answers.is_empty() {
                    true
                } else {
                    answers[*calls % answers.len()]
                };
                *calls += 1;
                last
            })?;
            let delivered = self.got.len() - before;
            let used = match progress {
                Progress::NeedMore { used }
                | Progress::Stopped { used }
                | Progress::Closed { used } => used,
            };
            assert!(
                used <= self.buf.len(),
                "{progress:?} with {} bytes",
                self.buf.len()
            );
            self.buf.drain(..used);
            match progress {
                Progress::NeedMore { .. } => {
                    assert!(
                        delivered == 0 || last,
                        "the callback said stop: {progress:?}"
                    );
                    return Ok(());
                }
                Progress::Stopped { .. } => {
                    assert!(delivered > 0 && !last, "stopped unasked");
                    assert!(used > 0, "stopped without using a frame");
                }
                Progress::Closed { .. } => {
                    assert!(matches!(self.got.last(), Some(Message::Close(_))));
                    self.closed = true;
                    return Ok(());
                }
            }
        }
    }

    /// Feeds `stream` in reads of `sizes` bytes (cycled; at least 1), up to a
    /// close frame.
    fn read_all(&mut self, stream: &[u8], sizes: &[usize]) -> Result<(), Violation> {
        let mut rest = stream;
        let mut i = 0;
        while !rest.is_empty() && !self.closed {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            i += 1;
            let (read, after) = rest.split_at(n);
            self.read(read)?;
            rest = after;
        }
        Ok(())
    }
}

// ----------------------------------------------------------------- builders

fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    put_client_frame(&mut v, fin, opcode, payload, mask);
    v
}

/// Cuts `data` at `cuts` (indices into `0..=len`, any order, repeats give
/// empty fragments): one fragment more than there are cuts.
fn fragments<'a>(data: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        out.push(&data[start..end]);
        start = end;
    }
    out.push(&data[start..]);
    out
}

/// One client frame per fragment: the first with `opcode`, the rest
/// continuations, FIN on the last; masks cycled from `masks`.
fn message_frames(opcode: u8, frags: &[&[u8]], masks: &[[u8; 4]]) -> Vec<Vec<u8>> {
    let last = frags.len() - 1;
    frags
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let op = if i == 0 { opcode } else { OP_CONT };
            client_frame(i == last, op, f, masks[i % masks.len()])
        })
        .collect()
}

/// A server frame as a client sees it: FIN, opcode, payload, bytes used.
/// Written from RFC 6455 §5.2 independently of the module's parser; refuses
/// masked frames, reserved bits and non-minimal lengths.
fn parse_server_frame(buf: &[u8]) -> Option<(bool, u8, u64, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    if b0 & 0x70 != 0 || b1 & 0x80 != 0 {
        return None;
    }
    let (len, at) = match b1 & 0x7F {
        126 => {
            let len = u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
            if len < 126 {
                return None;
            }
            (len, 4)
        }
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(buf.get(2..10)?);
            let len = u64::from_be_bytes(b);
            if len <= 0xFFFF {
                return None;
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    Some((b0 & 0x80 != 0, b0 & 0x0F, len, at))
}

// --------------------------------------------------------------- strategies

/// A data message as sent.
#[derive(Debug, Clone)]
enum Sent {
    Text(String),
    Binary(Vec<u8>),
}

impl Sent {
    fn bytes(&self) -> &[u8] {
        match self {
            Sent::Text(s) => s.as_bytes(),
            Sent::Binary(b) => b,
        }
    }

    fn opcode(&self) -> u8 {
        match self {
            Sent::Text(_) => OP_TEXT,
            Sent::Binary(_) => OP_BINARY,
        }
    }

    fn decoded(&self) -> Message {
        match self {
            Sent::Text(s) => Message::Text(Bytes::from(s.clone())),
            Sent::Binary(b) => Message::Binary(Bytes::from(b.clone())),
        }
    }
}

/// A control frame sent between fragments or messages.
#[derive(Debug, Clone)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

impl Control {
    fn frame(&self, mask: [u8; 4]) -> Vec<u8> {
        match self {
            Control::Ping(p) => client_frame(true, OP_PING, p, mask),
            Control::Pong(p) => client_frame(true, OP_PONG, p, mask),
        }
    }

    fn decoded(&self) -> Message {
        match self {
            Control::Ping(p) => Message::Ping(Bytes::from(p.clone())),
            Control::Pong(_) => Message::Pong,
        }
    }
}

/// Text dense in 2-, 3- and 4-byte characters, `min..=max` of them.
fn multibyte(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(
        "[a-z é\u{7ff}€\u{ffff}😀\u{10ffff}]{{{min},{max}}}"
    ))
    .expect("valid regex")
}

fn arb_sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..60)
            .prop_map(|c| Sent::Text(c.into_iter().collect())),
        multibyte(0, 160).prop_map(Sent::Text),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Sent::Binary),
    ]
}

fn arb_control() -> impl Strategy<Value = Control> {
    let payload = || prop::collection::vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD);
    prop_oneof![
        payload().prop_map(Control::Ping),
        payload().prop_map(Control::Pong),
    ]
}

fn arb_controls() -> impl Strategy<Value = Vec<Control>> {
    prop::collection::vec(arb_control(), 0..3)
}

/// A message with controls before it and `(cut, controls after the
/// fragment before that cut)` pairs.
type Planned = (Vec<Control>, Sent, Vec<(Index, Vec<Control>)>);

fn arb_planned() -> impl Strategy<Value = Planned> {
    (
        arb_controls(),
        arb_sent(),
        prop::collection::vec((any::<Index>(), arb_controls()), 0..5),
    )
}

fn arb_masks() -> impl Strategy<Value = Vec<[u8; 4]>> {
    prop::collection::vec(any::<[u8; 4]>(), 1..8)
}

/// Read sizes: byte at a time up to several frames at once.
fn arb_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![1usize..4, 1usize..40, 1usize..400, Just(usize::MAX)],
        1..12,
    )
}

/// The stream for `plan` and the messages it must decode to.
fn encode_plan(plan: &[Planned], masks: &[[u8; 4]]) -> (Vec<u8>, Vec<Message>) {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut m = 0;
    let mut mask = || {
        m += 1;
        masks[m % masks.len()]
    };
    for (before, sent, cuts) in plan {
        for c in before {
            stream.extend(c.frame(mask()));
            expected.push(c.decoded());
        }
        let cut: Vec<Index> = cuts.iter().map(|(i, _)| *i).collect();
        let frags = fragments(sent.bytes(), &cut);
        let last = frags.len() - 1;
        for (i, f) in frags.iter().enumerate() {
            let op = if i == 0 { sent.opcode() } else { OP_CONT };
            stream.extend(client_frame(i == last, op, f, mask()));
            if i < last {
                for c in &cuts[i].1 {
                    stream.extend(c.frame(mask()));
                    expected.push(c.decoded());
                }
            }
        }
        expected.push(sent.decoded());
    }
    (stream, expected)
}

/// Bytes never valid anywhere in UTF-8.
fn arb_bad_byte() -> impl Strategy<Value = u8> {
    select(vec![
        0xC0u8, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xFB, 0xFC, 0xFE, 0xFF,
    ])
}

/// A frame (or two) breaking one rule of RFC 6455 §5.
#[derive(Debug, Clone)]
enum Broken {
    /// A new text or binary frame inside a fragmented message.
    DataInsideFragments(u8, u8, Vec<u8>),
    /// A continuation with no message to continue.
    LoneContinuation(bool, Vec<u8>),
    /// A control frame without FIN.
    FragmentedControl(u8),
    /// A control frame over 125 bytes.
    LongControl(u8, usize),
    /// RSV1, RSV2 or RSV3 set.
    Reserved(u8, u8),
    /// No mask.
    Unmasked(u8, Vec<u8>),
    /// Opcodes 3-7 and 11-15.
    UnknownOpcode(u8),
    /// A close code a client may not send, or a one-byte close payload.
    BadClose(Vec<u8>),
    /// A close reason that is not UTF-8.
    CloseReasonNotUtf8(u16, u8),
}

impl Broken {
    /// The bytes and the close code they must fail with.
    fn frames(&self, mask: [u8; 4]) -> (Vec<u8>, u16) {
        match self {
            Broken::DataInsideFragments(first, second, p) => {
                let mut v = client_frame(false, *first, p, mask);
                v.extend(client_frame(true, *second, p, mask));
                (v, CLOSE_PROTOCOL)
            }
            Broken::LoneContinuation(fin, p) => {
                (client_frame(*fin, OP_CONT, p, mask), CLOSE_PROTOCOL)
            }
            Broken::FragmentedControl(op) => (client_frame(false, *op, b"x", mask), CLOSE_PROTOCOL),
            Broken::LongControl(op, n) => {
                (client_frame(true, *op, &vec![0; *n], mask), CLOSE_PROTOCOL)
            }
            Broken::Reserved(op, bit) => {
                let mut v = client_frame(true, *op, b"", mask);
                v[0] |= 0x10 << bit;
                (v, CLOSE_PROTOCOL)
            }
            Broken::Unmasked(op, p) => {
                let mut v = vec![0u8; MAX_HEADER];
                let n = put_header(*op, p.len(), (&mut v[..]).try_into().unwrap());
                v.truncate(n);
                v.extend(p);
                (v, CLOSE_PROTOCOL)
            }
            Broken::UnknownOpcode(op) => (client_frame(true, *op, b"", mask), CLOSE_PROTOCOL),
            Broken::BadClose(p) => (client_frame(true, OP_CLOSE, p, mask), CLOSE_PROTOCOL),
            Broken::CloseReasonNotUtf8(code, bad) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend([b'o', b'k', *bad]);
                (client_frame(true, OP_CLOSE, &p, mask), CLOSE_INVALID_DATA)
            }
        }
    }
}

fn arb_broken() -> impl Strategy<Value = Broken> {
    let data_op = || select(vec![OP_TEXT, OP_BINARY]);
    let control_op = || select(vec![OP_CLOSE, OP_PING, OP_PONG]);
    let any_op = || {
        select(vec![
            OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
        ])
    };
    let ascii = || "[a-z]{0,20}".prop_map(String::into_bytes);
    prop_oneof![
        (data_op(), data_op(), ascii()).prop_map(|(a, b, p)| Broken::DataInsideFragments(a, b, p)),
        (any::<bool>(), ascii()).prop_map(|(fin, p)| Broken::LoneContinuation(fin, p)),
        control_op().prop_map(Broken::FragmentedControl),
        (control_op(), 126usize..300).prop_map(|(op, n)| Broken::LongControl(op, n)),
        (any_op(), 0u8..3).prop_map(|(op, bit)| Broken::Reserved(op, bit)),
        (data_op(), ascii()).prop_map(|(op, p)| Broken::Unmasked(op, p)),
        prop_oneof![3u8..8, 11u8..16].prop_map(Broken::UnknownOpcode),
        prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            any::<u16>()
                .prop_filter("not sendable", |c| !valid_close_code(*c))
                .prop_map(|c| c.to_be_bytes().to_vec()),
        ]
        .prop_map(Broken::BadClose),
        (arb_valid_close_code(), arb_bad_byte())
            .prop_map(|(c, b)| Broken::CloseReasonNotUtf8(c, b)),
    ]
}

fn arb_valid_close_code() -> impl Strategy<Value = u16> {
    prop_oneof![1000u16..=1003, 1007u16..=1011, 3000u16..=4999]
}

/// Frames that get past the first checks more often than random bytes do:
/// mostly valid opcodes and masked, lengths in every encoding, close
/// payloads and UTF-8 text, sometimes a reserved bit or a flipped byte.
fn arb_rough_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop_oneof![
            8 => select(vec![OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG]),
            1 => 0u8..16,
        ],
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.95),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..140),
            any::<String>().prop_map(String::into_bytes),
            (arb_valid_close_code(), any::<String>()).prop_map(|(c, r)| close_payload(c, &r)),
        ],
        any::<[u8; 4]>(),
        0u8..3,
    )
        .prop_map(|(fin, opcode, rsv, masked, payload, mask, form)| {
            let mut v = Vec::new();
            let b0 = (u8::from(fin) << 7) | (u8::from(rsv) << 4) | opcode;
            let m = u8::from(masked) << 7;
            let n = payload.len();
            match form {
                0 if n < 126 => v.extend([b0, m | n as u8]),
                0 | 1 if n <= 0xFFFF => {
                    v.extend([b0, m | 126]);
                    v.extend((n as u16).to_be_bytes());
                }
                _ => {
                    v.extend([b0, m | 127]);
                    v.extend((n as u64).to_be_bytes());
                }
            }
            if masked {
                v.extend(mask);
            }
            let start = v.len();
            v.extend(&payload);
            if masked {
                apply_mask(&mut v[start..], mask);
            }
            v
        })
}

// ---------------------------------------------------------------- round trip

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Messages in fragments with controls between them, read in any sizes,
    /// with the callback stopping now and then: exactly what was sent, in
    /// order, and no byte left over.
    #[test]
    fn fragmented_messages_round_trip(
        plan in prop::collection::vec(arb_planned(), 0..6),
        masks in arb_masks(),
        sizes in arb_sizes(),
        answers in prop::collection::vec(prop::bool::weighted(0.8), 0..6),
        slack in 0usize..3,
    ) {
        let (stream, expected) = encode_plan(&plan, &masks);
        // At least 125: control frames longer than max_message are refused
        // (see control_frames_ignore_max_message); the bound itself is
        // exercised by the properties that follow.
        let longest = plan.iter().map(|(_, s, _)| s.bytes().len()).max().unwrap_or(0);
        let mut r = Reader::new((longest + slack).max(MAX_CONTROL_PAYLOAD), answers);
        let result = r.read_all(&stream, &sizes);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(&r.got, &expected);
        prop_assert!(r.buf.is_empty(), "{} bytes left over", r.buf.len());
        prop_assert!(!r.decoder.in_message());
    }

    /// Text with many multi-byte characters, cut anywhere (one fragment
    /// per byte included): one Text message, the original.
    #[test]
    fn text_cut_inside_characters(
        s in multibyte(1, 60),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
        every_byte in any::<bool>(),
        masks in arb_masks(),
        sizes in arb_sizes(),
    ) {
        let frags: Vec<&[u8]> = if every_byte {
            s.as_bytes().chunks(1).collect()
        } else {
            fragments(s.as_bytes(), &cuts)
        };
        let stream = message_frames(OP_TEXT, &frags, &masks).concat();
        let mut r = Reader::new(s.len(), Vec::new());
        prop_assert_eq!(r.read_all(&stream, &sizes), Ok(()));
        prop_assert_eq!(r.got, vec![Message::Text(Bytes::from(s))]);
        prop_assert!(r.buf.is_empty());
    }
}

// The 8-byte length form: a few big messages.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn big_messages_round_trip(
        len in 65_536usize..70_000,
        seed in any::<u8>(),
        text in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..3),
        masks in arb_masks(),
        sizes in prop::collection::vec(1usize..20_000, 1..6),
    ) {
        let sent = if text {
            let s: String = "aé€😀".chars().cycle().skip(usize::from(seed % 4)).take(len / 2).collect();
            Sent::Text(s)
        } else {
            Sent::Binary((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect())
        };
        let frags = fragments(sent.bytes(), &cuts);
        let stream = message_frames(sent.opcode(), &frags, &masks).concat();
        let mut r = Reader::new(sent.bytes().len(), Vec::new());
        prop_assert_eq!(r.read_all(&stream, &sizes), Ok(()));
        prop_assert_eq!(r.got, vec![sent.decoded()]);
        prop_assert!(r.buf.is_empty());
    }
}

// ---------------------------------------------------------- known failure

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Control frames (payload up to 125 bytes) are not messages: a bound
    /// on messages below 125 does not refuse them (e.g. `Decoder::new(1)`
    /// and a masked close frame carrying code 1000; refused with 1009 until
    /// this property found it).
    #[test]
    fn control_frames_ignore_max_message(
        max in 1usize..MAX_CONTROL_PAYLOAD,
        control in arb_control(),
        code in arb_valid_close_code(),
        reason in "[a-z]{0,100}",
        mask in any::<[u8; 4]>(),
    ) {
        let mut stream = control.frame(mask);
        let close = close_payload(code, &reason);
        stream.extend(client_frame(true, OP_CLOSE, &close, mask));
        let mut r = Reader::new(max, Vec::new());
        prop_assert_eq!(r.read_all(&stream, &[usize::MAX]), Ok(()));
        prop_assert_eq!(r.got, vec![control.decoded(), Message::Close(Some(code))]);
    }
}

// ------------------------------------------------------------ refused input

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// An invalid byte anywhere in a text message: 1007, and by the end of
    /// the fragment holding it (later fragments are never fed); the
    /// fragments before it are accepted.
    #[test]
    fn invalid_utf8_fails_in_its_fragment(
        s in prop_oneof![any::<String>(), multibyte(0, 40)],
        at in any::<Index>(),
        bad in arb_bad_byte(),
        cuts in prop::collection::vec(any::<Index>(), 0..5),
        masks in arb_masks(),
        sizes in arb_sizes(),
    ) {
        let mut payload = s.into_bytes();
        let pos = at.index(payload.len() + 1);
        payload.insert(pos, bad);
        let frags = fragments(&payload, &cuts);
        let frames = message_frames(OP_TEXT, &frags, &masks);
        // The fragment holding `pos` (the one non-empty fragment over it).
        let mut start = 0;
        let bad_frag = frags
            .iter()
            .position(|f| {
                let hit = (start..start + f.len()).contains(&pos);
                start += f.len();
                hit
            })
            .unwrap();

        let mut r = Reader::new(payload.len(), Vec::new());
        let before = frames[..bad_frag].concat();
        prop_assert_eq!(r.read_all(&before, &sizes), Ok(()));
        let err = r.read_all(&frames[bad_frag], &sizes);
        prop_assert_eq!(err.map_err(|v| v.code), Err(CLOSE_INVALID_DATA));
        prop_assert!(r.got.is_empty());
    }

    /// A message that ends inside a character: the fragments are accepted
    /// until the last, which fails with 1007.
    #[test]
    fn text_ending_inside_a_character_fails_at_the_end(
        s in multibyte(0, 30),
        last in select(vec!['é', '€', '😀', '\u{10ffff}']),
        drop in any::<Index>(),
        cuts in prop::collection::vec(any::<Index>(), 0..5),
        masks in arb_masks(),
        sizes in arb_sizes(),
    ) {
        let mut payload = format!("{s}{last}").into_bytes();
        let cut = 1 + drop.index(last.len_utf8() - 1);
        payload.truncate(payload.len() - cut);
        let frags = fragments(&payload, &cuts);
        let frames = message_frames(OP_TEXT, &frags, &masks);
        let (final_frame, firsts) = frames.split_last().unwrap();

        let mut r = Reader::new(payload.len(), Vec::new());
        prop_assert_eq!(r.read_all(&firsts.concat(), &sizes), Ok(()));
        let err = r.read_all(final_frame, &sizes);
        prop_assert_eq!(err.map_err(|v| v.code), Err(CLOSE_INVALID_DATA));
        prop_assert!(r.got.is_empty());
    }

    /// After any valid traffic, a frame breaking a framing rule: every
    /// message before it is delivered, then 1002 (1007 for a close reason
    /// that is not UTF-8), however the bytes arrive.
    #[test]
    fn broken_rules_fail_after_the_valid_traffic(
        plan in prop::collection::vec(arb_planned(), 0..3),
        broken in arb_broken(),
        masks in arb_masks(),
        sizes in arb_sizes(),
    ) {
        let (mut stream, expected) = encode_plan(&plan, &masks);
        let (bytes, code) = broken.frames(masks[0]);
        stream.extend(bytes);
        let mut r = Reader::new(1 << 16, Vec::new());
        let err = r.read_all(&stream, &sizes);
        prop_assert_eq!(err.map_err(|v| v.code), Err(code));
        prop_assert_eq!(r.got, expected);
    }

    /// A message over `max_message`, in one frame or many, after one that
    /// fits: the first is delivered, then 1009, however the bytes arrive.
    /// In one frame it fails as soon as the length is in.
    #[test]
    fn oversized_messages_fail_with_1009(
        max in 1usize..200,
        extra in 1usize..200,
        text in any::<bool>(),
        first in prop::collection::vec(any::<u8>(), 0..200),
        cuts in prop::collection::vec(any::<Index>(), 0..5),
        masks in arb_masks(),
        sizes in arb_sizes(),
    ) {
        let first = &first[..first.len().min(max)];
        let big = if text {
            Sent::Text("aé€😀".chars().cycle().take(max + extra).collect())
        } else {
            Sent::Binary(vec![7; max + extra])
        };
        prop_assert!(big.bytes().len() > max);
        let frags = fragments(big.bytes(), &cuts);
        let frames = message_frames(big.opcode(), &frags, &masks);

        let mut stream = client_frame(true, OP_BINARY, first, masks[0]);
        stream.extend(frames.concat());
        let mut r = Reader::new(max, Vec::new());
        let err = r.read_all(&stream, &sizes);
        prop_assert_eq!(err.map_err(|v| v.code), Err(CLOSE_TOO_BIG));
        prop_assert_eq!(r.got, vec![Message::Binary(Bytes::copy_from_slice(first))]);

        if frags.len() == 1 {
            let mut d = Decoder::new(max);
            let head = header_len(big.bytes().len());
            let err = d.decode(&frames[0][..head], &mut |_| true);
            prop_assert_eq!(err.map_err(|v| v.code), Err(CLOSE_TOO_BIG));
        }
    }
}

// ------------------------------------------------------------ never panics

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes: no panic, `used` within the input (checked by the
    /// reader), and nothing delivered that breaks the decoder's promises.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        max in 1usize..300,
        sizes in arb_sizes(),
        answers in prop::collection::vec(any::<bool>(), 0..4),
    ) {
        check_any(&bytes, max, &sizes, answers)?;
    }

    /// Near-valid frames (mostly valid headers, flipped bytes): same.
    #[test]
    fn rough_frames_never_panic(
        frames in prop::collection::vec(arb_rough_frame(), 1..8),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
        max in 1usize..300,
        sizes in arb_sizes(),
        answers in prop::collection::vec(any::<bool>(), 0..4),
    ) {
        let mut bytes = frames.concat();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        check_any(&bytes, max, &sizes, answers)?;
    }
}

fn check_any(
    bytes: &[u8],
    max: usize,
    sizes: &[usize],
    answers: Vec<bool>,
) -> Result<(), TestCaseError> {
    let mut r = Reader::new(max, answers);
    let result = r.read_all(bytes, sizes);
    // The whole input at once: the same violation, or the same messages.
    let mut d = Decoder::new(max);
    let mut whole = Vec::new();
    let once = d.decode(bytes, &mut |m| {
        whole.push(m);
        true
    });
    if let Ok(p) = once {
        let (Progress::NeedMore { used } | Progress::Stopped { used } | Progress::Closed { used }) =
            p;
        prop_assert!(used <= bytes.len());
    }
    match (&result, &once) {
        (Err(a), Err(b)) => prop_assert_eq!(a, b),
        (Ok(()), Ok(_)) => prop_assert_eq!(&r.got, &whole),
        _ => prop_assert!(false, "reads {result:?} but at once {once:?}"),
    }
    for m in &r.got {
        match m {
            Message::Text(t) => {
                prop_assert!(std::str::from_utf8(t).is_ok());
                prop_assert!(t.len() <= max);
            }
            Message::Binary(b) => prop_assert!(b.len() <= max),
            Message::Ping(p) => prop_assert!(p.len() <= MAX_CONTROL_PAYLOAD),
            Message::Pong => {}
            Message::Close(code) => prop_assert!(code.is_none_or(valid_close_code)),
        }
    }
    Ok(())
}

// ----------------------------------------------------------- server frames

fn arb_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..130,
        120usize..66_000,
        65_530usize..65_540,
        any::<usize>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// put_header writes header_len bytes that an independent parser reads
    /// back, and that parse_header accepts once masked with a zero key.
    #[test]
    fn header_round_trip(
        len in arb_len(),
        opcode in select(vec![OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG]),
    ) {
        let mut out = [0u8; MAX_HEADER];
        let n = put_header(opcode, len, &mut out);
        prop_assert_eq!(n, header_len(len));
        prop_assert_eq!(parse_server_frame(&out[..n]), Some((true, opcode, len as u64, n)));

        // A client header: mask bit and a zero key. parse_header refuses a
        // 64-bit length with the top bit set and control frames over 125.
        let control = opcode >= OP_CLOSE;
        if (len as u64) >> 63 == 0 && (!control || len <= MAX_CONTROL_PAYLOAD) {
            let mut client = out[..n].to_vec();
            client[1] |= 0x80;
            client.extend([0; 4]);
            let want = Header { fin: true, opcode, mask: [0; 4], len: n + 4, payload: len };
            prop_assert_eq!(parse_header(&client, usize::MAX), Ok(Some(want)));
            for cut in 0..client.len() {
                prop_assert_eq!(parse_header(&client[..cut], usize::MAX), Ok(None));
            }
        }
    }

    /// A whole server frame (header + payload) parses back to its payload;
    /// turned into a client frame with a zero mask it decodes to the same
    /// message.
    #[test]
    fn server_frame_round_trip(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            (65_536usize..65_600).prop_map(|n| vec![0x5a; n]),
        ],
        text in any::<bool>(),
    ) {
        let payload = if text {
            String::from_utf8_lossy(&payload).into_owned().into_bytes()
        } else {
            payload
        };
        let opcode = if text { OP_TEXT } else { OP_BINARY };
        let mut head = [0u8; MAX_HEADER];
        let n = put_header(opcode, payload.len(), &mut head);
        let mut frame = head[..n].to_vec();
        frame.extend(&payload);
        let (fin, op, len, at) = parse_server_frame(&frame).unwrap();
        prop_assert!(fin);
        prop_assert_eq!(op, opcode);
        prop_assert_eq!(len as usize, payload.len());
        prop_assert_eq!(&frame[at..], &payload[..]);

        let mut client = head[..n].to_vec();
        client[1] |= 0x80;
        client.extend([0; 4]);
        client.extend(&payload);
        let mut d = Decoder::new(payload.len());
        let mut got = Vec::new();
        let r = d.decode(&client, &mut |m| {
            got.push(m);
            true
        });
        prop_assert_eq!(r, Ok(Progress::NeedMore { used: client.len() }));
        let want = if text {
            Message::Text(Bytes::from(payload))
        } else {
            Message::Binary(Bytes::from(payload))
        };
        prop_assert_eq!(got, vec![want]);
    }

    /// control_frame: FIN, the opcode, the payload cut to 125 bytes.
    #[test]
    fn control_frames_are_cut(
        payload in prop::collection::vec(any::<u8>(), 0..300),
        opcode in select(vec![OP_CLOSE, OP_PING, OP_PONG]),
    ) {
        let f = control_frame(opcode, &payload);
        let kept = payload.len().min(MAX_CONTROL_PAYLOAD);
        prop_assert_eq!(parse_server_frame(&f), Some((true, opcode, kept as u64, 2)));
        prop_assert_eq!(&f[2..], &payload[..kept]);
    }

    /// Masking is a XOR with the key cycled from the payload's start, and
    /// its own inverse.
    #[test]
    fn mask_is_a_cycled_xor(
        data in prop::collection::vec(any::<u8>(), 0..100),
        mask in any::<[u8; 4]>(),
    ) {
        let mut masked = data.clone();
        apply_mask(&mut masked, mask);
        let want: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        prop_assert_eq!(&masked, &want);
        apply_mask(&mut masked, mask);
        prop_assert_eq!(masked, data);
    }

    /// close_payload: at most 125 bytes, the code first, then the longest
    /// prefix of the reason that fits, cut at a character boundary; it
    /// parses back, and a client close frame carrying it closes with it.
    #[test]
    fn close_payload_round_trip(
        code in arb_valid_close_code(),
        reason in prop_oneof![any::<String>(), multibyte(0, 130)],
        mask in any::<[u8; 4]>(),
    ) {
        let p = close_payload(code, &reason);
        prop_assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        prop_assert_eq!(&p[..2], &code.to_be_bytes()[..]);
        let kept = std::str::from_utf8(&p[2..]);
        prop_assert!(kept.is_ok());
        let kept = kept.unwrap();
        prop_assert!(reason.starts_with(kept));
        if let Some(next) = reason[kept.len()..].chars().next() {
            prop_assert!(kept.len() + next.len_utf8() > MAX_CLOSE_REASON);
        }
        prop_assert_eq!(parse_close(&p), Ok(Some(code)));

        let frame = client_frame(true, OP_CLOSE, &p, mask);
        let mut d = Decoder::new(MAX_CONTROL_PAYLOAD);
        let mut got = Vec::new();
        let r = d.decode(&frame, &mut |m| {
            got.push(m);
            true
        });
        prop_assert_eq!(r, Ok(Progress::Closed { used: frame.len() }));
        prop_assert_eq!(got, vec![Message::Close(Some(code))]);
    }

    /// The codes a client may send are those of RFC 6455 §7.4.1 that are
    /// not reserved for reporting (1004-1006, 1015), and 3000-4999, as the
    /// Autobahn suite checks (cases 7.7.*, 7.9.*); others are a protocol
    /// error.
    #[test]
    fn close_codes_are_checked(
        code in prop_oneof![990u16..1020, any::<u16>(), 2990u16..3010, 4990u16..5010],
        reason in "[a-z]{0,20}",
    ) {
        let sendable = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
        prop_assert_eq!(valid_close_code(code), sendable);
        let mut p = code.to_be_bytes().to_vec();
        p.extend(reason.as_bytes());
        let want = if sendable { Ok(Some(code)) } else { Err(CLOSE_PROTOCOL) };
        prop_assert_eq!(parse_close(&p).map_err(|v| v.code), want);
    }
}
