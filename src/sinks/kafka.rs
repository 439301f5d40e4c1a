//! Alerts to a Kafka topic: one JSON message per alert, key = `alert_id`.
//!
//! No duplicates after a restart: on start the sink reads the topic back
//! and remembers every (alert_id, status) already there. A restarted
//! stream recomputes its windows deterministically, so an alert that was
//! produced before a crash is recognised by its id and not produced again,
//! however far the crash was from the last flush.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::alert::Alert;
use crate::kafka::producer::{producer, send, CheckedProducer};
use crate::kafka::{ensure_topic, partitions, KafkaSection, REQUEST_TIMEOUT};

pub struct KafkaAlertSink {
    producer: CheckedProducer,
    topic: String,
    /// (alert_id, status) of every alert already on the topic.
    delivered: HashSet<(String, String)>,
    /// Alerts not produced again because the topic already had them.
    pub skipped: u64,
}

impl KafkaAlertSink {
    /// Connects, creating the topic if needed, and reads back what is on it.
    pub fn start(cfg: &KafkaSection, topic: &str) -> anyhow::Result<Self> {
        ensure_topic(cfg, topic, 1)?;
        let delivered = read_back(cfg, topic).with_context(|| format!("reading back alert topic {topic}"))?;
        if !delivered.is_empty() {
            log::info!("alert topic {topic}: {} alerts already delivered", delivered.len());
        }
        Ok(KafkaAlertSink { producer: producer(cfg)?, topic: topic.to_owned(), delivered, skipped: 0 })
    }

    pub fn emit(&mut self, alert: &Alert, line: &str) -> anyhow::Result<()> {
        if self.delivered.contains(&(alert.alert_id.clone(), alert.status.as_str().to_owned())) {
            self.skipped += 1;
            return Ok(());
        }
        send(&self.producer, &self.topic, Some(alert.alert_id.as_bytes()), line.as_bytes())
    }

    /// Serves delivery reports; cheap, called after each batch of alerts.
    pub fn flush(&mut self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until every alert so far is acknowledged by the broker.
    pub fn deliver(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(60))
            .with_context(|| format!("delivering alerts to topic {}", self.topic))?;
        self.producer.context().check().with_context(|| format!("alert topic {}", self.topic))
    }

    /// Waits until every alert is acknowledged by the broker.
    pub fn finish(self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(60))
            .with_context(|| format!("delivering alerts to topic {}", self.topic))?;
        self.producer.context().check().with_context(|| format!("alert topic {}", self.topic))
    }
}

/// Every (alert_id, status) on `topic`, read from the beginning to the end
/// offsets it has now.
fn read_back(cfg: &KafkaSection, topic: &str) -> anyhow::Result<HashSet<(String, String)>> {
    let consumer: BaseConsumer = cfg
        .client_config()
        .set("group.id", format!("{}-alerts-readback", cfg.group))
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0usize;
    let mut ends = std::collections::HashMap::new();
    for p in partitions(cfg, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT)?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
            remaining += 1;
        }
    }
    let mut seen = HashSet::new();
    if remaining == 0 {
        return Ok(seen);
    }
    consumer.assign(&tpl)?;
    while remaining > 0 {
        let Some(m) = consumer.poll(REQUEST_TIMEOUT) else {
            anyhow::bail!("timed out reading the topic back");
        };
        let m = m?;
        let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
        let id = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        if let (Some(id), Some(status)) = (id, value.get("status").and_then(|s| s.as_str())) {
            seen.insert((id, status.to_owned()));
        }
        if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
            remaining -= 1;
        }
    }
    Ok(seen)
}
