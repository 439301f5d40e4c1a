//! From raw input to classified records, in two steps:
//!
//! 1. [`decode_chunk`]: a numbered chunk of lines becomes events and dead
//!    letters. Stateless, so any worker can do it.
//! 2. [`Ingestor::classify`]: decoded chunks, taken in input order, go
//!    through the partition clock (lateness, duplicates, watermark) and each
//!    counted event is stamped with its timely time.
//!
//! Timely times are event times floored to the pane (a multiple of S) and
//! never below the published watermark. Flooring keeps the number of
//! distinct timestamps, and so progress-tracking traffic, tiny; it is exact
//! because window ends are multiples of S (see `WindowSpec::quantize`).

use compact_str::CompactString;

use crate::event::{decode, DeadLetter, Event, Limits, Micros, Reason};
use crate::kafka::consumer::MessageBatch;
use crate::metrics::Metrics;
use crate::window::clock::{ClockConfig, Fate, SourceClock};
use crate::window::engine::WindowEvent;

/// A numbered piece of one partition's input, as read; decoding it needs
/// nothing else, so chunks are decoded on any worker.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RawChunk {
    /// Position in the partition's sequence of chunks (0, 1, 2, ...).
    pub seq: u64,
    pub partition: u32,
    /// Input offset of the first byte.
    pub offset: u64,
    pub body: RawBody,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum RawBody {
    /// Whole lines.
    Lines(Vec<u8>),
    /// One line of `len` bytes over the size limit, of which `prefix` was kept.
    Oversize { len: u64, prefix: Vec<u8> },
}

/// A chunk after decoding, still to be classified in sequence order.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DecodedChunk {
    pub seq: u64,
    pub partition: u32,
    /// Input offset just past the chunk: all of the partition before it
    /// has been read once this chunk is classified.
    pub end: u64,
    /// Valid events with their input positions, in input order.
    pub events: Vec<(u64, Event)>,
    pub rejects: Vec<DeadLetter>,
}

/// Decodes every line of a chunk. Pure apart from reading `limits`; the
/// tallies of refused lines go to `metrics`.
pub fn decode_chunk(chunk: RawChunk, limits: &Limits, source: &str, now: Micros, metrics: &Metrics) -> DecodedChunk {
    let mut out = DecodedChunk { seq: chunk.seq, partition: chunk.partition, ..DecodedChunk::default() };
    out.end = chunk.offset
        + match &chunk.body {
            RawBody::Lines(data) => data.len() as u64,
            RawBody::Oversize { len, .. } => *len + 1, // and its newline
        };
    let mut dead = [0u64; Reason::ALL.len()];
    let mut reject = |raw: &[u8], reason: Reason, detail: String, at: u64| {
        dead[reason.index()] += 1;
        out.rejects.push(DeadLetter {
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason,
            detail,
            source: format!("{source}:{at}"),
            received_at: now,
        });
    };
    let bytes = match &chunk.body {
        RawBody::Lines(data) => {
            // Sized once: growing it by doubling copied every event again
            // and faulted in fresh pages for each larger vector.
            out.events.reserve_exact(memchr::memchr_iter(b'\n', data).count() + 1);
            let mut pos = 0usize;
            while pos < data.len() {
                let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
                let mut line = &data[pos..end];
                let at = chunk.offset + pos as u64;
                pos = end + 1;
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue; // blank lines carry no event
                }
                match decode(line, limits, now) {
                    Ok(ev) => out.events.push((at, ev)),
                    Err(e) => reject(line, e.reason, e.detail, at),
                }
            }
            data.len() as u64
        }
        RawBody::Oversize { len, prefix } => {
            let detail = format!(
                "{len} bytes exceeds max_event_bytes = {}; raw holds the first {} bytes",
                limits.max_event_bytes,
                prefix.len()
            );
            reject(prefix, Reason::TooLarge, detail, chunk.offset);
            *len
        }
    };
    use std::sync::atomic::Ordering::Relaxed;
    for (i, n) in dead.iter().enumerate().filter(|(_, n)| **n > 0) {
        metrics.dead_letters[i].fetch_add(*n, Relaxed);
    }
    metrics.bytes_in.fetch_add(bytes, Relaxed);
    out
}

/// Most of a refused message kept in its dead letter, like over-long lines.
const MAX_RAW_KEPT: usize = 4096;

/// Decodes one partition's batch of Kafka messages (one event per message;
/// an empty or null payload is refused like any other bad input). Positions
/// are offsets, and `end` is just past the last one.
pub fn decode_messages(
    batch: &MessageBatch,
    seq: u64,
    limits: &Limits,
    source: &str,
    now: Micros,
    metrics: &Metrics,
) -> DecodedChunk {
    let mut out = DecodedChunk { seq, partition: batch.partition, ..DecodedChunk::default() };
    out.end = batch.offsets.last().map_or(0, |o| o + 1);
    out.events.reserve(batch.offsets.len());
    let mut dead = [0u64; Reason::ALL.len()];
    for (offset, payload) in batch.iter() {
        match decode(payload, limits, now) {
            Ok(ev) => out.events.push((offset, ev)),
            Err(e) => {
                dead[e.reason.index()] += 1;
                out.rejects.push(DeadLetter {
                    raw: String::from_utf8_lossy(&payload[..payload.len().min(MAX_RAW_KEPT)]).into_owned(),
                    reason: e.reason,
                    detail: e.detail,
                    source: format!("{source}/{}:{offset}", batch.partition),
                    received_at: now,
                });
            }
        }
    }
    use std::sync::atomic::Ordering::Relaxed;
    for (i, n) in dead.iter().enumerate().filter(|(_, n)| **n > 0) {
        metrics.dead_letters[i].fetch_add(*n, Relaxed);
    }
    metrics.bytes_in.fetch_add(batch.data.len() as u64, Relaxed);
    out
}

/// What one batch of input produced, each record with its timely time.
#[derive(Debug, Default)]
pub struct Batch {
    pub windows: Vec<(Micros, WindowEvent)>,
    pub rejects: Vec<DeadLetter>,
    /// Every valid event with its input position, late ones and repeats
    /// included (SPEC §4); filled only when the archive is on.
    pub archive: Vec<(u64, Event)>,
}

/// Per-batch tallies, added to the shared metrics once per batch.
#[derive(Default)]
struct Tally {
    kinds: [u64; 4],
    dead: [u64; Reason::ALL.len()],
    duplicates: u64,
}

/// Classifies decoded events in partition order: lateness, duplicates and
/// timely times. One per reading worker.
pub struct Ingestor {
    clock: SourceClock,
    keep_events: bool,
    source: String,
    /// Name positions `source/partition:position` (several partitions).
    partitioned: bool,
    tally: Tally,
    /// The dedup-state size last added to the gauge.
    published_ids: i64,
}

impl Ingestor {
    /// `source` names the input in late-event records; `keep_events` fills
    /// `Batch::archive`.
    pub fn new(clock: ClockConfig, source: String, keep_events: bool) -> Self {
        Ingestor {
            clock: SourceClock::new(clock),
            keep_events,
            source,
            partitioned: false,
            tally: Tally::default(),
            published_ids: 0,
        }
    }

    /// For sources of several partitions (Kafka): positions in late-event
    /// records name the partition too.
    pub fn partitioned(mut self) -> Self {
        self.partitioned = true;
        self
    }

    pub fn clock(&mut self) -> &mut SourceClock {
        &mut self.clock
    }

    /// Classifies a decoded chunk; chunks of a partition must come in `seq` order.
    pub fn classify(&mut self, chunk: DecodedChunk, now: Micros, out: &mut Batch) {
        out.rejects.extend(chunk.rejects);
        for (position, event) in &chunk.events {
            self.event(chunk.partition, *position, event, now, out);
        }
        if self.keep_events {
            // The decoded vector itself goes on to the archive: moving each
            // event into a fresh vector cost a copy per event and, as the
            // archive thread frees them, freshly zeroed pages (perf: 8 % of
            // a worker).
            if out.archive.is_empty() {
                out.archive = chunk.events;
            } else {
                out.archive.extend(chunk.events);
            }
        }
    }

    /// Classifies one decoded event read from `partition` at `position`.
    fn event(&mut self, partition: u32, position: u64, event: &Event, now: Micros, out: &mut Batch) {
        let floor = self.clock.published();
        let fate = self.clock.on_event(partition, event, now);
        self.tally.kinds[event.kind as usize] += 1;
        match fate {
            Fate::Counted { skip } => {
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
            }
            Fate::Late(reason) => {
                let raw = serde_json::to_string(&LateView::from(event)).unwrap_or_default();
                self.tally.dead[reason.index()] += 1;
                out.rejects.push(DeadLetter {
                    raw,
                    reason,
                    detail: format!(
                        "every window of {} had closed",
                        crate::event::timestamp::format_rfc3339(event.time)
                    ),
                    source: match self.partitioned {
                        true => format!("{}/{partition}:{position}", self.source),
                        false => format!("{}:{position}", self.source),
                    },
                    received_at: now,
                });
            }
            Fate::Duplicate => self.tally.duplicates += 1,
        }
    }

    /// Adds the tallies since the last call to the shared metrics.
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
    }

    /// Updates the de-duplication state gauge (by this ingestor's change).
    pub fn publish_state(&mut self, m: &Metrics) {
        let ids = self.clock.partitions().map(|(_, c)| c.remembered_ids() as i64).sum::<i64>();
        m.dedup_ids.fetch_add(ids - self.published_ids, std::sync::atomic::Ordering::Relaxed);
        self.published_ids = ids;
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
        Ingestor::new(clock, "file:t".into(), true)
    }

    #[test]
    fn lines_are_classified_and_stamped() {
        let mut ing = ingestor();
        ing.clock().add_partition(0, 0);
        let data = b"{\"user_id\":\"u\",\"product_id\":\"p\",\"event_type\":\"view\",\"timestamp\":\"2026-11-24T10:07:00Z\"}\r\n\nnot json\n{\"user_id\":\"u\",\"product_id\":\"p\",\"event_type\":\"view\",\"timestamp\":\"2026-11-24T09:00:00Z\"}";
        let m = Metrics::default();
        let raw = RawChunk { seq: 0, partition: 0, offset: 100, body: RawBody::Lines(data.to_vec()) };
        let decoded = decode_chunk(raw, &Limits::default(), "file:t", 0, &m);
        let mut out = Batch::default();
        ing.classify(decoded, 0, &mut out);
        assert_eq!(out.windows.len(), 1);
        let pane = crate::event::timestamp::parse_str("2026-11-24T10:05:00Z").unwrap();
        assert_eq!(out.windows[0].0, pane);
        assert_eq!(out.rejects.len(), 2);
        assert_eq!(out.rejects[0].reason, Reason::NotJson);
        assert_eq!(out.rejects[0].source, "file:t:190"); // 100 + 89 (line, CR, LF) + 1 (blank line)
        assert_eq!(out.rejects[1].reason, Reason::Late);
        assert!(out.rejects[1].raw.contains("2026-11-24T09:00:00"));
        assert_eq!(out.archive.len(), 2, "late events are still archived");
        assert_eq!(out.archive[1].0, 190 + 9);
        ing.publish(&m);
        assert_eq!(m.events(EventKind::View), 2);
        assert_eq!(m.dead(Reason::NotJson), 1);
        assert_eq!(m.late(), 1);
        assert_eq!(Metrics::get(&m.bytes_in), data.len() as u64);
    }

    #[test]
    fn oversize_lines_become_dead_letters() {
        let m = Metrics::default();
        let raw = RawChunk {
            seq: 3,
            partition: 0,
            offset: 7,
            body: RawBody::Oversize { len: 5000, prefix: b"{\"a".to_vec() },
        };
        let d = decode_chunk(raw, &Limits::default(), "stdin", 0, &m);
        assert_eq!(d.seq, 3);
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, Reason::TooLarge);
        assert_eq!(d.rejects[0].source, "stdin:7");
        assert!(d.rejects[0].detail.starts_with("5000 bytes"));
    }
}
