//! `clickwatch generate`: the synthetic clickstream, to a file or stdout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use crate::cli::GenerateArgs;
use crate::config::ConfigError;
use crate::event::timestamp;
use crate::generate::{self, GenerateConfig, GenerateStats, Profile};

/// Validated generator settings from the flags.
pub fn config(args: &GenerateArgs) -> Result<GenerateConfig, ConfigError> {
    let invalid = |key, message: String| ConfigError::Invalid { key, message };
    let profile: Profile = args
        .profile
        .parse()
        .map_err(|_| invalid("profile", format!("expected uniform or skewed, got {:?}", args.profile)))?;
    let start = timestamp::parse_str(&args.start).map_err(|e| invalid("start", e.0))?;
    let cfg = GenerateConfig {
        events: args.events,
        seed: args.seed,
        profile,
        start_ms: start / 1000,
        span_ms: i64::try_from(args.span.as_millis()).unwrap_or(i64::MAX),
        products: args.products,
        users: args.users,
        hot_products: args.hot_products,
        jitter_ms: i64::try_from(args.jitter.as_millis()).unwrap_or(i64::MAX),
        late_share: args.late_share,
        duplicate_share: args.duplicate_share,
        malformed_share: args.malformed_share,
        rate: args.rate,
        realtime: args.realtime,
    };
    cfg.validate().map_err(|e| invalid("generate", e.to_string()))?;
    Ok(cfg)
}

/// Writes the stream to `path` (or stdout for `-`), with progress on stderr
/// when it is a terminal.
pub fn write(cfg: &GenerateConfig, path: &str) -> anyhow::Result<GenerateStats> {
    let mut progress = crate::progress::Progress::new("generate", cfg.events);
    let stats = if path == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
        let stats = generate::generate(cfg, &mut out, &mut |n| progress.set(n))?;
        out.flush()?;
        stats
    } else {
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let f = File::create(path).with_context(|| format!("creating {path}"))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        let stats =
            generate::generate(cfg, &mut out, &mut |n| progress.set(n)).with_context(|| format!("writing {path}"))?;
        out.flush().with_context(|| format!("writing {path}"))?;
        stats
    };
    progress.finish();
    Ok(stats)
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let cfg = config(args)?;
    let (stats, to) = match (&args.kafka, &args.topic) {
        (Some(brokers), Some(topic)) => {
            (produce(&cfg, args, brokers, topic)?, format!("kafka {brokers} topic {topic}"))
        }
        _ => (write(&cfg, &args.output)?, args.output.clone()),
    };
    eprintln!(
        "generate: {} lines ({} valid, {} malformed, {} duplicates, {} late), {} bytes -> {to}",
        stats.lines, stats.valid, stats.malformed, stats.duplicates, stats.late, stats.bytes
    );
    Ok(())
}

/// `generate --kafka`: the same lines, one message each.
fn produce(cfg: &GenerateConfig, args: &GenerateArgs, brokers: &str, topic: &str) -> anyhow::Result<GenerateStats> {
    let mut kafka = match &args.config {
        Some(path) => crate::config::StreamConfig::load(path)?.kafka,
        None => crate::kafka::KafkaSection::default(),
    };
    kafka.brokers = Some(brokers.to_owned());
    kafka.validate(false)?;
    if args.partitions < 1 {
        return Err(ConfigError::Invalid { key: "partitions", message: "must be at least 1".into() }.into());
    }
    crate::kafka::ensure_topic(&kafka, topic, args.partitions)?;
    let mut progress = crate::progress::Progress::new("generate", cfg.events);
    let stats = crate::kafka::producer::produce(&kafka, topic, args.key, cfg, &mut |n| progress.set(n))?;
    progress.finish();
    Ok(stats)
}
