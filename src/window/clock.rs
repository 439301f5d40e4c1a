//! Watermarks, lateness and de-duplication at the source (SPEC §3).
//!
//! Lateness is decided per partition, in that partition's own order, before
//! events are spread over workers. That is what makes the counts independent
//! of the number of workers and of how fast partitions are relative to each
//! other: the window operators downstream only ever add an event to windows
//! the source has declared it belongs to.
//!
//! [`SourceClock`] holds the partitions one worker reads and derives the
//! worker's watermark, which becomes its timely capability (the input
//! frontier). All functions take the wall clock as an argument so the idle
//! rules are tested without sleeping.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_128;

use super::WindowSpec;
use crate::event::{Event, Micros, Reason};

/// What the speed layer does with one valid event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Counted in the windows containing it except the first `skip` ones,
    /// which had already closed (from this partition's point of view).
    Counted { skip: u32 },
    /// In no open window: sent to the late sink (and still archived).
    Late(Reason),
    /// Same `event_id` seen within L + D: dropped from the counts.
    Duplicate,
}

/// What the clock reads of an event: when it happened and, if it carries
/// an `event_id`, that id's [`id_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub time: Micros,
    pub id: Option<u128>,
}

impl From<&Event> for Arrival {
    fn from(e: &Event) -> Self {
        Arrival { time: e.time, id: e.event_id.as_deref().map(id_key) }
    }
}

/// The de-duplication key of an `event_id`: its 128-bit hash, which makes
/// a false "duplicate" (two ids with one hash) practically impossible
/// while keeping the remembered ids small.
pub fn id_key(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

/// Parameters shared by every partition clock.
#[derive(Clone, Copy, Debug)]
pub struct ClockConfig {
    pub spec: WindowSpec,
    /// Watermark delay D.
    pub delay: Micros,
    /// Wall-clock time after which a silent partition stops holding the
    /// watermark back.
    pub idle_timeout: Micros,
}

impl ClockConfig {
    /// How long an `event_id` is remembered, in event time: L + D.
    fn dedup_horizon(&self) -> Micros {
        self.spec.length() + self.delay
    }
}

/// What a restart needs to know of a partition at a commit point: enough
/// to re-create its clock and to tell which windows its past events touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Max event time seen so far (W_p + D).
    pub max_time: Option<Micros>,
    /// Largest window end any counted event so far belongs to: once the
    /// alerts of windows ending before this are out, nothing before this
    /// point is needed to rebuild the open windows.
    pub counted_end: Option<Micros>,
}

/// One partition's view of event time.
#[derive(Debug, Default)]
pub struct PartitionClock {
    max_time: Option<Micros>,
    counted_end: Option<Micros>,
    last_event_wall: Micros,
    /// [`id_key`] of each remembered `event_id` → event time of the copy
    /// that counted.
    seen: FxHashMap<u128, Micros>,
    /// The same hashes bucketed by pane of that time, to forget them in
    /// bulk once the horizon has passed the whole pane.
    buckets: BTreeMap<Micros, Vec<u128>>,
}

impl PartitionClock {
    /// W_p = max event time seen − D, or `None` before the first event.
    pub fn watermark(&self, cfg: &ClockConfig) -> Option<Micros> {
        self.max_time.map(|m| m - cfg.delay)
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { max_time: self.max_time, counted_end: self.counted_end }
    }

    /// Number of event ids currently remembered for de-duplication.
    pub fn remembered_ids(&self) -> usize {
        self.seen.len()
    }

    /// Classifies `ev` and advances the partition's watermark. `floor` is the
    /// watermark the worker has already published: windows ending at or
    /// before it may be closed downstream, whatever this partition thinks.
    pub fn on_event(&mut self, cfg: &ClockConfig, ev: Arrival, floor: Micros, now: Micros) -> Fate {
        self.last_event_wall = now;
        if let Some(h) = ev.id {
            // Exact even though buckets expire lazily: a remembered copy
            // older than the horizon no longer counts.
            let horizon = self.horizon(cfg);
            match self.seen.entry(h) {
                Entry::Occupied(seen) if *seen.get() >= horizon => return Fate::Duplicate,
                Entry::Occupied(mut seen) => *seen.get_mut() = ev.time,
                Entry::Vacant(slot) => {
                    slot.insert(ev.time);
                }
            }
            let pane = cfg.spec.pane_of(ev.time);
            match self.buckets.last_entry() {
                // Nearly every event lands in the newest pane.
                Some(mut last) if *last.key() == pane => last.get_mut().push(h),
                _ => self.buckets.entry(pane).or_default().push(h),
            }
        }
        let own = self.watermark(cfg).unwrap_or(Micros::MIN);
        let panes = cfg.spec.panes();
        let own_closed = cfg.spec.closed_windows_of(ev.time, own);
        let closed = cfg.spec.closed_windows_of(ev.time, own.max(floor));
        self.max_time = Some(self.max_time.map_or(ev.time, |m| m.max(ev.time)));
        self.expire(cfg);
        if own_closed == panes {
            Fate::Late(Reason::Late)
        } else if closed == panes {
            Fate::Late(Reason::LateAfterIdle)
        } else {
            let end = cfg.spec.pane_of(ev.time) + cfg.spec.length();
            self.counted_end = Some(self.counted_end.map_or(end, |e| e.max(end)));
            Fate::Counted { skip: closed }
        }
    }

    /// Ids first seen before this time are forgotten: max time − (L + D).
    fn horizon(&self, cfg: &ClockConfig) -> Micros {
        self.max_time.map_or(Micros::MIN, |m| m.saturating_sub(cfg.dedup_horizon()))
    }

    fn expire(&mut self, cfg: &ClockConfig) {
        let horizon = self.horizon(cfg);
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() + cfg.spec.slide() > horizon {
                break; // the pane still holds times inside the horizon
            }
            for h in entry.remove() {
                if self.seen.get(&h).is_some_and(|t| *t < horizon) {
                    self.seen.remove(&h);
                }
            }
        }
    }

    fn is_idle(&self, cfg: &ClockConfig, now: Micros) -> bool {
        now.saturating_sub(self.last_event_wall) > cfg.idle_timeout
    }
}

/// The partitions read by one worker, and the worker's watermark.
#[derive(Debug)]
pub struct SourceClock {
    cfg: ClockConfig,
    partitions: FxHashMap<u32, PartitionClock>,
    /// Published watermark (quantized to S); never moves backwards.
    published: Micros,
}

impl SourceClock {
    pub fn new(cfg: ClockConfig) -> Self {
        SourceClock { cfg, partitions: FxHashMap::default(), published: 0 }
    }

    pub fn config(&self) -> &ClockConfig {
        &self.cfg
    }

    /// Registers a partition; it holds the watermark back until it delivers
    /// events or goes idle. `now` starts its idle timer.
    pub fn add_partition(&mut self, partition: u32, now: Micros) {
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionClock { last_event_wall: now, ..PartitionClock::default() });
    }

    /// Registers a partition whose earlier events were read by a previous
    /// run: its clock resumes from checkpoint `at` (a replay then re-reads the
    /// events whose ids it must remember, see `kafka::resume`).
    pub fn resume_partition(&mut self, partition: u32, at: Checkpoint, now: Micros) {
        self.add_partition(partition, now);
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.max_time = at.max_time;
            p.counted_end = at.counted_end;
        }
    }

    pub fn partition(&self, partition: u32) -> Option<&PartitionClock> {
        self.partitions.get(&partition)
    }

    /// A bounded partition has ended: it holds nothing back any more.
    pub fn finish_partition(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    pub fn partitions(&self) -> impl Iterator<Item = (u32, &PartitionClock)> {
        self.partitions.iter().map(|(p, c)| (*p, c))
    }

    pub fn on_event(&mut self, partition: u32, ev: Arrival, now: Micros) -> Fate {
        let floor = self.published;
        let cfg = self.cfg;
        self.partitions.entry(partition).or_default().on_event(&cfg, ev, floor, now)
    }

    /// The published watermark: min over active partitions of W_p (idle
    /// ones skipped; if every partition is idle, the largest W_p, since
    /// nothing newer is known), quantized to S and never decreasing.
    /// `None` once no partition is left: the input is over.
    pub fn advance(&mut self, now: Micros) -> Option<Micros> {
        if self.partitions.is_empty() {
            return None;
        }
        let cfg = &self.cfg;
        let active = self
            .partitions
            .values()
            .filter(|p| !p.is_idle(cfg, now))
            .map(|p| p.watermark(cfg).unwrap_or(Micros::MIN))
            .min();
        let w = active.or_else(|| self.partitions.values().filter_map(|p| p.watermark(cfg)).max());
        if let Some(w) = w {
            self.published = self.published.max(self.cfg.spec.quantize(w.max(0)));
        }
        Some(self.published)
    }

    pub fn published(&self) -> Micros {
        self.published
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Micros = 60_000_000;
    const T0: Micros = 1_000 * 60 * MIN; // a multiple of every window size used

    fn cfg() -> ClockConfig {
        ClockConfig { spec: WindowSpec::new(10 * MIN, 5 * MIN).unwrap(), delay: 2 * MIN, idle_timeout: 30_000_000 }
    }

    fn ev(t: Micros, id: Option<&str>) -> Arrival {
        Arrival { time: t, id: id.map(id_key) }
    }

    #[test]
    fn lateness_is_per_window() {
        let c = cfg();
        let mut p = PartitionClock::default();
        assert_eq!(p.on_event(&c, ev(T0 + 20 * MIN, None), 0, 0), Fate::Counted { skip: 0 });
        // W_p = T0+18m. An event at T0+9m is in [T0,T0+10m) (closed) and
        // [T0+5m,T0+15m) (closed): late.
        assert_eq!(p.on_event(&c, ev(T0 + 9 * MIN, None), 0, 0), Fate::Late(Reason::Late));
        // T0+14m: windows end at T0+15m (closed) and T0+20m (open).
        assert_eq!(p.on_event(&c, ev(T0 + 14 * MIN, None), 0, 0), Fate::Counted { skip: 1 });
        // Exactly on a boundary: T0+15m is in [T0+10m,T0+20m) and [T0+15m,T0+25m).
        assert_eq!(p.on_event(&c, ev(T0 + 15 * MIN, None), 0, 0), Fate::Counted { skip: 0 });
    }

    #[test]
    fn floor_makes_idle_partitions_late_after_idle() {
        let c = cfg();
        let mut p = PartitionClock::default();
        p.on_event(&c, ev(T0, None), 0, 0);
        // Own W_p = T0-2m, but the worker already published T0+30m.
        assert_eq!(p.on_event(&c, ev(T0 + MIN, None), T0 + 30 * MIN, 0), Fate::Late(Reason::LateAfterIdle));
    }

    #[test]
    fn duplicates_within_horizon_then_forgotten() {
        let c = cfg();
        let mut p = PartitionClock::default();
        let counted = Fate::Counted { skip: 0 };
        assert_eq!(p.on_event(&c, ev(T0, Some("a")), 0, 0), counted);
        assert_eq!(p.on_event(&c, ev(T0, Some("a")), 0, 0), Fate::Duplicate);
        assert_eq!(p.on_event(&c, ev(T0 + 11 * MIN, Some("b")), 0, 0), counted);
        // Max is 11m: the horizon (max − L − D = −1m) still covers "a".
        assert_eq!(p.on_event(&c, ev(T0 + 13 * MIN, Some("a")), 0, 0), Fate::Duplicate);
        assert_eq!(p.on_event(&c, ev(T0 + 13 * MIN, Some("c")), 0, 0), counted);
        // Max is 13m, horizon 1m: the first "a" (at 0m) is forgotten.
        assert_eq!(p.on_event(&c, ev(T0 + 14 * MIN, Some("a")), 0, 0), counted);
        assert_eq!(p.remembered_ids(), 3);
        // Far ahead, everything older than the horizon is dropped (bounded memory).
        p.on_event(&c, ev(T0 + 30 * MIN, Some("d")), 0, 0);
        assert_eq!(p.remembered_ids(), 1);
    }

    #[test]
    fn watermark_is_min_of_active_partitions_and_monotonic() {
        let mut s = SourceClock::new(cfg());
        s.add_partition(0, 0);
        s.add_partition(1, 0);
        s.on_event(0, ev(T0 + 20 * MIN, None), 0);
        // Partition 1 has no events and is not idle yet: it holds W at 0.
        assert_eq!(s.advance(1), Some(0));
        s.on_event(1, ev(T0 + 9 * MIN, None), 1);
        assert_eq!(s.advance(1), Some(T0 + 5 * MIN)); // min(18m, 7m) quantized
                                                      // Partition 1 goes idle: partition 0 alone decides.
        s.on_event(0, ev(T0 + 21 * MIN, None), 40_000_000);
        assert_eq!(s.advance(40_000_000), Some(T0 + 15 * MIN));
        // Partition 1 wakes up behind: W never goes backwards and its old
        // event is late only because it was skipped.
        assert_eq!(s.on_event(1, ev(T0 + 9 * MIN, None), 40_000_001), Fate::Late(Reason::LateAfterIdle));
        assert_eq!(s.advance(40_000_001), Some(T0 + 15 * MIN));
        s.finish_partition(0);
        s.finish_partition(1);
        assert_eq!(s.advance(40_000_002), None);
    }

    #[test]
    fn all_idle_keeps_largest_known_watermark() {
        let mut s = SourceClock::new(cfg());
        s.add_partition(0, 0);
        s.on_event(0, ev(T0 + 20 * MIN, None), 0);
        assert_eq!(s.advance(100_000_000), Some(T0 + 15 * MIN));
    }
}
