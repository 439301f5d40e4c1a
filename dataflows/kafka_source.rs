//! The Kafka source: every worker of the cluster reads its own share of the
//! topic's partitions (partition i goes to worker i mod peers), decodes and
//! classifies them in partition order, and holds a capability that is its
//! watermark:
//!
//! ```text
//! worker k: consumer thread ──batches of partition p──▶ decode + clock (p's own order)
//!                                                         ├─▶ window events at pane times
//!                                                         ├─▶ rejects
//!                                                         └─▶ archive pieces
//! ```
//!
//! No exchange before the clock: a partition is read by exactly one
//! worker, so its lateness decisions are those of reading it alone, and the
//! input frontier (min over workers) is the global watermark of SPEC §3.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Scope;

use super::operators::{Rejects, Windows};
use super::source::{advance_to, give_batch, Pieces};
use crate::archive::columns::Spares;
use crate::archive::writer::Piece;
use crate::config::Validated;
use crate::event::timestamp::now_micros;
use crate::event::Micros;
use crate::kafka::consumer::{self, Assignment, Fetched, StartAt};
use crate::kafka::resume::Resume;
use crate::kafka::{owned_by, KafkaSection};
use crate::metrics::Metrics;
use crate::shutdown::{Fatal, Stop};
use crate::sources::ingest::{decode_messages, Batch, Ingestor};

/// Message batches taken per activation before yielding to the other
/// operators, so windows close and sinks drain while reading.
const BATCHES_PER_ACTIVATION: usize = 8;

/// Where a Kafka run reads, decided once for the whole cluster.
#[derive(Debug, Clone)]
pub struct KafkaInput {
    pub cfg: KafkaSection,
    /// Every partition of the topic, sorted.
    pub partitions: Vec<i32>,
    /// Where partitions without a resume point start: the beginning when
    /// the archive gives exactly-once (the windows are rebuilt by
    /// replaying, the commit log drops what is archived), else the group's
    /// committed offset.
    pub start: StartAt,
    /// Resume points from the archive of a previous run (see `kafka::resume`).
    pub resume: BTreeMap<u32, Resume>,
}

impl KafkaInput {
    /// The `source` of this input in dead letters and the commit log.
    pub fn name(&self) -> String {
        format!("kafka:{}", self.cfg.topic())
    }
}

/// This worker's partitions as window events, rejects and archive pieces.
pub fn kafka_source<'s>(
    scope: Scope<'s, Micros>,
    input: &KafkaInput,
    cfg: &Validated,
    archive: Option<Arc<Spares>>,
    metrics: Arc<Metrics>,
    (fatal, stop): (Fatal, Stop),
) -> (Windows<'s>, Rejects<'s>, Pieces<'s>) {
    let mut builder = OperatorBuilder::new("KafkaSource".to_owned(), scope);
    let info = builder.operator_info();
    let (out_w, windows) = builder.new_output();
    let (out_r, rejects) = builder.new_output();
    let (out_a, pieces) = builder.new_output();
    let (mut out_w, mut out_r, mut out_a) =
        (OutputBuilder::from(out_w), OutputBuilder::from(out_r), OutputBuilder::from(out_a));
    let activator = scope.activator_for(info.address.clone());
    let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());

    let owned: Vec<u32> =
        owned_by(&input.partitions, scope.index(), scope.peers()).into_iter().map(|p| p as u32).collect();
    let source = input.name();
    // A live topic is checked against the wall clock; a bounded replay is not.
    let live = !input.cfg.until_end;
    let limits = crate::event::Limits { max_future_skew: cfg.limits.max_future_skew.filter(|_| live), ..cfg.limits };
    let mut ingestor = Ingestor::new(cfg.clock, source.clone(), archive.is_some()).partitioned();
    let now = now_micros();
    let mut partitions = Vec::new();
    // Per partition: offsets before this are re-read only to rebuild the clock.
    let mut emit_from: BTreeMap<u32, u64> = BTreeMap::new();
    for p in &owned {
        match input.resume.get(p) {
            Some(r) => {
                ingestor.clock().resume_partition(*p, r.clock, now);
                emit_from.insert(*p, r.emit_from);
                partitions.push((*p, r.warm_from.map_or(StartAt::Beginning, StartAt::Offset)));
                log::info!(
                    "{source}/{p}: resuming at offset {} (re-reading from {} to rebuild the windows)",
                    r.emit_from,
                    r.warm_from.map_or("the beginning".to_string(), |o| o.to_string())
                );
            }
            None => {
                ingestor.clock().add_partition(*p, now);
                partitions.push((*p, input.start));
            }
        }
    }
    let assignment = Assignment { topic: input.cfg.topic().to_owned(), partitions };
    // Where warm-up tallies go: not the run's metrics.
    let scratch = Metrics::default();
    let (kafka_cfg, until_end) = (input.cfg.clone(), input.cfg.until_end);

    builder.build(move |caps| {
        let mut reader = None;
        if !owned.is_empty() {
            match consumer::spawn(&kafka_cfg, assignment, until_end, metrics.clone(), sync_activator) {
                Ok((rx, _thread)) => reader = Some(rx),
                Err(e) => fatal.set(format!("kafka source: {e:#}")),
            }
        }
        let mut caps = reader.is_some().then_some(caps);
        let mut seq = 0u64;
        let mut batch = Batch::default();
        move |_frontiers| {
            let (Some(cs), Some(rx), None) = (caps.as_mut(), &reader, fatal.get()) else {
                caps = None; // no partitions here, done, or stopping on an error
                return;
            };
            if stop.requested() {
                // What was fetched and not yet read is read again after a
                // restart; the open windows are rebuilt then.
                caps = None;
                return;
            }
            let now = now_micros();
            let (mut out_w, mut out_r, mut out_a) = (out_w.activate(), out_r.activate(), out_a.activate());
            for _ in 0..BATCHES_PER_ACTIVATION {
                let Ok(fetched) = rx.try_recv() else { break };
                match fetched {
                    Fetched::Batch(mut messages) => {
                        if let Some(&from) = emit_from.get(&messages.partition) {
                            let (warm, rest) = messages.split_at(from);
                            if !warm.is_empty() {
                                // Only the clock's memory matters here; every output is dropped.
                                let replayed = warm.offsets.len() as u64;
                                let chunk = decode_messages(warm, seq, &limits, &source, now, None, &scratch);
                                ingestor.classify(chunk, now, &mut Batch::default());
                                ingestor.publish(&scratch);
                                metrics.kafka_replayed.fetch_add(replayed, Relaxed);
                            }
                            if rest.is_empty() {
                                continue;
                            }
                            emit_from.remove(&rest.partition);
                            messages = rest;
                        }
                        let chunk = decode_messages(messages, seq, &limits, &source, now, archive.as_deref(), &metrics);
                        seq += 1;
                        let (partition, through) = (chunk.partition, chunk.end);
                        ingestor.classify(chunk, now, &mut batch);
                        let clock_cfg = *ingestor.clock().config();
                        if let Some(w) = ingestor.clock().partition(partition).and_then(|c| c.watermark(&clock_cfg)) {
                            metrics.observe_partition_watermark(partition, w);
                        }
                        if archive.is_some() {
                            let rows = std::mem::take(&mut batch.archive);
                            let checkpoint = ingestor.clock().partition(partition).map(|c| c.checkpoint());
                            out_a.session(&cs[2]).give(Piece { partition, rows, through, checkpoint });
                        }
                        give_batch(&mut batch, cs, &mut out_w, &mut out_r);
                    }
                    Fetched::End(p) => {
                        // Read up to the end offset it had at start.
                        if let Some(end) = metrics.partition_stats().get(&p).and_then(|s| s.end_offset) {
                            metrics.observe_partition_lag(p, 0, end);
                        }
                        ingestor.clock().finish_partition(p);
                    }
                    Fetched::Failed(msg) => {
                        fatal.set(msg);
                        caps = None;
                        return;
                    }
                }
            }
            ingestor.publish(&metrics);
            ingestor.publish_state(&metrics);
            match ingestor.clock().advance(now) {
                Some(w) => {
                    metrics.observe_watermark(w);
                    advance_to(cs, w);
                    if !rx.is_empty() {
                        activator.activate();
                    } else if !until_end {
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
