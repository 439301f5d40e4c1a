//! The line source as three small operators, so decoding (the expensive
//! part) runs on every worker while lateness is still decided in the
//! partition's own order:
//!
//! ```text
//! read (worker 0) ──raw chunks, round robin──▶ decode (all workers) ──▶ sequence (worker 0)
//!                                                                        ├─▶ window events at pane times
//!                                                                        └─▶ rejects
//! ```
//!
//! `sequence` puts decoded chunks back in input order and runs the source
//! clock; its capability is the watermark. `read` sends chunks at that same
//! watermark (shared through an `Rc<Cell>`: both run on worker 0's thread),
//! so everything `sequence` emits is at or after the time it received.

use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::Activator;

use super::operators::{Rejects, Windows};
use crate::archive::writer::Piece;
use crate::config::Validated;
use crate::event::timestamp::now_micros;
use crate::event::{DeadLetter, Limits, Micros};
use crate::metrics::Metrics;
use crate::shutdown::{Fatal, Stop};
use crate::sources::ingest::{decode_chunk, Batch, DecodedChunk, Ingestor, RawBody, RawChunk};
use crate::sources::lines::{self, Chunk, LineInput};
use crate::window::engine::WindowEvent;

/// Chunks (≈256 KiB each) read per activation before yielding to the other
/// operators, so windows close and sinks drain while reading.
const CHUNKS_PER_ACTIVATION: usize = 8;
/// A line input is one partition (SPEC §3).
const PARTITION: u32 = 0;

/// What `read` and `sequence` share on worker 0.
#[derive(Clone)]
struct Shared {
    /// The published watermark.
    watermark: Rc<Cell<Micros>>,
    /// Wakes `read` when the watermark moved.
    read: Rc<Cell<Option<Activator>>>,
    /// Spent input buffers go back to the reader (see `lines::Recycle`).
    recycle: Rc<OnceCell<lines::Recycle>>,
}

/// Valid events for the archive, one piece per input chunk.
pub type Pieces<'s> = Stream<'s, Micros, Vec<Piece>>;

/// The whole line source: window events, rejects and (if `archive`) the
/// archive's pieces.
pub fn line_source<'s>(
    scope: Scope<'s, Micros>,
    input: LineInput,
    cfg: &Validated,
    archive: bool,
    metrics: Arc<Metrics>,
    (fatal, stop): (Fatal, Stop),
) -> (Windows<'s>, Rejects<'s>, Pieces<'s>) {
    let shared = Shared {
        watermark: Rc::new(Cell::new(Micros::MIN)),
        read: Rc::new(Cell::new(None)),
        recycle: Rc::new(OnceCell::new()),
    };
    let limits = Limits { max_future_skew: cfg.limits.max_future_skew.filter(|_| input.is_live()), ..cfg.limits };
    let name = input.name();
    let live = input.is_live();
    let raw = read(scope, input, limits.max_event_bytes, shared.clone(), (fatal, stop.clone()));
    let decoded = decode(raw, limits, name.clone(), archive, metrics.clone());
    sequence(decoded, cfg, name, (live, archive), shared, metrics, stop)
}

/// Reads the input on worker 0 and deals its chunks to all workers.
fn read<'s>(
    scope: Scope<'s, Micros>,
    input: LineInput,
    max_line: usize,
    shared: Shared,
    (fatal, stop): (Fatal, Stop),
) -> Stream<'s, Micros, Vec<RawChunk>> {
    let mut builder = OperatorBuilder::new("Read".to_owned(), scope);
    let info = builder.operator_info();
    let (output, stream) = builder.new_output();
    let mut output = OutputBuilder::from(output);
    let reads = scope.index() == 0;
    if reads {
        shared.read.set(Some(scope.activator_for(info.address.clone())));
    }
    let activator = scope.activator_for(info.address.clone());
    let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());

    // `/collect` ends when its channel is closed and drained; the others
    // stop reading on a stop request, after what their reader already holds.
    let stops_on_request = !matches!(input, LineInput::Collect(_));
    let polls = input.is_live();
    builder.build(move |mut caps| {
        let mut cap = caps.pop();
        let mut reader = None;
        if reads {
            let name = input.name();
            match lines::spawn(input, max_line, sync_activator) {
                Ok((rx, recycle, _thread)) => {
                    reader = Some(rx);
                    let _ = shared.recycle.set(recycle); // the only reader of this worker
                }
                Err(e) => fatal.set(format!("cannot open {name}: {e}")),
            }
        }
        let mut seq = 0u64;
        move |_frontiers| {
            let (Some(c), Some(rx), None) = (cap.as_mut(), &reader, fatal.get()) else {
                cap = None; // not the reading worker, done, or stopping on an error
                return;
            };
            let w = shared.watermark.get();
            if *c.time() < w {
                c.downgrade(&w);
            }
            let mut out = output.activate();
            let stopping = stops_on_request && stop.requested();
            for _ in 0..if stopping { usize::MAX } else { CHUNKS_PER_ACTIVATION } {
                let Ok(chunk) = rx.try_recv() else { break };
                let (offset, body) = match chunk {
                    Chunk::Lines { offset, data } => (offset, RawBody::Lines(data)),
                    Chunk::Oversize { offset, len, prefix } => (offset, RawBody::Oversize { len, prefix }),
                    Chunk::End { .. } => {
                        cap = None;
                        return;
                    }
                    Chunk::Failed(msg) => {
                        fatal.set(msg);
                        cap = None;
                        return;
                    }
                };
                // Round robin over workers; `sequence` restores the order.
                out.session(&*c).give(RawChunk { seq, partition: PARTITION, offset, body });
                seq += 1;
            }
            if stopping {
                cap = None;
            } else if !rx.is_empty() {
                activator.activate();
            } else if polls {
                // A live reader may block for long: look for a stop request.
                activator.activate_after(Duration::from_millis(250));
            }
        }
    });
    stream
}

/// Decodes chunks wherever they landed, then sends them to worker 0;
/// `keep` keeps the events in full (for the archive).
fn decode<'s>(
    raw: Stream<'s, Micros, Vec<RawChunk>>,
    limits: Limits,
    source: String,
    keep: bool,
    metrics: Arc<Metrics>,
) -> Stream<'s, Micros, Vec<DecodedChunk>> {
    raw.unary(Exchange::new(|c: &RawChunk| c.seq), "Decode", move |_cap, _info| {
        move |input, output| {
            input.for_each(|cap, data| {
                let now = now_micros();
                let decoded = data.drain(..).map(|c| decode_chunk(c, &limits, &source, now, keep, &metrics));
                output.session(&cap).give_iterator(decoded);
            });
        }
    })
}

/// An output of a source operator.
pub(super) type Out<'a, D> = OutputBuilderSession<'a, Micros, CapacityContainerBuilder<Vec<D>>>;

/// Sends a classified batch's window events (at their pane times) and
/// rejects; `caps` are the source's capabilities, windows first.
pub(super) fn give_batch(
    batch: &mut Batch,
    caps: &[Capability<Micros>],
    out_w: &mut Out<'_, WindowEvent>,
    out_r: &mut Out<'_, DeadLetter>,
) {
    // One session per timely time (pane starts: few distinct values).
    batch.windows.sort_by_key(|(t, _)| *t);
    let mut events = batch.windows.drain(..).peekable();
    while let Some(&(t, _)) = events.peek() {
        let cap = caps[0].delayed(&t);
        let run = std::iter::from_fn(|| events.next_if(|(u, _)| *u == t).map(|(_, e)| e));
        out_w.session(&cap).give_iterator(run);
    }
    if !batch.rejects.is_empty() {
        out_r.session(&caps[1]).give_iterator(batch.rejects.drain(..));
    }
}

/// Moves every capability of a source up to its watermark `w`.
pub(super) fn advance_to(caps: &mut [Capability<Micros>], w: Micros) {
    for c in caps.iter_mut() {
        if *c.time() < w {
            c.downgrade(&w);
        }
    }
}

/// Worker 0: classifies decoded chunks in input order and publishes the
/// watermark as its capability.
fn sequence<'s>(
    decoded: Stream<'s, Micros, Vec<DecodedChunk>>,
    cfg: &Validated,
    source: String,
    (live, archive): (bool, bool),
    shared: Shared,
    metrics: Arc<Metrics>,
    stop: Stop,
) -> (Windows<'s>, Rejects<'s>, Pieces<'s>) {
    let scope = decoded.scope();
    let mut builder = OperatorBuilder::new("Sequence".to_owned(), scope);
    let info = builder.operator_info();
    let mut input = builder.new_input(decoded, Exchange::new(|_: &DecodedChunk| 0));
    let (out_w, windows) = builder.new_output();
    let (out_r, rejects) = builder.new_output();
    let (out_a, pieces) = builder.new_output();
    let mut out_w = OutputBuilder::from(out_w);
    let mut out_r = OutputBuilder::from(out_r);
    let mut out_a = OutputBuilder::from(out_a);
    let activator = scope.activator_for(info.address.clone());
    let first = scope.index() == 0;
    let mut ingestor = Ingestor::new(cfg.clock, source, archive);
    if first {
        ingestor.clock().add_partition(PARTITION, now_micros());
    }

    builder.build(move |caps| {
        let mut caps = first.then_some(caps);
        let mut pending: BTreeMap<u64, DecodedChunk> = BTreeMap::new();
        let mut next = 0u64;
        let mut batch = Batch::default();
        move |frontiers| {
            input.for_each(|_cap, data| {
                for chunk in data.drain(..) {
                    pending.insert(chunk.seq, chunk);
                }
            });
            let Some(cs) = caps.as_mut() else { return };
            let now = now_micros();
            let (mut out_w, mut out_r, mut out_a) = (out_w.activate(), out_r.activate(), out_a.activate());
            while let Some(chunk) = pending.remove(&next) {
                next += 1;
                let (partition, through) = (chunk.partition, chunk.end);
                let spent = ingestor.classify(chunk, now, &mut batch);
                if let Some(recycle) = shared.recycle.get() {
                    let _ = recycle.try_send(spent); // or freed, if the reader has enough
                }
                if archive {
                    let rows = std::mem::take(&mut batch.archive);
                    out_a.session(&cs[2]).give(Piece { partition, rows, through, ingest_time: now, checkpoint: None });
                }
                give_batch(&mut batch, cs, &mut out_w, &mut out_r);
            }
            ingestor.publish(&metrics);
            ingestor.publish_state(&metrics);
            if frontiers[0].is_empty() && pending.is_empty() {
                if stop.abandons_open_windows() {
                    // Everything read is out; the watermark stays where it is.
                    caps = None;
                    return;
                }
                ingestor.clock().finish_partition(PARTITION);
            }
            match ingestor.clock().advance(now) {
                Some(w) => {
                    metrics.observe_watermark(w);
                    if w > 0 {
                        metrics.observe_partition_watermark(PARTITION, w);
                    }
                    advance_to(cs, w);
                    if shared.watermark.get() < w {
                        shared.watermark.set(w);
                        if let Some(a) = shared.read.take() {
                            a.activate();
                            shared.read.set(Some(a));
                        }
                    }
                    if live {
                        // Idle partitions are judged by the wall clock: look again soon.
                        activator.activate_after(Duration::from_secs(1));
                    }
                }
                None => caps = None,
            }
        }
    });
    (windows, rejects, pieces)
}
