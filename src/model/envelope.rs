//! Writing events as JSON, fast. Every ingested event is written once to
//! the queue and every delivery sends it again, and an event's data is
//! mostly long strings (a 1 KiB event is ~1 KiB of string). serde_json
//! checks each byte of a string for escapes one at a time, which was the
//! daemon's largest single cost per ingested event. This writer checks
//! sixteen bytes per step and copies clean runs whole, and writes exactly
//! what `serde_json::to_string` writes (a test compares the two on random
//! values), so readers cannot tell which one wrote an event. Delivery jobs
//! (ids and short strings) are written by serde itself.

use serde_json::Value;

use super::event::Event;

/// The event as `{id, type, timestamp, source, data}`: the stored form and
/// the standard delivery envelope; the same bytes as `serde_json`'s.
pub fn event(event: &Event) -> String {
    let mut out = String::with_capacity(128 + estimate(&event.data));
    out.push_str("{\"id\":");
    string(&mut out, &event.id);
    out.push_str(",\"type\":");
    string(&mut out, &event.event_type);
    // RFC 3339 (digits, '-', ':', '.', 'T', 'Z'): nothing to escape.
    out.push_str(",\"timestamp\":\"");
    out.push_str(&event.timestamp.to_string());
    out.push_str("\",\"source\":");
    string(&mut out, &event.source);
    out.push_str(",\"data\":");
    value(&mut out, &event.data);
    out.push('}');
    out
}

/// Append one JSON value.
pub fn value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => number(out, n),
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, k);
                out.push(':');
                value(out, item);
            }
            out.push('}');
        }
    }
}

fn number(out: &mut String, n: &serde_json::Number) {
    if n.is_f64() {
        // Floats go through serde_json's own formatting (shortest
        // round-trip form), which Rust's `Display` does not match.
        out.push_str(&serde_json::to_string(n).unwrap_or_else(|_| "null".into()));
    } else {
        out.push_str(&n.to_string());
    }
}

/// Append `s` as a JSON string literal.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // Start of the run of bytes not yet copied.
    let mut start = 0;
    let mut i = 0;
    loop {
        // Two words at a time while none of their bytes needs escaping.
        while let Some(chunk) = bytes.get(i..i + 16) {
            let (a, b) = chunk.split_at(8);
            if needs_escape(word(a)) || needs_escape(word(b)) {
                break;
            }
            i += 16;
        }
        // Then byte by byte up to the end of that block.
        let end = (i + 16).min(bytes.len());
        while i < end {
            let b = bytes[i];
            if let Some(esc) = escape(b) {
                // Escaped bytes are ASCII, so `start..i` ends on a char
                // boundary.
                out.push_str(&s[start..i]);
                match esc {
                    Escape::Short(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    Escape::Unicode => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        out.push_str("\\u00");
                        out.push(HEX[(b >> 4) as usize] as char);
                        out.push(HEX[(b & 0xf) as usize] as char);
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Eight bytes as one little-endian word.
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is a control character (< 0x20), `"` or `\`.
/// The usual word tricks: `(x - ONES) & !x & HIGHS` is non-zero exactly
/// when some byte of `x` is zero, and a byte below 0x20 is one whose value
/// minus 0x20 borrows while its high bit is clear.
fn needs_escape(w: u64) -> bool {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    below_space | zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) != 0
}

enum Escape {
    /// `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`.
    Short(char),
    /// `\u00XX`, for the other control characters.
    Unicode,
}

/// How serde_json escapes a byte (`None`: written as is; bytes of
/// multi-byte characters and DEL are never escaped).
fn escape(b: u8) -> Option<Escape> {
    match b {
        b'"' => Some(Escape::Short('"')),
        b'\\' => Some(Escape::Short('\\')),
        0x08 => Some(Escape::Short('b')),
        0x0c => Some(Escape::Short('f')),
        b'\n' => Some(Escape::Short('n')),
        b'\r' => Some(Escape::Short('r')),
        b'\t' => Some(Escape::Short('t')),
        0..0x20 => Some(Escape::Unicode),
        _ => None,
    }
}

/// A quick guess of the written length, so the output is allocated once.
fn estimate(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|i| estimate(i) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, i)| k.len() + 4 + estimate(i))
                .sum::<usize>()
        }
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn written(v: &Value) -> String {
        let mut out = String::new();
        value(&mut out, v);
        out
    }

    #[test]
    fn known_answers() {
        assert_eq!(written(&json!("plain")), r#""plain""#);
        assert_eq!(written(&json!("a\"b\\c")), r#""a\"b\\c""#);
        assert_eq!(
            written(&json!("\u{8}\u{c}\n\r\t\u{1}\u{1f}")),
            r#""\b\f\n\r\t\u0001\u001f""#
        );
        // Non-ASCII and DEL pass through unescaped, as serde_json writes them.
        assert_eq!(written(&json!("é✓\u{7f}")), "\"é✓\u{7f}\"");
        // An escape inside a long run, past the first word.
        assert_eq!(
            written(&json!("0123456789abcdef\"xyz")),
            r#""0123456789abcdef\"xyz""#
        );
        assert_eq!(
            written(&json!({"b": [1, -2, 1.5, null, true, false], "a": {}})),
            r#"{"a":{},"b":[1,-2,1.5,null,true,false]}"#
        );
        // Floats as serde_json formats them (not as Rust's `Display` does).
        assert_eq!(written(&json!(1e20)), "1e+20");
    }

    #[test]
    fn the_word_check_finds_every_escaped_byte_in_every_position() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut word = [b'a'; 8];
                word[pos] = b;
                assert_eq!(
                    needs_escape(u64::from_le_bytes(word)),
                    escape(b).is_some(),
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    #[test]
    fn an_event_is_written_as_serde_writes_it() {
        let event = Event {
            id: "01JEVENT".into(),
            event_type: "order.created".into(),
            timestamp: "2026-11-27T05:10:00.123456789Z".parse().unwrap(),
            source: "api:billing \"prod\"".into(),
            data: json!({"n": 1, "note": "x\ny", "list": ["é", 2.25]}),
        };
        assert_eq!(super::event(&event), serde_json::to_string(&event).unwrap());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x7f]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn writes_exactly_what_serde_json_writes(v in any_value()) {
            prop_assert_eq!(written(&v), serde_json::to_string(&v).unwrap());
        }
    }
}
