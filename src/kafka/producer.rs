//! `generate --kafka`: the generator's lines as Kafka messages.
//!
//! Keys decide partitions (librdkafka's default consistent hash of the key),
//! so keying by `product_id` keeps each product — and every duplicate of an
//! event — in one partition, in order. The producer is idempotent, so
//! retries after a broker hiccup neither duplicate nor reorder messages.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::KafkaSection;
use crate::generate::{EventLines, GenerateConfig, GenerateStats, Pacer};

/// Which field of an event is the message key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyField {
    ProductId,
    UserId,
    /// No key: librdkafka spreads messages over partitions.
    None,
}

impl KeyField {
    /// The key of one generated line. A byte scan, not a JSON parse: the
    /// generator writes `"product_id":"…"` verbatim. Malformed lines may
    /// have no key at all.
    fn of<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let field: &[u8] = match self {
            KeyField::ProductId => b"\"product_id\":\"",
            KeyField::UserId => b"\"user_id\":\"",
            KeyField::None => return None,
        };
        let start = memchr::memmem::find(line, field)? + field.len();
        let len = memchr::memchr(b'"', &line[start..])?;
        Some(&line[start..start + len])
    }
}

/// Counts messages librdkafka gave up on (after its own retries), so a
/// producer never reports success for messages that were not delivered.
#[derive(Default)]
pub struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    /// An error if any message failed, naming the first failure.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.failed.load(Relaxed) {
            0 => Ok(()),
            n => {
                let first = self.first_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
                bail!("{n} messages were not delivered (first error: {first})")
            }
        }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Relaxed);
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

pub type CheckedProducer = BaseProducer<Deliveries>;

/// A producer for `cfg`'s brokers with clickwatch's delivery settings.
pub fn producer(cfg: &KafkaSection) -> anyhow::Result<CheckedProducer> {
    cfg.client_config_with(&[
        ("linger.ms", "20"),
        ("batch.size", "1000000"),
        ("compression.type", "lz4"),
        ("queue.buffering.max.kbytes", "262144"),
    ])
    .set("enable.idempotence", "true")
    .create_with_context(Deliveries::default())
    .context("creating the Kafka producer")
}

/// Sends one record, waiting for room in librdkafka's queue when it is full.
pub fn send(producer: &CheckedProducer, topic: &str, key: Option<&[u8]>, payload: &[u8]) -> anyhow::Result<()> {
    loop {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => bail!("producing to {topic}: {e}"),
        }
    }
}

/// Produces the generator's lines to `topic`; returns what was generated.
pub fn produce(
    cfg: &KafkaSection,
    topic: &str,
    key: KeyField,
    gen: &GenerateConfig,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<GenerateStats> {
    let producer = producer(cfg)?;
    let mut lines = EventLines::new(gen);
    let pacer = gen.rate.map(Pacer::new);
    let mut buf = Vec::with_capacity(512);
    while lines.next_into(&mut buf).is_some() {
        send(&producer, topic, key.of(&buf), &buf)?;
        let done = lines.stats().lines;
        if done.is_multiple_of(16_384) {
            producer.poll(Duration::ZERO);
            progress(done);
        }
        if let Some(wait) = pacer.as_ref().and_then(|p| p.delay(done)) {
            producer.poll(Duration::ZERO);
            std::thread::sleep(wait);
        }
    }
    producer.flush(Duration::from_secs(120)).with_context(|| format!("delivering the last messages to {topic}"))?;
    producer.context().check().with_context(|| format!("producing to {topic}"))?;
    progress(lines.stats().lines);
    Ok(*lines.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scanned_from_lines() {
        let line = br#"{"user_id":"u7","product_id":"p42","event_type":"view"}"#;
        assert_eq!(KeyField::ProductId.of(line), Some(&b"p42"[..]));
        assert_eq!(KeyField::UserId.of(line), Some(&b"u7"[..]));
        assert_eq!(KeyField::None.of(line), None);
        assert_eq!(KeyField::ProductId.of(b"{\"product_id\":\"trunc"), None);
    }
}
