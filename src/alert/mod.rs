//! Flash-sale alerts (SPEC §3): the rule, the alert record, and the
//! emission state machine for `on_close` and `early` modes.
//!
//! [`Emitter`] turns window results into alerts and is pure: it is fed
//! closed windows (and, in early mode, the open windows of products that
//! just changed) and returns the alerts to send. The sinks live elsewhere.

use std::fmt;
use std::hash::Hasher;
use std::str::FromStr;

use compact_str::CompactString;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::event::timestamp::{format_rfc3339, format_rfc3339_secs};
use crate::event::Micros;
use crate::window::engine::ClosedWindow;

pub const FLASH_SALE: &str = "flash_sale";

/// The flash-sale rule: many views, few purchases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashSaleRule {
    /// Alert when views > min_views ...
    pub min_views: u64,
    /// ... and purchases < max_purchases.
    pub max_purchases: u64,
}

impl Default for FlashSaleRule {
    fn default() -> Self {
        FlashSaleRule { min_views: 100, max_purchases: 5 }
    }
}

impl FlashSaleRule {
    pub fn holds(&self, w: &ClosedWindow) -> bool {
        w.counts.views > self.min_views && w.counts.purchases < self.max_purchases
    }
}

/// When alerts are emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// Exactly one alert per (rule, product, window), when the window closes.
    #[default]
    OnClose,
    /// A provisional alert as soon as the rule holds in an open window, then
    /// `final` or `withdrawn` at close.
    Early,
}

impl FromStr for EmitMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on_close" => Ok(EmitMode::OnClose),
            "early" => Ok(EmitMode::Early),
            other => Err(format!("expected on_close or early, got {other:?}")),
        }
    }
}

impl fmt::Display for EmitMode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            EmitMode::OnClose => "on_close",
            EmitMode::Early => "early",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Provisional,
    Final,
    Withdrawn,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Provisional => "provisional",
            AlertStatus::Final => "final",
            AlertStatus::Withdrawn => "withdrawn",
        }
    }
}

/// One alert, in the JSON shape of SPEC §3 (field order is the JSON order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule: String,
    pub status: AlertStatus,
    pub product_id: String,
    pub category: String,
    pub window_start: String,
    pub window_end: String,
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub conversion_rate: f64,
    pub suggestion: String,
    /// The watermark (input frontier) when the alert was raised; `null`
    /// before the first watermark and when a bounded input ended. It
    /// depends on how progress was batched, so unlike every other field
    /// it may differ between runs on the same input.
    pub watermark: Option<String>,
    pub emitted_at: String,
}

/// Deterministic id of (rule, product, window start): FNV-1a 64 over the
/// three, so it is the same after a restart, in any process, on any version.
pub fn alert_id(rule: &str, product: &str, window_start: Micros) -> String {
    let mut h = fnv::FnvHasher::default();
    h.write(rule.as_bytes());
    h.write(&[0]);
    h.write(&window_start.to_be_bytes());
    h.write(product.as_bytes());
    format!("{rule}-{:016x}", h.finish())
}

/// purchases / views × 100, rounded to 2 decimals (0 without views).
pub fn conversion_rate(purchases: u64, views: u64) -> f64 {
    if views == 0 {
        return 0.0;
    }
    let r = purchases as f64 / views as f64 * 100.0;
    (r * 100.0).round() / 100.0
}

impl Alert {
    pub fn new(status: AlertStatus, w: &ClosedWindow, watermark: Option<Micros>, emitted_at: Micros) -> Alert {
        let c = &w.counts;
        Alert {
            alert_id: alert_id(FLASH_SALE, &w.product, w.start),
            rule: FLASH_SALE.to_string(),
            status,
            product_id: w.product.to_string(),
            category: w.category.to_string(),
            window_start: format_rfc3339_secs(w.start),
            window_end: format_rfc3339_secs(w.end),
            views: c.views,
            carts: c.carts,
            purchases: c.purchases,
            conversion_rate: conversion_rate(c.purchases, c.views),
            suggestion: suggestion(w),
            watermark: watermark.map(format_rfc3339),
            emitted_at: format_rfc3339(emitted_at),
        }
    }

    pub fn to_json_line(&self) -> String {
        // Serializing a struct of strings and numbers cannot fail.
        serde_json::to_string(self).expect("alert serializes")
    }
}

fn suggestion(w: &ClosedWindow) -> String {
    let span = humantime::format_duration(std::time::Duration::from_micros((w.end - w.start).unsigned_abs()));
    format!(
        "High interest, low conversion: consider a flash sale or discount on {} ({} views, {} purchases in {span})",
        w.product, w.counts.views, w.counts.purchases
    )
}

/// The emission state machine of one window operator.
#[derive(Debug)]
pub struct Emitter {
    rule: FlashSaleRule,
    mode: EmitMode,
    /// (product, window start) with a provisional alert out (early mode).
    provisional: FxHashSet<(CompactString, Micros)>,
}

impl Emitter {
    pub fn new(rule: FlashSaleRule, mode: EmitMode) -> Self {
        Emitter { rule, mode, provisional: FxHashSet::default() }
    }

    pub fn mode(&self) -> EmitMode {
        self.mode
    }

    /// Alerts for windows that just closed.
    pub fn on_closed(&mut self, closed: &[ClosedWindow], watermark: Option<Micros>, now: Micros) -> Vec<Alert> {
        let mut out = Vec::new();
        for w in closed {
            let holds = self.rule.holds(w);
            let was_provisional =
                self.mode == EmitMode::Early && self.provisional.remove(&(w.product.clone(), w.start));
            let status = match (holds, was_provisional) {
                (true, _) => AlertStatus::Final,
                (false, true) => AlertStatus::Withdrawn,
                (false, false) => continue,
            };
            out.push(Alert::new(status, w, watermark, now));
        }
        out
    }

    /// Early mode: provisional alerts for open windows where the rule now
    /// holds for the first time.
    pub fn on_open(&mut self, open: &[ClosedWindow], watermark: Option<Micros>, now: Micros) -> Vec<Alert> {
        let mut out = Vec::new();
        if self.mode != EmitMode::Early {
            return out;
        }
        for w in open {
            if self.rule.holds(w) && self.provisional.insert((w.product.clone(), w.start)) {
                out.push(Alert::new(AlertStatus::Provisional, w, watermark, now));
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
