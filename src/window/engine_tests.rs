//! Unit tests of the window engine: boundaries, tumbling windows, closing
//! order, partial lateness (skip), early-mode support.

use super::*;

const MIN: Micros = 60_000_000;
const T0: Micros = 1_000 * 60 * MIN;

fn sliding() -> WindowEngine {
    WindowEngine::new(WindowSpec::new(10 * MIN, 5 * MIN).unwrap())
}

fn ev(product: &str, kind: EventKind, t: Micros, skip: u32) -> WindowEvent {
    WindowEvent { product: product.into(), category: "cat".into(), kind, time: t, skip }
}

fn summary(ws: &[ClosedWindow]) -> Vec<(String, Micros, Micros, u64)> {
    ws.iter().map(|w| (w.product.to_string(), (w.start - T0) / MIN, (w.end - T0) / MIN, w.counts.total)).collect()
}

#[test]
fn event_on_boundary_belongs_to_windows_starting_there() {
    let mut e = sliding();
    e.on_event(&ev("p", EventKind::View, T0 + 5 * MIN, 0));
    let out = e.on_frontier(None);
    // [T0, T0+10m) and [T0+5m, T0+15m) contain T0+5m; [T0-5m, T0+5m) does not.
    assert_eq!(summary(&out), vec![("p".into(), 0, 10, 1), ("p".into(), 5, 15, 1)]);
}

#[test]
fn windows_close_only_when_frontier_reaches_end() {
    let mut e = sliding();
    e.on_event(&ev("p", EventKind::View, T0 + 7 * MIN, 0));
    assert!(e.on_frontier(Some(T0 + 9 * MIN)).is_empty());
    assert_eq!(summary(&e.on_frontier(Some(T0 + 10 * MIN))), vec![("p".into(), 0, 10, 1)]);
    assert!(e.on_frontier(Some(T0 + 14 * MIN)).is_empty());
    assert_eq!(summary(&e.on_frontier(Some(T0 + 15 * MIN))), vec![("p".into(), 5, 15, 1)]);
    assert_eq!(e.cells(), 0, "panes are dropped once their last window closed");
}

#[test]
fn tumbling_when_length_equals_slide() {
    let mut e = WindowEngine::new(WindowSpec::new(5 * MIN, 5 * MIN).unwrap());
    for t in [0, 4, 5, 9, 10] {
        e.on_event(&ev("p", EventKind::View, T0 + t * MIN, 0));
    }
    let out = e.on_frontier(None);
    assert_eq!(summary(&out), vec![("p".into(), 0, 5, 2), ("p".into(), 5, 10, 2), ("p".into(), 10, 15, 1)]);
}

#[test]
fn closing_order_is_end_then_product() {
    let mut e = sliding();
    for (p, t) in [("b", 1), ("a", 2), ("c", 6), ("a", 8)] {
        e.on_event(&ev(p, EventKind::View, T0 + t * MIN, 0));
    }
    let out = e.on_frontier(None);
    let keys: Vec<_> = out.iter().map(|w| ((w.end - T0) / MIN, w.product.to_string())).collect();
    assert_eq!(
        keys,
        vec![
            (5, "a".into()),
            (5, "b".into()),
            (10, "a".into()),
            (10, "b".into()),
            (10, "c".into()),
            (15, "a".into()),
            (15, "c".into()),
        ]
    );
}

#[test]
fn counts_by_kind_and_latest_category() {
    let mut e = WindowEngine::new(WindowSpec::new(5 * MIN, 5 * MIN).unwrap());
    let mut a = ev("p", EventKind::View, T0 + 3 * MIN, 0);
    a.category = "late-name".into();
    e.on_event(&a);
    let mut b = ev("p", EventKind::Purchase, T0 + MIN, 0);
    b.category = "early-name".into();
    e.on_event(&b);
    e.on_event(&ev("p", EventKind::AddToCart, T0 + 2 * MIN, 0));
    e.on_event(&ev("p", EventKind::Other, T0 + 2 * MIN, 0));
    let out = e.on_frontier(None);
    assert_eq!(out.len(), 1);
    let c = &out[0].counts;
    assert_eq!((c.views, c.carts, c.purchases, c.other, c.total), (1, 1, 1, 1, 4));
    // The category of the latest event by event time, not by arrival.
    assert_eq!(out[0].category, "late-name");
}

#[test]
fn skip_leaves_event_out_of_leading_windows() {
    let mut e = sliding();
    e.on_event(&ev("p", EventKind::View, T0 + 7 * MIN, 0));
    // Partly late: counts only in [T0+5m, T0+15m).
    e.on_event(&ev("p", EventKind::View, T0 + 8 * MIN, 1));
    let out = e.on_frontier(None);
    assert_eq!(summary(&out), vec![("p".into(), 0, 10, 1), ("p".into(), 5, 15, 2)]);
}

#[test]
fn events_for_closed_windows_are_counted_as_anomalies() {
    let mut e = sliding();
    e.on_event(&ev("p", EventKind::View, T0 + 7 * MIN, 0));
    e.on_frontier(Some(T0 + 10 * MIN));
    e.on_event(&ev("p", EventKind::View, T0 + 8 * MIN, 0));
    assert_eq!(e.anomalies(), 1);
    let out = e.on_frontier(None);
    assert_eq!(summary(&out), vec![("p".into(), 5, 15, 2)]);
}

#[test]
fn gaps_in_time_are_skipped_not_iterated() {
    let mut e = sliding();
    e.on_event(&ev("p", EventKind::View, T0, 0));
    e.on_event(&ev("p", EventKind::View, T0 + 100_000 * MIN, 0));
    let out = e.on_frontier(None);
    assert_eq!(out.len(), 4);
}

#[test]
fn open_windows_and_touched() {
    let mut e = sliding().track_touched(true);
    e.on_event(&ev("p", EventKind::View, T0 + 7 * MIN, 0));
    e.on_event(&ev("q", EventKind::View, T0 + 7 * MIN, 0));
    assert_eq!(e.take_touched(), vec![CompactString::from("p"), "q".into()]);
    assert!(e.take_touched().is_empty());
    let open = e.open_windows("p");
    assert_eq!(summary(&open), vec![("p".into(), 0, 10, 1), ("p".into(), 5, 15, 1)]);
    e.on_frontier(Some(T0 + 10 * MIN));
    assert_eq!(summary(&e.open_windows("p")), vec![("p".into(), 5, 15, 1)]);
}

#[test]
fn closing_order_is_byte_order_of_ids_of_any_length() {
    // Ids that tie on their first eight bytes, are prefixes of each other,
    // hold a NUL or multi-byte characters: the engine's word-wise sort must
    // still give plain string order.
    let ids =
        ["product-2", "product-10", "product-1", "p", "p\u{0}", "", "pé", "pz", "productA", "product", "producta"];
    let mut e = sliding();
    for p in ids {
        e.on_event(&ev(p, EventKind::View, T0 + MIN, 0));
    }
    let out = e.on_frontier(Some(T0 + 5 * MIN));
    let got: Vec<&str> = out.iter().map(|w| w.product.as_str()).collect();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(got, want);
}
