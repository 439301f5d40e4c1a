//! Thin timely operators around the pure speed-layer logic.
//!
//! - [`windows`]: products are spread over workers by hash; each worker's
//!   `WindowEngine` closes windows as the input frontier passes them.
//! - [`ordered_sink`]: on worker 0, releases records in timestamp order once
//!   the frontier has passed them, sorted within a time, so outputs do not
//!   depend on the number of workers.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::alert::{Alert, Emitter};
use crate::config::Validated;
use crate::event::timestamp::now_micros;
use crate::event::{DeadLetter, Micros};
use crate::metrics::Metrics;
use crate::serve::WindowDesk;
use crate::shutdown::Stop;
use crate::window::engine::{ClosedWindow, WindowEngine, WindowEvent};

/// Stable hash of a product id: decides which worker owns its windows.
pub fn route(product: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(product.as_bytes());
    h.finish()
}

pub type Windows<'s> = Stream<'s, Micros, Vec<WindowEvent>>;
pub type Rejects<'s> = Stream<'s, Micros, Vec<DeadLetter>>;

/// What the window operators send to the sinks.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum SpeedOut {
    Alert(Alert),
    Window(ClosedWindow),
}

impl SpeedOut {
    /// End of the window this is about.
    pub fn window_end(&self) -> Micros {
        match self {
            // Alerts carry RFC 3339 strings that clickwatch wrote itself.
            SpeedOut::Alert(a) => crate::event::timestamp::parse_str(&a.window_end).unwrap_or(Micros::MAX),
            SpeedOut::Window(w) => w.end,
        }
    }

    pub fn is_alert(&self) -> bool {
        matches!(self, SpeedOut::Alert(_))
    }
}

/// Per-product sliding-window counts and alert emission.
pub fn windows<'s>(
    events: Windows<'s>,
    cfg: &Validated,
    with_counts: bool,
    metrics: Arc<Metrics>,
    desk: Option<Arc<WindowDesk>>,
    stop: Stop,
) -> Stream<'s, Micros, Vec<SpeedOut>> {
    let early = cfg.emit == crate::alert::EmitMode::Early;
    let mut engine = WindowEngine::new(cfg.spec()).track_touched(early);
    let mut emitter = Emitter::new(cfg.rule, cfg.emit);
    let scope = events.scope();
    let mut published_cells = 0i64;
    events.unary_frontier(Exchange::new(|e: &WindowEvent| route(&e.product)), "Windows", move |cap, info| {
        let mut cap = Some(cap);
        // Window queries of the HTTP API, answered between batches.
        let mut answerer = desk.as_ref().map(|d| {
            let wake = scope.worker().sync_activator_for(info.address.to_vec());
            d.register(scope.index(), scope.peers(), wake)
        });
        move |(input, frontier), output| {
            input.for_each(|_time, data| {
                for ev in data.iter() {
                    engine.on_event(ev);
                }
            });
            if let Some(a) = answerer.as_mut() {
                a.answer(&engine);
            }
            let Some(c) = cap.as_mut() else { return };
            let f = frontier.frontier().first().copied();
            // Until the first event, sources publish 0: "no watermark yet".
            let watermark = f.filter(|w| *w > 0);
            let now = now_micros();
            let mut out = Vec::new();
            if early {
                for product in engine.take_touched() {
                    let open = engine.open_windows(&product);
                    out.extend(emitter.on_open(&open, watermark, now).into_iter().map(SpeedOut::Alert));
                }
            }
            if !out.is_empty() {
                output.session(&*c).give_iterator(out.drain(..));
            }
            // Results of a window go out at the window's end time (all
            // windows closed now end after the capability's time): the
            // sink then orders by window end whatever worker or
            // activation closed it, which makes the outputs identical
            // for any number of workers.
            // A stop that leaves the open windows open: nothing more closes,
            // not even what a frontier moved by another worker's stopped
            // source (no longer holding it back) would close, and the
            // capability stays put, so the sinks' frontier (the emitted
            // mark) does not pass windows that were never closed.
            let abandon = stop.abandons_open_windows();
            let closed = if abandon { Vec::new() } else { engine.on_frontier(f) };
            if let Some(a) = answerer.as_mut() {
                a.on_closed(&closed);
            }
            metrics.windows_closed.fetch_add(closed.len() as u64, std::sync::atomic::Ordering::Relaxed);
            for group in closed.chunk_by(|a, b| a.end == b.end) {
                let end = group[0].end;
                let at = c.delayed(&end.max(*c.time()));
                let mut session = output.session(&at);
                session.give_iterator(emitter.on_closed(group, watermark, now).into_iter().map(SpeedOut::Alert));
                if with_counts {
                    session.give_iterator(group.iter().cloned().map(SpeedOut::Window));
                }
            }
            let cells = engine.cells() as i64;
            metrics.window_cells.fetch_add(cells - published_cells, std::sync::atomic::Ordering::Relaxed);
            published_cells = cells;
            metrics.engine_anomalies.fetch_max(engine.anomalies(), std::sync::atomic::Ordering::Relaxed);
            match f {
                Some(_) if abandon => {}
                Some(f) if f > *c.time() => c.downgrade(&f),
                Some(_) => {}
                None => {
                    cap = None;
                    if let (Some(mut a), Some(d)) = (answerer.take(), desk.as_ref()) {
                        a.finish(d);
                    }
                }
            }
        }
    })
}

/// Runs `emit` on worker 0 for every record, in timestamp order once the
/// frontier has passed their time, each time's records sorted by `key`;
/// `progress(f)` after each activation (every record before time `f` has
/// been emitted), then `finish` once the input is complete.
pub fn ordered_sink<'s, D, K, E, P, F>(
    stream: Stream<'s, Micros, Vec<D>>,
    name: &str,
    mut key: K,
    mut emit: E,
    mut progress: P,
    finish: F,
) where
    D: timely::ExchangeData,
    K: FnMut(&D) -> (Micros, String) + 'static,
    E: FnMut(Vec<D>) + 'static,
    P: FnMut(Micros) + 'static,
    F: FnOnce() + 'static,
{
    let mut stash: BTreeMap<Micros, Vec<D>> = BTreeMap::new();
    let mut finish = Some(finish);
    stream.sink(Exchange::new(|_: &D| 0), name, move |(input, frontier)| {
        input.for_each(|time, data| {
            // Messages carry a single time here; an empty stamp claims nothing and may go out at once.
            let t = time.least().copied().unwrap_or(Micros::MIN);
            stash.entry(t).or_default().append(data);
        });
        while let Some(entry) = stash.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let mut batch = entry.remove();
            batch.sort_by_cached_key(&mut key);
            emit(batch);
        }
        if let Some(f) = frontier.frontier().first() {
            progress(*f);
        }
        if frontier.is_empty() {
            if let Some(f) = finish.take() {
                f();
            }
        }
    });
}

/// Writes records on worker 0 as they arrive, then `finish`es.
pub fn unordered_sink<'s, D, E, F>(stream: Stream<'s, Micros, Vec<D>>, name: &str, mut emit: E, finish: F)
where
    D: timely::ExchangeData,
    E: FnMut(&mut Vec<D>) + 'static,
    F: FnOnce() + 'static,
{
    let mut finish = Some(finish);
    stream.sink(Exchange::new(|_: &D| 0), name, move |(input, frontier)| {
        input.for_each(|_time, data| emit(data));
        if frontier.is_empty() {
            if let Some(f) = finish.take() {
                f();
            }
        }
    });
}
