//! Shortcuts for the Socket.IO codec's unit tests.

use serde_json::value::RawValue;

use super::Packet;

/// `s` as raw JSON.
pub(super) fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

/// `s` decoded, or a panic saying why not.
pub(super) fn dec(s: &str) -> Packet {
    Packet::decode(s).unwrap_or_else(|e| panic!("{s:?} failed: {e}"))
}
