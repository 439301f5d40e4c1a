//! Property test: the source clock + window engine, driven the way the
//! timely dataflow drives them (events stamped with pane-or-watermark
//! times, products split over several engines, the frontier advancing at
//! random points, delivery delayed and reordered), against a naive model
//! that recomputes every window from scratch with SPEC §3's rules.

use std::collections::BTreeMap;

use clickwatch::event::{Event, EventKind, Micros};
use clickwatch::window::clock::{ClockConfig, Fate, SourceClock};
use clickwatch::window::engine::{WindowEngine, WindowEvent};
use clickwatch::window::{Counts, WindowSpec};
use proptest::prelude::*;

const MIN: Micros = 60_000_000;
const T0: Micros = 29_000_000 * MIN; // a day in 2025, a multiple of every size used

type Key = (String, Micros); // (product, window start)

fn event(product: u8, kind: u8, t: Micros, id: Option<u8>) -> Event {
    let kind = [EventKind::View, EventKind::AddToCart, EventKind::Purchase, EventKind::Other][kind as usize % 4];
    Event {
        event_id: id.map(|i| format!("e{i}").into()),
        user_id: "u".into(),
        product_id: format!("p{product}").into(),
        event_type: kind.as_str().into(),
        kind,
        category: "c".into(),
        session_id: None,
        time: t,
        price: None,
        quantity: None,
    }
}

/// SPEC §3 read literally: W before each event is (max time so far) − D;
/// an event counts in each of its windows whose end is > W; repeats of an
/// id within L + D of the first one's time are dropped.
fn model(events: &[Event], spec: WindowSpec, delay: Micros) -> BTreeMap<Key, Counts> {
    let mut out: BTreeMap<Key, Counts> = BTreeMap::new();
    let mut max: Option<Micros> = None;
    let mut seen: Vec<(String, Micros)> = Vec::new();
    for e in events {
        if let Some(id) = &e.event_id {
            let horizon = max.unwrap_or(Micros::MIN).saturating_sub(spec.length() + delay);
            if seen.iter().any(|(s, t)| s == id.as_str() && *t >= horizon) {
                continue;
            }
            seen.push((id.to_string(), e.time));
        }
        let w = max.map_or(Micros::MIN, |m| m - delay);
        let mut start = spec.pane_of(e.time) - spec.length() + spec.slide();
        while start <= e.time {
            if start + spec.length() > w {
                out.entry((e.product_id.to_string(), start)).or_default().add(e.kind);
            }
            start += spec.slide();
        }
        max = Some(max.map_or(e.time, |m| m.max(e.time)));
    }
    out
}

/// The engine as the dataflow runs it.
fn system(
    events: &[Event],
    spec: WindowSpec,
    delay: Micros,
    engines: usize,
    advance_every: usize,
    hold: usize,
) -> BTreeMap<Key, Counts> {
    let cfg = ClockConfig { spec, delay, idle_timeout: Micros::MAX / 4 };
    let mut clock = SourceClock::new(cfg);
    clock.add_partition(0, 0);
    let mut engines: Vec<WindowEngine> = (0..engines).map(|_| WindowEngine::new(spec)).collect();
    let mut in_flight: Vec<(Micros, usize, WindowEvent)> = Vec::new();
    let mut closed = Vec::new();
    let mut deliver = |in_flight: &mut Vec<(Micros, usize, WindowEvent)>,
                       engines: &mut Vec<WindowEngine>,
                       frontier: Option<Micros>,
                       keep: usize| {
        // Messages at times < frontier must all be delivered before the
        // frontier is; others may wait (up to `keep` of them), in any order.
        in_flight.reverse();
        let mut kept = Vec::new();
        for (t, i, ev) in in_flight.drain(..) {
            if frontier.is_some_and(|f| t >= f) && kept.len() < keep {
                kept.push((t, i, ev));
            } else {
                engines[i].on_event(&ev);
            }
        }
        *in_flight = kept;
        let f = frontier.map(|f| f.min(in_flight.iter().map(|(t, _, _)| *t).min().unwrap_or(Micros::MAX)));
        for e in engines.iter_mut() {
            closed.extend(e.on_frontier(f));
        }
    };
    for (n, e) in events.iter().enumerate() {
        let floor = clock.published();
        if let Fate::Counted { skip } = clock.on_event(0, e.into(), 0) {
            let t = spec.pane_of(e.time).max(floor);
            let owner = e.product_id.as_bytes().iter().map(|b| *b as usize).sum::<usize>() % engines.len();
            let ev = WindowEvent {
                product: e.product_id.clone(),
                category: e.category.clone(),
                kind: e.kind,
                time: e.time,
                skip,
            };
            in_flight.push((t, owner, ev));
        }
        if n % advance_every == advance_every - 1 {
            let w = clock.advance(0);
            deliver(&mut in_flight, &mut engines, w, hold);
        }
    }
    clock.finish_partition(0);
    assert_eq!(clock.advance(0), None);
    deliver(&mut in_flight, &mut engines, None, 0);
    for e in &engines {
        assert_eq!(e.anomalies(), 0, "source contract broken");
        assert_eq!(e.cells(), 0, "state left after the end");
    }
    closed.into_iter().map(|w| ((w.product.to_string(), w.start), w.counts)).collect()
}

fn arb_events() -> impl Strategy<Value = Vec<Event>> {
    // Times mostly moving forward with jitter and some far-late events.
    prop::collection::vec((0u8..4, 0u8..4, 0i64..40, 0i64..30, prop::option::weighted(0.3, 0u8..20)), 1..120).prop_map(
        |raw| {
            let mut now = T0;
            raw.into_iter()
                .map(|(p, k, step, back, id)| {
                    now += step * 10_000_000; // up to ~6.5 min forward
                    let t = (now - back * back * 1_000_000).max(T0 - 30 * MIN);
                    event(p, k, t, id)
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn engine_matches_naive_model(
        events in arb_events(),
        slide_min in prop::sample::select(vec![1i64, 2, 5]),
        panes in 1i64..4,
        delay_min in 0i64..4,
        engines in 1usize..4,
        advance_every in 1usize..10,
        hold in 0usize..5,
    ) {
        let spec = WindowSpec::new(slide_min * panes * MIN, slide_min * MIN).unwrap();
        let delay = delay_min * MIN;
        let expected = model(&events, spec, delay);
        let got = system(&events, spec, delay, engines, advance_every, hold);
        prop_assert_eq!(got, expected);
    }
}
