//! Arbitrary bytes as an HTTP long-polling body: decoding must never panic,
//! and whatever decodes must survive an encode/decode round trip.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use volna_protocols::engineio::{decode_payload, decode_payload_shared, encode_payload, Packet};

fuzz_target!(|data: &[u8]| {
    let _ = decode_payload(data, 64);
    let copied = decode_payload(data, usize::MAX);
    let shared = decode_payload_shared(Bytes::copy_from_slice(data), usize::MAX);
    assert_eq!(copied, shared);

    let Ok(packets) = copied else { return };
    assert!(!packets.is_empty());
    // Close/upgrade/noop drop their data and ping/pong/message text cannot
    // contain the separator, so re-encoding yields an equivalent payload.
    let mut body = Vec::new();
    encode_payload(&packets, &mut body);
    let again = decode_payload(&body, usize::MAX).expect("re-encoded payload decodes");
    assert_eq!(again, packets);
    for p in &packets {
        let text = p.to_text();
        assert_eq!(Packet::decode_text(&text).as_ref(), Ok(p));
    }
});
