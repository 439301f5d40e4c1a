//! Every counter clickwatch keeps, named in one place.
//!
//! One [`Metrics`] is shared (behind an `Arc`) by all workers and sink
//! threads of a process; counters are relaxed atomics, cheap enough for the
//! hot path when bumped once per batch. The summary printed at the end of
//! `stream` and (later) the Prometheus endpoint read the same values.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::alert::AlertStatus;
use crate::event::{EventKind, Reason};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Valid events decoded, by kind (view, add_to_cart, purchase, other).
    pub events_in: [AtomicU64; 4],
    /// Refused inputs by reason; `late` and `late_after_idle` are here too.
    pub dead_letters: [AtomicU64; Reason::ALL.len()],
    /// Events dropped from the counts as repeats of an `event_id`.
    pub duplicates: AtomicU64,
    /// Bytes of input read (all sources).
    pub bytes_in: AtomicU64,
    pub windows_closed: AtomicU64,
    /// Alerts by status (provisional, final, withdrawn).
    pub alerts: [AtomicU64; 3],
    pub webhook_delivered: AtomicU64,
    pub webhook_retries: AtomicU64,
    /// Alerts the webhook could not deliver, written to its spill file.
    pub webhook_spilled: AtomicU64,
    /// Events that reached a window operator after their windows closed
    /// there; always 0 unless a source breaks the lateness contract.
    pub engine_anomalies: AtomicU64,
    /// Rows committed to the archive, files and bytes written.
    pub archive_rows: AtomicU64,
    pub archive_files: AtomicU64,
    pub archive_bytes: AtomicU64,
    /// Rows not written again because the commit log already covers them.
    pub archive_skipped: AtomicU64,
    /// Time (µs) the archive thread spent encoding and committing: a rate
    /// near one second per second means the archive is the bottleneck.
    pub archive_busy_micros: AtomicU64,
    /// Time (µs) the speed layer waited for room in the archive's queue.
    pub archive_wait_micros: AtomicU64,
    /// Messages re-read after a restart only to rebuild the clock.
    pub kafka_replayed: AtomicU64,
    /// Alerts of windows already delivered before a restart, not emitted again.
    pub alerts_suppressed: AtomicU64,
    /// Alerts not produced to the alert topic again after a restart.
    pub kafka_alerts_skipped: AtomicU64,
    /// State size: (product, pane) cells of every window engine. Bounded by
    /// open panes × active products; gauges, summed over workers.
    pub window_cells: AtomicI64,
    /// State size: event ids remembered for de-duplication (those of the
    /// last L + D of event time).
    pub dedup_ids: AtomicI64,
    /// The published watermark (micros since epoch), max over sources.
    pub watermark: AtomicI64,
    /// Per Kafka partition: its own watermark, lag and end offset.
    pub partitions: Mutex<BTreeMap<u32, PartitionStat>>,
}

/// What is known of one source partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStat {
    /// W_p (micros since epoch), once the partition delivered an event.
    pub watermark: Option<i64>,
    /// Messages behind the partition's end (librdkafka's consumer lag).
    pub lag: Option<i64>,
    /// The partition's end offset when the lag was measured.
    pub end_offset: Option<i64>,
}

impl Metrics {
    pub fn add_events(&self, kind: EventKind, n: u64) {
        self.events_in[kind as usize].fetch_add(n, Relaxed);
    }

    pub fn add_dead(&self, reason: Reason, n: u64) {
        self.dead_letters[reason.index()].fetch_add(n, Relaxed);
    }

    pub fn add_alert(&self, status: AlertStatus) {
        self.alerts[status as usize].fetch_add(1, Relaxed);
    }

    pub fn observe_watermark(&self, w: i64) {
        self.watermark.fetch_max(w, Relaxed);
    }

    pub fn observe_partition_watermark(&self, partition: u32, w: i64) {
        if let Ok(mut map) = self.partitions.lock() {
            map.entry(partition).or_default().watermark = Some(w);
        }
    }

    pub fn observe_partition_lag(&self, partition: u32, lag: i64, end_offset: i64) {
        if let Ok(mut map) = self.partitions.lock() {
            let stat = map.entry(partition).or_default();
            stat.lag = Some(lag);
            stat.end_offset = Some(end_offset);
        }
    }

    /// A copy of the per-partition table (empty without partitioned sources).
    pub fn partition_stats(&self) -> BTreeMap<u32, PartitionStat> {
        self.partitions.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn events(&self, kind: EventKind) -> u64 {
        self.events_in[kind as usize].load(Relaxed)
    }

    pub fn dead(&self, reason: Reason) -> u64 {
        self.dead_letters[reason.index()].load(Relaxed)
    }

    pub fn alerts_of(&self, status: AlertStatus) -> u64 {
        self.alerts[status as usize].load(Relaxed)
    }

    pub fn valid_events(&self) -> u64 {
        self.events_in.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Refused inputs, not counting late events (which are valid).
    pub fn refused(&self) -> u64 {
        Reason::ALL.iter().filter(|r| !matches!(r, Reason::Late | Reason::LateAfterIdle)).map(|r| self.dead(*r)).sum()
    }

    pub fn late(&self) -> u64 {
        self.dead(Reason::Late) + self.dead(Reason::LateAfterIdle)
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    /// Adds `d` to a time counter kept in microseconds.
    pub fn add_time(c: &AtomicU64, d: Duration) {
        c.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A time counter kept in microseconds, in seconds.
    pub fn seconds(c: &AtomicU64) -> f64 {
        Self::get(c) as f64 / 1e6
    }
}
