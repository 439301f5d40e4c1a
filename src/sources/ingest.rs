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

use crate::archive::columns::{ArchiveColumns, Origin, Spares};
use crate::event::decode::{check, Checked};
use crate::event::{decode, DeadLetter, Event, Limits, Micros, Reason};
use crate::kafka::consumer::MessageBatch;
use crate::metrics::Metrics;
use crate::window::clock::{id_key, Arrival, ClockConfig, Fate, SourceClock};
use crate::window::engine::WindowEvent;

/// A numbered piece of one partition's input, as read; decoding it needs
/// nothing else, so chunks are decoded on any worker.
#[derive(Clone, Debug)]
pub struct RawChunk {
    /// Position in the partition's sequence of chunks (0, 1, 2, ...).
    pub seq: u64,
    pub partition: u32,
    /// Input offset of the first byte.
    pub offset: u64,
    pub body: RawBody,
}

#[derive(Clone, Debug)]
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
    /// What the speed layer needs of each valid event, in input order.
    pub sightings: Vec<Sighting>,
    /// The valid events in full with their input positions, in input
    /// order, in the archive's columns: only when the archive keeps them
    /// (`decode_chunk`'s `keep`). Their text is then the input itself.
    pub archive: ArchiveColumns,
    /// The input itself (moved, not copied): a late event's dead letter is
    /// decoded again from its bytes, which is cheaper than carrying every
    /// event in full for the few that are late. When the archive keeps
    /// the events, the input is their columns' text, and this is the
    /// emptied buffer it replaced, for the reader.
    pub input: Vec<u8>,
    pub rejects: Vec<DeadLetter>,
}

/// What classifying and the window engine need of one valid event: about
/// half the bytes of an [`Event`], and no string built that no one reads.
/// The in-order pass on worker 0, the one part of the speed layer that does
/// not spread over workers, then reads little and hashes nothing.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sighting {
    /// Input position (byte offset of the line, or Kafka offset).
    pub position: u64,
    /// Where the message is in [`DecodedChunk::input`].
    pub bytes: (u32, u32),
    /// [`id_key`] of the `event_id`, if any.
    pub id: Option<u128>,
    /// The window record, `skip` still 0.
    pub window: WindowEvent,
}

impl Sighting {
    fn of(e: &Checked<'_>, position: u64, bytes: (usize, usize)) -> Self {
        Sighting {
            position,
            // A chunk is at most 256 KiB plus one line of at most 1 GiB
            // (`config::MAX_EVENT_BYTES`); Kafka batches index with u32 too.
            bytes: (bytes.0 as u32, bytes.1 as u32),
            id: e.event_id().map(id_key),
            window: WindowEvent {
                product: e.product_id().into(),
                category: e.category().into(),
                kind: e.kind(),
                time: e.time(),
                skip: 0,
            },
        }
    }
}

impl DecodedChunk {
    /// Adds a valid message found at `position`, `bytes` of `input`, read
    /// at `now`; `keep` keeps it for the archive.
    fn push(
        &mut self,
        checked: Checked<'_>,
        (position, bytes): (u64, (usize, usize)),
        input: &[u8],
        now: Micros,
        keep: bool,
    ) {
        self.sightings.push(Sighting::of(&checked, position, bytes));
        if keep {
            let at = Origin { ingest_time: now, partition: self.partition, position };
            self.archive.push_from(checked.fields(), at, input);
        }
    }

    /// Ends decoding `input`: the archive's columns, if they keep the
    /// events, take it as their text and give back the buffer it replaces.
    fn finish(&mut self, input: Vec<u8>, kept: bool) {
        self.input = match kept {
            true => self.archive.adopt(input),
            false => input,
        };
    }

    /// The input the sightings' `bytes` index.
    fn input_bytes(&self) -> &[u8] {
        match self.input.is_empty() {
            true => self.archive.text(),
            false => &self.input,
        }
    }
}

/// Decodes every line of a chunk; `keep` keeps the valid events in full
/// (for the archive), in columns taken from those spares. Pure apart from
/// reading `limits`; the tallies of refused lines go to `metrics`.
pub fn decode_chunk(
    chunk: RawChunk,
    limits: &Limits,
    source: &str,
    now: Micros,
    keep: Option<&Spares>,
    metrics: &Metrics,
) -> DecodedChunk {
    let mut out = DecodedChunk { seq: chunk.seq, partition: chunk.partition, ..DecodedChunk::default() };
    out.end = chunk.offset
        + match &chunk.body {
            RawBody::Lines(data) => data.len() as u64,
            RawBody::Oversize { len, .. } => *len + 1, // and its newline
        };
    let mut dead = [0u64; Reason::ALL.len()];
    let mut rejects = Vec::new();
    let mut reject = |raw: &[u8], reason: Reason, detail: String, at: u64| {
        dead[reason.index()] += 1;
        rejects.push(DeadLetter {
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason,
            detail,
            source: format!("{source}:{at}"),
            received_at: now,
        });
    };
    let bytes = match &chunk.body {
        RawBody::Lines(data) => {
            // Sized once: growing them by doubling copied every event again
            // and faulted in fresh pages for each larger vector.
            let lines = memchr::memchr_iter(b'\n', data).count() + 1;
            out.sightings.reserve_exact(lines);
            if let Some(spares) = keep {
                out.archive = spares.take(lines);
            }
            let mut pos = 0usize;
            while pos < data.len() {
                let start = pos;
                let mut end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
                pos = end + 1;
                if data[start..end].last() == Some(&b'\r') {
                    end -= 1;
                }
                let line = &data[start..end];
                let at = chunk.offset + start as u64;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue; // blank lines carry no event
                }
                match check(line, limits, now) {
                    Ok(ev) => out.push(ev, (at, (start, end)), data, now, keep.is_some()),
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
    out.rejects = rejects;
    if let RawBody::Lines(data) = chunk.body {
        out.finish(data, keep.is_some());
    }
    out
}

/// Most of a refused message kept in its dead letter, like over-long lines.
const MAX_RAW_KEPT: usize = 4096;

/// Decodes one partition's batch of Kafka messages (one event per message;
/// an empty or null payload is refused like any other bad input); `keep`
/// as for [`decode_chunk`]. Positions are offsets, and `end` is just past
/// the last one.
pub fn decode_messages(
    batch: MessageBatch,
    seq: u64,
    limits: &Limits,
    source: &str,
    now: Micros,
    keep: Option<&Spares>,
    metrics: &Metrics,
) -> DecodedChunk {
    let mut out = DecodedChunk { seq, partition: batch.partition, ..DecodedChunk::default() };
    out.end = batch.offsets.last().map_or(0, |o| o + 1);
    out.sightings.reserve(batch.offsets.len());
    if let Some(spares) = keep {
        out.archive = spares.take(batch.offsets.len());
    }
    let mut dead = [0u64; Reason::ALL.len()];
    for (offset, span) in batch.spans() {
        let payload = &batch.data[span.0..span.1];
        match check(payload, limits, now) {
            Ok(ev) => out.push(ev, (offset, span), &batch.data, now, keep.is_some()),
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
    out.finish(batch.data, keep.is_some());
    out
}

/// What one batch of input produced, each record with its timely time.
#[derive(Debug, Default)]
pub struct Batch {
    pub windows: Vec<(Micros, WindowEvent)>,
    pub rejects: Vec<DeadLetter>,
    /// Every valid event with its input position, late ones and repeats
    /// included (SPEC §4); filled only when the archive is on.
    pub archive: ArchiveColumns,
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

    /// Classifies a decoded chunk; chunks of a partition must come in `seq`
    /// order, decoded with `keep` if this ingestor keeps events. Returns the
    /// chunk's input bytes, spent, for the reader to fill again.
    pub fn classify(&mut self, mut chunk: DecodedChunk, now: Micros, out: &mut Batch) -> Vec<u8> {
        out.rejects.append(&mut chunk.rejects);
        for s in std::mem::take(&mut chunk.sightings) {
            self.event(chunk.partition, s, chunk.input_bytes(), now, out);
        }
        if self.keep_events {
            // The decoded columns themselves go on to the archive (moved,
            // unless the batch already holds another chunk's).
            let mut archive = chunk.archive;
            out.archive.append(&mut archive);
        }
        chunk.input
    }

    /// Classifies one valid event read from `partition`; `input` holds its bytes.
    fn event(&mut self, partition: u32, s: Sighting, input: &[u8], now: Micros, out: &mut Batch) {
        let floor = self.clock.published();
        let time = s.window.time;
        let fate = self.clock.on_event(partition, Arrival { time, id: s.id }, now);
        self.tally.kinds[s.window.kind as usize] += 1;
        match fate {
            Fate::Counted { skip } => {
                let pane = self.clock.config().spec.pane_of(time).max(floor);
                out.windows.push((pane, WindowEvent { skip, ..s.window }));
            }
            Fate::Late(reason) => {
                // It decoded once, and decodes the same way again.
                let bytes = input.get(s.bytes.0 as usize..s.bytes.1 as usize).unwrap_or_default();
                let raw = match decode(bytes, &Limits { max_event_bytes: usize::MAX, max_future_skew: None }, now) {
                    Ok(event) => serde_json::to_string(&LateView::from(&event)).unwrap_or_default(),
                    Err(_) => String::from_utf8_lossy(bytes).into_owned(),
                };
                let position = s.position;
                self.tally.dead[reason.index()] += 1;
                out.rejects.push(DeadLetter {
                    raw,
                    reason,
                    detail: format!("every window of {} had closed", crate::event::timestamp::format_rfc3339(time)),
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

    fn ingestor(keep: bool) -> Ingestor {
        let clock = ClockConfig {
            spec: WindowSpec::new(600_000_000, 300_000_000).unwrap(),
            delay: 120_000_000,
            idle_timeout: 30_000_000,
        };
        Ingestor::new(clock, "file:t".into(), keep)
    }

    #[test]
    fn lines_are_classified_and_stamped() {
        let mut ing = ingestor(true);
        ing.clock().add_partition(0, 0);
        let data = b"{\"user_id\":\"u\",\"product_id\":\"p\",\"event_type\":\"view\",\"timestamp\":\"2026-11-24T10:07:00Z\"}\r\n\nnot json\n{\"user_id\":\"u\",\"product_id\":\"p\",\"event_type\":\"view\",\"timestamp\":\"2026-11-24T09:00:00Z\"}";
        let m = Metrics::default();
        let raw = RawChunk { seq: 0, partition: 0, offset: 100, body: RawBody::Lines(data.to_vec()) };
        let decoded = decode_chunk(raw, &Limits::default(), "file:t", 0, Some(&Spares::default()), &m);
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
        assert_eq!(out.rejects[1].source, "file:t:199");
        assert_eq!(out.archive.len(), 2, "late events are still archived");
        assert_eq!(out.archive.positions().nth(1), Some(190 + 9));
        ing.publish(&m);
        assert_eq!(m.events(EventKind::View), 2);
        assert_eq!(m.dead(Reason::NotJson), 1);
        assert_eq!(m.late(), 1);
        assert_eq!(Metrics::get(&m.bytes_in), data.len() as u64);
    }

    #[test]
    fn late_dead_letters_are_the_same_whether_events_are_kept_or_not() {
        // A late event's dead letter is decoded again from the input bytes,
        // which the chunk carries whether or not the events are kept in full:
        // keeping them must change nothing (here with an escape, so the
        // second decode takes the serde path).
        let data = b"{\"event_id\":\"e1\",\"user_id\":\"u\",\"product_id\":\"p\",\"event_type\":\"wish\",\"timestamp\":\"2026-11-24T10:07:00Z\",\"session_id\":\"s\"}\r\n{\"product_id\":\"p\\u00e9\",\"user_id\":\"u\",\"event_type\":\"view\",\"timestamp\":1764061200000,\"category\":\"c\",\"extra\":[1]}\r\n";
        let late = |keep: bool| {
            let mut ing = ingestor(keep);
            ing.clock().add_partition(0, 0);
            let raw = RawChunk { seq: 0, partition: 0, offset: 0, body: RawBody::Lines(data.to_vec()) };
            let mut out = Batch::default();
            let spares = Spares::default();
            let keep_in = keep.then_some(&spares);
            ing.classify(decode_chunk(raw, &Limits::default(), "file:t", 0, keep_in, &Metrics::default()), 0, &mut out);
            assert_eq!(out.archive.len(), if keep { 2 } else { 0 });
            out.rejects
        };
        let (kept, not_kept) = (late(true), late(false));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].reason, Reason::Late);
        assert!(kept[0].raw.contains("pé"), "{}", kept[0].raw);
        assert_eq!(kept, not_kept);
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
        let d = decode_chunk(raw, &Limits::default(), "stdin", 0, None, &m);
        assert_eq!(d.seq, 3);
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, Reason::TooLarge);
        assert_eq!(d.rejects[0].source, "stdin:7");
        assert!(d.rejects[0].detail.starts_with("5000 bytes"));
    }
}
