//! The archive writer: a thread that buffers rows per date, rolls Parquet
//! files by row count and by age, and commits them through the commit log.
//!
//! The dataflow hands over one [`Piece`] per input chunk: the chunk's valid
//! events and the input position it ends at. A commit always ends on such a
//! boundary, so its `[start, end)` range says exactly which input is in the
//! archive. Rows whose position is already committed (a re-run, or a
//! restart after a crash) are dropped here: that is what makes the archive
//! exactly-once for replayable inputs.
//!
//! The queue to the thread is bounded: if Parquet encoding falls far
//! behind, the archive operator waits rather than buffering without limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::columns::{ArchiveColumns, Spares};
use super::commit_log::{temp_path, CommitLog, FileEntry, InputRange, Record};
use super::parquet::{day_of, event_date, Encoders, PartWriter};
use super::ArchiveConfig;
use crate::event::timestamp::{format_rfc3339, now_micros};
use crate::metrics::Metrics;
use crate::window::clock::Checkpoint;

/// One input chunk's valid events, in columns with their positions, and
/// where that chunk ended. This is what flows from the source to the
/// archive operator.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Piece {
    pub partition: u32,
    pub rows: ArchiveColumns,
    /// Every input position of `partition` below this has been delivered.
    pub through: u64,
    /// The partition's clock after this piece (Kafka sources), recorded in
    /// the commit so a restart can resume from it.
    pub checkpoint: Option<Checkpoint>,
}

/// Pieces the writer's queue holds: ~25 ms of input at full speed.
const QUEUE: usize = 64;

/// Handle of the writer thread.
pub struct ArchiveWriter {
    tx: Option<Sender<Piece>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    metrics: Arc<Metrics>,
}

impl ArchiveWriter {
    /// Opens the archive (recovering it) and starts the thread. `source`
    /// identifies the input in commit records; the columns of pieces
    /// written go back to the decoders through `spares`.
    pub fn start(
        cfg: &ArchiveConfig,
        source: String,
        spares: Arc<Spares>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        Self::start_with_queue(cfg, source, spares, metrics, QUEUE)
    }

    fn start_with_queue(
        cfg: &ArchiveConfig,
        source: String,
        spares: Arc<Spares>,
        metrics: Arc<Metrics>,
        queue: usize,
    ) -> anyhow::Result<Self> {
        let log = CommitLog::open(&cfg.dir)?;
        let (tx, rx) = bounded(queue);
        let mut state = State {
            log,
            source,
            roll_rows: cfg.roll_rows,
            roll_age: cfg.roll_age,
            open: BTreeMap::new(),
            rows: 0,
            opened: 0,
            range: BTreeMap::new(),
            oldest: None,
            encoders: Vec::new(),
            spares,
            metrics: metrics.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("archive".into())
            .spawn(move || {
                let result = state.run(rx);
                if result.is_err() {
                    state.abandon();
                }
                result.with_context(|| format!("archive {}", state.log.root().display()))
            })
            .context("starting the archive thread")?;
        Ok(ArchiveWriter { tx: Some(tx), thread: Some(thread), metrics })
    }

    /// Hands over a piece; waits only if the writer is far behind (and
    /// counts the wait). If the writer has failed, returns its error
    /// (once).
    pub fn send(&mut self, piece: Piece) -> anyhow::Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let sent = match tx.try_send(piece) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(piece)) => {
                let waiting = Instant::now();
                let sent = tx.send(piece).map_err(drop);
                Metrics::add_time(&self.metrics.archive_wait_micros, waiting.elapsed());
                sent
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        };
        if sent.is_ok() {
            return Ok(());
        }
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(anyhow::anyhow!("archive thread panicked")),
            _ => Err(anyhow::anyhow!("archive writer stopped")),
        }
    }

    /// Commits what is buffered and stops the thread.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(self.tx.take());
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("archive thread panicked"))?,
            None => Ok(()),
        }
    }
}

/// Encoder sets kept for the next files: one per day open at once, two
/// around midnight (a burst of late events may open more; those sets are
/// dropped rather than held, at ~10 MiB each).
const SPARE_ENCODERS: usize = 2;

/// A date's file of the next commit, written as rows arrive.
struct OpenPart {
    writer: PartWriter,
    rel: String,
    date: String,
}

struct State {
    log: CommitLog,
    source: String,
    roll_rows: usize,
    roll_age: Duration,
    /// Files open for the next commit, by event day (days since epoch).
    open: BTreeMap<i64, OpenPart>,
    rows: usize,
    /// Files opened since the last commit (numbers their names).
    opened: usize,
    /// Per partition: [start, through) of the input since the last commit,
    /// and the partition's clock at `through`.
    range: BTreeMap<u32, (u64, u64, Option<Checkpoint>)>,
    oldest: Option<Instant>,
    /// Encoders of committed files, for the next ones (at most
    /// [`SPARE_ENCODERS`]).
    encoders: Vec<Encoders>,
    spares: Arc<Spares>,
    metrics: Arc<Metrics>,
}

impl State {
    fn run(&mut self, rx: Receiver<Piece>) -> anyhow::Result<()> {
        loop {
            let wait = match self.oldest {
                Some(t) => self.roll_age.saturating_sub(t.elapsed()),
                None => Duration::from_secs(3600),
            };
            let piece = match rx.recv_timeout(wait) {
                Ok(piece) => Some(piece),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return self.busy(|s| s.commit()),
            };
            self.busy(|s| {
                if let Some(piece) = piece {
                    s.take(piece)?;
                }
                let old = s.oldest.is_some_and(|t| t.elapsed() >= s.roll_age);
                if s.rows >= s.roll_rows || old {
                    s.commit()?;
                }
                Ok(())
            })?;
        }
    }

    /// `work`, its time counted as the archive thread's busy time.
    fn busy(&mut self, work: impl FnOnce(&mut Self) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let start = Instant::now();
        let result = work(self);
        Metrics::add_time(&self.metrics.archive_busy_micros, start.elapsed());
        result
    }

    fn take(&mut self, piece: Piece) -> anyhow::Result<()> {
        if !piece.rows.is_consistent() {
            anyhow::bail!(
                "a piece of partition {} arrived broken (columns of different lengths, a null in a required \
                 column, or strings that are not UTF-8)",
                piece.partition
            );
        }
        let committed = self.log.committed_prefix(&self.source, piece.partition);
        let range = self.range.entry(piece.partition).or_insert((committed, committed, None));
        if piece.through >= range.1 {
            range.1 = piece.through;
            range.2 = piece.checkpoint.or(range.2);
        }
        // Rows already committed (a re-run, a restart) are dropped. The
        // ranges are looked up once per piece, and not at all per row when
        // nothing at or after the piece's lowest position is committed (a
        // first run, or past a resume point).
        let committed = self.log.committed_ranges(&self.source, piece.partition);
        let mut rows = piece.rows;
        let lowest = rows.positions().min().unwrap_or(u64::MAX);
        let before = rows.len();
        if !committed.none_from(lowest) {
            let keep: Vec<usize> =
                rows.positions().enumerate().filter(|(_, p)| !committed.contains(*p)).map(|(i, _)| i).collect();
            let kept = rows.select(keep);
            self.spares.give(std::mem::replace(&mut rows, kept));
        }
        self.metrics.archive_skipped.fetch_add((before - rows.len()) as u64, Relaxed);
        if rows.is_empty() {
            // Its memory (an input chunk, as text) back to the decoders.
            self.spares.give(rows);
            return Ok(());
        }
        for (day, rows) in by_day(rows) {
            let part = match self.open.entry(day) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let seq = self.log.next_seq();
                    let date = event_date(rows.times()[0]);
                    let rel = format!("events/event_date={date}/part-{seq:08}-{:03}.parquet", self.opened);
                    self.opened += 1;
                    let fin = self.log.root().join(&rel);
                    if let Some(dir) = fin.parent() {
                        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                    }
                    let encoders = match self.encoders.pop() {
                        Some(encoders) => encoders,
                        None => Encoders::new()?,
                    };
                    e.insert(OpenPart { writer: PartWriter::create(&temp_path(&fin), encoders)?, rel, date })
                }
            };
            self.rows += rows.len();
            self.spares.give(part.writer.write(rows)?);
        }
        if self.rows > 0 && self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        Ok(())
    }

    /// After a failure (a full or read-only disk): removes the hidden
    /// files of the commit that will not happen; nothing was committed, so
    /// a re-run writes those rows again.
    fn abandon(&mut self) {
        for (_, part) in std::mem::take(&mut self.open) {
            drop(part.writer);
            let _ = std::fs::remove_file(temp_path(&self.log.root().join(&part.rel)));
        }
    }

    /// Writes every buffered date to a file and commits them with the
    /// input ranges they cover.
    fn commit(&mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let seq = self.log.next_seq();
        let parts = std::mem::take(&mut self.open);
        let temps: Vec<PathBuf> = parts.values().map(|p| temp_path(&self.log.root().join(&p.rel))).collect();
        let finished = parts
            .into_values()
            .map(|part| {
                let rows = part.writer.rows();
                let (bytes, encoders) = part.writer.finish()?;
                if self.encoders.len() < SPARE_ENCODERS {
                    self.encoders.push(encoders);
                }
                Ok(FileEntry { path: part.rel, date: part.date, rows, bytes })
            })
            .collect::<anyhow::Result<Vec<_>>>();
        let files = match finished {
            Ok(files) => files,
            Err(e) => {
                // None of them will be committed: leave no hidden file behind.
                temps.iter().for_each(|t| drop(std::fs::remove_file(t)));
                return Err(e);
            }
        };
        for f in &files {
            self.metrics.archive_bytes.fetch_add(f.bytes, Relaxed);
            self.metrics.archive_rows.fetch_add(f.rows, Relaxed);
        }
        self.opened = 0;
        // One record for every partition: the commit is atomic across them.
        let ranges = std::mem::take(&mut self.range)
            .into_iter()
            .map(|(partition, (start, end, checkpoint))| InputRange { partition, start, end, checkpoint })
            .collect();
        let record = Record::Append {
            seq,
            source: self.source.clone(),
            ranges,
            files,
            committed_at: format_rfc3339(now_micros()),
        };
        self.metrics.archive_files.fetch_add(record.files().len() as u64, Relaxed);
        self.log.commit(record)?;
        self.rows = 0;
        self.oldest = None;
        Ok(())
    }
}

/// A piece's rows split by event day (days since the epoch), no day
/// without rows. A piece is one input chunk, so almost always of one day:
/// then it is not copied.
fn by_day(rows: ArchiveColumns) -> Vec<(i64, ArchiveColumns)> {
    let times = rows.times();
    let Some(&first) = times.first() else { return Vec::new() };
    let day = day_of(first);
    if times.iter().all(|&t| day_of(t) == day) {
        return vec![(day, rows)];
    }
    let mut days: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &t) in times.iter().enumerate() {
        days.entry(day_of(t)).or_default().push(i);
    }
    days.into_iter().map(|(day, at)| (day, rows.select(at))).collect()
}

/// Identity of a file input for the commit log: its name and a hash of its
/// first 64 KiB, so a re-run of the same file is recognised wherever it
/// lies, and a different file under the same name is not.
pub fn file_source_id(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut head = vec![0u8; 64 << 10];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(format!("file:{name}:{:032x}", xxhash_rust::xxh3::xxh3_128(&head[..n])))
}

/// Where the archive of `root` keeps one date's files.
pub fn date_dir(root: &Path, date: &str) -> PathBuf {
    root.join("events").join(format!("event_date={date}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::columns::Origin;
    use crate::event::{EventRef, Micros};

    fn rows(times: &[Micros]) -> ArchiveColumns {
        let mut c = ArchiveColumns::default();
        for (i, &time) in times.iter().enumerate() {
            let e = EventRef {
                event_id: None,
                user_id: "u",
                product_id: "p",
                event_type: "view",
                category: "c",
                session_id: None,
                time,
                price: None,
                quantity: None,
            };
            c.push(e, Origin { ingest_time: 0, partition: 0, position: i as u64 });
        }
        c
    }

    #[test]
    fn busy_time_and_waits_for_a_full_queue_are_counted() {
        // A queue of one piece and pieces of 20 k rows: the writer is
        // still encoding one when the next two are sent, so sends wait.
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let cfg = ArchiveConfig::new(dir.path().to_owned());
        let spares = Arc::new(Spares::default());
        let mut w = ArchiveWriter::start_with_queue(&cfg, "test".into(), spares, metrics.clone(), 1).unwrap();
        let (pieces, rows) = (8u64, 20_000u64);
        // Built first, then sent back to back.
        let built: Vec<Piece> = (0..pieces)
            .map(|p| {
                let mut c = ArchiveColumns::default();
                for i in 0..rows {
                    let (user, position) = (format!("u{}", i % 977), p * rows + i);
                    let e = EventRef {
                        event_id: Some("e"),
                        user_id: &user,
                        product_id: "p",
                        event_type: "view",
                        category: "c",
                        session_id: None,
                        time: 86_400_000_000 + position as i64,
                        price: None,
                        quantity: None,
                    };
                    c.push(e, Origin { ingest_time: 0, partition: 0, position });
                }
                Piece { partition: 0, rows: c, through: (p + 1) * rows, checkpoint: None }
            })
            .collect();
        for piece in built {
            w.send(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(Metrics::get(&metrics.archive_rows), pieces * rows);
        assert!(Metrics::get(&metrics.archive_wait_micros) > 0, "sends waited for the writer");
        assert!(Metrics::get(&metrics.archive_busy_micros) > 0, "the writer's work is counted");
    }

    #[test]
    fn a_piece_is_split_by_event_day_keeping_row_order() {
        let day = 86_400_000_000;
        let split = by_day(rows(&[day + 5, 2 * day, day - 1, day, 3 * day - 1]));
        let got: Vec<(i64, Vec<u64>)> = split.iter().map(|(d, c)| (*d, c.positions().collect())).collect();
        assert_eq!(got, [(0, vec![2]), (1, vec![0, 3]), (2, vec![1, 4])]);
        let one = by_day(rows(&[day, day + 1]));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].1.len(), 2);
        assert!(by_day(ArchiveColumns::default()).is_empty());
    }
}
