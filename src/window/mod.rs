//! Sliding event-time windows (SPEC §3), as pure state machines.
//!
//! - [`WindowSpec`]: the arithmetic of panes and windows.
//! - [`clock::PartitionClock`]: per-partition watermark, lateness and
//!   de-duplication, decided in the partition's own order at the source.
//! - [`engine::WindowEngine`]: per-product pane counts; `on_event` adds to
//!   one pane, `on_frontier` closes every window the frontier has passed.
//!
//! Nothing here knows about threads, timely or I/O, so every rule is unit
//! tested directly; `dataflows::speed` wraps these in thin operators.

pub mod clock;
pub mod engine;

use crate::event::Micros;
use serde::{Deserialize, Serialize};

/// Window length L and slide S, in microseconds. L is a positive multiple of
/// S, so a window is exactly `L / S` consecutive panes of length S.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    length: Micros,
    slide: Micros,
}

impl WindowSpec {
    /// `None` unless `0 < slide` and `length` is a positive multiple of it
    /// (config validation turns that into a message naming the keys).
    pub fn new(length: Micros, slide: Micros) -> Option<WindowSpec> {
        (slide > 0 && length > 0 && length % slide == 0).then_some(WindowSpec { length, slide })
    }

    pub fn length(&self) -> Micros {
        self.length
    }

    pub fn slide(&self) -> Micros {
        self.slide
    }

    /// Number of panes in a window (= number of windows containing a pane).
    pub fn panes(&self) -> u32 {
        // L/S is bounded by config validation (at most MAX_PANES).
        (self.length / self.slide) as u32
    }

    /// Start of the pane holding `t` (window starts are multiples of S since
    /// the epoch, so panes are too).
    pub fn pane_of(&self, t: Micros) -> Micros {
        // Saturating: timely starts frontiers at i64::MIN.
        t.saturating_sub(t.rem_euclid(self.slide))
    }

    /// How many of the windows containing `t` have already ended by
    /// watermark `w`, i.e. have `end <= w`. Equals [`Self::panes`] when the
    /// event is late for every window.
    pub fn closed_windows_of(&self, t: Micros, w: Micros) -> u32 {
        let pane = self.pane_of(t);
        // Windows containing the pane end at pane + S, pane + 2S, ..., pane + L.
        let first_end = pane + self.slide;
        if w < first_end {
            return 0;
        }
        let n = (w - first_end) / self.slide + 1;
        n.min(i64::from(self.panes())) as u32
    }

    /// Largest multiple of S that is <= `w`: the watermark as timely sees
    /// it. Window ends are multiples of S, so a window closes at the same
    /// moment whether the frontier moves in steps of S or continuously.
    pub fn quantize(&self, w: Micros) -> Micros {
        self.pane_of(w)
    }
}

/// Counts of one product in one pane or window (SPEC §3 "Counts").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub other: u64,
    /// All events, `other` included.
    pub total: u64,
}

impl Counts {
    pub fn add(&mut self, kind: crate::event::EventKind) {
        use crate::event::EventKind::*;
        match kind {
            View => self.views += 1,
            AddToCart => self.carts += 1,
            Purchase => self.purchases += 1,
            Other => self.other += 1,
        }
        self.total += 1;
    }

    pub fn merge(&mut self, o: &Counts) {
        self.views += o.views;
        self.carts += o.carts;
        self.purchases += o.purchases;
        self.other += o.other;
        self.total += o.total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Micros = 60_000_000;

    #[test]
    fn spec_validation() {
        assert!(WindowSpec::new(10 * MIN, 5 * MIN).is_some());
        assert!(WindowSpec::new(5 * MIN, 5 * MIN).is_some());
        assert!(WindowSpec::new(7 * MIN, 5 * MIN).is_none());
        assert!(WindowSpec::new(10 * MIN, 0).is_none());
        assert!(WindowSpec::new(0, 5 * MIN).is_none());
    }

    #[test]
    fn closed_windows_counting() {
        let w = WindowSpec::new(10 * MIN, 5 * MIN).unwrap();
        // Event at 12:00 is in windows [11:55,12:05) and [12:00,12:10).
        let t = 12 * 60 * MIN;
        assert_eq!(w.closed_windows_of(t, t), 0);
        assert_eq!(w.closed_windows_of(t, t + 5 * MIN - 1), 0);
        assert_eq!(w.closed_windows_of(t, t + 5 * MIN), 1);
        assert_eq!(w.closed_windows_of(t, t + 10 * MIN - 1), 1);
        assert_eq!(w.closed_windows_of(t, t + 10 * MIN), 2);
        assert_eq!(w.closed_windows_of(t, i64::MAX - 10 * MIN), 2);
        assert_eq!(w.quantize(t + 4 * MIN), t);
    }
}
