//! HTTP webhook alert sink: POSTs each alert as JSON from its own thread.
//!
//! The dataflow must never wait on a remote endpoint, so alerts are handed
//! over through a bounded queue with `try_send`: when the queue is full the
//! alert is spilled to a file at once instead of blocking. The delivery
//! thread retries each alert with exponential backoff; an alert that still
//! fails is spilled. On shutdown, delivery continues for at most
//! `shutdown_grace`, then whatever is left is spilled. Every alert is thus
//! either delivered or in the spill file, and counted either way.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::Deserialize;

use super::jsonl::JsonlFile;
use crate::config::ConfigError;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Per request, connect to last byte.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// Attempts after the first one.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff; doubled after each failed attempt.
    #[serde(with = "humantime_serde", default = "default_backoff")]
    pub backoff: Duration,
    /// Where undeliverable alerts go.
    #[serde(default = "default_spill")]
    pub spill_file: PathBuf,
    /// Alerts waiting for delivery before new ones are spilled directly.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// How long delivery may go on after the stream has ended.
    #[serde(with = "humantime_serde", default = "default_grace")]
    pub shutdown_grace: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_spill() -> PathBuf {
    PathBuf::from("webhook-spill.jsonl")
}
fn default_queue() -> usize {
    10_000
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}

impl WebhookConfig {
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            timeout: default_timeout(),
            retries: default_retries(),
            backoff: default_backoff(),
            spill_file: default_spill(),
            queue: default_queue(),
            shutdown_grace: default_grace(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| ConfigError::Invalid { key, message: message.to_string() };
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(bad("sinks.webhook.url", "must start with http:// or https://"));
        }
        if self.timeout.is_zero() {
            return Err(bad("sinks.webhook.timeout", "must be positive"));
        }
        if self.retries > 20 {
            return Err(bad("sinks.webhook.retries", "must be at most 20"));
        }
        if self.queue == 0 {
            return Err(bad("sinks.webhook.queue", "must be positive"));
        }
        Ok(())
    }
}

/// The dataflow side of the webhook: a queue and the delivery thread.
pub struct WebhookSink {
    tx: Option<Sender<String>>,
    spill: Arc<std::sync::Mutex<JsonlFile>>,
    metrics: Arc<Metrics>,
    thread: Option<JoinHandle<()>>,
    shutdown_at: Arc<std::sync::Mutex<Option<Instant>>>,
    grace: Duration,
}

impl WebhookSink {
    pub fn start(cfg: &WebhookConfig, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let spill = Arc::new(std::sync::Mutex::new(JsonlFile::append(&cfg.spill_file)?));
        let (tx, rx) = bounded(cfg.queue);
        let shutdown_at = Arc::new(std::sync::Mutex::new(None));
        let worker = Delivery {
            cfg: cfg.clone(),
            agent: ureq::Agent::config_builder().timeout_global(Some(cfg.timeout)).build().into(),
            spill: spill.clone(),
            metrics: metrics.clone(),
            shutdown_at: shutdown_at.clone(),
        };
        let thread = std::thread::Builder::new().name("webhook".into()).spawn(move || worker.run(rx))?;
        Ok(WebhookSink { tx: Some(tx), spill, metrics, thread: Some(thread), shutdown_at, grace: cfg.shutdown_grace })
    }

    /// Queues one alert (a JSON line); never blocks.
    pub fn send(&self, json: String) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(json) {
            Ok(()) => {}
            Err(TrySendError::Full(json)) | Err(TrySendError::Disconnected(json)) => {
                spill(&self.spill, &self.metrics, &json);
            }
        }
    }

    /// Delivers what is queued within the grace period, spills the rest,
    /// and syncs the spill file.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Ok(mut at) = self.shutdown_at.lock() {
            *at = Some(Instant::now() + self.grace);
        }
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| anyhow::anyhow!("webhook delivery thread panicked"))?;
        }
        let mut f = self.spill.lock().map_err(|_| anyhow::anyhow!("webhook spill lock poisoned"))?;
        f.sync()
    }
}

fn spill(file: &std::sync::Mutex<JsonlFile>, metrics: &Metrics, json: &str) {
    metrics.webhook_spilled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match file.lock() {
        Ok(mut f) => {
            if let Err(e) = f.write_line(json) {
                log::error!("webhook: cannot spill alert: {e:#}");
            }
        }
        Err(_) => log::error!("webhook: spill file lock poisoned"),
    }
}

struct Delivery {
    cfg: WebhookConfig,
    agent: ureq::Agent,
    spill: Arc<std::sync::Mutex<JsonlFile>>,
    metrics: Arc<Metrics>,
    shutdown_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Delivery {
    fn past_grace(&self) -> bool {
        matches!(self.shutdown_at.lock().ok().and_then(|g| *g), Some(t) if Instant::now() >= t)
    }

    fn run(self, rx: Receiver<String>) {
        use std::sync::atomic::Ordering::Relaxed;
        for json in rx {
            if self.past_grace() {
                spill(&self.spill, &self.metrics, &json);
                continue;
            }
            let mut backoff = self.cfg.backoff;
            let mut attempt = 0;
            loop {
                match self.agent.post(&self.cfg.url).content_type("application/json").send(&json) {
                    Ok(_) => {
                        self.metrics.webhook_delivered.fetch_add(1, Relaxed);
                        break;
                    }
                    Err(e) if attempt < self.cfg.retries && !self.past_grace() => {
                        log::warn!("webhook {}: {e}; retrying in {backoff:?}", self.cfg.url);
                        self.metrics.webhook_retries.fetch_add(1, Relaxed);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        attempt += 1;
                    }
                    Err(e) => {
                        log::error!(
                            "webhook {}: {e}; alert spilled to {}",
                            self.cfg.url,
                            self.cfg.spill_file.display()
                        );
                        spill(&self.spill, &self.metrics, &json);
                        break;
                    }
                }
            }
        }
    }
}
