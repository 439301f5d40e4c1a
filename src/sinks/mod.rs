//! Where results go: alert sinks (console, JSONL file, webhook; Kafka comes
//! with the Kafka source) and record files (dead letters, late events,
//! window counts).
//!
//! [`AlertSinks`] is built once from the validated sink configuration and
//! fans each alert out to every configured sink. It runs on one worker
//! (alerts are exchanged to worker 0), so sinks need no locking of their own.

pub mod console;
pub mod jsonl;
pub mod webhook;

use std::sync::Arc;

use crate::alert::Alert;
use crate::config::SinksSection;
use crate::metrics::Metrics;
use jsonl::JsonlFile;
use webhook::WebhookSink;

pub struct AlertSinks {
    console: bool,
    file: Option<JsonlFile>,
    webhook: Option<WebhookSink>,
    metrics: Arc<Metrics>,
}

impl AlertSinks {
    pub fn build(cfg: &SinksSection, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        Ok(AlertSinks {
            console: cfg.console,
            file: cfg.alerts_file.as_deref().map(JsonlFile::create).transpose()?,
            webhook: cfg.webhook.as_ref().map(|w| WebhookSink::start(w, metrics.clone())).transpose()?,
            metrics,
        })
    }

    pub fn emit(&mut self, alert: &Alert) -> anyhow::Result<()> {
        self.metrics.add_alert(alert.status);
        if self.console {
            console::print(alert);
        }
        if self.file.is_none() && self.webhook.is_none() {
            return Ok(());
        }
        let line = alert.to_json_line();
        if let Some(f) = &mut self.file {
            f.write_line(&line)?;
        }
        if let Some(w) = &self.webhook {
            w.send(line);
        }
        Ok(())
    }

    /// Makes emitted alerts visible to readers of the file.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
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
        Ok(())
    }
}
