//! The batch layer's way in: archive files → rows with interned names →
//! de-duplicated facts for the dataflow.
//!
//! A round's reading runs on its own thread ([`read_round`]) and hands the
//! facts over in chunks, so the dataflow's worker sorts and arranges one
//! chunk while the next is decoded: on a one-shot run the Parquet decoding
//! and the differential work overlap instead of adding up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::SyncSender;

use anyhow::Context;

use crate::archive::commit_log::FileEntry;
use crate::archive::parquet::for_each_batch_row;
use crate::batch::dedup::Dedup;
use crate::dataflows::batch::{BatchEvent, Fact, Names};

/// Facts per chunk handed to the dataflow: big enough that the hand-over
/// costs nothing, small enough that the worker starts early.
const CHUNK: usize = 64 * 1024;

/// A chunk of changes to one day's facts (the day's index in the round).
pub type Chunk = (usize, Vec<(Fact, isize)>);

/// One day's state on the reading side: its names, the de-duplication of
/// its event_ids and the rows of every file fed (to retract them if a
/// compaction removes the file; a one-shot run keeps no rows).
pub struct DayIngest {
    pub names: Names,
    dedup: Dedup,
    loaded: BTreeMap<String, Vec<BatchEvent>>,
    keep_rows: bool,
}

/// What a round does to one day: files to retract, files to add.
#[derive(Default, Debug)]
pub struct Plan {
    gone: Vec<String>,
    new: Vec<String>,
    new_rows: u64,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.new.is_empty()
    }
}

impl DayIngest {
    pub fn new(keep_rows: bool) -> Self {
        DayIngest { names: Names::default(), dedup: Dedup::default(), loaded: BTreeMap::new(), keep_rows }
    }

    /// Files of the archive's current snapshot (`live`) for `date` compared
    /// with those already fed.
    pub fn plan(&self, live: &[FileEntry], date: &str) -> Plan {
        let want: BTreeMap<&str, u64> =
            live.iter().filter(|f| f.date == date).map(|f| (f.path.as_str(), f.rows)).collect();
        let gone = self.loaded.keys().filter(|p| !want.contains_key(p.as_str())).cloned().collect();
        let new: Vec<(&str, u64)> = want.into_iter().filter(|(p, _)| !self.loaded.contains_key(*p)).collect();
        Plan {
            gone,
            new_rows: new.iter().map(|(_, rows)| rows).sum(),
            new: new.into_iter().map(|(p, _)| p.to_string()).collect(),
        }
    }

    /// The files fed so far (archive-relative paths).
    pub fn files(&self) -> Vec<String> {
        self.loaded.keys().cloned().collect()
    }

    /// Adds (`diff` > 0) or retracts (`diff` < 0) copies of one row.
    pub fn update(&mut self, e: BatchEvent, diff: isize, out: &mut impl FnMut(Fact, isize)) {
        self.dedup.update(e, diff, &self.names, out);
    }

    /// Reads `path` (relative to `archive`): only the columns the metrics
    /// use, straight into ids.
    fn load(&mut self, archive: &Path, path: &str, out: &mut impl FnMut(Fact, isize)) -> anyhow::Result<u64> {
        let full = archive.join(path);
        let mut rows: Vec<BatchEvent> = Vec::new();
        let mut n = 0u64;
        let (names, dedup, keep) = (&mut self.names, &mut self.dedup, self.keep_rows);
        for_each_batch_row(&full, |c| {
            let e = BatchEvent::from_columns(&c, names);
            dedup.update(e, 1, names, out);
            if keep {
                rows.push(e);
            }
            n += 1;
        })
        .with_context(|| format!("reading {}", full.display()))?;
        self.loaded.insert(path.to_string(), rows);
        Ok(n)
    }

    fn retract(&mut self, path: &str, out: &mut impl FnMut(Fact, isize)) {
        for e in self.loaded.remove(path).unwrap_or_default() {
            self.update(e, -1, out);
        }
    }
}

/// Carries out every day's plan, sending the facts' changes to `to` in
/// chunks. Ends (dropping `to`) when done or at the first error.
pub fn read_round(archive: &Path, days: &mut [DayIngest], plans: &[Plan], to: SyncSender<Chunk>) -> anyhow::Result<()> {
    for (i, (day, plan)) in days.iter_mut().zip(plans).enumerate() {
        let mut chunk: Vec<(Fact, isize)> = Vec::with_capacity(CHUNK);
        // A closed channel means the worker is gone: its error is the one
        // that matters, so this side just stops.
        let mut closed = false;
        let mut out = |f: Fact, d: isize| {
            chunk.push((f, d));
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                closed |= to.send((i, full)).is_err();
            }
        };
        for p in &plan.gone {
            day.retract(p, &mut out);
        }
        day.dedup.reserve(plan.new_rows as usize);
        let mut progress = crate::progress::Progress::new("batch: reading archive rows", plan.new_rows);
        let mut done = 0u64;
        for p in &plan.new {
            done += day.load(archive, p, &mut out)?;
            progress.set(done);
        }
        progress.finish();
        if !chunk.is_empty() {
            closed |= to.send((i, chunk)).is_err();
        }
        if closed {
            return Ok(());
        }
    }
    Ok(())
}
