//! The speed layer dataflow (SPEC §3):
//!
//! ```text
//! line source ──windows──▶ exchange by product ─▶ window engine ─▶ alerts ─▶ worker 0: console / file / webhook
//!      │                                                      └─▶ window counts (optional)
//!      └──rejects (dead letters, late events)──────────────────────────────▶ worker 0: JSONL files
//! ```
//!
//! Event time is the timely timestamp and the source's capability is the
//! watermark, so "the frontier passed the window end" is exactly "the
//! window is closed". Sinks write on worker 0 only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use timely::worker::Worker;

use super::kafka_source::{kafka_source, KafkaInput};
use super::operators::{self, SpeedOut};
use super::source::{self, LineRead};
use crate::archive::columns::Spares;
use crate::archive::writer::ArchiveWriter;
use crate::archive::writer::Piece;
use crate::archive::ArchiveConfig;
use crate::config::{SinksSection, Validated};
use crate::event::{DeadLetter, Micros, Reason};
use crate::kafka::resume::EmittedMark;
use crate::kafka::KafkaSection;
use crate::metrics::Metrics;
use crate::serve::Hub;
use crate::shutdown::{Fatal, Shutdown, Stop};
use crate::sinks::jsonl::JsonlFile;
use crate::sinks::AlertSinks;
use crate::sources::lines::{Feed, LineInput};

/// What the speed layer reads.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file or stdin: one partition, read by the process of worker 0 and
    /// decoded by its workers.
    Lines(LineInput),
    /// A topic whose partitions are spread over every worker.
    Kafka(KafkaInput),
}

/// Everything one `stream` run needs, shared by all workers.
pub struct SpeedJob {
    pub cfg: Validated,
    pub input: Input,
    /// The Kafka client settings of the alert topic, when there is one.
    pub kafka: Option<KafkaSection>,
    /// Kafka with an archive: the mark of delivered alerts, read at start
    /// (alerts of windows before it are not emitted again) and advanced
    /// as alerts are delivered.
    pub emitted: Option<EmittedMark>,
    /// With `--http`: what the serving layer reads (recent alerts, window queries).
    pub hub: Option<Hub>,
    pub sinks: SinksSection,
    /// The archive and the identity of the input in its commit log.
    pub archive: Option<(ArchiveConfig, String)>,
    /// The archive's emptied columns, from its writer back to the decoders.
    pub archive_spares: Arc<Spares>,
    pub metrics: Arc<Metrics>,
    pub fatal: Fatal,
    /// SIGINT / SIGTERM (see `crate::shutdown`).
    pub shutdown: Shutdown,
}

impl Input {
    /// Whether the input can be read again after a stop.
    pub fn replayable(&self) -> bool {
        matches!(self, Input::Lines(LineInput::File(_)) | Input::Kafka(_))
    }
}

/// Runs the speed layer to completion on a timely cluster.
pub fn run(job: SpeedJob, timely_config: timely::Config) -> anyhow::Result<()> {
    let fatal = job.fatal.clone();
    let job = Arc::new(job);
    // A line input is read by the process of worker 0, and decoded by its workers.
    let reads_lines = match &timely_config.communication {
        timely::CommunicationConfig::Cluster { process, .. } => *process == 0,
        _ => true,
    };
    let feed = Arc::new(Feed::default());
    let guards = timely::execute(timely_config, move |worker| build(worker, &job, (&feed, reads_lines)))
        .map_err(|e| anyhow!("starting timely workers: {e}"))?;
    for result in guards.join() {
        result.map_err(|e| anyhow!("worker failed: {e}"))??;
    }
    if let Some(msg) = fatal.get() {
        bail!(msg);
    }
    Ok(())
}

fn build(worker: &mut Worker, job: &SpeedJob, (feed, reads_lines): (&Arc<Feed>, bool)) -> anyhow::Result<()> {
    let first = worker.index() == 0;
    let alert_sinks = Rc::new(RefCell::new(
        first
            .then(|| AlertSinks::build(&job.sinks, job.kafka.as_ref(), job.metrics.clone()))
            .transpose()?
            .map(|s| s.with_recent(job.hub.as_ref().map(|h| h.alerts.clone()))),
    ));
    let counts_file = Rc::new(RefCell::new(
        job.sinks
            .window_counts
            .as_deref()
            .filter(|_| first)
            .map(|p| JsonlFile::open(p, job.sinks.append))
            .transpose()?,
    ));
    let rejects = Rc::new(RefCell::new(first.then(|| RejectFiles::create(&job.sinks)).transpose()?));
    let with_counts = job.sinks.window_counts.is_some();
    let emitted = Rc::new(RefCell::new(job.emitted.clone().filter(|_| first)));
    let archive_writer = Rc::new(RefCell::new(match (&job.archive, first) {
        (Some((cfg, source)), true) => {
            Some(ArchiveWriter::start(cfg, source.clone(), job.archive_spares.clone(), job.metrics.clone())?)
        }
        _ => None,
    }));

    let stop = Stop { shutdown: job.shutdown.clone(), replayable: job.input.replayable(), fatal: job.fatal.clone() };
    worker.dataflow::<Micros, _, _>(|scope| {
        let archiving = job.archive.is_some().then(|| job.archive_spares.clone());
        let (windows, rejected, pieces) = match &job.input {
            Input::Lines(lines) => source::line_source(
                scope,
                LineRead { input: lines.clone(), feed: feed.clone(), local: reads_lines },
                &job.cfg,
                archiving,
                job.metrics.clone(),
                (job.fatal.clone(), stop.clone()),
            ),
            Input::Kafka(kafka) => {
                kafka_source(scope, kafka, &job.cfg, archiving, job.metrics.clone(), (job.fatal.clone(), stop.clone()))
            }
        };
        archive_sink(pieces, archive_writer.clone(), job.fatal.clone());
        let results = operators::windows(
            windows,
            &job.cfg,
            with_counts,
            job.metrics.clone(),
            job.hub.as_ref().map(|h| h.windows.clone()),
            stop.clone(),
        );

        let (fatal, sinks, counts) = (job.fatal.clone(), alert_sinks.clone(), counts_file.clone());
        // Results of windows ending before the mark were delivered by a previous run.
        let before = job.emitted.as_ref().and_then(|m| m.before()).unwrap_or(Micros::MIN);
        let (metrics, mark, emitted) = (job.metrics.clone(), emitted.clone(), emitted.clone());
        // Every result before this time has been emitted (the sink's frontier).
        let done_before = Rc::new(Cell::new(Micros::MIN));
        let (done, done_at_finish, stop_at_finish) = (done_before.clone(), done_before, stop.clone());
        operators::ordered_sink(
            results,
            "AlertSinks",
            |out: &SpeedOut| match out {
                // RFC 3339 UTC strings of one format sort chronologically.
                SpeedOut::Alert(a) => (0, format!("{}\0{}\0{}", a.window_end, a.product_id, a.status as u8)),
                SpeedOut::Window(w) => (w.end, w.product.to_string()),
            },
            move |batch| {
                let mut sinks = sinks.borrow_mut();
                let mut counts = counts.borrow_mut();
                for out in batch {
                    if out.window_end() < before {
                        metrics.alerts_suppressed.fetch_add(out.is_alert() as u64, Relaxed);
                        continue;
                    }
                    let written = match (out, sinks.as_mut(), counts.as_mut()) {
                        (SpeedOut::Alert(a), Some(s), _) => s.emit(&a),
                        (SpeedOut::Window(w), _, Some(f)) => f.write_line(&window_json(&w)),
                        _ => Ok(()),
                    };
                    if let Err(e) = written {
                        fatal.set(format!("{e:#}"));
                    }
                }
                let flushed = sinks.as_mut().map_or(Ok(()), |s| s.flush());
                if let Err(e) = flushed.and_then(|_| counts.as_mut().map_or(Ok(()), |f| f.flush())) {
                    fatal.set(format!("{e:#}"));
                }
            },
            {
                let (fatal, sinks, stop) = (job.fatal.clone(), alert_sinks.clone(), stop.clone());
                move |frontier| {
                    // Once a stop leaves windows open, Windows operators drop
                    // their capabilities one by one: the frontier then says
                    // nothing about what was closed. Keep the last one before.
                    if stop.abandons_open_windows() {
                        return;
                    }
                    done.set(frontier);
                    let mut mark = mark.borrow_mut();
                    let Some(m) = mark.as_mut().filter(|m| m.due(frontier)) else { return };
                    if let Err(e) =
                        sinks.borrow_mut().as_mut().map_or(Ok(()), |s| s.deliver()).and_then(|_| m.advance(frontier))
                    {
                        fatal.set(format!("{e:#}"));
                    }
                }
            },
            {
                let (fatal, sinks, counts) = (job.fatal.clone(), alert_sinks.clone(), counts_file.clone());
                move || {
                    let done = sinks.borrow_mut().take().map_or(Ok(()), |s| s.finish());
                    let done = done.and_then(|_| counts.borrow_mut().take().map_or(Ok(()), |f| f.finish()));
                    // Every alert delivered: of every window, or on a stop
                    // that leaves windows open, of those the Windows
                    // operators closed: every window ending at or before
                    // the last frontier they held (all released now).
                    let through = if stop_at_finish.abandons_open_windows() {
                        done_at_finish.get().saturating_add(1)
                    } else {
                        Micros::MAX
                    };
                    let done = done.and_then(|_| emitted.borrow_mut().as_mut().map_or(Ok(()), |m| m.advance(through)));
                    if let Err(e) = done {
                        fatal.set(format!("{e:#}"));
                    }
                }
            },
        );

        let (fatal, files) = (job.fatal.clone(), rejects.clone());
        operators::unordered_sink(
            rejected,
            "RejectSinks",
            move |batch: &mut Vec<DeadLetter>| {
                if let Some(f) = files.borrow_mut().as_mut() {
                    if let Err(e) = f.write(batch.drain(..)) {
                        fatal.set(format!("{e:#}"));
                    }
                }
            },
            {
                let (fatal, files) = (job.fatal.clone(), rejects.clone());
                move || {
                    if let Some(f) = files.borrow_mut().take() {
                        if let Err(e) = f.finish() {
                            fatal.set(format!("{e:#}"));
                        }
                    }
                }
            },
        );
    });
    Ok(())
}

/// Hands archive pieces to the writer thread on worker 0 (the one writer
/// of the commit log), then commits the rest once the input is complete.
fn archive_sink<'s>(pieces: source::Pieces<'s>, writer: Rc<RefCell<Option<ArchiveWriter>>>, fatal: Fatal) {
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::generic::Operator;
    pieces.sink(Exchange::new(|_: &Piece| 0), "Archive", move |(input, frontier)| {
        input.for_each(|_time, data| {
            if let Some(w) = writer.borrow_mut().as_mut() {
                for piece in data.drain(..) {
                    if let Err(e) = w.send(piece) {
                        fatal.set(format!("{e:#}"));
                    }
                }
            }
        });
        if frontier.is_empty() {
            if let Some(w) = writer.borrow_mut().take() {
                if let Err(e) = w.finish() {
                    fatal.set(format!("archive: {e:#}"));
                }
            }
        }
    });
}

/// One closed window's counts as a JSON line (the API's window shape).
pub fn window_json(w: &crate::window::engine::ClosedWindow) -> String {
    // Numbers and strings only: serialising cannot fail.
    serde_json::to_string(&crate::serve::windows::WindowView::from(w)).unwrap_or_default()
}

/// The dead-letter file and, if configured apart, the late-event file.
struct RejectFiles {
    dead: JsonlFile,
    late: Option<JsonlFile>,
}

impl RejectFiles {
    fn create(cfg: &SinksSection) -> anyhow::Result<Self> {
        Ok(RejectFiles {
            dead: JsonlFile::open(&cfg.dead_letter, cfg.append)?,
            late: cfg.late_file.as_deref().map(|p| JsonlFile::open(p, cfg.append)).transpose()?,
        })
    }

    fn write(&mut self, records: impl Iterator<Item = DeadLetter>) -> anyhow::Result<()> {
        for r in records {
            let file = match (&mut self.late, r.reason) {
                (Some(late), Reason::Late | Reason::LateAfterIdle) => late,
                _ => &mut self.dead,
            };
            file.write_line(&r.to_json_line())?;
        }
        self.dead.flush()?;
        if let Some(l) = &mut self.late {
            l.flush()?;
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        self.dead.finish()?;
        if let Some(l) = self.late {
            l.finish()?;
        }
        Ok(())
    }
}
