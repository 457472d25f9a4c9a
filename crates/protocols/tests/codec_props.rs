//! Property tests for the Engine.IO and Socket.IO codecs: decoders never
//! panic on arbitrary input, and encoding then decoding gives back the
//! original packet.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value;
use volna_protocols::{engineio, json, socketio};

// ---------------------------------------------------------------- strategies

/// Arbitrary JSON values, a few levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_filter("no placeholder lookalikes", |v| {
        !v.to_string().contains("_placeholder")
    })
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(any::<String>(), arb_json(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).unwrap()
}

fn arb_nsp() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[^,]{1,12}"]
}

fn arb_event_name() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>()
            .prop_filter("not reserved", |s| !socketio::is_reserved_event(s))
            .prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
    ]
}

/// Arguments with `n` placeholders spliced in (some nested in objects).
fn with_placeholders(mut args: Vec<Value>, n: usize, nest: Vec<bool>) -> Vec<Value> {
    for num in 0..n {
        let ph: Value = serde_json::from_str(json::placeholder(num).get()).unwrap();
        if nest.get(num).copied().unwrap_or(false) {
            args.push(serde_json::json!({ "file": ph, "n": num }));
        } else {
            args.push(ph);
        }
    }
    args
}

/// Valid Socket.IO packets of every kind.
fn arb_sio_packet() -> impl Strategy<Value = socketio::Packet> {
    use socketio::{Packet, PacketKind};
    let args = || prop::collection::vec(arb_json(), 0..4);
    let id = || proptest::option::of(any::<u64>());
    prop_oneof![
        (arb_nsp(), proptest::option::of(arb_object())).prop_map(|(nsp, data)| {
            let mut p = Packet::new(PacketKind::Connect, nsp);
            p.data = data.as_ref().map(raw);
            p
        }),
        arb_nsp().prop_map(|nsp| Packet::new(PacketKind::Disconnect, nsp)),
        (arb_nsp(), id(), arb_event_name(), args()).prop_map(|(nsp, id, name, mut a)| {
            a.insert(0, name);
            let mut p = Packet::new(PacketKind::Event, nsp).with_data(raw(&Value::Array(a)));
            p.id = id;
            p
        }),
        (arb_nsp(), id(), args()).prop_map(|(nsp, id, a)| {
            let mut p = Packet::new(PacketKind::Ack, nsp).with_data(raw(&Value::Array(a)));
            p.id = id;
            p
        }),
        (
            arb_nsp(),
            prop_oneof![
                Just(None),
                any::<String>().prop_map(|s| Some(Value::String(s))),
                arb_object().prop_map(Some),
            ]
        )
            .prop_map(|(nsp, data)| {
                let mut p = Packet::new(PacketKind::ConnectError, nsp);
                p.data = data.as_ref().map(raw);
                p
            }),
        (
            arb_nsp(),
            id(),
            arb_event_name(),
            args(),
            0..5usize,
            prop::collection::vec(any::<bool>(), 5)
        )
            .prop_map(|(nsp, id, name, a, n, nest)| {
                let mut a = with_placeholders(a, n, nest);
                a.insert(0, name);
                let mut p = Packet::new(PacketKind::BinaryEvent, nsp)
                    .with_data(raw(&Value::Array(a)))
                    .with_attachments(n);
                p.id = id;
                p
            }),
        (
            arb_nsp(),
            id(),
            args(),
            0..5usize,
            prop::collection::vec(any::<bool>(), 5)
        )
            .prop_map(|(nsp, id, a, n, nest)| {
                let a = with_placeholders(a, n, nest);
                let mut p = Packet::new(PacketKind::BinaryAck, nsp)
                    .with_data(raw(&Value::Array(a)))
                    .with_attachments(n);
                p.id = id;
                p
            }),
    ]
}

/// Engine.IO packets whose text never contains the record separator.
fn arb_eio_packet() -> impl Strategy<Value = engineio::Packet> {
    use engineio::Packet;
    let text = || "[^\u{1e}]{0,40}";
    let nonempty = || "[^\u{1e}]{1,20}";
    prop_oneof![
        text().prop_map(Packet::Open),
        Just(Packet::Close),
        proptest::option::of(nonempty()).prop_map(Packet::Ping),
        proptest::option::of(nonempty()).prop_map(Packet::Pong),
        text().prop_map(|s| Packet::Message(Bytes::from(s))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|v| Packet::Binary(Bytes::from(v))),
        Just(Packet::Upgrade),
        Just(Packet::Noop),
    ]
}

/// Strings that look like Socket.IO packets, to reach deeper decoder paths.
fn sio_like() -> impl Strategy<Value = String> {
    (
        "[0-7]",
        "([0-9]{0,3}-)?",
        "(/[a-z,]{0,4},?)?",
        "[0-9]{0,4}",
        prop_oneof![
            Just(String::new()),
            arb_json().prop_map(|v| v.to_string()),
            "[\\[\\]{}\",:0-9a-z_ -]{0,30}",
            Just("[\"a\",{\"_placeholder\":true,\"num\":0}]".to_owned()),
        ],
    )
        .prop_map(|(a, b, c, d, e)| format!("{a}{b}{c}{d}{e}"))
}

// ---------------------------------------------------------- no-panic checks

proptest! {
    #[test]
    fn eio_payload_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = engineio::decode_payload(&body, 256);
        let _ = engineio::decode_payload(&body, usize::MAX);
        let _ = engineio::decode_payload_shared(Bytes::from(body), usize::MAX);
    }

    #[test]
    fn eio_payload_structured_never_panic(body in "([0-7b][A-Za-z0-9+/=é]{0,12}\u{1e}?){0,6}") {
        let decoded = engineio::decode_payload(body.as_bytes(), usize::MAX);
        let shared = engineio::decode_payload_shared(Bytes::from(body.clone()), usize::MAX);
        prop_assert_eq!(&decoded, &shared);
        if let Ok(packets) = decoded {
            prop_assert!(!packets.is_empty());
            // Whatever decodes survives a re-encode.
            let mut again = Vec::new();
            engineio::encode_payload(&packets, &mut again);
            prop_assert_eq!(engineio::decode_payload(&again, usize::MAX).unwrap(), packets);
        }
    }

    #[test]
    fn eio_text_never_panics(s in any::<String>()) {
        let decoded = engineio::Packet::decode_text(&s);
        prop_assert_eq!(&decoded, &engineio::Packet::decode_text_shared(Bytes::from(s)));
        if let Ok(p) = decoded {
            prop_assert_eq!(engineio::Packet::decode_text(&p.to_text()), Ok(p));
        }
    }

    #[test]
    fn sio_decode_never_panics(s in any::<String>()) {
        if let Ok(p) = socketio::Packet::decode(&s) {
            let _ = p.event_name();
            let _ = p.array_items();
            prop_assert_eq!(socketio::Packet::decode(&p.encode()).ok(), Some(p.clone()));
            let _ = socketio::BinaryAssembler::new(p);
        }
    }

    #[test]
    fn sio_decode_structured_never_panics(s in sio_like()) {
        if let Ok(p) = socketio::Packet::decode(&s) {
            let _ = p.event();
            let _ = socketio::BinaryAssembler::new(p.clone());
            // Whatever decodes re-encodes to something that decodes the same.
            let again = socketio::Packet::decode(&p.encode());
            prop_assert_eq!(again.ok(), Some(p));
        }
    }
}

// --------------------------------------------------------------- round trips

proptest! {
    #[test]
    fn eio_text_round_trip(p in arb_eio_packet()) {
        let text = p.to_text();
        prop_assert_eq!(engineio::Packet::decode_text(&text).unwrap(), p.clone());
        let mut bytes = Vec::new();
        p.encode_text_bytes(&mut bytes);
        prop_assert_eq!(bytes, text.into_bytes());
    }

    #[test]
    fn eio_payload_round_trip(packets in prop::collection::vec(arb_eio_packet(), 1..8)) {
        let mut body = Vec::new();
        engineio::encode_payload(&packets, &mut body);
        prop_assert_eq!(&engineio::decode_payload(&body, body.len()).unwrap(), &packets);
        prop_assert_eq!(
            &engineio::decode_payload_shared(Bytes::from(body.clone()), usize::MAX).unwrap(),
            &packets
        );

        let mut w = engineio::PayloadWriter::new();
        for p in &packets {
            match p {
                engineio::Packet::Binary(b) => w.push_binary(b),
                engineio::Packet::Message(m) => w.push_message(m),
                other => w.push_encoded(other.to_text().as_bytes()),
            }
        }
        prop_assert_eq!(w.packet_count(), packets.len());
        prop_assert_eq!(w.as_bytes(), &body[..]);
    }

    #[test]
    fn sio_round_trip(p in arb_sio_packet()) {
        let text = p.encode();
        let decoded = socketio::Packet::decode(&text);
        prop_assert!(decoded.is_ok(), "{:?} -> {:?}", text, decoded);
        prop_assert_eq!(decoded.unwrap(), p.clone());

        if p.kind.is_binary() {
            let mut asm = socketio::BinaryAssembler::new(p.clone()).unwrap();
            for i in 0..p.attachments {
                let done = asm.push(Bytes::from(vec![i as u8; i])).unwrap();
                prop_assert_eq!(done, i + 1 == p.attachments);
            }
            let (packet, bufs) = asm.finish().unwrap();
            prop_assert_eq!(packet, p.clone());
            prop_assert_eq!(bufs.len(), p.attachments);
        } else {
            prop_assert!(socketio::BinaryAssembler::new(p).is_err());
        }
    }

    #[test]
    fn sio_fast_encoders_round_trip(
        nsp in arb_nsp(),
        id in proptest::option::of(any::<u64>()),
        name in any::<String>().prop_filter("not reserved", |s| !socketio::is_reserved_event(s)),
        args in prop::collection::vec(arb_json(), 0..4),
        message in any::<String>(),
        sid in any::<String>(),
    ) {
        let raws: Vec<Box<RawValue>> = args.iter().map(raw).collect();

        let ev = socketio::Packet::decode(&socketio::encode_event(&nsp, id, &name, &raws, 0)).unwrap();
        prop_assert_eq!(ev.kind, socketio::PacketKind::Event);
        prop_assert_eq!(&ev.nsp, &nsp);
        prop_assert_eq!(ev.id, id);
        let e = ev.event().unwrap();
        prop_assert_eq!(e.name.as_ref(), name.as_str());
        let got: Vec<&str> = e.args.iter().map(|a| a.get()).collect();
        let want: Vec<&str> = raws.iter().map(|a| a.get()).collect();
        prop_assert_eq!(&got, &want);

        let ack_id = id.unwrap_or(0);
        let ack = socketio::Packet::decode(&socketio::encode_ack(&nsp, ack_id, &raws, 0)).unwrap();
        prop_assert_eq!(ack.kind, socketio::PacketKind::Ack);
        prop_assert_eq!(ack.id, Some(ack_id));
        let got: Vec<&str> = ack.array_items().unwrap().iter().map(|a| a.get()).collect();
        prop_assert_eq!(&got, &want);

        let c = socketio::Packet::decode(&socketio::encode_connect(&nsp, &sid)).unwrap();
        let v: Value = serde_json::from_str(c.data_str().unwrap()).unwrap();
        prop_assert_eq!(&v["sid"], &Value::String(sid));

        let ce = socketio::Packet::decode(&socketio::encode_connect_error(&nsp, &message)).unwrap();
        let v: Value = serde_json::from_str(ce.data_str().unwrap()).unwrap();
        prop_assert_eq!(&v["message"], &Value::String(message));

        let d = socketio::Packet::decode(&socketio::encode_disconnect(&nsp)).unwrap();
        prop_assert_eq!(d, socketio::Packet::new(socketio::PacketKind::Disconnect, nsp));
    }

    #[test]
    fn json_string_escaping_matches_serde(s in any::<String>()) {
        let mut out = String::new();
        json::push_json_string(&mut out, &s);
        prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
    }
}
