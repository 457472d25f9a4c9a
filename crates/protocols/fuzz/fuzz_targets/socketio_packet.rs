//! Arbitrary text as a Socket.IO packet: decoding must never panic, a decoded
//! packet must re-encode to text that decodes to the same packet, and the
//! accessors and binary assembler must cope with whatever was accepted.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use volna_protocols::socketio::{BinaryAssembler, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(packet) = Packet::decode(text) else {
        return;
    };

    let encoded = packet.encode();
    let again = Packet::decode(&encoded).expect("canonical encoding decodes");
    assert_eq!(again, packet);

    let _ = packet.event_name();
    let _ = packet.event();
    let _ = packet.array_items();

    if let Ok(mut asm) = BinaryAssembler::with_max_attachments(packet.clone(), 64) {
        while !asm.is_complete() {
            asm.push(Bytes::from_static(b"x"))
                .expect("room for attachment");
        }
        assert!(asm.push(Bytes::new()).is_err());
        let (p, bufs) = asm.finish().expect("complete");
        assert_eq!(p, packet);
        assert_eq!(bufs.len(), packet.attachments);
    }
});
