//! The line source as two small operators, so decoding (the expensive
//! part) runs on every worker of the reading process while lateness is
//! still decided in the partition's own order:
//!
//! ```text
//! read + decode (every worker, from one shared queue) ──▶ sequence (worker 0)
//!                                                          ├─▶ window events at pane times
//!                                                          └─▶ rejects
//! ```
//!
//! Each worker takes the next chunk from the reader's queue whenever it has
//! time (see `lines::Feed`): worker 0, which also runs the in-order pass,
//! simply takes fewer, so the load balances itself. `sequence` puts decoded
//! chunks back in input order and runs the source clock; its capabilities
//! are the watermark. Its input is not connected to its outputs: it emits
//! only at its own capabilities, so the read operators' capabilities hold
//! nothing back downstream and the readers need not follow the watermark.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};
use timely::progress::{Antichain, Timestamp};

use super::operators::{Rejects, Windows};
use crate::archive::columns::Spares;
use crate::archive::writer::Piece;
use crate::config::Validated;
use crate::event::timestamp::now_micros;
use crate::event::{DeadLetter, Limits, Micros};
use crate::metrics::Metrics;
use crate::shutdown::{Fatal, Stop};
use crate::sources::ingest::{decode_chunk, Batch, DecodedChunk, Ingestor, RawBody, RawChunk};
use crate::sources::lines::{Chunk, Feed, LineInput, Take};
use crate::window::engine::WindowEvent;

/// Chunks (≈256 KiB each) a worker decodes per activation before yielding
/// to its other operators (on worker 0: the in-order pass).
const CHUNKS_PER_ACTIVATION: usize = 2;
/// A line input is one partition (SPEC §3).
const PARTITION: u32 = 0;

/// Valid events for the archive, one piece per input chunk.
pub type Pieces<'s> = Stream<'s, Micros, Vec<Piece>>;

/// How a worker takes part in reading a line input.
#[derive(Clone)]
pub struct LineRead {
    pub input: LineInput,
    /// The reading process's shared queue.
    pub feed: Arc<Feed>,
    /// Whether this worker is in the reading process (the one with worker 0);
    /// workers of other processes have nothing to take.
    pub local: bool,
}

/// The whole line source: window events, rejects and (with `archive`, its
/// spare columns) the archive's pieces.
pub fn line_source<'s>(
    scope: Scope<'s, Micros>,
    read: LineRead,
    cfg: &Validated,
    archive: Option<Arc<Spares>>,
    metrics: Arc<Metrics>,
    (fatal, stop): (Fatal, Stop),
) -> (Windows<'s>, Rejects<'s>, Pieces<'s>) {
    let live = read.input.is_live();
    let limits = Limits { max_future_skew: cfg.limits.max_future_skew.filter(|_| live), ..cfg.limits };
    let name = read.input.name();
    let feed = read.feed.clone();
    let archiving = archive.is_some();
    let decoded = read_and_decode(scope, read, limits, archive, metrics.clone(), (fatal, stop.clone()));
    sequence(decoded, cfg, name, (live, archiving), feed, metrics, stop)
}

/// Takes chunks from the shared queue and decodes them, on every worker of
/// the reading process; worker 0 starts the reader thread. `keep` keeps the
/// events in full (for the archive), in columns from those spares.
fn read_and_decode<'s>(
    scope: Scope<'s, Micros>,
    read: LineRead,
    limits: Limits,
    keep: Option<Arc<Spares>>,
    metrics: Arc<Metrics>,
    (fatal, stop): (Fatal, Stop),
) -> Stream<'s, Micros, Vec<DecodedChunk>> {
    let mut builder = OperatorBuilder::new("ReadDecode".to_owned(), scope);
    let info = builder.operator_info();
    let (output, stream) = builder.new_output();
    let mut output = OutputBuilder::from(output);
    let activator = scope.activator_for(info.address.clone());
    let LineRead { input, feed, local } = read;
    if local {
        feed.register(scope.worker().sync_activator_for(info.address.to_vec()));
    }
    let starts = scope.index() == 0;

    // `/collect` ends when its channel is closed and drained; the others
    // stop reading on a stop request, after what their reader already holds.
    let stops_on_request = !matches!(input, LineInput::Collect(_));
    let polls = input.is_live();
    let source = input.name();
    builder.build(move |mut caps| {
        let mut cap = caps.pop().filter(|_| local);
        if starts {
            let name = input.name();
            if let Err(e) = feed.start(input, limits.max_event_bytes) {
                fatal.set(format!("cannot open {name}: {e}"));
                feed.wake(); // the other workers stop too
            }
        }
        move |_frontiers| {
            let (Some(c), None) = (cap.as_ref(), fatal.get()) else {
                cap = None; // another process reads, done, or stopping on an error
                return;
            };
            let mut out = output.activate();
            let stopping = stops_on_request && stop.requested();
            let now = now_micros();
            // Quiet only after a `Wait`: the feed wakes this operator when
            // that changes (a chunk, the end, or room in flight).
            let mut waiting = false;
            for _ in 0..if stopping { usize::MAX } else { CHUNKS_PER_ACTIVATION } {
                let (seq, offset, body) = match feed.take(!stopping) {
                    Take::Chunk(Chunk::Lines { seq, offset, data }) => (seq, offset, RawBody::Lines(data)),
                    Take::Chunk(Chunk::Oversize { seq, offset, len, prefix }) => {
                        (seq, offset, RawBody::Oversize { len, prefix })
                    }
                    Take::Chunk(Chunk::Failed(msg)) => {
                        fatal.set(msg);
                        feed.wake();
                        cap = None;
                        return;
                    }
                    Take::Ended => {
                        cap = None;
                        return;
                    }
                    Take::Wait => {
                        waiting = true;
                        break;
                    }
                };
                let raw = RawChunk { seq, partition: PARTITION, offset, body };
                out.session(c).give(decode_chunk(raw, &limits, &source, now, keep.as_deref(), &metrics));
            }
            if stopping {
                cap = None;
            } else if !waiting {
                activator.activate();
            } else if polls {
                // A live reader may block for long: look for a stop request.
                activator.activate_after(Duration::from_millis(250));
            }
        }
    });
    stream
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
    feed: Arc<Feed>,
    metrics: Arc<Metrics>,
    stop: Stop,
) -> (Windows<'s>, Rejects<'s>, Pieces<'s>) {
    let scope = decoded.scope();
    let mut builder = OperatorBuilder::new("Sequence".to_owned(), scope);
    let info = builder.operator_info();
    let mut input = builder.new_input(decoded, Exchange::new(|_: &DecodedChunk| 0));
    // Not connected to the input: everything goes out at the watermark, the
    // operator's own capabilities, whatever time its input came at.
    let unconnected = Vec::<(usize, Antichain<<Micros as Timestamp>::Summary>)>::new;
    let (out_w, windows) = builder.new_output_connection(unconnected());
    let (out_r, rejects) = builder.new_output_connection(unconnected());
    let (out_a, pieces) = builder.new_output_connection(unconnected());
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
                feed.settle(ingestor.classify(chunk, now, &mut batch));
                if archive {
                    let rows = std::mem::take(&mut batch.archive);
                    out_a.session(&cs[2]).give(Piece { partition, rows, through, checkpoint: None });
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
