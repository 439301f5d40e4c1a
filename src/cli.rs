//! The command line (SPEC §7). Only argument definitions live here; each
//! command's wiring is in `commands/`.
//!
//! Every speed-layer flag can also come from a `CLICKWATCH_*` environment
//! variable and, below both, from the TOML file given with `--config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::alert::EmitMode;
use crate::config::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "clickwatch",
    version,
    about = "Real-time clickstream pipeline: flash-sale alerts, Parquet archive, daily batch reports"
)]
pub struct Cli {
    /// Log level for stderr logs (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(long, global = true, default_value = "warn", env = "CLICKWATCH_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic clickstream (deterministic for a seed).
    Generate(GenerateArgs),
    /// Run the speed layer: sliding windows and flash-sale alerts.
    Stream(Box<StreamArgs>),
    /// Run the whole pipeline on this machine: generate, then stream.
    Demo(DemoArgs),
    /// Merge a day's small archive files into few large ones.
    Compact(CompactArgs),
    /// Compute a day's segments, top products and conversion rates from the archive.
    Batch(BatchArgs),
    /// Run the daily batch at a time of day, without Airflow.
    Schedule(ScheduleArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of lines to write (malformed and duplicate lines included).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// uniform or skewed (a few hot, low-converting products).
    #[arg(long, default_value = "skewed")]
    pub profile: String,
    /// Output file, or - for stdout.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: String,
    /// Event time of the first event (RFC 3339).
    #[arg(long, default_value = "2026-11-24T00:00:00Z")]
    pub start: String,
    /// Event times spread over this span.
    #[arg(long, default_value = "1d", value_parser = parse_duration)]
    pub span: Duration,
    #[arg(long, default_value_t = 2000)]
    pub products: u32,
    #[arg(long, default_value_t = 20_000)]
    pub users: u32,
    /// Number of hot, low-converting products (skewed profile).
    #[arg(long, default_value_t = 5)]
    pub hot_products: u32,
    /// Out-of-order jitter: events are up to this much older than their slot.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub jitter: Duration,
    /// Share of events made 15-60 minutes late.
    #[arg(long, default_value_t = 0.0)]
    pub late_share: f64,
    /// Share of lines repeating an earlier event (same event_id).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_share: f64,
    /// Share of malformed lines.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_share: f64,
    /// Lines per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Use the wall clock as event time (with --rate).
    #[arg(long)]
    pub realtime: bool,
    /// Produce to Kafka (brokers host:port,...) instead of --output.
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    pub kafka: Option<String>,
    /// Topic to produce to (with --kafka); created if missing.
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Message key, which decides the partition.
    #[arg(long, value_enum, default_value = "product-id")]
    pub key: crate::kafka::producer::KeyField,
    /// TOML file whose [kafka.properties] (security settings) apply.
    #[arg(long, env = "CLICKWATCH_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct StreamArgs {
    /// Input file, or - for stdin (one JSON event per line). Or use --kafka.
    #[arg(long, short = 'i', required_unless_present_any = ["kafka", "collect"], conflicts_with_all = ["kafka", "collect"])]
    pub input: Option<String>,
    /// Read events POSTed to /collect on the --http address (ends on SIGINT/SIGTERM).
    #[arg(long, conflicts_with = "kafka")]
    pub collect: bool,
    /// Read the topic --topic from these Kafka brokers (host:port,...).
    #[arg(long, env = "CLICKWATCH_KAFKA", value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// The clickstream topic (with --kafka).
    #[arg(long, env = "CLICKWATCH_TOPIC")]
    pub topic: Option<String>,
    /// Kafka consumer group (offsets are committed to it for lag tools).
    #[arg(long, env = "CLICKWATCH_GROUP")]
    pub group: Option<String>,
    /// Stop when every partition reaches the end offset it had at start.
    #[arg(long, env = "CLICKWATCH_UNTIL_END")]
    pub until_end: bool,
    /// Also send alerts to this Kafka topic (key = alert_id).
    #[arg(long, env = "CLICKWATCH_ALERTS_TOPIC")]
    pub alerts_topic: Option<String>,
    /// Serve /metrics and the JSON API on this address (host:port, or a port on 127.0.0.1).
    #[arg(long, env = "CLICKWATCH_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Bearer token the HTTP endpoint requires (all but /api/health).
    #[arg(long, env = "CLICKWATCH_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// Batch reports directory the dashboard links to.
    #[arg(long, env = "CLICKWATCH_REPORTS", value_name = "DIR")]
    pub reports: Option<PathBuf>,
    /// TOML configuration file (flags and CLICKWATCH_* variables override it).
    #[arg(long, env = "CLICKWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Archive every valid event as Parquet under this directory (exactly once).
    #[arg(long, env = "CLICKWATCH_ARCHIVE")]
    pub archive: Option<PathBuf>,
    /// Commit an archive file once this many rows are buffered [default: 1000000].
    #[arg(long, env = "CLICKWATCH_ARCHIVE_ROLL_ROWS")]
    pub archive_roll_rows: Option<usize>,
    /// Commit buffered archive rows at the latest after this long [default: 60s].
    #[arg(long, env = "CLICKWATCH_ARCHIVE_ROLL_AGE", value_parser = parse_duration)]
    pub archive_roll_age: Option<Duration>,
    /// Write alerts as JSON lines to this file.
    #[arg(long, env = "CLICKWATCH_ALERTS_FILE")]
    pub alerts_file: Option<PathBuf>,
    /// Dead-letter file for refused input [default: dead-letters.jsonl].
    #[arg(long, env = "CLICKWATCH_DEAD_LETTER")]
    pub dead_letter: Option<PathBuf>,
    /// Late events go here instead of the dead-letter file.
    #[arg(long, env = "CLICKWATCH_LATE_FILE")]
    pub late_file: Option<PathBuf>,
    /// Write every closed window's counts as JSON lines.
    #[arg(long, env = "CLICKWATCH_WINDOW_COUNTS")]
    pub window_counts: Option<PathBuf>,
    /// POST each alert as JSON to this URL.
    #[arg(long, env = "CLICKWATCH_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Do not print alerts on stdout.
    #[arg(long, env = "CLICKWATCH_NO_CONSOLE")]
    pub no_console: bool,
    /// on_close (one alert per window at close) or early (provisional, then final/withdrawn).
    #[arg(long, env = "CLICKWATCH_EMIT")]
    pub emit: Option<EmitMode>,
    /// Window length L [default: 10m].
    #[arg(long, env = "CLICKWATCH_WINDOW", value_parser = parse_duration)]
    pub window: Option<Duration>,
    /// Window slide S [default: 5m].
    #[arg(long, env = "CLICKWATCH_SLIDE", value_parser = parse_duration)]
    pub slide: Option<Duration>,
    /// Watermark delay D [default: 2m].
    #[arg(long, env = "CLICKWATCH_WATERMARK_DELAY", value_parser = parse_duration)]
    pub watermark_delay: Option<Duration>,
    /// Wall-clock time after which a silent partition stops holding the watermark [default: 30s].
    #[arg(long, env = "CLICKWATCH_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Alert when views exceed this [default: 100].
    #[arg(long, env = "CLICKWATCH_MIN_VIEWS")]
    pub min_views: Option<u64>,
    /// ... and purchases are below this [default: 5].
    #[arg(long, env = "CLICKWATCH_MAX_PURCHASES")]
    pub max_purchases: Option<u64>,
    /// Largest accepted event in bytes [default: 1 MiB].
    #[arg(long, env = "CLICKWATCH_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Timely's worker and process flags, with timely's short names.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Worker threads per process.
    #[arg(long, short = 'w', default_value_t = 1, env = "CLICKWATCH_WORKERS")]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub processes: usize,
    /// This process's index in the cluster (0-based).
    #[arg(long, short = 'p', default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per process [default: localhost:2101, 2102, ...].
    #[arg(long, short = 'h')]
    pub hostfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for everything the demo writes.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Events to generate (skewed profile, one simulated day).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 2)]
    pub workers: usize,
    /// Print every alert on the console (default: a summary table).
    #[arg(long)]
    pub verbose: bool,
    /// Serve the live dashboard here while the demo runs (a free port if taken).
    #[arg(long, default_value = "127.0.0.1:8421", value_name = "ADDR")]
    pub http: String,
    /// No dashboard.
    #[arg(long)]
    pub no_dashboard: bool,
    /// Keep the dashboard up after the run, until Ctrl-C.
    #[arg(long, conflicts_with = "no_dashboard")]
    pub hold: bool,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Archive root (the directory given to `stream --archive`).
    #[arg(long)]
    pub archive: PathBuf,
    /// UTC date of the partition to compact (YYYY-MM-DD).
    #[arg(long)]
    pub date: String,
    /// Rows per output file.
    #[arg(long, default_value_t = 5_000_000)]
    pub max_rows: usize,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Archive root (the directory given to `stream --archive`).
    #[arg(long)]
    pub archive: PathBuf,
    /// UTC date to report (YYYY-MM-DD); repeat for several days.
    #[arg(long)]
    pub date: Vec<String>,
    /// First date of a range (with --to).
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last date of a range, inclusive.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Reports go to DIR/<date>/.
    #[arg(long)]
    pub reports: PathBuf,
    /// Keep running: feed newly committed archive files to the dataflow as
    /// updates and refresh the reports.
    #[arg(long)]
    pub follow: bool,
    /// How often --follow looks for new files.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub poll: Duration,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Archive root (the directory given to `stream --archive`).
    #[arg(long)]
    pub archive: PathBuf,
    /// Reports go to DIR/<date>/.
    #[arg(long)]
    pub reports: PathBuf,
    /// Time of day (UTC, HH:MM or HH:MM:SS) to report the day that ended.
    #[arg(long, default_value = "00:30")]
    pub at: String,
    /// Report folders of days older than this are removed after each run.
    #[arg(long, default_value_t = 30)]
    pub retention_days: u32,
    /// Stop after this many daily runs (default: run until stopped).
    #[arg(long)]
    pub runs: Option<u32>,
}
