//! JSON helpers every wire format shares: string literals written like
//! `JSON.stringify`, and the binary-attachment placeholders
//! (`{"_placeholder":true,"num":N}`) that Socket.IO, `/ws` and the cluster
//! wire use to reference binary parts from inside a JSON document.
//!
//! The walks here are iterative, so a hostile, deeply nested document cannot
//! overflow the stack.

use std::fmt::Write as _;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Appends `s` as a JSON string literal (quotes included), escaping like
/// `JSON.stringify`: `"`, `\`, and the control characters, nothing else.
///
/// ```
/// let mut out = String::new();
/// volna_protocols::json::push_json_string(&mut out, "a\"b\n");
/// assert_eq!(out, r#""a\"b\n""#);
/// ```
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", byte);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `s` as a JSON string literal; see [`push_json_string`].
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

/// A `{"_placeholder":true,..}` object whose `num` is not a non-negative
/// integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPlaceholder;

/// The placeholder standing for attachment `num`:
/// `{"_placeholder":true,"num":<num>}`.
pub fn placeholder(num: usize) -> Box<RawValue> {
    RawValue::from_string(format!("{{\"_placeholder\":true,\"num\":{num}}}"))
        .expect("placeholder JSON is valid")
}

/// What an object is: `Ok(None)` for an ordinary object, `Ok(Some(num))` for
/// a placeholder, `Err` for a placeholder without a valid `num`.
pub fn placeholder_num(map: &Map<String, Value>) -> Result<Option<u64>, InvalidPlaceholder> {
    if map.get("_placeholder") != Some(&Value::Bool(true)) {
        return Ok(None);
    }
    match map.get("num").and_then(Value::as_u64) {
        Some(n) => Ok(Some(n)),
        None => Err(InvalidPlaceholder),
    }
}

/// Whether raw JSON text could hold a placeholder at all (a key may be
/// written with escapes, so any backslash counts too). False means it
/// certainly holds none and need not be parsed.
pub fn may_hold_placeholders(text: &str) -> bool {
    text.contains("_placeholder") || text.contains('\\')
}

/// Calls `f` with the `num` of every placeholder in `value`, in document
/// order; the first error (an invalid placeholder, or one `f` returns) stops
/// the walk.
pub fn for_each_placeholder<E: From<InvalidPlaceholder>>(
    value: &Value,
    mut f: impl FnMut(u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::Object(map) => match placeholder_num(map)? {
                Some(num) => f(num)?,
                None => stack.extend(map.values().rev()),
            },
            _ => {}
        }
    }
    Ok(())
}

/// The `num` of every placeholder in `value`, in document order.
pub fn placeholders(value: &Value) -> Result<Vec<u64>, InvalidPlaceholder> {
    let mut nums = Vec::new();
    for_each_placeholder(value, |n| {
        nums.push(n);
        Ok::<_, InvalidPlaceholder>(())
    })?;
    Ok(nums)
}

/// Replaces the `num` of every placeholder in `value` by `f(num)`, in
/// document order. Placeholders without a valid `num` are left alone.
pub fn renumber_placeholders(value: &mut Value, mut f: impl FnMut(u64) -> u64) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter_mut().rev()),
            Value::Object(map) => match placeholder_num(map) {
                Ok(Some(num)) => {
                    map.insert("num".into(), Value::from(f(num)));
                }
                Ok(None) => stack.extend(map.values_mut().rev()),
                Err(InvalidPlaceholder) => {}
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_json_string_matches_serde() {
        for s in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "unicode é ✓ 🎉 \u{2028}",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn placeholders_in_document_order() {
        let v: Value = serde_json::from_str(
            r#"[{"b":{"_placeholder":true,"num":2}},{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]"#,
        )
        .unwrap();
        assert_eq!(placeholders(&v).unwrap(), vec![2, 0, 1]);
    }

    #[test]
    fn invalid_placeholder_is_an_error() {
        for bad in [
            r#"{"_placeholder":true}"#,
            r#"{"_placeholder":true,"num":-1}"#,
            r#"[{"_placeholder":true,"num":"0"}]"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert_eq!(placeholders(&v), Err(InvalidPlaceholder), "{bad}");
        }
        // `_placeholder` must be `true` to count.
        let v: Value = serde_json::from_str(r#"{"_placeholder":1,"num":"x"}"#).unwrap();
        assert_eq!(placeholders(&v).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn renumber_changes_only_placeholders() {
        let mut v: Value = serde_json::from_str(
            r#"{"num":5,"a":[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]}"#,
        )
        .unwrap();
        renumber_placeholders(&mut v, |n| n + 10);
        assert_eq!(
            v.to_string(),
            r#"{"a":[{"_placeholder":true,"num":10},{"_placeholder":true,"num":11}],"num":5}"#
        );
    }

    #[test]
    fn deep_documents_do_not_overflow() {
        let mut v = Value::Null;
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(placeholders(&v).unwrap(), Vec::<u64>::new());
        renumber_placeholders(&mut v, |n| n);
        // serde_json's own drop recurses; do not drop it.
        std::mem::forget(v);
    }

    #[test]
    fn quick_check_for_placeholders() {
        assert!(!may_hold_placeholders(r#"{"a":[1,2]}"#));
        assert!(may_hold_placeholders(r#"{"_placeholder":true,"num":0}"#));
        assert!(may_hold_placeholders(r#"{"\u005fplaceholder":true}"#));
    }
}
