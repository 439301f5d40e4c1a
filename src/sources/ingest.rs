//! From raw lines to classified records: decode, then decide lateness and
//! duplicates in partition order, then stamp each record with its timely
//! time. Pure: the timely source operator only moves the results along.
//!
//! Timely times are event times floored to the pane (a multiple of S) and
//! never below the published watermark. Flooring keeps the number of
//! distinct timestamps, and so progress-tracking traffic, tiny; it is exact
//! because window ends are multiples of S (see `WindowSpec::quantize`).

use compact_str::CompactString;

use crate::event::{decode, DeadLetter, Event, Limits, Micros, Reason};
use crate::metrics::Metrics;
use crate::window::clock::{ClockConfig, Fate, SourceClock};
use crate::window::engine::WindowEvent;

/// A valid event and what the speed layer made of it; all of them are
/// archived (SPEC §4: late events and repeats included).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ingested {
    pub event: Event,
    /// `None` when counted, otherwise why not (late or duplicate).
    pub not_counted: Option<NotCounted>,
    /// Where it was read: input offset (or Kafka offset).
    pub position: u64,
    pub partition: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NotCounted {
    Late(Reason),
    Duplicate,
}

/// What one batch of input produced, each record with its timely time.
#[derive(Debug, Default)]
pub struct Batch {
    pub windows: Vec<(Micros, WindowEvent)>,
    pub rejects: Vec<DeadLetter>,
    /// Filled only when someone (the archive) wants the events.
    pub events: Vec<(Micros, Ingested)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.rejects.is_empty() && self.events.is_empty()
    }
}

/// Per-batch tallies, added to the shared metrics once per batch.
#[derive(Default)]
struct Tally {
    kinds: [u64; 4],
    dead: [u64; Reason::ALL.len()],
    duplicates: u64,
    bytes: u64,
}

pub struct Ingestor {
    clock: SourceClock,
    limits: Limits,
    keep_events: bool,
    source: String,
    tally: Tally,
}

impl Ingestor {
    /// `source` names the input in dead letters; `keep_events` fills
    /// `Batch::events` for the archive.
    pub fn new(clock: ClockConfig, limits: Limits, source: String, keep_events: bool) -> Self {
        Ingestor {
            clock: SourceClock::new(clock),
            limits,
            keep_events,
            source,
            tally: Tally::default(),
        }
    }

    pub fn clock(&mut self) -> &mut SourceClock {
        &mut self.clock
    }

    fn reject(&mut self, raw: &[u8], reason: Reason, detail: String, position: u64, now: Micros, out: &mut Batch) {
        self.tally.dead[reason.index()] += 1;
        out.rejects.push(DeadLetter {
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason,
            detail,
            source: format!("{}:{position}", self.source),
            received_at: now,
        });
    }

    /// Decodes and classifies every line of `data` (whole lines read from
    /// `partition`, starting at input offset `offset`).
    pub fn lines(&mut self, partition: u32, offset: u64, data: &[u8], now: Micros, out: &mut Batch) {
        self.tally.bytes += data.len() as u64;
        let mut pos = 0usize;
        while pos < data.len() {
            let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
            let mut line = &data[pos..end];
            let at = offset + pos as u64;
            pos = end + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue; // blank lines carry no event
            }
            match decode(line, &self.limits, now) {
                Ok(ev) => self.event(partition, at, ev, now, out),
                Err(e) => self.reject(line, e.reason, e.detail, at, now, out),
            }
        }
    }

    /// A line over the size limit, of which only `prefix` was kept.
    pub fn oversize(&mut self, offset: u64, len: u64, prefix: &[u8], now: Micros, out: &mut Batch) {
        let detail = format!(
            "{len} bytes exceeds max_event_bytes = {}; raw holds the first {} bytes",
            self.limits.max_event_bytes,
            prefix.len()
        );
        self.reject(prefix, Reason::TooLarge, detail, offset, now, out);
    }

    /// Classifies one decoded event read from `partition` at `position`.
    pub fn event(&mut self, partition: u32, position: u64, event: Event, now: Micros, out: &mut Batch) {
        let floor = self.clock.published();
        let fate = self.clock.on_event(partition, &event, now);
        let not_counted = match fate {
            Fate::Counted { skip } => {
                self.tally.kinds[event.kind as usize] += 1;
                let spec = self.clock.config().spec;
                let time = spec.pane_of(event.time).max(floor);
                out.windows.push((
                    time,
                    WindowEvent {
                        product: event.product_id.clone(),
                        category: event.category.clone(),
                        kind: event.kind,
                        time: event.time,
                        skip,
                    },
                ));
                None
            }
            Fate::Late(reason) => {
                self.tally.kinds[event.kind as usize] += 1;
                let raw = serde_json::to_string(&LateView::from(&event)).unwrap_or_default();
                self.tally.dead[reason.index()] += 1;
                out.rejects.push(DeadLetter {
                    raw,
                    reason,
                    detail: format!(
                        "every window of {} had closed",
                        crate::event::timestamp::format_rfc3339(event.time)
                    ),
                    source: format!("{}:{position}", self.source),
                    received_at: now,
                });
                Some(NotCounted::Late(reason))
            }
            Fate::Duplicate => {
                self.tally.kinds[event.kind as usize] += 1;
                self.tally.duplicates += 1;
                Some(NotCounted::Duplicate)
            }
        };
        if self.keep_events {
            out.events.push((
                floor,
                Ingested {
                    event,
                    not_counted,
                    position,
                    partition,
                },
            ));
        }
    }

    /// Adds this batch's tallies to the shared metrics.
    pub fn publish(&mut self, m: &Metrics) {
        use std::sync::atomic::Ordering::Relaxed;
        let t = std::mem::take(&mut self.tally);
        for (i, n) in t.kinds.iter().enumerate().filter(|(_, n)| **n > 0) {
            m.events_in[i].fetch_add(*n, Relaxed);
        }
        for (i, n) in t.dead.iter().enumerate().filter(|(_, n)| **n > 0) {
            m.dead_letters[i].fetch_add(*n, Relaxed);
        }
        m.duplicates.fetch_add(t.duplicates, Relaxed);
        m.bytes_in.fetch_add(t.bytes, Relaxed);
    }
}

/// The late sink's `raw`: the event re-encoded in the SPEC §2 shape.
#[derive(serde::Serialize)]
struct LateView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a CompactString>,
    user_id: &'a str,
    product_id: &'a str,
    event_type: &'a str,
    timestamp: String,
    category: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a CompactString>,
}

impl<'a> From<&'a Event> for LateView<'a> {
    fn from(e: &'a Event) -> Self {
        LateView {
            event_id: e.event_id.as_ref(),
            user_id: &e.user_id,
            product_id: &e.product_id,
            event_type: &e.event_type,
            timestamp: crate::event::timestamp::format_rfc3339(e.time),
            category: &e.category,
            session_id: e.session_id.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::window::WindowSpec;

    fn ingestor() -> Ingestor {
        let clock = ClockConfig {
            spec: WindowSpec::new(600_000_000, 300_000_000).unwrap(),
            delay: 120_000_000,
            idle_timeout: 30_000_000,
        };
        Ingestor::new(clock, Limits::default(), "file:t".into(), true)
    }

    #[test]
    fn lines_are_classified_and_stamped() {
        let mut ing = ingestor();
        ing.clock().add_partition(0, 0);
        let data = b"{\"user_id\":\"u\",\"product_id\":\"p\",\"event_type\":\"view\",\"timestamp\":\"2026-11-24T10:07:00Z\"}\r\n\nnot json\n{\"user_id\":\"u\",\"product_id\":\"p\",\"event_type\":\"view\",\"timestamp\":\"2026-11-24T09:00:00Z\"}";
        let mut out = Batch::default();
        ing.lines(0, 100, data, 0, &mut out);
        assert_eq!(out.windows.len(), 1);
        let pane = crate::event::timestamp::parse_str("2026-11-24T10:05:00Z").unwrap();
        assert_eq!(out.windows[0].0, pane);
        assert_eq!(out.rejects.len(), 2);
        assert_eq!(out.rejects[0].reason, Reason::NotJson);
        assert_eq!(out.rejects[0].source, "file:t:190"); // 100 + 89 (line, CR, LF) + 1 (blank line)
        assert_eq!(out.rejects[1].reason, Reason::Late);
        assert!(out.rejects[1].raw.contains("2026-11-24T09:00:00"));
        assert_eq!(out.events.len(), 2, "late events are still archived");
        let m = Metrics::default();
        ing.publish(&m);
        assert_eq!(m.events(EventKind::View), 2);
        assert_eq!(m.dead(Reason::NotJson), 1);
        assert_eq!(m.late(), 1);
    }
}
