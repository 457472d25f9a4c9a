//! Arbitrary bytes as what a WebSocket client sends, read the way a
//! connection reads it: the first byte picks a small `max_message`, the
//! second how many of the next bytes are read sizes (low nibble) and when
//! the callback asks to stop (high nibble); the rest is the stream, fed in
//! reads of those sizes with the unused bytes kept for the next read.
//! Decoding must never panic, `used` must stay within the buffer, every
//! message must keep the decoder's promises, and reading in pieces must
//! give what decoding the whole stream at once gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volna_protocols::websocket::{
    valid_close_code, Decoder, Message, Progress, Violation, MAX_CONTROL_PAYLOAD,
};

fn check(m: &Message, max: usize) {
    match m {
        Message::Text(t) => {
            assert!(std::str::from_utf8(t).is_ok(), "text not UTF-8: {t:x?}");
            assert!(t.len() <= max);
        }
        Message::Binary(b) => assert!(b.len() <= max),
        Message::Ping(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
        Message::Pong => {}
        Message::Close(code) => assert!(code.is_none_or(valid_close_code)),
    }
}

fn used(p: Progress) -> usize {
    match p {
        Progress::NeedMore { used } | Progress::Stopped { used } | Progress::Closed { used } => {
            used
        }
    }
}

/// Reads `stream` in reads of `sizes` (cycled; 0 is an empty read) until
/// the decoder fails or a close frame arrives.
fn read(
    max: usize,
    stream: &[u8],
    sizes: &[usize],
    stops: u8,
) -> (Vec<Message>, Option<Violation>) {
    let mut decoder = Decoder::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    let mut calls = 0usize;
    let mut rest = stream;
    let mut i = 0;
    loop {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = got.len();
            let mut last = true;
            let progress = decoder.decode(&buf, &mut |m| {
                check(&m, max);
                got.push(m);
                last = (stops >> (calls % 4)) & 1 == 0;
                calls += 1;
                last
            });
            let progress = match progress {
                Ok(p) => p,
                Err(v) => return (got, Some(v)),
            };
            let u = used(progress);
            assert!(u <= buf.len(), "{progress:?} with {} bytes", buf.len());
            buf.drain(..u);
            match progress {
                Progress::NeedMore { .. } => {
                    assert!(got.len() == before || last, "went on after a stop");
                    break;
                }
                Progress::Stopped { .. } => {
                    assert!(got.len() > before && !last, "stopped unasked");
                    assert!(u > 0, "stopped without using a frame");
                }
                Progress::Closed { .. } => {
                    assert!(matches!(got.last(), Some(Message::Close(_))));
                    return (got, None);
                }
            }
        }
        if rest.is_empty() {
            return (got, None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [max, control, rest @ ..] = data else {
        return;
    };
    let max = 1 + usize::from(*max);
    let n = usize::from(control & 0x0F).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let mut sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s)).collect();
    if sizes.iter().all(|&s| s == 0) {
        sizes = vec![usize::MAX];
    }

    let (got, failed) = read(max, stream, &sizes, control >> 4);

    let mut decoder = Decoder::new(max);
    let mut whole = Vec::new();
    let once = decoder.decode(stream, &mut |m| {
        whole.push(m);
        true
    });
    match (&failed, once) {
        (Some(a), Err(b)) => assert_eq!(*a, b),
        (None, Ok(p)) => {
            assert!(used(p) <= stream.len());
            assert_eq!(got, whole);
        }
        (a, b) => panic!("in pieces {a:?}, at once {b:?}"),
    }
});
