//! `clickwatch stream`: configuration layering, then the speed dataflow.

use std::sync::Arc;
use std::time::Instant;

use crate::archive::commit_log::committed_records;
use crate::archive::writer::file_source_id;
use crate::archive::ArchiveConfig;
use crate::cli::{ClusterArgs, StreamArgs};
use crate::config::Validated;
use crate::config::{ConfigError, StreamConfig};
use crate::dataflows::kafka_source::KafkaInput;
use crate::dataflows::speed::{self, Input, SpeedJob};
use crate::kafka::resume::{self, EmittedMark};
use crate::kafka::{self, consumer::StartAt};
use crate::metrics::Metrics;
use crate::serve::collect::{CollectChannel, CollectLimits};
use crate::serve::{HttpServer, Hub, ServeState};
use crate::shutdown::{Fatal, Shutdown};
use crate::sinks::webhook::WebhookConfig;
use crate::sources::lines::LineInput;

use super::cluster::timely_config;

/// File values overridden by flags / environment variables.
pub fn resolve_config(args: &StreamArgs) -> Result<StreamConfig, ConfigError> {
    let mut c = match &args.config {
        Some(path) => StreamConfig::load(path)?,
        None => StreamConfig::default(),
    };
    let w = &mut c.window;
    if let Some(v) = args.window {
        w.length = v;
    }
    if let Some(v) = args.slide {
        w.slide = v;
    }
    if let Some(v) = args.watermark_delay {
        w.watermark_delay = v;
    }
    if let Some(v) = args.idle_timeout {
        w.idle_timeout = v;
    }
    if let Some(v) = args.min_views {
        c.alert.min_views = v;
    }
    if let Some(v) = args.max_purchases {
        c.alert.max_purchases = v;
    }
    if let Some(v) = args.emit {
        c.alert.emit = v;
    }
    if let Some(dir) = &args.archive {
        let a = c.archive.get_or_insert_with(|| ArchiveConfig::new(dir.clone()));
        a.dir = dir.clone();
    }
    if let Some(a) = &mut c.archive {
        if let Some(v) = args.archive_roll_rows {
            a.roll_rows = v;
        }
        if let Some(v) = args.archive_roll_age {
            a.roll_age = v;
        }
    }
    let k = &mut c.kafka;
    if let Some(v) = &args.kafka {
        k.brokers = Some(v.clone());
    }
    if let Some(v) = &args.topic {
        k.topic = Some(v.clone());
    }
    if let Some(v) = &args.group {
        k.group = v.clone();
    }
    if args.until_end {
        k.until_end = true;
    }
    if let Some(v) = &args.alerts_topic {
        k.alerts_topic = Some(v.clone());
    }
    if let Some(v) = &args.http {
        c.http.addr = Some(v.clone());
    }
    // An empty variable (`CLICKWATCH_HTTP_TOKEN=`) means no token.
    if let Some(v) = args.http_token.as_ref().filter(|v| !v.is_empty()) {
        c.http.token = Some(v.clone());
    }
    if let Some(v) = &args.reports {
        c.http.reports = Some(v.clone());
    }
    if let Some(v) = args.max_event_bytes {
        c.input.max_event_bytes = v;
    }
    let s = &mut c.sinks;
    if args.no_console {
        s.console = false;
    }
    if let Some(v) = &args.alerts_file {
        s.alerts_file = Some(v.clone());
    }
    if let Some(v) = &args.dead_letter {
        s.dead_letter = v.clone();
    }
    if let Some(v) = &args.late_file {
        s.late_file = Some(v.clone());
    }
    if let Some(v) = &args.window_counts {
        s.window_counts = Some(v.clone());
    }
    if let Some(url) = &args.webhook_url {
        match &mut s.webhook {
            Some(hook) => hook.url = url.clone(),
            None => s.webhook = Some(WebhookConfig::new(url.clone())),
        }
    }
    Ok(c)
}

/// Runs `stream` with its flags; prints the summary on stderr.
pub fn run(args: &StreamArgs) -> anyhow::Result<Arc<Metrics>> {
    let config = resolve_config(args)?;
    let started = Instant::now();
    let input = match (args.collect, args.input.as_deref()) {
        (true, _) => Some(LineInput::Collect(CollectChannel::default())),
        (false, input) => input.map(LineInput::parse),
    };
    let collect = match &input {
        Some(LineInput::Collect(channel)) => Some(channel.clone()),
        _ => None,
    };
    if collect.is_some() && config.http.addr.is_none() {
        return Err(ConfigError::Invalid { key: "http.addr", message: "--collect needs --http ADDR".into() }.into());
    }
    let shutdown = Shutdown::default();
    // `/collect` stops taking requests; the stream ends once they are read.
    shutdown.on_signals(move || collect.iter().for_each(CollectChannel::close))?;
    let (hub, server) = serve(&config, input.as_ref(), &args.cluster)?;
    if let Some(s) = &server {
        eprintln!("stream: serving {} (dashboard; /metrics, /api/alerts, /api/windows, /api/health)", s.url());
    }
    let metrics = execute(&config, input, &args.cluster, &hub, &shutdown)?;
    drop(server);
    if args.cluster.process == 0 {
        eprintln!("{}", summary(&metrics, started.elapsed().as_secs_f64(), &config));
    }
    Ok(metrics)
}

/// The shared state of the serving layer, and its server if `[http] addr`
/// is set (on process 0, where the sinks are).
pub fn serve(
    config: &StreamConfig,
    input: Option<&LineInput>,
    cluster: &ClusterArgs,
) -> anyhow::Result<(Hub, Option<HttpServer>)> {
    let hub = Hub::new(Arc::new(Metrics::default()), &config.http);
    let Some(addr) = config.http.socket_addr()?.filter(|_| cluster.process == 0) else { return Ok((hub, None)) };
    let mut state = ServeState::new(hub.clone(), &config.http);
    if let Some(LineInput::Collect(channel)) = input {
        let limits = CollectLimits {
            max_body_bytes: config.http.max_body_bytes,
            max_batch_events: config.http.max_batch_events,
            event: config.validate()?.limits,
        };
        state = state.with_collect(channel.clone(), limits);
    }
    Ok((hub, Some(HttpServer::start(addr, state)?)))
}

/// Runs the speed layer to the end of its input (`lines`, else the Kafka
/// topic of the configuration); returns its metrics (the hub's).
pub fn execute(
    config: &StreamConfig,
    lines: Option<LineInput>,
    cluster: &ClusterArgs,
    hub: &Hub,
    shutdown: &Shutdown,
) -> anyhow::Result<Arc<Metrics>> {
    let validated = config.validate()?;
    let uses_kafka = lines.is_none() || config.kafka.alerts_topic.is_some();
    if uses_kafka {
        config.kafka.validate(lines.is_none())?;
    }
    let timely = timely_config(cluster)?;
    let metrics = hub.metrics.clone();
    let (input, emitted) = match lines {
        Some(l) => (Input::Lines(l), None),
        None => kafka_input(config, &validated)?,
    };
    let archive = match &config.archive {
        Some(a) => Some((a.clone(), archive_source_id(&input)?)),
        None => None,
    };
    let mut sinks = config.sinks.clone();
    // A Kafka stream continues where the last run stopped; so do its files.
    sinks.append = matches!(input, Input::Kafka(_));
    let job = SpeedJob {
        cfg: validated,
        archive,
        archive_spares: Default::default(),
        input,
        kafka: uses_kafka.then(|| config.kafka.clone()),
        emitted,
        hub: config.http.addr.is_some().then(|| hub.clone()),
        sinks,
        metrics: metrics.clone(),
        fatal: Fatal::default(),
        shutdown: shutdown.clone(),
    };
    let status = matches!(job.input, Input::Kafka(_)).then(|| PartitionLog::start(metrics.clone()));
    let result = speed::run(job, timely);
    drop(status);
    result?;
    Ok(metrics)
}

/// Logs each partition's watermark and consumer lag every 10 s (log level
/// info) while a Kafka stream runs; stops when dropped.
struct PartitionLog {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PartitionLog {
    fn start(metrics: Arc<Metrics>) -> Self {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("partition-log".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(std::time::Duration::from_secs(10))
                {
                    for line in partition_lines(&metrics) {
                        log::info!("{line}");
                    }
                }
            })
            .ok();
        PartitionLog { stop: Some(stop), thread }
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One line per partition: its watermark and how far behind the topic's end it is.
fn partition_lines(m: &Metrics) -> Vec<String> {
    use crate::event::timestamp::format_rfc3339_secs;
    m.partition_stats()
        .into_iter()
        .map(|(p, s)| {
            let watermark = s.watermark.map_or("-".into(), format_rfc3339_secs);
            match (s.lag, s.end_offset) {
                (None, None) => format!("partition {p}: watermark {watermark}"),
                (lag, end) => format!(
                    "partition {p}: watermark {watermark}, lag {} messages (end offset {})",
                    lag.map_or("?".into(), |l| l.to_string()),
                    end.map_or("?".into(), |o| o.to_string()),
                ),
            }
        })
        .collect()
}

/// How the input is named in the archive's commit log: files by content,
/// so re-running one is recognised; stdin is never the same input twice.
/// The topic's partitions and, with an archive, where a previous run left
/// off: its resume points and the mark of the alerts it delivered.
fn kafka_input(config: &StreamConfig, v: &Validated) -> anyhow::Result<(Input, Option<EmittedMark>)> {
    let mut input = KafkaInput {
        partitions: kafka::partitions(&config.kafka, config.kafka.topic())?,
        cfg: config.kafka.clone(),
        start: StartAt::Committed,
        resume: Default::default(),
    };
    let Some(archive) = &config.archive else { return Ok((Input::Kafka(input), None)) };
    // A partition without a resume point is replayed from its beginning:
    // the commit log drops what is archived, the alert topic what it has.
    input.start = StartAt::Beginning;
    let mark = EmittedMark::open(&archive.dir, &input.name(), config.kafka.mark_every)?;
    let records = committed_records(&archive.dir)?;
    let horizon = v.spec().length() + v.clock.delay;
    input.resume = resume::plan(&records, &input.name(), mark.before(), horizon);
    Ok((Input::Kafka(input), Some(mark)))
}

/// Kafka topics by name: offsets identify their messages for good.
fn archive_source_id(input: &Input) -> anyhow::Result<String> {
    match input {
        Input::Lines(LineInput::File(p)) => file_source_id(p),
        Input::Lines(LineInput::Stdin) => Ok(format!("stdin:{}", crate::event::timestamp::now_micros())),
        Input::Lines(LineInput::Collect(_)) => Ok(format!("http:{}", crate::event::timestamp::now_micros())),
        Input::Kafka(k) => Ok(k.name()),
    }
}

/// The end-of-run report on stderr (stdout carries the alerts).
pub fn summary(m: &Metrics, secs: f64, cfg: &StreamConfig) -> String {
    use crate::alert::AlertStatus::*;
    use crate::event::EventKind::*;
    let valid = m.valid_events();
    let mut s = format!(
        "stream: {valid} events ({} views, {} carts, {} purchases, {} other) in {secs:.2}s = {:.0} events/s\n",
        m.events(View),
        m.events(AddToCart),
        m.events(Purchase),
        m.events(Other),
        valid as f64 / secs.max(1e-9),
    );
    s += &format!(
        "stream: {} refused, {} late, {} duplicates, {} windows closed, alerts: {} final, {} provisional, {} withdrawn\n",
        m.refused(),
        m.late(),
        Metrics::get(&m.duplicates),
        Metrics::get(&m.windows_closed),
        m.alerts_of(Final),
        m.alerts_of(Provisional),
        m.alerts_of(Withdrawn),
    );
    let (replayed, suppressed) = (Metrics::get(&m.kafka_replayed), Metrics::get(&m.alerts_suppressed));
    if replayed > 0 || suppressed > 0 {
        s += &format!(
            "stream: resumed: {replayed} messages re-read to rebuild the windows, {suppressed} alerts already delivered\n"
        );
    }
    for line in partition_lines(m) {
        s += &format!("stream: {line}\n");
    }
    let skipped = Metrics::get(&m.kafka_alerts_skipped);
    if skipped > 0 {
        s += &format!("stream: alert topic already had {skipped} alerts\n");
    }
    let sinks = &cfg.sinks;
    if let Some(p) = &sinks.alerts_file {
        s += &format!("stream: alerts -> {}\n", p.display());
    }
    s += &format!("stream: dead letters -> {}", sinks.dead_letter.display());
    if let Some(p) = &sinks.late_file {
        s += &format!("\nstream: late events -> {}", p.display());
    }
    if let Some(p) = &sinks.window_counts {
        s += &format!("\nstream: window counts -> {}", p.display());
    }
    if let Some(a) = &cfg.archive {
        s += &format!(
            "\nstream: archive {}: {} rows in {} files, {} bytes ({:.1} bytes/row), {} rows already archived; \
             writer busy {:.2} s, speed layer waited {:.2} s for it",
            a.dir.display(),
            Metrics::get(&m.archive_rows),
            Metrics::get(&m.archive_files),
            Metrics::get(&m.archive_bytes),
            Metrics::get(&m.archive_bytes) as f64 / Metrics::get(&m.archive_rows).max(1) as f64,
            Metrics::get(&m.archive_skipped),
            Metrics::seconds(&m.archive_busy_micros),
            Metrics::seconds(&m.archive_wait_micros),
        );
    }
    if let Some(h) = &sinks.webhook {
        s += &format!(
            "\nstream: webhook {}: {} delivered, {} spilled to {}",
            h.url,
            Metrics::get(&m.webhook_delivered),
            Metrics::get(&m.webhook_spilled),
            h.spill_file.display()
        );
    }
    s
}
