//! Decoding one input message (a line or a Kafka payload) into an [`Event`].
//!
//! Every way an input can be wrong maps to exactly one [`Reason`], so the
//! dead-letter file and the metrics say *why* without anyone reading logs.
//! Required fields are deserialized as `Option`s and checked afterwards:
//! that is how a missing field is told apart from a mistyped one without
//! matching on serde's error strings.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::timestamp::{self, TimestampError};
use super::{Event, EventKind, EventRef, Micros, Reason, UNKNOWN_CATEGORY};

/// Limits applied while decoding (SPEC §2).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_event_bytes: usize,
    /// For live sources: refuse events further ahead of `now` than this.
    /// `None` for bounded, replayed inputs (files), where old and future
    /// data are both legitimate.
    pub max_future_skew: Option<Micros>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_event_bytes: 1 << 20, max_future_skew: None }
    }
}

/// Why an input was refused, with a human detail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct DecodeError {
    pub reason: Reason,
    pub detail: String,
}

impl DecodeError {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        DecodeError { reason, detail: detail.into() }
    }
}

/// A timestamp as it appears on the wire: a string or an integer.
pub(super) enum RawTime<'a> {
    Str(Cow<'a, str>),
    Int(i64),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawTime<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTime<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or epoch milliseconds")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawTime::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTime::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawTime::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(RawTime::Int).map_err(|_| E::custom("epoch millis out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string field: borrowed from the input unless it holds escapes. (serde's
/// own `Cow<str>` borrows only as a bare field; inside an `Option` it
/// always allocates a `String`, which cost seven allocations per event.)
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string") // what serde says for `String`, kept for the dead letters
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// The wire shape. Unknown fields are ignored (SPEC §2); `null` is treated
/// as absent.
#[derive(Default, Deserialize)]
pub(super) struct RawEvent<'a> {
    #[serde(borrow, default)]
    pub event_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub product_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub event_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub timestamp: Option<RawTime<'a>>,
    #[serde(borrow, default)]
    pub category: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub session_id: Option<Text<'a>>,
    #[serde(default)]
    pub price: Option<f64>,
    #[serde(default)]
    pub quantity: Option<i64>,
}

const MAX_ID_CHARS: usize = 128;

fn required_id<'a>(value: Option<Text<'a>>, field: &str) -> Result<Text<'a>, DecodeError> {
    let v = value.ok_or_else(|| DecodeError::new(Reason::MissingField, format!("missing {field}")))?;
    // A character is at least one byte, so only a long id needs counting.
    if !v.is_empty() && v.len() <= MAX_ID_CHARS {
        return Ok(v);
    }
    let chars = v.chars().count();
    if chars == 0 || chars > MAX_ID_CHARS {
        return Err(DecodeError::new(
            Reason::InvalidField,
            format!("{field} must be 1-{MAX_ID_CHARS} characters, got {chars}"),
        ));
    }
    Ok(v)
}

/// An optional string field: absent, `null` and empty are all "none".
fn optional(value: Option<Text<'_>>) -> Option<Text<'_>> {
    value.filter(|v| !v.is_empty())
}

/// A message that passed every check of SPEC §2, its strings still
/// borrowed from the input. [`Checked::into_event`] builds the [`Event`];
/// the speed layer, when nothing keeps the whole event, reads only the
/// few fields it needs and builds nothing else.
pub struct Checked<'a> {
    event_id: Option<Text<'a>>,
    user_id: Text<'a>,
    product_id: Text<'a>,
    event_type: Text<'a>,
    category: Option<Text<'a>>,
    session_id: Option<Text<'a>>,
    time: Micros,
    price: Option<f64>,
    quantity: Option<i64>,
}

impl Checked<'_> {
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    pub fn product_id(&self) -> &str {
        &self.product_id
    }

    pub fn kind(&self) -> EventKind {
        EventKind::from_type(&self.event_type)
    }

    /// The category, `unknown` when the input had none or an empty one.
    pub fn category(&self) -> &str {
        self.category.as_deref().unwrap_or(UNKNOWN_CATEGORY)
    }

    pub fn time(&self) -> Micros {
        self.time
    }

    /// Every field, borrowed (what the archive copies).
    pub fn fields(&self) -> EventRef<'_> {
        EventRef {
            event_id: self.event_id(),
            user_id: &self.user_id,
            product_id: &self.product_id,
            event_type: &self.event_type,
            category: self.category(),
            session_id: self.session_id.as_deref(),
            time: self.time,
            price: self.price,
            quantity: self.quantity,
        }
    }

    pub fn into_event(self) -> Event {
        self.fields().into()
    }
}

fn classify_json_error(bytes: &[u8], err: serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            // Valid JSON but the wrong shape: either not an object at all, or
            // a field of the wrong type.
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            if first != Some(&b'{') {
                DecodeError::new(Reason::NotObject, "expected a JSON object")
            } else {
                DecodeError::new(Reason::InvalidField, err.to_string())
            }
        }
        Category::Syntax | Category::Eof | Category::Io => DecodeError::new(Reason::NotJson, err.to_string()),
    }
}

/// Decodes one message. `now` is the wall clock (micros), used only for the
/// future-skew check of live sources.
pub fn decode(bytes: &[u8], limits: &Limits, now: Micros) -> Result<Event, DecodeError> {
    check(bytes, limits, now).map(Checked::into_event)
}

/// Validates one message like [`decode`] and returns its fields borrowed.
pub fn check<'a>(bytes: &'a [u8], limits: &Limits, now: Micros) -> Result<Checked<'a>, DecodeError> {
    check_inner(bytes, limits, now, true)
}

/// [`decode`] without the fast path: the reference it is tested against.
#[cfg(test)]
pub(super) fn decode_with_serde(bytes: &[u8], limits: &Limits, now: Micros) -> Result<Event, DecodeError> {
    check_inner(bytes, limits, now, false).map(Checked::into_event)
}

fn check_inner<'a>(bytes: &'a [u8], limits: &Limits, now: Micros, fast: bool) -> Result<Checked<'a>, DecodeError> {
    if bytes.len() > limits.max_event_bytes {
        return Err(DecodeError::new(
            Reason::TooLarge,
            format!("{} bytes exceeds max_event_bytes = {}", bytes.len(), limits.max_event_bytes),
        ));
    }
    // SIMD validation on the hot path; std's slower check only to explain a failure.
    let text = match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => {
            let detail =
                std::str::from_utf8(bytes).err().map_or_else(|| "invalid UTF-8".to_string(), |e| e.to_string());
            return Err(DecodeError::new(Reason::NotUtf8, detail));
        }
    };
    // The common flat shape on the fast path; everything else, and every
    // error, through serde (see `flat`).
    let raw = match fast.then(|| super::flat::parse(text)).flatten() {
        Some(raw) => raw,
        None => serde_json::from_str(text).map_err(|e| classify_json_error(bytes, e))?,
    };

    let user_id = required_id(raw.user_id, "user_id")?;
    let product_id = required_id(raw.product_id, "product_id")?;
    let event_type = raw.event_type.ok_or_else(|| DecodeError::new(Reason::MissingField, "missing event_type"))?;
    if event_type.is_empty() {
        return Err(DecodeError::new(Reason::InvalidField, "event_type is empty"));
    }
    let time = match raw.timestamp {
        None => return Err(DecodeError::new(Reason::MissingField, "missing timestamp")),
        Some(RawTime::Str(s)) => timestamp::parse_str(&s),
        Some(RawTime::Int(ms)) => timestamp::from_epoch_millis(ms),
    }
    .map_err(|TimestampError(msg)| DecodeError::new(Reason::BadTimestamp, msg))?;
    if let Some(skew) = limits.max_future_skew {
        if time > now.saturating_add(skew) {
            return Err(DecodeError::new(
                Reason::FutureSkew,
                format!(
                    "event time {} is more than {}s ahead of the wall clock",
                    timestamp::format_rfc3339(time),
                    skew / 1_000_000
                ),
            ));
        }
    }

    Ok(Checked {
        event_id: optional(raw.event_id),
        user_id,
        product_id,
        event_type,
        category: optional(raw.category),
        session_id: optional(raw.session_id),
        time,
        price: raw.price,
        quantity: raw.quantity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Event {
        decode(line.as_bytes(), &Limits::default(), 0).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn reason(line: &[u8]) -> Reason {
        decode(line, &Limits::default(), 0).expect_err("should be refused").reason
    }

    #[test]
    fn full_event() {
        let e = ok(
            r#"{"event_id":"e1","user_id":"u1","product_id":"p1","event_type":"purchase","timestamp":"2026-11-24T10:00:00.123456+00:00","category":"books","session_id":"s1","price":9.5,"quantity":2,"extra":{"a":[1]}}"#,
        );
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.kind, EventKind::Purchase);
        assert_eq!(e.category, "books");
        assert_eq!(e.price, Some(9.5));
        assert_eq!(e.quantity, Some(2));
        assert_eq!(e.time, timestamp::parse_str("2026-11-24T10:00:00.123456Z").unwrap());
    }

    #[test]
    fn defaults_and_other_types() {
        let e =
            ok(r#"{"user_id":"u","product_id":"p","event_type":"wishlist","timestamp":1764064800000,"category":""}"#);
        assert_eq!(e.kind, EventKind::Other);
        assert_eq!(e.event_type, "wishlist");
        assert_eq!(e.category, UNKNOWN_CATEGORY);
        assert_eq!(e.event_id, None);
        let e = ok(
            r#"{"user_id":"u","product_id":"p","event_type":"view","timestamp":"2026-01-01T00:00:00","category":null}"#,
        );
        assert_eq!(e.category, UNKNOWN_CATEGORY);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let e = ok(r#"{"user_id":"u\u00e9","product_id":"p\"1","event_type":"view","timestamp":0}"#);
        assert_eq!(e.user_id, "u\u{e9}");
        assert_eq!(e.product_id, "p\"1");
    }

    #[test]
    fn string_fields_say_what_they_expected_and_take_null_as_absent() {
        let line = br#"{"user_id":"u","product_id":5,"event_type":"view","timestamp":0}"#;
        let err = decode(line, &Limits::default(), 0).unwrap_err();
        assert!(err.detail.contains("invalid type: integer `5`, expected a string"), "{}", err.detail);
        let e = ok(
            r#"{"user_id":"u","product_id":"p","event_type":"view","timestamp":0,"category":null,"session_id":null,"event_id":null}"#,
        );
        assert_eq!((e.category.as_str(), e.session_id, e.event_id), ("unknown", None, None));
    }

    #[test]
    fn every_bad_input_has_its_reason() {
        assert_eq!(reason(b"\xff\xfe{}"), Reason::NotUtf8);
        assert_eq!(reason(b"{\"user_id\": \"u1\", trunc"), Reason::NotJson);
        assert_eq!(reason(b""), Reason::NotJson);
        assert_eq!(reason(b"[1,2]"), Reason::NotObject);
        assert_eq!(reason(b"42"), Reason::NotObject);
        assert_eq!(reason(br#"{"product_id":"p","event_type":"view","timestamp":0}"#), Reason::MissingField);
        assert_eq!(reason(br#"{"user_id":"u","product_id":"p","event_type":"view"}"#), Reason::MissingField);
        assert_eq!(
            reason(br#"{"user_id":"u","product_id":5,"event_type":"view","timestamp":0}"#),
            Reason::InvalidField
        );
        assert_eq!(
            reason(br#"{"user_id":"","product_id":"p","event_type":"view","timestamp":0}"#),
            Reason::InvalidField
        );
        assert_eq!(reason(br#"{"user_id":"u","product_id":"p","event_type":"","timestamp":0}"#), Reason::InvalidField);
        assert_eq!(
            reason(br#"{"user_id":"u","product_id":"p","event_type":"view","timestamp":"yesterday"}"#),
            Reason::BadTimestamp
        );
        assert_eq!(
            reason(br#"{"user_id":"u","product_id":"p","event_type":"view","timestamp":1.5}"#),
            Reason::InvalidField
        );
        assert_eq!(
            reason(br#"{"user_id":"u","product_id":"p","event_type":"view","timestamp":0,"price":"x"}"#),
            Reason::InvalidField
        );
        let long = format!(r#"{{"user_id":"{}","product_id":"p","event_type":"view","timestamp":0}}"#, "u".repeat(129));
        assert_eq!(reason(long.as_bytes()), Reason::InvalidField);
        // The limit is in characters: 128 two-byte ones are fine, 129 are not.
        let wide =
            |n| format!(r#"{{"user_id":"{}","product_id":"p","event_type":"view","timestamp":0}}"#, "é".repeat(n));
        assert_eq!(ok(&wide(128)).user_id.chars().count(), 128);
        assert_eq!(reason(wide(129).as_bytes()), Reason::InvalidField);
    }

    #[test]
    fn size_and_future_limits() {
        let line = br#"{"user_id":"u","product_id":"p","event_type":"view","timestamp":"2026-01-01T00:10:00Z"}"#;
        let small = Limits { max_event_bytes: 10, max_future_skew: None };
        assert_eq!(decode(line, &small, 0).unwrap_err().reason, Reason::TooLarge);
        let now = timestamp::parse_str("2026-01-01T00:00:00Z").unwrap();
        let live = Limits { max_event_bytes: 1 << 20, max_future_skew: Some(300_000_000) };
        assert_eq!(decode(line, &live, now).unwrap_err().reason, Reason::FutureSkew);
        assert!(decode(line, &live, now + 300_000_000).is_ok());
    }
}
