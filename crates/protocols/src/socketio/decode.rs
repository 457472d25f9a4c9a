//! Reading packets: [`Packet::decode`], which checks the text form against
//! the packet kind, and the accessors that look into a decoded payload
//! ([`Packet::event_name`], [`Packet::array_items`], [`Packet::event`])
//! without building a JSON tree.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::error::Error;
use super::packet::{
    is_reserved_event, DecodedEvent, Packet, PacketKind, DEFAULT_NAMESPACE, MAX_DEPTH,
};

impl Packet {
    /// Decodes one packet from the data of an Engine.IO message.
    ///
    /// Follows the reference parser (socket.io-parser v4), a little more
    /// strictly: numbers must be plain ASCII digits without overflow, an ack
    /// id is only accepted on EVENT/ACK kinds, and EVENT/ACK payloads are
    /// mandatory. Binary packets must then go through [`BinaryAssembler`](super::BinaryAssembler),
    /// which checks the attachment count and placeholders.
    pub fn decode(text: &str) -> Result<Packet, Error> {
        let b = text.as_bytes();
        let Some(&first) = b.first() else {
            return Err(Error::Empty);
        };
        let Some(kind) = PacketKind::from_byte(first) else {
            let c = text.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(Error::UnknownKind(c));
        };
        let mut i = 1;

        let mut attachments = 0;
        if kind.is_binary() {
            let digits = count_digits(&b[i..]);
            if digits == 0 || b.get(i + digits) != Some(&b'-') {
                return Err(Error::IllegalAttachments);
            }
            attachments = parse_decimal(&b[i..i + digits])
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(Error::IllegalAttachments)?;
            i += digits + 1;
        }

        let nsp = if b.get(i) == Some(&b'/') {
            match memchr::memchr(b',', &b[i..]) {
                Some(len) => {
                    let nsp = &text[i..i + len];
                    i += len + 1;
                    nsp
                }
                None => {
                    let nsp = &text[i..];
                    i = b.len();
                    nsp
                }
            }
        } else {
            DEFAULT_NAMESPACE
        };

        let digits = count_digits(&b[i..]);
        let id = if digits > 0 {
            if !kind.allows_id() {
                return Err(Error::UnexpectedId(kind));
            }
            let id = parse_decimal(&b[i..i + digits]).ok_or(Error::InvalidId)?;
            i += digits;
            Some(id)
        } else {
            None
        };

        // Every index used above sits next to an ASCII byte.
        let rest = &text[i..];
        let data = if rest.is_empty() {
            None
        } else if kind == PacketKind::Disconnect {
            return Err(Error::UnexpectedPayload(kind));
        } else {
            let raw: Box<RawValue> = serde_json::from_str(rest).map_err(Error::InvalidJson)?;
            if nesting_depth(raw.get()) > MAX_DEPTH {
                return Err(Error::TooDeep);
            }
            Some(raw)
        };
        validate_payload(kind, data.as_deref())?;

        Ok(Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data,
            attachments,
        })
    }

    /// The event name of an EVENT or BINARY_EVENT packet with a valid
    /// payload; a numeric name is given as its JSON text.
    pub fn event_name(&self) -> Option<Cow<'_, str>> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return None;
        }
        match array_head(self.data_str()?) {
            Head::Str(token) => unescape_token(token).ok(),
            Head::Num(token) => Some(Cow::Borrowed(token)),
            Head::Empty | Head::Other => None,
        }
    }

    /// The raw elements of an array payload (EVENT, ACK and binary kinds).
    pub fn array_items(&self) -> Result<Vec<&RawValue>, Error> {
        let data = self.data_str().ok_or(Error::MissingPayload(self.kind))?;
        if !data.starts_with('[') {
            return Err(Error::InvalidPayload(self.kind));
        }
        serde_json::from_str(data).map_err(Error::InvalidJson)
    }

    /// Splits an EVENT or BINARY_EVENT payload into name and arguments.
    pub fn event(&self) -> Result<DecodedEvent<'_>, Error> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return Err(Error::InvalidPayload(self.kind));
        }
        let name = self.event_name().ok_or(Error::InvalidPayload(self.kind))?;
        let mut args = self.array_items()?;
        args.remove(0);
        Ok(DecodedEvent { name, args })
    }
}

/// Deepest array/object nesting in valid JSON text.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &c in json.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Number of leading ASCII digits.
fn count_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Parses ASCII digits; `None` on overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Checks the payload's presence and shape for `kind`.
fn validate_payload(kind: PacketKind, data: Option<&RawValue>) -> Result<(), Error> {
    let Some(data) = data else {
        return match kind {
            PacketKind::Event
            | PacketKind::Ack
            | PacketKind::BinaryEvent
            | PacketKind::BinaryAck => Err(Error::MissingPayload(kind)),
            _ => Ok(()),
        };
    };
    // `data` is valid JSON without surrounding whitespace, so its first byte
    // tells its type.
    let json = data.get();
    let first = json.as_bytes().first().copied();
    let ok = match kind {
        PacketKind::Connect => first == Some(b'{'),
        PacketKind::Disconnect => false,
        PacketKind::ConnectError => matches!(first, Some(b'{' | b'"')),
        PacketKind::Ack | PacketKind::BinaryAck => first == Some(b'['),
        PacketKind::Event | PacketKind::BinaryEvent => {
            if first != Some(b'[') {
                return Err(Error::InvalidPayload(kind));
            }
            match array_head(json) {
                Head::Num(_) => true,
                Head::Str(token) => {
                    let name = unescape_token(token)?;
                    if is_reserved_event(&name) {
                        return Err(Error::ReservedEvent(name.into_owned()));
                    }
                    true
                }
                Head::Empty | Head::Other => false,
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidPayload(kind))
    }
}

/// The first element of a JSON array.
enum Head<'a> {
    /// A string token, quotes included.
    Str(&'a str),
    /// A number token.
    Num(&'a str),
    /// The array is empty.
    Empty,
    /// Anything else (or not an array).
    Other,
}

/// Lexes the first element of `json`, which must be valid JSON text.
fn array_head(json: &str) -> Head<'_> {
    let b = json.as_bytes();
    if b.first() != Some(&b'[') {
        return Head::Other;
    }
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = 1 + b[1..].iter().take_while(|c| is_ws(c)).count();
    match b.get(start) {
        Some(b']') => Head::Empty,
        Some(b'"') => {
            let mut j = start + 1;
            loop {
                match b.get(j) {
                    Some(b'\\') => j += 2,
                    Some(b'"') => return Head::Str(&json[start..=j]),
                    Some(_) => j += 1,
                    None => return Head::Other,
                }
            }
        }
        Some(b'-' | b'0'..=b'9') => {
            let len = b[start..]
                .iter()
                .take_while(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                .count();
            Head::Num(&json[start..start + len])
        }
        _ => Head::Other,
    }
}

/// Unescapes a JSON string token (quotes included), borrowing when possible.
fn unescape_token(token: &str) -> Result<Cow<'_, str>, Error> {
    if token.len() >= 2 && !token.contains('\\') {
        Ok(Cow::Borrowed(&token[1..token.len() - 1]))
    } else {
        serde_json::from_str::<String>(token)
            .map(Cow::Owned)
            .map_err(Error::InvalidJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::placeholder;
    use crate::socketio::testing::{dec, raw};
    use crate::socketio::{
        encode_ack, encode_connect, encode_connect_error, encode_disconnect, encode_event,
        RESERVED_EVENTS,
    };
    use serde_json::Value;

    fn err(s: &str) -> Error {
        match Packet::decode(s) {
            Ok(p) => panic!("{s:?} decoded to {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn connect_vectors() {
        let p = dec("0");
        assert_eq!(p, Packet::new(PacketKind::Connect, "/"));
        assert_eq!(p.encode(), "0");

        let s = r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::Connect);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.id, None);
        assert_eq!(p.data_str(), Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#));
        assert_eq!(p.encode(), s);
        assert_eq!(encode_connect("/admin", "oSO0OpakMV_3jnilAAAA"), s);
        assert_eq!(
            encode_connect("/", "wZX3oN0bSVIhsaknAAAI"),
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
        );

        let p = dec("0/admin,");
        assert_eq!(p.nsp, "/admin");
        assert!(p.data.is_none());
        let p = dec("0/admin");
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.encode(), "0/admin,");
        let p = dec(r#"0{"token":"123"}"#);
        assert_eq!(p.nsp, "/");
        assert_eq!(p.data_str(), Some(r#"{"token":"123"}"#));
    }

    #[test]
    fn connect_errors() {
        assert!(matches!(
            err("0[]"),
            Error::InvalidPayload(PacketKind::Connect)
        ));
        assert!(matches!(
            err("0\"x\""),
            Error::InvalidPayload(PacketKind::Connect)
        ));
        assert!(matches!(
            err("0null"),
            Error::InvalidPayload(PacketKind::Connect)
        ));
        assert!(matches!(err("0{"), Error::InvalidJson(_)));
        assert!(matches!(err("0{}x"), Error::InvalidJson(_)));
        assert!(matches!(
            err("01{}"),
            Error::UnexpectedId(PacketKind::Connect)
        ));
    }

    #[test]
    fn connect_error_vectors() {
        let s = r#"4{"message":"Not authorized"}"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::ConnectError);
        assert_eq!(p.encode(), s);
        assert_eq!(encode_connect_error("/", "Not authorized"), s);
        assert_eq!(
            encode_connect_error("/nsp", "Invalid namespace"),
            r#"4/nsp,{"message":"Invalid namespace"}"#
        );
        assert_eq!(dec(r#"4"legacy""#).data_str(), Some(r#""legacy""#));
        assert!(dec("4").data.is_none());
        assert!(matches!(err("4[]"), Error::InvalidPayload(_)));
        assert!(matches!(err("41"), Error::UnexpectedId(_)));
    }

    #[test]
    fn disconnect_vectors() {
        assert_eq!(dec("1"), Packet::new(PacketKind::Disconnect, "/"));
        assert_eq!(
            dec("1/admin,"),
            Packet::new(PacketKind::Disconnect, "/admin")
        );
        assert_eq!(encode_disconnect("/admin"), "1/admin,");
        assert_eq!(encode_disconnect("/"), "1");
        assert!(matches!(err("1{}"), Error::UnexpectedPayload(_)));
        assert!(matches!(err("1/admin,[]"), Error::UnexpectedPayload(_)));
        assert!(matches!(err("1/admin,x"), Error::UnexpectedPayload(_)));
        assert!(matches!(err("12"), Error::UnexpectedId(_)));
    }

    #[test]
    fn event_vectors() {
        let p = dec(r#"2["foo"]"#);
        assert_eq!(p.kind, PacketKind::Event);
        assert_eq!(p.nsp, "/");
        assert_eq!(p.event_name().as_deref(), Some("foo"));
        assert_eq!(p.encode(), r#"2["foo"]"#);

        let p = dec(r#"2["hello",1]"#);
        let ev = p.event().unwrap();
        assert_eq!(ev.name, "hello");
        assert_eq!(ev.args.len(), 1);
        assert_eq!(ev.args[0].get(), "1");

        let p = dec(r#"2/admin,["bar"]"#);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.encode(), r#"2/admin,["bar"]"#);

        let p = dec(r#"212["foo"]"#);
        assert_eq!(p.id, Some(12));
        assert_eq!(p.encode(), r#"212["foo"]"#);

        let p = dec(r#"2/admin,1["tellme"]"#);
        assert_eq!((p.nsp.as_str(), p.id), ("/admin", Some(1)));

        // Numeric event names are accepted, as by the reference parser.
        let p = dec("2[42,\"x\"]");
        assert_eq!(p.event_name().as_deref(), Some("42"));
        assert_eq!(p.event().unwrap().args.len(), 1);

        // Escaped names are unescaped; whitespace is tolerated like JSON.parse.
        let p = dec(r#"2[ "a\"b\u00e9" , {"k" : [1]} ] "#);
        assert_eq!(p.event_name().as_deref(), Some("a\"bé"));
        assert_eq!(p.data_str(), Some(r#"[ "a\"b\u00e9" , {"k" : [1]} ]"#));
        let ev = p.event().unwrap();
        assert_eq!(ev.args[0].get(), r#"{"k" : [1]}"#);

        // Large ids up to u64::MAX.
        assert_eq!(dec(r#"218446744073709551615["a"]"#).id, Some(u64::MAX));
    }

    #[test]
    fn event_errors() {
        assert!(matches!(err("2"), Error::MissingPayload(PacketKind::Event)));
        assert!(matches!(err("2/admin,"), Error::MissingPayload(_)));
        assert!(matches!(err("212"), Error::MissingPayload(_)));
        assert!(matches!(err("2[]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2{}"), Error::InvalidPayload(_)));
        assert!(matches!(err("2[{}]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2[null]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2[[\"a\"]]"), Error::InvalidPayload(_)));
        assert!(matches!(err("2\"foo\""), Error::InvalidPayload(_)));
        assert!(matches!(err("2[\"foo\""), Error::InvalidJson(_)));
        assert!(matches!(err("2[\"foo\"]]"), Error::InvalidJson(_)));
        assert!(matches!(err("2[\"foo\"]x"), Error::InvalidJson(_)));
        assert!(matches!(err("2[\"a\",]"), Error::InvalidJson(_)));
        assert!(matches!(err("2x[\"a\"]"), Error::InvalidJson(_)));
        assert!(matches!(
            err(r#"218446744073709551616["a"]"#),
            Error::InvalidId
        ));
        for name in RESERVED_EVENTS {
            let e = err(&format!("2[\"{name}\",1]"));
            assert!(matches!(e, Error::ReservedEvent(n) if n == name));
        }
        // Reserved names are caught even when escaped.
        assert!(matches!(
            err(r#"2["\u0063onnect"]"#),
            Error::ReservedEvent(_)
        ));
    }

    #[test]
    fn ack_vectors() {
        let s = r#"3/admin,13["bar"]"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::Ack);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.id, Some(13));
        assert_eq!(p.encode(), s);
        assert_eq!(encode_ack("/admin", 13, &[raw(r#""bar""#)], 0), s);

        let p = dec("312[]");
        assert_eq!(p.id, Some(12));
        assert!(p.array_items().unwrap().is_empty());
        assert_eq!(encode_ack::<&RawValue>("/", 12, &[], 0), "312[]");

        // An ack without id is syntactically valid (the reference accepts it).
        assert_eq!(dec("3[]").id, None);
        assert!(matches!(err("3"), Error::MissingPayload(PacketKind::Ack)));
        assert!(matches!(err("3{}"), Error::InvalidPayload(_)));
        assert!(matches!(err("31\"x\""), Error::InvalidPayload(_)));
    }

    #[test]
    fn binary_vectors() {
        let s = r#"51-["baz",{"_placeholder":true,"num":0}]"#;
        let p = dec(s);
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!(p.attachments, 1);
        assert_eq!(p.event_name().as_deref(), Some("baz"));
        assert_eq!(p.encode(), s);

        let s = r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        let p = dec(s);
        assert_eq!((p.attachments, p.nsp.as_str()), (2, "/admin"));
        assert_eq!(p.encode(), s);

        let s = r#"61-15["bar",{"_placeholder":true,"num":0}]"#;
        let p = dec(s);
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketKind::BinaryAck, 1, Some(15))
        );
        assert_eq!(p.encode(), s);

        let s = r#"61-/admin,1[{"_placeholder":true,"num":0}]"#;
        let p = dec(s);
        assert_eq!(
            (p.attachments, p.nsp.as_str(), p.id),
            (1, "/admin", Some(1))
        );
        assert_eq!(p.encode(), s);

        // `452-/chat,` style: the Engine.IO `4` stripped, then `52-/chat,...`.
        let p =
            dec(r#"52-/chat,["x",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#);
        assert_eq!((p.attachments, p.nsp.as_str()), (2, "/chat"));

        let p = dec(r#"50-["a"]"#);
        assert_eq!(p.attachments, 0);

        let ph = [placeholder(0), placeholder(1)];
        assert_eq!(
            encode_event("/chat", Some(3), "up", &ph, 2),
            r#"52-/chat,3["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(
            encode_ack("/", 15, &ph[..1], 1),
            r#"61-15[{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn binary_errors() {
        for s in [
            "5[\"a\"]",
            "5-[\"a\"]",
            "5a-[\"a\"]",
            "51[\"a\"]",
            "5",
            "51",
            "6+1-[]",
            "5 1-[\"a\"]",
            "599999999999999999999999-[\"a\"]",
        ] {
            assert!(matches!(err(s), Error::IllegalAttachments), "{s}");
        }
        assert!(matches!(err("51-"), Error::MissingPayload(_)));
        assert!(matches!(err("51-[]"), Error::InvalidPayload(_)));
        assert!(matches!(err("61-{}"), Error::InvalidPayload(_)));
    }

    #[test]
    fn generic_errors() {
        assert!(matches!(err(""), Error::Empty));
        assert!(matches!(err("7"), Error::UnknownKind('7')));
        assert!(matches!(err("a"), Error::UnknownKind('a')));
        assert!(matches!(err("é"), Error::UnknownKind('é')));
        assert!(matches!(err("2/a,b[\"x\"]"), Error::InvalidJson(_)));
        // Deep nesting is refused instead of being passed on.
        let deep = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(err(&deep), Error::TooDeep));
        // The limit matches serde_json's, so accepted payloads parse as Value.
        for d in 120..135 {
            let s = format!("3{}{}", "[".repeat(d), "]".repeat(d));
            let value_ok = serde_json::from_str::<Value>(&s[1..]).is_ok();
            assert_eq!(Packet::decode(&s).is_ok(), value_ok, "depth {d}");
        }
        assert_eq!(nesting_depth(r#"["[[[\"{", {"a": [1]}]"#), 3);
    }

    #[test]
    fn nsp_edge_cases() {
        // Namespace without trailing comma runs to the end.
        assert_eq!(dec("1/a/b").nsp, "/a/b");
        // An explicit main namespace decodes to "/" and encodes without it.
        let p = dec("2/,[\"x\"]");
        assert_eq!(p.nsp, "/");
        assert_eq!(p.encode(), "2[\"x\"]");
        // Non-ASCII namespaces.
        let p = dec("2/ü,5[\"x\"]");
        assert_eq!((p.nsp.as_str(), p.id), ("/ü", Some(5)));
        assert_eq!(p.encode(), "2/ü,5[\"x\"]");
    }
}
