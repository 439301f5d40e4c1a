//! Speed-layer configuration: TOML file, environment and flags, validated
//! once at start (SPEC §6).
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config`,
//! or `CLICKWATCH_CONFIG`), then environment variables and flags (clap
//! reads `CLICKWATCH_*` for every flag; a flag given on the command line
//! wins over its variable). Unknown keys in the file are errors, and every
//! error names the key it is about, so a typo fails loudly at start rather
//! than silently using a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::alert::{EmitMode, FlashSaleRule};
use crate::event::{Limits, Micros};
use crate::sinks::webhook::WebhookConfig;
use crate::window::clock::ClockConfig;
use crate::window::WindowSpec;

/// A configuration problem, naming the key at fault. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// More panes per window than this would make every event update touch
/// too much state; 1 s slides on a 1 day window are already 86 400.
pub const MAX_PANES: i64 = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowSection {
    #[serde(with = "humantime_serde")]
    pub length: Duration,
    #[serde(with = "humantime_serde")]
    pub slide: Duration,
    #[serde(with = "humantime_serde")]
    pub watermark_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for WindowSection {
    fn default() -> Self {
        WindowSection {
            length: Duration::from_secs(600),
            slide: Duration::from_secs(300),
            watermark_delay: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSection {
    pub min_views: u64,
    pub max_purchases: u64,
    pub emit: EmitMode,
}

impl Default for AlertSection {
    fn default() -> Self {
        let r = FlashSaleRule::default();
        AlertSection { min_views: r.min_views, max_purchases: r.max_purchases, emit: EmitMode::OnClose }
    }
}

/// Largest accepted `input.max_event_bytes`: a line is no clickstream event
/// long before that.
pub const MAX_EVENT_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSection {
    pub max_event_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
}

impl Default for InputSection {
    fn default() -> Self {
        InputSection { max_event_bytes: 1 << 20, max_future_skew: Duration::from_secs(300) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksSection {
    /// Human-readable alerts on stdout.
    pub console: bool,
    pub alerts_file: Option<PathBuf>,
    /// Refused inputs, one JSON object per line. Never optional: refused
    /// input is never silently dropped (SPEC §2).
    pub dead_letter: PathBuf,
    /// Late events; defaults to the dead-letter file.
    pub late_file: Option<PathBuf>,
    /// Counts of every closed (window, product), JSONL, for dashboards.
    pub window_counts: Option<PathBuf>,
    pub webhook: Option<WebhookConfig>,
    /// Add to the record files instead of replacing them: set for sources
    /// that resume where a previous run stopped (Kafka), not from the file.
    #[serde(skip)]
    pub append: bool,
}

impl Default for SinksSection {
    fn default() -> Self {
        SinksSection {
            console: true,
            alerts_file: None,
            dead_letter: PathBuf::from("dead-letters.jsonl"),
            late_file: None,
            window_counts: None,
            webhook: None,
            append: false,
        }
    }
}

/// The whole file. Sections may be omitted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    pub window: WindowSection,
    pub alert: AlertSection,
    pub input: InputSection,
    pub sinks: SinksSection,
    /// The Parquet archive; off unless configured or `--archive` is given.
    pub archive: Option<crate::archive::ArchiveConfig>,
    /// Kafka source and alert topic settings (used with `--kafka`).
    pub kafka: crate::kafka::KafkaSection,
    /// The HTTP endpoint (metrics, API); off unless an address is given.
    pub http: crate::serve::HttpSection,
}

fn micros(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

impl StreamConfig {
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml_str(&text, path)
    }

    /// Checks every value and derives what the engine uses.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let w = &self.window;
        if w.slide.is_zero() {
            return Err(invalid("window.slide", "must be positive"));
        }
        if w.length.is_zero() {
            return Err(invalid("window.length", "must be positive"));
        }
        if !w.slide.as_micros().is_multiple_of(1_000_000) || !w.length.as_micros().is_multiple_of(1_000_000) {
            return Err(invalid("window.slide", "window length and slide must be whole seconds"));
        }
        let (length, slide) = (micros(w.length), micros(w.slide));
        let spec = WindowSpec::new(length, slide).ok_or_else(|| {
            invalid(
                "window.length",
                format!(
                    "must be a positive multiple of window.slide (length {}, slide {})",
                    humantime::format_duration(w.length),
                    humantime::format_duration(w.slide)
                ),
            )
        })?;
        if length / slide > MAX_PANES {
            return Err(invalid("window.slide", format!("window.length / window.slide must be at most {MAX_PANES}")));
        }
        if self.alert.max_purchases == 0 {
            return Err(invalid("alert.max_purchases", "must be at least 1 (the rule is purchases < max_purchases)"));
        }
        if self.input.max_event_bytes == 0 {
            return Err(invalid("input.max_event_bytes", "must be positive"));
        }
        // Positions within a chunk are 32-bit (see `sources::ingest::Sighting`).
        if self.input.max_event_bytes > MAX_EVENT_BYTES {
            return Err(invalid("input.max_event_bytes", "must be at most 1073741824 (1 GiB)"));
        }
        if let Some(hook) = &self.sinks.webhook {
            hook.validate()?;
        }
        if let Some(archive) = &self.archive {
            archive.validate()?;
        }
        self.http.socket_addr()?;
        Ok(Validated {
            clock: ClockConfig { spec, delay: micros(w.watermark_delay), idle_timeout: micros(w.idle_timeout) },
            rule: FlashSaleRule { min_views: self.alert.min_views, max_purchases: self.alert.max_purchases },
            emit: self.alert.emit,
            limits: Limits {
                max_event_bytes: self.input.max_event_bytes,
                max_future_skew: Some(micros(self.input.max_future_skew)),
            },
        })
    }
}

/// What the dataflow needs, derived from a valid configuration.
#[derive(Debug, Clone, Copy)]
pub struct Validated {
    pub clock: ClockConfig,
    pub rule: FlashSaleRule,
    pub emit: EmitMode,
    /// Limits for live sources; bounded replays drop `max_future_skew`.
    pub limits: Limits,
}

impl Validated {
    pub fn spec(&self) -> WindowSpec {
        self.clock.spec
    }
}

/// Parses a duration flag like `10m`, `90s`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 10m, 90s, 1h30m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Validated, ConfigError> {
        StreamConfig::from_toml_str(text, Path::new("t.toml"))?.validate()
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let v = parse("").unwrap();
        assert_eq!(v.spec().length(), 600_000_000);
        assert_eq!(v.spec().slide(), 300_000_000);
        assert_eq!(v.clock.delay, 120_000_000);
        assert_eq!(v.clock.idle_timeout, 30_000_000);
        assert_eq!(v.rule, FlashSaleRule::default());
        assert_eq!(v.emit, EmitMode::OnClose);
    }

    #[test]
    fn full_file() {
        let v = parse(
            r#"
            [window]
            length = "15m"
            slide = "5m"
            watermark_delay = "1m"
            [alert]
            min_views = 50
            max_purchases = 2
            emit = "early"
            [sinks]
            console = false
            alerts_file = "a.jsonl"
            [sinks.webhook]
            url = "http://127.0.0.1:9/hook"
            retries = 2
            "#,
        )
        .unwrap();
        assert_eq!(v.spec().panes(), 3);
        assert_eq!(v.rule.min_views, 50);
        assert_eq!(v.emit, EmitMode::Early);
    }

    #[test]
    fn errors_name_the_key() {
        let msg = |t: &str| parse(t).unwrap_err().to_string();
        assert!(msg("[window]\nlength = \"7m\"").contains("window.length"));
        assert!(msg("[window]\nslide = \"0s\"").contains("window.slide"));
        assert!(msg("[window]\nlenght = \"7m\"").contains("lenght"));
        assert!(msg("[window]\nlength = \"soon\"").contains("length"));
        assert!(msg("[alert]\nmax_purchases = 0").contains("alert.max_purchases"));
        assert!(msg("[alert]\nemit = \"sometimes\"").contains("emit"));
        assert!(msg("[sinks.webhook]\nurl = \"ftp://x\"").contains("sinks.webhook.url"));
        assert!(msg("[input]\nmax_event_bytes = 2147483648").contains("input.max_event_bytes"));
    }
}
