//! Pane-based sliding-window counts per product: the speed layer's state.
//!
//! Each event updates exactly one pane (length S) of its product; a window
//! is the sum of its `L / S` panes, computed once, when it closes. An event
//! that the source declared partly late (`skip` > 0) is stored beside the
//! pane with its skip, so it is left out of the windows that had already
//! closed for its partition even while they are still open here.
//!
//! The engine is deterministic: closed windows come out ordered by window
//! end, then product id, whatever order events arrived in.

use std::collections::BTreeMap;

use compact_str::CompactString;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::{Counts, WindowSpec};
use crate::event::{EventKind, Micros};

/// The part of an event the window engine needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowEvent {
    pub product: CompactString,
    pub category: CompactString,
    pub kind: EventKind,
    pub time: Micros,
    /// Leading windows of this event to leave out (see `clock::Fate`).
    pub skip: u32,
}

/// The counts of one product in one closed window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedWindow {
    pub product: CompactString,
    /// Category of the latest event (by event time, ties by name) in the window.
    pub category: CompactString,
    pub start: Micros,
    pub end: Micros,
    pub counts: Counts,
}

#[derive(Debug)]
struct Cell {
    pane: Micros,
    skip: u32,
    counts: Counts,
    latest: (Micros, CompactString),
}

/// Keeps the later (time, category) pair; ties go to the larger name so the
/// choice never depends on arrival order.
fn keep_latest(into: &mut (Micros, CompactString), time: Micros, category: &CompactString) {
    if (time, category) > (into.0, &into.1) {
        *into = (time, category.clone());
    }
}

#[derive(Debug)]
pub struct WindowEngine {
    spec: WindowSpec,
    /// Per product, its live pane cells (few: at most L/S panes × skips).
    products: FxHashMap<CompactString, Vec<Cell>>,
    /// Number of cells per pane start, to find the earliest pane cheaply.
    panes: BTreeMap<Micros, usize>,
    /// Every window with `end <= closed_through` has been emitted.
    closed_through: Micros,
    touched: FxHashSet<CompactString>,
    track_touched: bool,
    /// Events that arrived for windows already closed here. The source's
    /// lateness rules make this impossible; it is counted, not trusted.
    anomalies: u64,
}

impl WindowEngine {
    pub fn new(spec: WindowSpec) -> Self {
        WindowEngine {
            spec,
            products: FxHashMap::default(),
            panes: BTreeMap::new(),
            closed_through: Micros::MIN,
            touched: FxHashSet::default(),
            track_touched: false,
            anomalies: 0,
        }
    }

    /// Remember which products changed, for early (provisional) alerts.
    pub fn track_touched(mut self, on: bool) -> Self {
        self.track_touched = on;
        self
    }

    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// Number of (product, pane) cells held: the state size.
    pub fn cells(&self) -> usize {
        self.panes.values().sum()
    }

    pub fn closed_through(&self) -> Micros {
        self.closed_through
    }

    pub fn on_event(&mut self, ev: &WindowEvent) {
        let pane = self.spec.pane_of(ev.time);
        let mut skip = ev.skip;
        let closed_here = self.spec.closed_windows_of(ev.time, self.closed_through);
        if closed_here > skip {
            self.anomalies += 1;
            skip = closed_here;
        }
        if skip >= self.spec.panes() {
            return;
        }
        let cells = self.products.entry(ev.product.clone()).or_default();
        // Cells are few and the newest pane is the likeliest match.
        let cell = match cells.iter().rposition(|c| c.pane == pane && c.skip == skip) {
            Some(i) => &mut cells[i],
            None => {
                *self.panes.entry(pane).or_insert(0) += 1;
                cells.push(Cell { pane, skip, counts: Counts::default(), latest: (ev.time, ev.category.clone()) });
                // Just pushed, so the vector is not empty.
                cells.last_mut().expect("cell just pushed")
            }
        };
        cell.counts.add(ev.kind);
        keep_latest(&mut cell.latest, ev.time, &ev.category);
        if self.track_touched && !self.touched.contains(&ev.product) {
            self.touched.insert(ev.product.clone());
        }
    }

    /// Counts of `product` in the window ending at `end`, as they stand.
    fn sum(spec: &WindowSpec, cells: &[Cell], end: Micros) -> Option<(Counts, CompactString)> {
        let s = spec.slide();
        let mut counts = Counts::default();
        let mut latest: Option<(Micros, CompactString)> = None;
        for c in cells {
            // Window index of this pane within the window: 1 = last pane.
            if c.pane >= end || c.pane < end - spec.length() {
                continue;
            }
            let i = (end - c.pane) / s;
            if i <= i64::from(c.skip) {
                continue;
            }
            counts.merge(&c.counts);
            match &mut latest {
                Some(l) => keep_latest(l, c.latest.0, &c.latest.1),
                None => latest = Some(c.latest.clone()),
            }
        }
        latest.map(|(_, cat)| (counts, cat))
    }

    /// Closes every window with `end <= frontier` (`None` = the input is
    /// complete: close everything) and returns them ordered by end, product.
    pub fn on_frontier(&mut self, frontier: Option<Micros>) -> Vec<ClosedWindow> {
        let f = frontier.unwrap_or(Micros::MAX);
        let mut out = Vec::new();
        while let Some((&first_pane, _)) = self.panes.first_key_value() {
            let end = self.closed_through.saturating_add(self.spec.slide()).max(first_pane + self.spec.slide());
            if end > f {
                break;
            }
            self.close(end, &mut out);
            self.closed_through = end;
        }
        if frontier.is_some() {
            self.closed_through = self.closed_through.max(self.spec.quantize(f));
        }
        out
    }

    fn close(&mut self, end: Micros, out: &mut Vec<ClosedWindow>) {
        let start = end - self.spec.length();
        let first = out.len();
        let mut products = std::mem::take(&mut self.products);
        products.retain(|product, cells| {
            if let Some((counts, category)) = Self::sum(&self.spec, cells, end) {
                out.push(ClosedWindow { product: product.clone(), category, start, end, counts });
            }
            // A pane's last window ends at pane + L.
            cells.retain(|c| {
                let keep = c.pane + self.spec.length() > end;
                if !keep {
                    if let Some(n) = self.panes.get_mut(&c.pane) {
                        *n -= 1;
                        if *n == 0 {
                            self.panes.remove(&c.pane);
                        }
                    }
                }
                keep
            });
            !cells.is_empty()
        });
        self.products = products;
        out[first..].sort_unstable_by(|a, b| a.product.cmp(&b.product));
    }

    /// Products updated since the last call (only with `track_touched`).
    pub fn take_touched(&mut self) -> Vec<CompactString> {
        let mut v: Vec<_> = self.touched.drain().collect();
        v.sort_unstable();
        v
    }

    /// Products with live state.
    pub fn products(&self) -> impl Iterator<Item = &str> {
        self.products.keys().map(CompactString::as_str)
    }

    /// The still-open windows of `product` with their current counts.
    pub fn open_windows(&self, product: &str) -> Vec<ClosedWindow> {
        let Some(cells) = self.products.get(product) else {
            return Vec::new();
        };
        let (s, l) = (self.spec.slide(), self.spec.length());
        let mut ends: Vec<Micros> = cells
            .iter()
            .flat_map(|c| (1..=i64::from(self.spec.panes())).map(move |i| c.pane + i * s))
            .filter(|&e| e > self.closed_through)
            .collect();
        ends.sort_unstable();
        ends.dedup();
        ends.into_iter()
            .filter_map(|end| {
                Self::sum(&self.spec, cells, end).map(|(counts, category)| ClosedWindow {
                    product: product.into(),
                    category,
                    start: end - l,
                    end,
                    counts,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
