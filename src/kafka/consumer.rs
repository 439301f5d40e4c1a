//! The Kafka source's reader: one thread per timely worker, owning one
//! consumer that is *assigned* the worker's partitions (no group
//! rebalancing: which worker reads which partition is fixed by the cluster
//! layout, which is what keeps per-partition order and watermarks exact).
//!
//! The thread polls librdkafka and hands the worker batches of one
//! partition's messages (payloads copied into one buffer), waking the
//! worker through a `SyncActivator`. The channel is bounded, so a slow
//! dataflow slows the consumer instead of buffering without limit. Broker
//! outages are not errors here: librdkafka reconnects by itself, and the
//! thread only logs what it sees.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, Receiver, Sender};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::types::RDKafkaErrorCode;

use super::batch_queue::BatchQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use timely::scheduling::SyncActivator;

use super::{KafkaSection, REQUEST_TIMEOUT};
use crate::metrics::Metrics;

/// Messages per batch handed to the worker, and the payload bytes that end
/// a batch early: large enough to amortise channel and scheduling costs,
/// small enough that the decoded vectors stay in cache.
const BATCH_MESSAGES: usize = 2048;
const BATCH_BYTES: usize = 256 << 10;

/// Consumer tuning; `[kafka.properties]` may override each.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("statistics.interval.ms", "1000"),
    // Prefetch generously: the worker takes whole batches at a time.
    ("queued.max.messages.kbytes", "262144"),
    ("fetch.max.bytes", "52428800"),
    ("max.partition.fetch.bytes", "8388608"),
    // librdkafka pauses a partition whose local queue is over
    // queued.min.messages for fetch.queue.backoff.ms (default 1 s), which
    // stalls a consumer that keeps up (4x slower here); keep fetching.
    ("queued.min.messages", "1000000"),
    ("fetch.queue.backoff.ms", "5"),
];

/// Consecutive messages of one partition.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MessageBatch {
    pub partition: u32,
    /// Offset of each message, ascending.
    pub offsets: Vec<u64>,
    /// End of each message's payload in `data` (start = previous end).
    pub ends: Vec<u32>,
    pub data: Vec<u8>,
}

impl MessageBatch {
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.spans().map(|(o, (s, e))| (o, &self.data[s..e]))
    }

    /// Each message's offset and where its payload is in `data`.
    pub fn spans(&self) -> impl Iterator<Item = (u64, (usize, usize))> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.offsets.iter().zip(starts.zip(self.ends.iter())).map(|(o, (s, e))| (*o, (s as usize, *e as usize)))
    }

    /// Splits off the messages at or after `offset`: `(before, from)`.
    pub fn split_at(self, offset: u64) -> (MessageBatch, MessageBatch) {
        let i = self.offsets.partition_point(|o| *o < offset);
        let (mut before, mut from) = (
            MessageBatch { partition: self.partition, ..Default::default() },
            MessageBatch { partition: self.partition, ..Default::default() },
        );
        for (k, (o, payload)) in self.iter().enumerate() {
            if k < i {
                before.push(o, payload)
            } else {
                from.push(o, payload)
            }
        }
        (before, from)
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn push(&mut self, offset: u64, payload: &[u8]) {
        self.offsets.push(offset);
        self.data.extend_from_slice(payload);
        // Payloads are capped far below 4 GiB by Kafka's message.max.bytes.
        self.ends.push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
    }

    fn is_full(&self) -> bool {
        self.offsets.len() >= BATCH_MESSAGES || self.data.len() >= BATCH_BYTES
    }
}

/// What the reader thread sends to its worker.
#[derive(Debug)]
pub enum Fetched {
    Batch(MessageBatch),
    /// A bounded (`until_end`) partition reached its end offset.
    End(u32),
    /// The consumer cannot go on (e.g. a bad configuration).
    Failed(String),
}

/// Where one partition starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest offset the broker still has.
    Beginning,
    /// The offset the consumer group committed (else the beginning).
    Committed,
    Offset(u64),
}

/// One worker's share of the topic.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub topic: String,
    pub partitions: Vec<(u32, StartAt)>,
}

/// Feeds librdkafka's statistics (every few seconds) into the metrics:
/// consumer lag and high offset per partition.
struct StatsContext {
    topic: String,
    metrics: Arc<Metrics>,
}

impl ClientContext for StatsContext {
    fn stats(&self, stats: Statistics) {
        let Some(t) = stats.topics.get(&self.topic) else { return };
        for (id, p) in &t.partitions {
            if let Ok(id) = u32::try_from(*id) {
                if p.consumer_lag >= 0 {
                    self.metrics.observe_partition_lag(id, p.consumer_lag, p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for StatsContext {}

/// Starts the reader of `assignment`; `until_end` bounds each partition by
/// the end offset it had at start.
pub fn spawn(
    cfg: &KafkaSection,
    assignment: Assignment,
    until_end: bool,
    metrics: Arc<Metrics>,
    activator: SyncActivator,
) -> anyhow::Result<(Receiver<Fetched>, JoinHandle<()>)> {
    let context = StatsContext { topic: assignment.topic.clone(), metrics: metrics.clone() };
    let consumer: BaseConsumer<StatsContext> = cfg
        .client_config_with(CONSUMER_DEFAULTS)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create_with_context(context)
        .context("creating the Kafka consumer")?;
    let topic = assignment.topic;
    let committed = if assignment.partitions.iter().any(|(_, s)| *s == StartAt::Committed) {
        let mut tpl = TopicPartitionList::new();
        for (p, _) in &assignment.partitions {
            tpl.add_partition(&topic, *p as i32);
        }
        Some(consumer.committed_offsets(tpl, REQUEST_TIMEOUT).context("reading the group's committed offsets")?)
    } else {
        None
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    let mut next = BTreeMap::new();
    let mut empty = Vec::new();
    let assignment_partitions = assignment.partitions.clone();
    for (p, start) in assignment.partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, p as i32, REQUEST_TIMEOUT)
            .with_context(|| format!("reading the offsets of {topic}/{p}"))?;
        let (low, high) = (u64::try_from(low).unwrap_or(0), u64::try_from(high).unwrap_or(0));
        let wanted = match start {
            StartAt::Beginning => low,
            StartAt::Offset(o) => o,
            StartAt::Committed => match committed.as_ref().and_then(|c| c.find_partition(&topic, p as i32)) {
                Some(e) => match e.offset() {
                    Offset::Offset(o) => u64::try_from(o).unwrap_or(0),
                    _ => low,
                },
                None => low,
            },
        };
        if wanted < low {
            log::warn!(
                "{topic}/{p}: offsets {wanted}..{low} are no longer on the broker (retention); starting at {low}"
            );
        }
        let at = wanted.max(low);
        // Until librdkafka's first statistics: the lag as of the start.
        metrics.observe_partition_lag(p, high.saturating_sub(at) as i64, high as i64);
        tpl.add_partition_offset(&topic, p as i32, Offset::Offset(at as i64)).context("assigning a partition")?;
        next.insert(p, at);
        if until_end {
            if at >= high {
                empty.push(p);
            } else {
                ends.insert(p, high);
            }
        }
    }
    consumer.assign(&tpl).context("assigning partitions to the consumer")?;
    let consumer = Arc::new(consumer);
    let mut queues = Vec::new();
    for (p, _) in &assignment_partitions {
        let own = consumer
            .split_partition_queue(&topic, *p as i32)
            .with_context(|| format!("reading {topic}/{p} on its own queue"))?;
        let batch = BatchQueue::new(consumer.clone(), &topic, *p as i32)
            .with_context(|| format!("opening the fetch queue of {topic}/{p}"))?;
        queues.push(PartitionReader { partition: *p, batch, _own: own });
    }
    let (tx, rx) = bounded(16);
    let handle = std::thread::Builder::new()
        .name("kafka-reader".into())
        .spawn(move || {
            let reader = Reader { consumer, tx, activator, ends, next, until_end, topic };
            reader.run(queues, empty)
        })
        .context("starting the Kafka reader thread")?;
    Ok((rx, handle))
}

/// One partition's queue, read many messages at a time.
struct PartitionReader {
    partition: u32,
    batch: BatchQueue<StatsContext>,
    /// The queue `split_partition_queue` made: while it lives, librdkafka
    /// keeps the partition's messages off the consumer's main queue.
    _own: PartitionQueue<StatsContext>,
}

/// Messages taken from a partition's queue at once.
const POP: usize = 512;

struct Reader {
    consumer: Arc<BaseConsumer<StatsContext>>,
    tx: Sender<Fetched>,
    activator: SyncActivator,
    /// With `until_end`: the end offset of each partition not yet finished.
    ends: BTreeMap<u32, u64>,
    /// The next offset of each partition: with `until_end`, no message at
    /// or past the end is taken from the queue (taking it would move the
    /// group's read position past what was read).
    next: BTreeMap<u32, u64>,
    until_end: bool,
    topic: String,
}

/// How often the read position is committed to the consumer group.
const COMMIT_EVERY: Duration = Duration::from_secs(5);

impl Reader {
    /// Reads the partitions in turn, a batch from each, so that they all
    /// move forward together in event time: a partition that delivers
    /// nothing holds the watermark back, so reading one partition's
    /// prefetched megabytes before the next would stall every window.
    /// `empty`: bounded partitions with nothing to read; they end at once.
    fn run(mut self, queues: Vec<PartitionReader>, empty: Vec<u32>) {
        let mut last_warning = None::<Instant>;
        let mut last_commit = Instant::now();
        for p in empty {
            if !self.send(Fetched::End(p)) {
                return;
            }
        }
        let mut queues: Vec<_> =
            queues.into_iter().filter(|q| !self.until_end || self.ends.contains_key(&q.partition)).collect();
        loop {
            if self.until_end && self.ends.is_empty() {
                return;
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                self.commit_read();
                last_commit = Instant::now();
            }
            let mut got = 0usize;
            let mut finished = Vec::new();
            for q in &mut queues {
                let p = q.partition;
                let mut batch = MessageBatch { partition: p, ..Default::default() };
                let mut ended = false;
                'fill: while !batch.is_full() && !ended {
                    let room = match (self.ends.get(&p), self.next.get(&p)) {
                        (Some(end), Some(next)) => POP.min(usize::try_from(end.saturating_sub(*next)).unwrap_or(POP)),
                        _ => POP,
                    };
                    // Every message taken is handled: the queue has let go of it.
                    let (mut popped, mut pause, mut last) = (0usize, false, None);
                    let end = self.ends.get(&p).copied();
                    for m in q.batch.pop(room.max(1)) {
                        popped += 1;
                        match m {
                            Ok((offset, payload)) => {
                                batch.push(offset, payload);
                                last = Some(offset);
                                ended = end.is_some_and(|end| offset + 1 >= end);
                            }
                            Err(RDKafkaErrorCode::PartitionEOF) => pause = true,
                            Err(code) => {
                                if !self.on_error(KafkaError::MessageConsumption(code), &mut last_warning) {
                                    return;
                                }
                                pause = true;
                            }
                        }
                    }
                    if let Some(last) = last {
                        self.next.insert(p, last + 1);
                    }
                    if popped == 0 || pause {
                        break 'fill;
                    }
                }
                got += batch.offsets.len();
                if !batch.is_empty() && !self.send(Fetched::Batch(batch)) {
                    return;
                }
                if ended {
                    self.ends.remove(&p);
                    finished.push(p);
                    if !self.send(Fetched::End(p)) {
                        return;
                    }
                }
            }
            queues.retain(|q| !finished.contains(&q.partition));
            // Serves statistics and errors; waits a little when there was nothing to read.
            let wait = if got == 0 { Duration::from_millis(5) } else { Duration::ZERO };
            match self.consumer.poll(wait) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Ok(m)) => log::warn!("kafka: unexpected message of partition {} on the main queue", m.partition()),
                Some(Err(e)) => {
                    if !self.on_error(e, &mut last_warning) {
                        return;
                    }
                }
            }
        }
    }

    /// Logs a consumer error (sparingly: librdkafka retries and reconnects
    /// by itself); false if it is fatal and the reader stops.
    fn on_error(&self, e: KafkaError, last_warning: &mut Option<Instant>) -> bool {
        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            log::warn!("kafka consumer: {e}");
            *last_warning = Some(Instant::now());
        }
        if is_fatal(&e) {
            let _ = self.send(Fetched::Failed(format!("kafka consumer: {e}")));
            return false;
        }
        true
    }

    /// Tells the group how far this reader got, so Kafka's own tools show
    /// clickwatch's lag. Restarts never rely on it when archiving: the
    /// archive's commit log is what says which offsets are done.
    fn commit_read(&self) {
        if let Ok(tpl) = self.consumer.position() {
            let read: Vec<_> = tpl
                .elements()
                .iter()
                .filter(|e| matches!(e.offset(), Offset::Offset(_)))
                .map(|e| (e.partition(), e.offset()))
                .collect();
            if read.is_empty() {
                return;
            }
            let mut commit = TopicPartitionList::new();
            for (p, o) in read {
                let _ = commit.add_partition_offset(&self.topic, p, o);
            }
            if let Err(e) = self.consumer.commit(&commit, CommitMode::Async) {
                log::debug!("kafka: committing read offsets: {e}");
            }
        }
    }

    /// False once the worker is gone (the run is stopping).
    fn send(&self, f: Fetched) -> bool {
        let ok = self.tx.send(f).is_ok();
        ok && self.activator.activate().is_ok()
    }
}

/// Errors no retry will fix.
fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::InvalidConfig
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_payload_boundaries() {
        let mut b = MessageBatch { partition: 3, ..Default::default() };
        b.push(10, b"{\"a\":1}");
        b.push(11, b"");
        b.push(12, b"x\ny");
        let got: Vec<(u64, &[u8])> = b.iter().collect();
        assert_eq!(got, vec![(10, &b"{\"a\":1}"[..]), (11, &b""[..]), (12, &b"x\ny"[..])]);
        let (before, from) = b.clone().split_at(11);
        assert_eq!(before.iter().collect::<Vec<_>>(), vec![(10, &b"{\"a\":1}"[..])]);
        assert_eq!(from.iter().collect::<Vec<_>>(), vec![(11, &b""[..]), (12, &b"x\ny"[..])]);
        assert!(b.clone().split_at(100).1.is_empty() && b.split_at(0).0.is_empty());
    }
}
