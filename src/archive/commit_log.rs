//! The archive's commit log: the single source of truth for which Parquet
//! files exist and which input each one covers (SPEC §4 "exactly once").
//!
//! `<archive>/_clickwatch/commits.jsonl`, one JSON record per line. A
//! commit is, in this order:
//!
//! 1. every data file written under a hidden temporary name and fsynced;
//! 2. one record appended to the log and fsynced: the input ranges covered
//!    (source id; per partition, `[start, end)` positions) and the final
//!    names of the files — the commit point, atomic for all partitions;
//! 3. the temporary files renamed to their final names, the directories
//!    fsynced.
//!
//! So a visible file always has a record. On open, recovery rolls forward
//! (renames temporaries whose record made it, deletes files a compaction
//! record replaced) and rolls back (deletes temporaries without a record,
//! truncates a torn last line). The ranges then say which input positions
//! are already archived, so a re-run or a restart after `kill -9` skips
//! exactly those rows. Kafka partitions and offsets use the same records.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::window::clock::Checkpoint;

/// One data file of a commit, relative to the archive root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub date: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// New rows from input `source`: of each partition, positions `[start, end)`.
    Append { seq: u64, source: String, ranges: Vec<InputRange>, files: Vec<FileEntry>, committed_at: String },
    /// `removed` files of `date` were merged into `files`.
    Compact { seq: u64, date: String, removed: Vec<String>, files: Vec<FileEntry>, committed_at: String },
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::Append { seq, .. } | Record::Compact { seq, .. } => *seq,
        }
    }

    pub fn files(&self) -> &[FileEntry] {
        match self {
            Record::Append { files, .. } | Record::Compact { files, .. } => files,
        }
    }
}

/// Positions `[start, end)` of one input partition (byte offsets of a
/// file, offsets of a Kafka partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRange {
    pub partition: u32,
    pub start: u64,
    pub end: u64,
    /// The partition's clock at `end` (Kafka sources): where a restart can
    /// resume without replaying the whole partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

/// The hidden name a data file is written under before its commit.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    final_path.with_file_name(format!(".{name}.tmp"))
}

/// Append-only log plus the derived index of committed ranges and live files.
pub struct CommitLog {
    root: PathBuf,
    file: File,
    /// Per (source, partition): merged, sorted `[start, end)` ranges.
    ranges: BTreeMap<(String, u32), Vec<(u64, u64)>>,
    /// Live data files (relative path → entry).
    live: BTreeMap<String, FileEntry>,
    next_seq: u64,
    /// Held for the log's lifetime: one writer per archive.
    _lock: File,
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing directory {}", dir.display()))
}

/// The committed positions of one input partition: looked up once per
/// piece of input, then asked about each of its rows.
#[derive(Clone, Copy)]
pub struct Committed<'a>(&'a [(u64, u64)]);

impl Committed<'_> {
    pub fn contains(&self, position: u64) -> bool {
        // The common case (a resumed or repeated file) has one range from 0.
        let i = self.0.partition_point(|(s, _)| *s <= position);
        i > 0 && position < self.0[i - 1].1
    }

    /// Whether no position at or after `position` is committed (then no
    /// row of a piece starting there needs a look-up).
    pub fn none_from(&self, position: u64) -> bool {
        self.0.last().is_none_or(|(_, end)| *end <= position)
    }
}

impl CommitLog {
    /// Opens (creating) the log of the archive at `root` and recovers.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let meta = root.join("_clickwatch");
        std::fs::create_dir_all(&meta).with_context(|| format!("creating {}", meta.display()))?;
        let lock = File::create(meta.join("lock")).with_context(|| format!("creating lock in {}", meta.display()))?;
        if lock.try_lock().is_err() {
            bail!("archive {} is in use by another clickwatch process", root.display());
        }
        let path = meta.join("commits.jsonl");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let records = read_records(&mut file, &path)?;
        let mut log = CommitLog {
            root: root.to_owned(),
            file,
            ranges: BTreeMap::new(),
            live: BTreeMap::new(),
            next_seq: 0,
            _lock: lock,
        };
        for r in &records {
            log.apply(r);
        }
        log.recover(&records)?;
        Ok(log)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn apply(&mut self, r: &Record) {
        self.next_seq = self.next_seq.max(r.seq() + 1);
        match r {
            Record::Append { source, ranges: covered, .. } => {
                for r in covered {
                    let ranges = self.ranges.entry((source.clone(), r.partition)).or_default();
                    ranges.push((r.start, r.end));
                    ranges.sort_unstable();
                    // Merge touching or overlapping ranges.
                    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
                    for &(s, e) in ranges.iter() {
                        match merged.last_mut() {
                            Some(last) if s <= last.1 => last.1 = last.1.max(e),
                            _ => merged.push((s, e)),
                        }
                    }
                    *ranges = merged;
                }
            }
            Record::Compact { removed, .. } => {
                for p in removed {
                    self.live.remove(p);
                }
            }
        }
        for f in r.files() {
            self.live.insert(f.path.clone(), f.clone());
        }
    }

    /// Makes the directory agree with the log (see the module doc).
    fn recover(&self, records: &[Record]) -> anyhow::Result<()> {
        for r in records {
            for f in r.files() {
                let fin = self.root.join(&f.path);
                let tmp = temp_path(&fin);
                if self.live.contains_key(&f.path) && !fin.exists() {
                    if tmp.exists() {
                        std::fs::rename(&tmp, &fin).with_context(|| format!("recovering {}", fin.display()))?;
                        log::info!("archive recovery: completed commit of {}", f.path);
                    } else {
                        bail!("archive {}: committed file {} is missing", self.root.display(), f.path);
                    }
                }
            }
            if let Record::Compact { removed, .. } = r {
                for p in removed {
                    let old = self.root.join(p);
                    if old.exists() {
                        std::fs::remove_file(&old).with_context(|| format!("removing compacted {}", old.display()))?;
                    }
                }
            }
        }
        // Temporaries no record mentions were never committed.
        let events = self.root.join("events");
        if events.exists() {
            for dir in std::fs::read_dir(&events)? {
                let dir = dir?.path();
                if !dir.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(&dir)? {
                    let f = f?.path();
                    let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    if name.starts_with('.') && name.ends_with(".tmp") {
                        std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
                        log::info!("archive recovery: removed uncommitted {}", f.display());
                    }
                }
            }
        }
        Ok(())
    }

    /// True if `position` of `source`/`partition` is already archived.
    pub fn is_committed(&self, source: &str, partition: u32, position: u64) -> bool {
        self.committed_ranges(source, partition).contains(position)
    }

    /// The committed `[start, end)` ranges of `source`/`partition`, sorted.
    pub fn committed_ranges(&self, source: &str, partition: u32) -> Committed<'_> {
        Committed(self.ranges.get(&(source.to_string(), partition)).map_or(&[], |r| r.as_slice()))
    }

    /// End of the committed prefix of `source`/`partition` (resume point).
    pub fn committed_prefix(&self, source: &str, partition: u32) -> u64 {
        match self.ranges.get(&(source.to_string(), partition)).and_then(|r| r.first()) {
            Some((0, end)) => *end,
            _ => 0,
        }
    }

    /// Live files of one date partition, oldest commit first.
    pub fn files_of(&self, date: &str) -> Vec<FileEntry> {
        self.live.values().filter(|f| f.date == date).cloned().collect()
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Commits `record`: its files must already be fsynced under their
    /// temporary names. Appends and fsyncs the record, then renames.
    pub fn commit(&mut self, record: Record) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(&record)?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).context("appending to the commit log")?;
        self.file.sync_data().context("syncing the commit log")?;
        let mut dirs = Vec::new();
        for f in record.files() {
            let fin = self.root.join(&f.path);
            std::fs::rename(temp_path(&fin), &fin).with_context(|| format!("publishing {}", fin.display()))?;
            if let Some(d) = fin.parent() {
                if !dirs.contains(&d.to_path_buf()) {
                    dirs.push(d.to_path_buf());
                }
            }
        }
        for d in dirs {
            sync_dir(&d)?;
        }
        if let Record::Compact { removed, .. } = &record {
            for p in removed {
                std::fs::remove_file(self.root.join(p)).with_context(|| format!("removing compacted {p}"))?;
            }
        }
        self.apply(&record);
        Ok(())
    }
}

/// The live data files of the archive at `root`, as a reader sees them:
/// no lock, no recovery (a writer may be running), a torn last record
/// ignored, files listed only if they are in place.
pub fn snapshot(root: &Path) -> anyhow::Result<Vec<FileEntry>> {
    let mut live: BTreeMap<String, FileEntry> = BTreeMap::new();
    for record in committed_records(root)? {
        if let Record::Compact { removed, .. } = &record {
            for p in removed {
                live.remove(p);
            }
        }
        for f in record.files() {
            live.insert(f.path.clone(), f.clone());
        }
    }
    Ok(live.into_values().filter(|f| root.join(&f.path).exists()).collect())
}

/// Every complete record of the archive at `root`, as a reader sees them
/// (no lock; a torn last record ignored). Empty if there is no log yet.
pub fn committed_records(root: &Path) -> anyhow::Result<Vec<Record>> {
    let path = root.join("_clickwatch").join("commits.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut records = Vec::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        records.push(
            serde_json::from_str(line.trim_end()).with_context(|| format!("{}: corrupt record", path.display()))?,
        );
    }
    Ok(records)
}

/// Reads every complete record; truncates a torn last line (a crash while
/// appending: that commit never happened).
fn read_records(file: &mut File, path: &Path) -> anyhow::Result<Vec<Record>> {
    file.seek(SeekFrom::Start(0))?;
    let mut records = Vec::new();
    let mut good = 0u64;
    let mut reader = BufReader::new(&*file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        match (line.ends_with('\n'), serde_json::from_str::<Record>(line.trim_end())) {
            (true, Ok(r)) => {
                records.push(r);
                good += n as u64;
            }
            (false, _) => break, // torn tail
            (true, Err(e)) => bail!("{}: corrupt record at byte {good}: {e}", path.display()),
        }
    }
    drop(reader);
    if good < file.metadata()?.len() {
        log::warn!("{}: dropping a torn last record", path.display());
        file.set_len(good)?;
        file.sync_all()?;
    }
    Ok(records)
}

#[cfg(test)]
#[path = "commit_log_tests.rs"]
mod tests;
