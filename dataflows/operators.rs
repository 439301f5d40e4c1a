//! Thin timely operators around the pure speed-layer logic.
//!
//! - [`line_source`]: reads a line input on worker 0 and emits window
//!   events (at their pane time) and rejects; its capability *is* the
//!   watermark.
//! - [`windows`]: products are spread over workers by hash; each worker's
//!   `WindowEngine` closes windows as the input frontier passes them.
//! - [`ordered_sink`]: on worker 0, releases records in timestamp order once
//!   the frontier has passed them, sorted within a time, so outputs do not
//!   depend on the number of workers.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::{Scope, Stream};

use crate::alert::{Alert, Emitter};
use crate::config::Validated;
use crate::event::timestamp::now_micros;
use crate::event::{DeadLetter, Limits, Micros};
use crate::metrics::Metrics;
use crate::sources::ingest::{Batch, Ingestor};
use crate::sources::lines::{self, Chunk, LineInput};
use crate::window::engine::{ClosedWindow, WindowEngine, WindowEvent};

use super::speed::Fatal;

/// Chunks (≈1 MiB each) decoded per activation before yielding to the
/// other operators, so windows close and sinks drain while reading.
const CHUNKS_PER_ACTIVATION: usize = 4;

/// Stable hash of a product id: decides which worker owns its windows.
pub fn route(product: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(product.as_bytes());
    h.finish()
}

pub type Windows<'s> = Stream<'s, Micros, Vec<WindowEvent>>;
pub type Rejects<'s> = Stream<'s, Micros, Vec<DeadLetter>>;

/// Reads `input` on worker 0 (a line input is one partition); other workers
/// close their capabilities at once.
pub fn line_source<'s>(
    scope: Scope<'s, Micros>,
    input: LineInput,
    cfg: &Validated,
    metrics: Arc<Metrics>,
    fatal: Fatal,
) -> (Windows<'s>, Rejects<'s>) {
    let mut builder = OperatorBuilder::new("LineSource".to_owned(), scope);
    let info = builder.operator_info();
    let (out_w, windows) = builder.new_output();
    let (out_r, rejects) = builder.new_output();
    let mut out_w = OutputBuilder::from(out_w);
    let mut out_r = OutputBuilder::from(out_r);

    let reads = scope.index() == 0;
    let activator = scope.activator_for(info.address.clone());
    let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
    let limits = Limits {
        max_future_skew: cfg.limits.max_future_skew.filter(|_| input.is_live()),
        ..cfg.limits
    };
    let live = input.is_live();
    let name = input.name();
    let mut ingestor = Ingestor::new(cfg.clock, limits, input.name(), false);
    const PARTITION: u32 = 0;

    builder.build(move |caps| {
        let mut caps = Some(caps);
        let mut reader = None;
        if reads {
            match lines::spawn(input, limits.max_event_bytes, sync_activator) {
                Ok((rx, _thread)) => {
                    ingestor.clock().add_partition(PARTITION, now_micros());
                    reader = Some(rx);
                }
                Err(e) => fatal.set(format!("cannot open {name}: {e}")),
            }
        }
        move |_frontiers| {
            let Some(cs) = caps.as_mut() else { return };
            let (Some(rx), None) = (&reader, fatal.get()) else {
                caps = None; // not the reading worker, or stopping on an error
                return;
            };
            let mut out_w = out_w.activate();
            let mut out_r = out_r.activate();
            let mut ended = false;
            for _ in 0..CHUNKS_PER_ACTIVATION {
                let Ok(chunk) = rx.try_recv() else { break };
                let now = now_micros();
                let mut batch = Batch::default();
                match chunk {
                    Chunk::Lines { offset, data } => ingestor.lines(PARTITION, offset, &data, now, &mut batch),
                    Chunk::Oversize { offset, len, prefix } => ingestor.oversize(offset, len, &prefix, now, &mut batch),
                    Chunk::End { .. } => {
                        ingestor.clock().finish_partition(PARTITION);
                        ended = true;
                    }
                    Chunk::Failed(msg) => {
                        fatal.set(msg);
                        ended = true;
                    }
                }
                ingestor.publish(&metrics);
                // One session per timely time (pane starts: few distinct values).
                batch.windows.sort_by_key(|(t, _)| *t);
                let mut events = batch.windows.drain(..).peekable();
                while let Some(&(t, _)) = events.peek() {
                    let cap = cs[0].delayed(&t);
                    let run = std::iter::from_fn(|| events.next_if(|(u, _)| *u == t).map(|(_, e)| e));
                    out_w.session(&cap).give_iterator(run);
                }
                if !batch.rejects.is_empty() {
                    out_r.session(&cs[1]).give_iterator(batch.rejects.drain(..));
                }
                if ended {
                    break;
                }
            }
            match ingestor.clock().advance(now_micros()) {
                Some(w) => {
                    metrics.observe_watermark(w);
                    for c in cs.iter_mut() {
                        if *c.time() < w {
                            c.downgrade(&w);
                        }
                    }
                    if !rx.is_empty() {
                        activator.activate();
                    } else if live {
                        // Re-check idle partitions even when no data comes.
                        activator.activate_after(Duration::from_secs(1));
                    }
                }
                None => caps = None,
            }
        }
    });
    (windows, rejects)
}

/// What the window operators send to the sinks.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum SpeedOut {
    Alert(Alert),
    Window(ClosedWindow),
}

/// Per-product sliding-window counts and alert emission.
pub fn windows<'s>(events: Windows<'s>, cfg: &Validated, with_counts: bool, metrics: Arc<Metrics>) -> Stream<'s, Micros, Vec<SpeedOut>> {
    let early = cfg.emit == crate::alert::EmitMode::Early;
    let mut engine = WindowEngine::new(cfg.spec()).track_touched(early);
    let mut emitter = Emitter::new(cfg.rule, cfg.emit);
    events.unary_frontier(
        Exchange::new(|e: &WindowEvent| route(&e.product)),
        "Windows",
        move |cap, _info| {
            let mut cap = Some(cap);
            move |(input, frontier), output| {
                input.for_each(|_time, data| {
                    for ev in data.iter() {
                        engine.on_event(ev);
                    }
                });
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
                let closed = engine.on_frontier(f);
                metrics.windows_closed.fetch_add(closed.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let alerts = emitter.on_closed(&closed, watermark, now);
                let mut alerts = alerts.into_iter().peekable();
                let mut windows = closed.into_iter().filter(|_| with_counts).peekable();
                loop {
                    let end = match (alerts.peek(), windows.peek()) {
                        (Some(a), Some(w)) => a.end_micros.min(w.end),
                        (Some(a), None) => a.end_micros,
                        (None, Some(w)) => w.end,
                        (None, None) => break,
                    };
                    let at = c.delayed(&end.max(*c.time()));
                    let mut session = output.session(&at);
                    session.give_iterator(std::iter::from_fn(|| alerts.next_if(|a| a.end_micros == end)).map(SpeedOut::Alert));
                    session.give_iterator(std::iter::from_fn(|| windows.next_if(|w| w.end == end)).map(SpeedOut::Window));
                }
                metrics
                    .engine_anomalies
                    .fetch_max(engine.anomalies(), std::sync::atomic::Ordering::Relaxed);
                match f {
                    Some(f) if f > *c.time() => c.downgrade(&f),
                    Some(_) => {}
                    None => cap = None,
                }
            }
        },
    )
}

/// Runs `emit` on worker 0 for every record, in timestamp order once the
/// frontier has passed their time, each time's records sorted by `key`;
/// then `finish` once the input is complete.
pub fn ordered_sink<'s, D, K, E, F>(stream: Stream<'s, Micros, Vec<D>>, name: &str, mut key: K, mut emit: E, finish: F)
where
    D: timely::ExchangeData,
    K: FnMut(&D) -> (Micros, String) + 'static,
    E: FnMut(Vec<D>) + 'static,
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
