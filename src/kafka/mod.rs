//! Kafka: the `[kafka]` configuration section and what every Kafka client
//! of clickwatch shares (the source's consumers, the generator's producer,
//! the alert-topic sink, topic administration).
//!
//! Security and tuning settings are librdkafka properties passed through as
//! they are (`[kafka.properties]`: `security.protocol`, `sasl.*`, `ssl.*`,
//! ...), so whatever a broker needs can be configured without a release of
//! clickwatch. clickwatch sets only the properties its guarantees depend on.

mod batch_queue;
pub mod consumer;
pub mod producer;
pub mod resume;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::config::ConfigError;

/// How long metadata and admin requests may take before we give up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `[kafka]`: where the source reads and the alert sink writes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: Option<String>,
    /// The clickstream topic the source reads.
    pub topic: Option<String>,
    /// Consumer group. Partitions are assigned by clickwatch (to workers),
    /// not by the group protocol; the group receives the archived offsets,
    /// so the usual tools show clickwatch's lag.
    pub group: String,
    /// Stop once every partition reaches the end offset it had at start:
    /// a bounded replay of the topic (exit 0 with every window closed).
    pub until_end: bool,
    /// Where alerts go as JSON (key = `alert_id`); off when unset.
    pub alerts_topic: Option<String>,
    /// How often (at most) the mark of delivered alerts is advanced; each
    /// advance waits for the alert sinks to deliver. Shorter: less to
    /// re-read after a crash; longer: fewer flushes.
    #[serde(with = "humantime_serde")]
    pub mark_every: Duration,
    /// librdkafka properties for every client, e.g. `"security.protocol" = "SASL_SSL"`.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: None,
            topic: None,
            group: "clickwatch".into(),
            until_end: false,
            alerts_topic: None,
            mark_every: Duration::from_secs(2),
            properties: BTreeMap::new(),
        }
    }
}

/// Properties clickwatch sets itself; overriding them would break a guarantee.
const RESERVED: &[&str] =
    &["bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "enable.idempotence"];

impl KafkaSection {
    /// Checks the section when a Kafka source or sink is in use.
    pub fn validate(&self, source: bool) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid { key, message: message.into() };
        if self.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
            return Err(invalid("kafka.brokers", "is required with a Kafka source or alert topic (--kafka)"));
        }
        if source && self.topic.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("kafka.topic", "is required with a Kafka source (--topic)"));
        }
        if self.mark_every.is_zero() {
            return Err(invalid("kafka.mark_every", "must be positive"));
        }
        if self.group.is_empty() {
            return Err(invalid("kafka.group", "must not be empty"));
        }
        if let Some(key) = self.properties.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(ConfigError::Invalid {
                key: "kafka.properties",
                message: format!("{key} is set by clickwatch (use kafka.brokers / kafka.group)"),
            });
        }
        Ok(())
    }

    /// A client configuration with the brokers and the pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[])
    }

    /// Like [`client_config`](Self::client_config), over clickwatch's tuning
    /// `defaults`, which the pass-through properties may override.
    pub fn client_config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", self.brokers.as_deref().unwrap_or_default());
        c
    }

    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or_default()
    }
}

/// The partition ids of `topic`, sorted; an error if it does not exist.
pub fn partitions(cfg: &KafkaSection, topic: &str) -> anyhow::Result<Vec<i32>> {
    let consumer: BaseConsumer = cfg.client_config().create().context("creating a Kafka client")?;
    let md = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("reading metadata of topic {topic} from {}", cfg.brokers.as_deref().unwrap_or("")))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} not found");
    };
    if let Some(e) = t.error() {
        bail!("topic {topic}: {:?}", rdkafka::error::RDKafkaErrorCode::from(e));
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    Ok(ids)
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub fn ensure_topic(cfg: &KafkaSection, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config().create().context("creating a Kafka admin")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics([&new], &opts))
        .with_context(|| format!("creating topic {topic}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// The partitions worker `index` of `peers` reads: every `peers`-th one,
/// so a topic's partitions spread evenly over the whole cluster.
pub fn owned_by(all: &[i32], index: usize, peers: usize) -> Vec<i32> {
    all.iter().copied().enumerate().filter(|(i, _)| i % peers == index).map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_workers() {
        let all: Vec<i32> = (0..6).collect();
        assert_eq!(owned_by(&all, 0, 4), vec![0, 4]);
        assert_eq!(owned_by(&all, 3, 4), vec![3]);
        let mut union: Vec<i32> = (0..4).flat_map(|i| owned_by(&all, i, 4)).collect();
        union.sort_unstable();
        assert_eq!(union, all);
        assert!(owned_by(&all[..1], 1, 2).is_empty());
    }

    #[test]
    fn reserved_properties_are_refused_with_their_key() {
        let mut k = KafkaSection { brokers: Some("b:9092".into()), topic: Some("t".into()), ..Default::default() };
        assert!(k.validate(true).is_ok());
        k.properties.insert("group.id".into(), "x".into());
        let err = k.validate(true).unwrap_err().to_string();
        assert!(err.contains("kafka.properties") && err.contains("group.id"), "{err}");
        let none = KafkaSection::default().validate(false).unwrap_err().to_string();
        assert!(none.contains("kafka.brokers"), "{none}");
    }
}
