//! Arbitrary input as a WebSocket frame: text frames must decode without
//! panicking and round-trip; binary frames are binary messages.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use volna_protocols::engineio::Packet;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    assert_eq!(
        Packet::decode_binary(frame.clone()),
        Packet::Binary(frame.clone())
    );

    let shared = Packet::decode_text_shared(frame);
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(shared.is_err());
        return;
    };
    let decoded = Packet::decode_text(text);
    assert_eq!(decoded, shared);
    if let Ok(packet) = decoded {
        let encoded = packet.to_text();
        assert_eq!(Packet::decode_text(&encoded), Ok(packet));
    }
});
