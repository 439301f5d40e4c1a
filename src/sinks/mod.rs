//! Where results go: alert sinks (console, JSONL file, webhook, Kafka
//! topic) and record files (dead letters, late events,
//! window counts).
//!
//! [`AlertSinks`] is built once from the validated sink configuration and
//! fans each alert out to every configured sink. It runs on one worker
//! (alerts are exchanged to worker 0), so sinks need no locking of their own.

pub mod console;
pub mod jsonl;
pub mod kafka;
pub mod webhook;

use std::sync::Arc;

use crate::alert::Alert;
use crate::config::SinksSection;
use crate::kafka::KafkaSection;
use crate::metrics::Metrics;
use crate::serve::RecentAlerts;
use jsonl::JsonlFile;
use kafka::KafkaAlertSink;
use webhook::WebhookSink;

pub struct AlertSinks {
    console: bool,
    file: Option<JsonlFile>,
    webhook: Option<WebhookSink>,
    kafka: Option<KafkaAlertSink>,
    /// The HTTP API's view of recent alerts.
    recent: Option<Arc<RecentAlerts>>,
    metrics: Arc<Metrics>,
}

impl AlertSinks {
    /// `kafka`: the client settings, whose `alerts_topic` (if set) is a sink.
    pub fn build(cfg: &SinksSection, kafka: Option<&KafkaSection>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let topic = kafka.and_then(|k| k.alerts_topic.as_deref().map(|t| (k, t)));
        Ok(AlertSinks {
            console: cfg.console,
            file: cfg.alerts_file.as_deref().map(|p| JsonlFile::open(p, cfg.append)).transpose()?,
            webhook: cfg.webhook.as_ref().map(|w| WebhookSink::start(w, metrics.clone())).transpose()?,
            kafka: topic.map(|(k, t)| KafkaAlertSink::start(k, t)).transpose()?,
            recent: None,
            metrics,
        })
    }

    /// Also keeps each alert in `recent` (for `/api/alerts`).
    pub fn with_recent(mut self, recent: Option<Arc<RecentAlerts>>) -> Self {
        self.recent = recent;
        self
    }

    pub fn emit(&mut self, alert: &Alert) -> anyhow::Result<()> {
        self.metrics.add_alert(alert.status);
        if let Some(r) = &self.recent {
            r.push(alert);
        }
        if self.console {
            console::print(alert);
        }
        if self.file.is_none() && self.webhook.is_none() && self.kafka.is_none() {
            return Ok(());
        }
        let line = alert.to_json_line();
        if let Some(f) = &mut self.file {
            f.write_line(&line)?;
        }
        if let Some(k) = &mut self.kafka {
            k.emit(alert, &line)?;
        }
        if let Some(w) = &self.webhook {
            w.send(line);
        }
        Ok(())
    }

    /// Makes emitted alerts visible to readers of the file.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(k) = &mut self.kafka {
            k.flush();
        }
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Waits until what was emitted is delivered: acknowledged by Kafka,
    /// on disk in the file. (The webhook is best effort: it has its own
    /// retries and spill file.)
    pub fn deliver(&mut self) -> anyhow::Result<()> {
        if let Some(k) = &mut self.kafka {
            k.deliver()?;
        }
        match &mut self.file {
            Some(f) => f.sync(),
            None => Ok(()),
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        if let Some(f) = self.file {
            f.finish()?;
        }
        if let Some(w) = self.webhook {
            w.finish()?;
        }
        if let Some(k) = self.kafka {
            self.metrics.kafka_alerts_skipped.fetch_add(k.skipped, std::sync::atomic::Ordering::Relaxed);
            k.finish()?;
        }
        Ok(())
    }
}
