//! The clickstream event: the one record every layer agrees on (SPEC §2).
//!
//! This module owns the in-memory shape of a valid event ([`Event`]), the
//! classification of event types ([`EventKind`]) and the dead-letter record
//! ([`DeadLetter`]) that carries every input we refused, with its reason.
//! Decoding lives in [`decode`] (with a fast path for flat objects in
//! `flat`), timestamp parsing in [`timestamp`].

pub mod decode;
mod flat;
pub mod timestamp;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

pub use decode::{decode, DecodeError, Limits};

/// Microseconds since the Unix epoch, UTC. Event times are kept at the
/// precision the archive stores (SPEC §4), never rounded to millis.
pub type Micros = i64;

/// How an event is counted by the speed and batch layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    View,
    AddToCart,
    Purchase,
    /// Any other non-empty `event_type`: archived, counted only as `other`.
    Other,
}

impl EventKind {
    pub fn from_type(event_type: &str) -> EventKind {
        match event_type {
            "view" => EventKind::View,
            "add_to_cart" => EventKind::AddToCart,
            "purchase" => EventKind::Purchase,
            _ => EventKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::AddToCart => "add_to_cart",
            EventKind::Purchase => "purchase",
            EventKind::Other => "other",
        }
    }
}

/// A valid clickstream event. Strings are `CompactString`s because almost
/// every id is shorter than 24 bytes and so needs no heap allocation; the
/// speed layer moves millions of these per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Option<CompactString>,
    pub user_id: CompactString,
    pub product_id: CompactString,
    /// The type as it arrived (archived verbatim, also for `other`).
    pub event_type: CompactString,
    pub kind: EventKind,
    /// `unknown` when the input had none or an empty one.
    pub category: CompactString,
    pub session_id: Option<CompactString>,
    pub time: Micros,
    pub price: Option<f64>,
    pub quantity: Option<i64>,
}

impl Event {
    pub fn fields(&self) -> EventRef<'_> {
        EventRef {
            event_id: self.event_id.as_deref(),
            user_id: &self.user_id,
            product_id: &self.product_id,
            event_type: &self.event_type,
            category: &self.category,
            session_id: self.session_id.as_deref(),
            time: self.time,
            price: self.price,
            quantity: self.quantity,
        }
    }
}

/// A valid event's fields, borrowed from a decoded message or an
/// [`Event`]: what the archive copies into its columns, with no string
/// built in between.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventRef<'a> {
    pub event_id: Option<&'a str>,
    pub user_id: &'a str,
    pub product_id: &'a str,
    pub event_type: &'a str,
    /// `unknown` when the input had none or an empty one.
    pub category: &'a str,
    pub session_id: Option<&'a str>,
    pub time: Micros,
    pub price: Option<f64>,
    pub quantity: Option<i64>,
}

impl From<EventRef<'_>> for Event {
    fn from(e: EventRef<'_>) -> Self {
        Event {
            event_id: e.event_id.map(CompactString::from),
            user_id: e.user_id.into(),
            product_id: e.product_id.into(),
            kind: EventKind::from_type(e.event_type),
            event_type: e.event_type.into(),
            category: e.category.into(),
            session_id: e.session_id.map(CompactString::from),
            time: e.time,
            price: e.price,
            quantity: e.quantity,
        }
    }
}

/// The category given to events that carry none (SPEC §2).
pub const UNKNOWN_CATEGORY: &str = "unknown";

/// Why an input was refused or set aside. The `as_str` names are what the
/// dead-letter file and the metrics carry, so they are part of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reason {
    NotUtf8,
    NotJson,
    NotObject,
    MissingField,
    InvalidField,
    BadTimestamp,
    TooLarge,
    FutureSkew,
    /// Valid, archived, but every window it belongs to had already closed.
    Late,
    /// Late only because its partition had been skipped as idle.
    LateAfterIdle,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::NotUtf8,
        Reason::NotJson,
        Reason::NotObject,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::BadTimestamp,
        Reason::TooLarge,
        Reason::FutureSkew,
        Reason::Late,
        Reason::LateAfterIdle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "not_utf8",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::TooLarge => "too_large",
            Reason::FutureSkew => "future_skew",
            Reason::Late => "late",
            Reason::LateAfterIdle => "late_after_idle",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One refused (or late) input, in the SPEC §2 shape `{raw, reason, source,
/// received_at}` plus a human `detail`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The input as text; invalid UTF-8 is replaced lossily (the reason says so).
    pub raw: String,
    pub reason: Reason,
    pub detail: String,
    /// Where it came from, e.g. `file:data/events.jsonl:1234` (byte offset).
    pub source: String,
    /// Wall-clock time it was read, microseconds.
    pub received_at: Micros,
}

impl DeadLetter {
    /// The JSON line written to dead-letter and late files.
    pub fn to_json_line(&self) -> String {
        /// Fields in the alphabetical order the file has always had; a
        /// borrowed struct instead of a `json!` map (a flood of malformed
        /// input spent its time building maps).
        #[derive(Serialize)]
        struct Line<'a> {
            detail: &'a str,
            raw: &'a str,
            reason: &'static str,
            received_at: String,
            source: &'a str,
        }
        let line = Line {
            detail: &self.detail,
            raw: &self.raw,
            reason: self.reason.as_str(),
            received_at: timestamp::format_rfc3339(self.received_at),
            source: &self.source,
        };
        // Strings and a static str only: serialising cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }
}
