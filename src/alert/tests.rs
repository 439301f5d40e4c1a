//! Unit tests of the flash-sale rule and the emission state machine.

use super::*;
use crate::window::Counts;

const MIN: Micros = 60_000_000;

fn window(product: &str, start_min: i64, views: u64, purchases: u64) -> ClosedWindow {
    ClosedWindow {
        product: product.into(),
        category: "electronics".into(),
        start: start_min * MIN,
        end: (start_min + 10) * MIN,
        counts: Counts { views, carts: 3, purchases, other: 0, total: views + 3 + purchases },
    }
}

#[test]
fn rule_thresholds_are_strict() {
    let r = FlashSaleRule::default();
    assert!(!r.holds(&window("p", 0, 100, 0)), "views must exceed 100");
    assert!(r.holds(&window("p", 0, 101, 4)));
    assert!(!r.holds(&window("p", 0, 101, 5)), "purchases must be below 5");
}

#[test]
fn on_close_emits_one_final_alert_per_window() {
    let mut e = Emitter::new(FlashSaleRule::default(), EmitMode::OnClose);
    assert!(e.on_open(&[window("p", 0, 500, 0)], None, 0).is_empty());
    let out = e.on_closed(&[window("p", 0, 150, 2), window("q", 0, 150, 9)], Some(10 * MIN), 7);
    assert_eq!(out.len(), 1);
    let a = &out[0];
    assert_eq!(a.status, AlertStatus::Final);
    assert_eq!(a.product_id, "p");
    assert_eq!(a.window_start, "1970-01-01T00:00:00Z");
    assert_eq!(a.window_end, "1970-01-01T00:10:00Z");
    assert_eq!(a.conversion_rate, 1.33);
    assert_eq!(a.watermark.as_deref(), Some("1970-01-01T00:10:00.000000Z"));
    assert!(a.suggestion.contains("10m"), "{}", a.suggestion);
}

#[test]
fn early_mode_provisional_then_final_or_withdrawn() {
    let mut e = Emitter::new(FlashSaleRule::default(), EmitMode::Early);
    let p = e.on_open(&[window("p", 0, 101, 0), window("q", 0, 200, 0)], None, 0);
    assert_eq!(p.iter().map(|a| a.status).collect::<Vec<_>>(), vec![AlertStatus::Provisional; 2]);
    // Only the first time the rule holds.
    assert!(e.on_open(&[window("p", 0, 150, 0)], None, 0).is_empty());
    let closed = e.on_closed(&[window("p", 0, 150, 1), window("q", 0, 200, 50), window("r", 0, 300, 0)], None, 0);
    let got: Vec<_> = closed.iter().map(|a| (a.product_id.as_str(), a.status)).collect();
    assert_eq!(got, vec![("p", AlertStatus::Final), ("q", AlertStatus::Withdrawn), ("r", AlertStatus::Final)]);
    // The provisional and the final share the deterministic id.
    assert_eq!(p[0].alert_id, closed[0].alert_id);
}

#[test]
fn alert_ids_are_stable_and_distinct() {
    assert_eq!(alert_id(FLASH_SALE, "p1", 0), alert_id(FLASH_SALE, "p1", 0));
    assert_ne!(alert_id(FLASH_SALE, "p1", 0), alert_id(FLASH_SALE, "p1", 5 * MIN));
    assert_ne!(alert_id(FLASH_SALE, "p1", 0), alert_id(FLASH_SALE, "p2", 0));
    // Pinned: the id must never change between versions (restarts, Kafka keys).
    assert_eq!(alert_id(FLASH_SALE, "p1", 0), "flash_sale-ad606f0b0dddf4b8");
}

#[test]
fn json_has_spec_fields_in_order() {
    let a = Alert::new(AlertStatus::Final, &window("p", 0, 150, 2), None, 0);
    let line = a.to_json_line();
    let keys: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line).unwrap().keys().cloned().collect();
    for k in [
        "alert_id",
        "rule",
        "status",
        "product_id",
        "category",
        "window_start",
        "window_end",
        "views",
        "carts",
        "purchases",
        "conversion_rate",
        "suggestion",
        "watermark",
        "emitted_at",
    ] {
        assert!(keys.contains(&k.to_string()), "missing {k} in {line}");
    }
    assert_eq!(keys.len(), 14, "no extra fields: {line}");
}

#[test]
fn conversion_rate_rounding() {
    assert_eq!(conversion_rate(0, 0), 0.0);
    assert_eq!(conversion_rate(1, 3), 33.33);
    assert_eq!(conversion_rate(2, 3), 66.67);
}
