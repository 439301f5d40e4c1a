//! A fast path for the common shape of an event: one flat JSON object whose
//! strings carry no escapes.
//!
//! serde_json is general: it walks the object through visitors and field
//! matchers, and that machinery was most of the decode's time. Nearly every
//! real event is a flat object of short, plain strings and numbers, so
//! [`parse`] reads exactly that subset in one pass, borrowing every string.
//! Anything outside it — an escape, a control character, a nested value, a
//! repeated field, a value of the wrong type, malformed JSON — makes it
//! return `None`, and the caller decodes the input with serde, which also
//! says precisely what is wrong. So for every input it accepts, `parse`
//! must yield what serde yields; `tests::agrees_with_serde` checks that on
//! random inputs built to hit every branch.

use std::borrow::Cow;

use super::decode::{RawEvent, RawTime, Text};

/// The fields of [`RawEvent`], in the bit order of the "seen" mask.
const FIELDS: [&str; 9] =
    ["event_id", "user_id", "product_id", "event_type", "timestamp", "category", "session_id", "price", "quantity"];

/// A JSON value of the subset.
enum Value<'a> {
    Str(&'a str),
    /// The number's text, and whether it is an integer (no fraction or exponent).
    Num(&'a str, bool),
    Null,
    Bool,
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    /// A string without escapes or control characters (JSON forbids the
    /// latter unescaped), borrowed from the input.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        self.at += plain_len(&self.text.as_bytes()[start..]);
        if self.peek()? != b'"' {
            return None; // an escape or a control character: serde decides
        }
        // Both ends are at an ASCII quote, so on character boundaries.
        let s = self.text.get(start..self.at)?;
        self.at += 1;
        Some(s)
    }

    /// One or more digits.
    fn digits(&mut self) -> bool {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at > start
    }

    /// A number in JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<Value<'a>> {
        let start = self.at;
        let negative = self.eat(b'-');
        // serde_json reads `-0` as the float -0.0 (to keep its sign), so
        // it is not an integer here either.
        let mut integer = true;
        match self.peek()? {
            b'0' => {
                self.at += 1;
                integer = !negative;
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.') {
            integer = false;
            if !self.digits() {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !self.digits() {
                return None;
            }
        }
        Some(Value::Num(self.text.get(start..self.at)?, integer))
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Option<Value<'a>> {
        let end = self.at + word.len();
        (self.text.as_bytes().get(self.at..end)? == word.as_bytes()).then(|| {
            self.at = end;
            value
        })
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'n' => self.literal("null", Value::Null),
            b't' => self.literal("true", Value::Bool),
            b'f' => self.literal("false", Value::Bool),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None, // objects, arrays, anything else: serde decides
        }
    }
}

/// Whether a byte ends the plain part of a JSON string: its closing quote,
/// an escape, or a control character (which JSON forbids unescaped).
fn stops_string(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Length of the longest prefix of `bytes` without a byte that
/// [`stops_string`].
///
/// Scanning strings byte by byte was the largest single cost of decoding
/// (13 instructions per byte, cachegrind); sixteen bytes at a time, most
/// ids and keys take one step and a timestamp two.
#[cfg(target_arch = "x86_64")]
#[inline]
fn plain_len(bytes: &[u8]) -> usize {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut at = 0;
    while at + 16 <= bytes.len() {
        // SAFETY: SSE2 is part of every x86_64 CPU, and the unaligned load
        // reads bytes[at..at + 16], inside the slice by the loop condition.
        let mask = unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().add(at).cast());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let escape = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, escape), control)) as u32
        };
        if mask != 0 {
            return at + mask.trailing_zeros() as usize;
        }
        at += 16;
    }
    at + bytes[at..].iter().position(|b| stops_string(*b)).unwrap_or(bytes.len() - at)
}

#[cfg(not(target_arch = "x86_64"))]
fn plain_len(bytes: &[u8]) -> usize {
    bytes.iter().position(|b| stops_string(*b)).unwrap_or(bytes.len())
}

/// Number of `key` in [`FIELDS`], if it is one. The length and first byte
/// leave one candidate, so each key costs a single comparison.
fn field_index(key: &str) -> Option<usize> {
    let candidate = match (key.len(), *key.as_bytes().first()?) {
        (8, b'e') => 0,
        (7, b'u') => 1,
        (10, b'p') => 2,
        (10, b'e') => 3,
        (9, b't') => 4,
        (8, b'c') => 5,
        (10, b's') => 6,
        (5, b'p') => 7,
        (8, b'q') => 8,
        _ => return None,
    };
    let (field, key) = (FIELDS[candidate].as_bytes(), key.as_bytes());
    // Equal lengths of 5 to 10 bytes: two overlapping words cover them,
    // where a call to `memcmp` (or a byte loop) cost more than the compare.
    let same = if key.len() >= 8 {
        field.first_chunk::<8>() == key.first_chunk::<8>() && field.last_chunk::<8>() == key.last_chunk::<8>()
    } else {
        field.first_chunk::<4>() == key.first_chunk::<4>() && field.last_chunk::<4>() == key.last_chunk::<4>()
    };
    same.then_some(candidate)
}

/// `text` as a [`RawEvent`], or `None` if it is outside the fast subset.
pub(super) fn parse(text: &str) -> Option<RawEvent<'_>> {
    let mut c = Cursor { text, at: 0 };
    let mut raw = RawEvent::default();
    let mut seen = 0u16;
    c.skip_ws();
    if !c.eat(b'{') {
        return None;
    }
    c.skip_ws();
    if !c.eat(b'}') {
        loop {
            let key = c.string()?;
            c.skip_ws();
            if !c.eat(b':') {
                return None;
            }
            c.skip_ws();
            let value = c.value()?;
            if let Some(field) = field_index(key) {
                let bit = 1u16 << field;
                if seen & bit != 0 {
                    return None; // serde refuses a repeated field
                }
                seen |= bit;
                set(&mut raw, field, value)?;
            }
            c.skip_ws();
            if c.eat(b',') {
                c.skip_ws();
            } else if c.eat(b'}') {
                break;
            } else {
                return None;
            }
        }
    }
    c.skip_ws();
    (c.at == text.len()).then_some(raw)
}

/// Stores `value` in field number `field` the way serde would, or `None`
/// where serde would refuse it. `null` is an absent value, as for serde's
/// `Option` fields.
fn set<'a>(raw: &mut RawEvent<'a>, field: usize, value: Value<'a>) -> Option<()> {
    let text = |v: Value<'a>| match v {
        Value::Str(s) => Some(Some(Text(Cow::Borrowed(s)))),
        Value::Null => Some(None),
        _ => None,
    };
    match field {
        0 => raw.event_id = text(value)?,
        1 => raw.user_id = text(value)?,
        2 => raw.product_id = text(value)?,
        3 => raw.event_type = text(value)?,
        5 => raw.category = text(value)?,
        6 => raw.session_id = text(value)?,
        4 => {
            raw.timestamp = match value {
                Value::Str(s) => Some(RawTime::Str(Cow::Borrowed(s))),
                // Integers that fit an i64; serde refuses larger ones and fractions.
                Value::Num(n, true) => Some(RawTime::Int(n.parse().ok()?)),
                Value::Null => None,
                _ => return None,
            }
        }
        // serde_json's own float parser, so the value is bit for bit the same.
        7 => {
            raw.price = match value {
                Value::Num(n, _) => Some(serde_json::from_str(n).ok()?),
                Value::Null => None,
                _ => return None,
            }
        }
        8 => {
            raw.quantity = match value {
                Value::Num(n, true) => Some(n.parse().ok()?),
                Value::Null => None,
                _ => return None,
            }
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::decode::{decode_with_serde, Limits};
    use super::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z0-9_-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-zé\"\\\\/\t]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            1 => Just("\"2026-11-24T10:00:00Z\"".to_string()),
            1 => Just("\"2026-11-24T10:00:00.123456+01:00\"".to_string()),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => (0u64..2_000_000_000_000).prop_map(|n| n.to_string()),
            1 => any::<f64>().prop_map(|f| f.to_string()),
            1 => prop::sample::select(vec![
                "null", "true", "false", "-0", "0.5", "1e3", "1E-2", "12.50", "-7", "01", "1.", ".5", "+1",
                "9223372036854775808", "-9223372036854775809", "18446744073709551616", "[]", "{}",
                "{\"a\":1}", "[1,\"x\"]", "nul", "tru", "\"\u{1}\"", "\"a\\u0041\"",
            ])
            .prop_map(str::to_string),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
            1 => "[a-z]{1,8}",
            1 => Just("user\\u005fid".to_string()),
        ]
    }

    fn line() -> impl Strategy<Value = String> {
        let ws = prop::sample::select(vec!["", "", "", " ", "\t", "\n ", "\r\n"]);
        (prop::collection::vec((key(), value(), ws.clone()), 0..12), ws, any::<u8>()).prop_map(|(members, pad, cut)| {
            let body: Vec<String> = members.iter().map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}{w}")).collect();
            let mut s = format!("{pad}{{{}}}{pad}", body.join(","));
            // Now and then, damage it.
            match cut % 16 {
                0 => {
                    let mut at = s.len() * usize::from(cut) / 256;
                    while !s.is_char_boundary(at) {
                        at -= 1;
                    }
                    s.truncate(at);
                }
                1 => s.push_str(",}"),
                2 => s.insert(0, '['),
                _ => {}
            }
            s
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn agrees_with_serde(line in line()) {
            let limits = Limits::default();
            let fast = super::super::decode::decode(line.as_bytes(), &limits, 0);
            let slow = decode_with_serde(line.as_bytes(), &limits, 0);
            prop_assert_eq!(fast, slow, "{}", line);
        }
    }

    #[test]
    fn plain_len_stops_at_the_first_quote_escape_or_control_byte() {
        // Every length and stop position, across and at the 16-byte steps.
        for len in 0..50 {
            let plain = vec![b'a'; len];
            assert_eq!(plain_len(&plain), len);
            for at in 0..len {
                for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut bytes = plain.clone();
                    bytes[at] = stop;
                    assert_eq!(plain_len(&bytes), at, "len {len}, {stop:#x} at {at}");
                }
                // Neither space, DEL nor the bytes of a multi-byte character stop a string.
                let mut bytes = plain.clone();
                bytes[at] = [b' ', 0x7f, 0x80, 0xc3, 0xff][at % 5];
                assert_eq!(plain_len(&bytes), len);
            }
        }
    }

    #[test]
    fn field_index_knows_exactly_the_fields() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(field_index(f), Some(i));
        }
        for other in ["", "e", "event_ix", "eventtype_", "product_ix", "users_i", "price ", "Price", "quantit_"] {
            assert_eq!(field_index(other), None, "{other}");
        }
    }

    #[test]
    fn takes_the_common_shape_and_leaves_the_rest_to_serde() {
        let plain = r#"{"event_id":"e-1","user_id":"u1","product_id":"p1","event_type":"view","timestamp":"2026-11-24T00:00:00Z","category":"toys","session_id":"s1","price":12.5,"quantity":2}"#;
        let raw = parse(plain).expect("the common shape is on the fast path");
        assert_eq!((raw.price, raw.quantity), (Some(12.5), Some(2)));
        assert!(matches!(raw.user_id.as_ref().map(|t| &t.0), Some(Cow::Borrowed("u1"))));
        for other in [
            r#"{"user_id":"u\"1"}"#,
            r#"{"user_id":"u1","user_id":"u2"}"#,
            r#"{"user_id":5}"#,
            r#"{"extra":{"nested":true}}"#,
            r#"{"quantity":1.0}"#,
            r#"{"timestamp":1.5}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            "[1]",
        ] {
            assert!(parse(other).is_none(), "{other}");
        }
        assert!(parse(r#" { "extra" : [ ] } "#).is_none());
        assert!(parse(r#" { "extra" : true , "price" : null } "#).is_some());
    }
}
