//! The Parquet archive (SPEC §4): every valid event exactly once, in
//! `<archive>/events/event_date=YYYY-MM-DD/part-….parquet`, readable as is
//! by Spark, DuckDB and pyarrow.
//!
//! - [`columns`]: rows in columns, as the decoding workers build them;
//!   [`column`]: one of them, as an encoder borrows it.
//! - [`parquet`]: the file format (schema, which column gets which
//!   encoding), written column by column by [`dictionary`] (the repeating
//!   columns), [`delta`] (ids, times, offsets) and `chunk` (pages, chunk
//!   metadata, zstd), with `hybrid` (RLE/bit-packed runs).
//! - [`commit_log`]: which files exist and which input they cover; atomic
//!   commits and crash recovery.
//! - [`writer`]: the thread that rolls files by size and age and commits.
//! - [`compact`]: merging a day's small files.

mod bitpack;
mod chunk;
pub mod column;
pub mod columns;
pub mod commit_log;
pub mod compact;
pub mod delta;
pub mod dictionary;
mod hybrid;
mod intern;
pub mod parquet;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::event::timestamp::{format_rfc3339, now_micros};
use commit_log::{temp_path, CommitLog, FileEntry, Record};

/// `[archive]` in the config file; `--archive DIR` turns it on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub dir: PathBuf,
    /// Commit once this many rows are buffered (the size roll).
    #[serde(default = "default_roll_rows")]
    pub roll_rows: usize,
    /// Commit buffered rows at the latest after this long (the age roll),
    /// so a quiet stream still reaches the batch layer.
    #[serde(with = "humantime_serde", default = "default_roll_age")]
    pub roll_age: Duration,
}

fn default_roll_rows() -> usize {
    1_000_000
}
fn default_roll_age() -> Duration {
    Duration::from_secs(60)
}

impl ArchiveConfig {
    pub fn new(dir: PathBuf) -> Self {
        ArchiveConfig { dir, roll_rows: default_roll_rows(), roll_age: default_roll_age() }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| ConfigError::Invalid { key, message: message.to_string() };
        if self.roll_rows == 0 {
            return Err(bad("archive.roll_rows", "must be positive"));
        }
        if self.roll_age.is_zero() {
            return Err(bad("archive.roll_age", "must be positive"));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(bad("archive.dir", "must not be empty"));
        }
        Ok(())
    }
}

/// What `compact` did to one date.
#[derive(Debug, PartialEq, Eq)]
pub struct Compacted {
    pub before_files: usize,
    pub after_files: usize,
    pub rows: u64,
}

/// Merges the live files of `date` into files of at most `max_rows` rows,
/// committed atomically through the log (readers that follow the log see
/// either the old files or the new ones, never both).
pub fn compact_date(root: &std::path::Path, date: &str, max_rows: usize) -> anyhow::Result<Compacted> {
    let mut log = CommitLog::open(root)?;
    let old = log.files_of(date);
    let rows: u64 = old.iter().map(|f| f.rows).sum();
    if old.len() <= 1 {
        return Ok(Compacted { before_files: old.len(), after_files: old.len(), rows });
    }
    let seq = log.next_seq();
    let finals: Vec<String> =
        (0..old.len()).map(|i| format!("events/event_date={date}/part-{seq:08}-c{i:03}.parquet")).collect();
    let inputs: Vec<PathBuf> = old.iter().map(|f| root.join(&f.path)).collect();
    let outputs = compact::merge_files(&inputs, max_rows, &mut |i| temp_path(&root.join(&finals[i])))
        .with_context(|| format!("compacting {date}"))?;
    let files: Vec<FileEntry> = outputs
        .iter()
        .enumerate()
        .map(|(i, (_, rows, bytes))| FileEntry {
            path: finals[i].clone(),
            date: date.to_string(),
            rows: *rows,
            bytes: *bytes,
        })
        .collect();
    let after: u64 = files.iter().map(|f| f.rows).sum();
    anyhow::ensure!(after == rows, "compaction of {date} would change the row count ({rows} -> {after})");
    let after_files = files.len();
    log.commit(Record::Compact {
        seq,
        date: date.to_string(),
        removed: old.iter().map(|f| f.path.clone()).collect(),
        files,
        committed_at: format_rfc3339(now_micros()),
    })?;
    Ok(Compacted { before_files: old.len(), after_files, rows })
}
