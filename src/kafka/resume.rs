//! Where a restarted Kafka stream picks up, so that its windows are rebuilt
//! exactly and no alert is lost or repeated.
//!
//! Two records survive a crash:
//!
//! - the archive's commit log: per partition, committed offset ranges, each
//!   ending with the partition's clock [`Checkpoint`] (max event time, and
//!   the largest window end its counted events touched);
//! - the *emitted mark* (`_clickwatch/emitted/<source>.json`): every alert
//!   of a window ending before `before` has been delivered (written after
//!   the alert sinks flushed).
//!
//! For each partition, [`plan`] picks the last commit whose events only
//! touched windows ending before the mark: from its end offset, events are
//! counted again (`emit_from`). The clock there must be the one the first
//! run had: its max event time comes from an earlier commit whose max time
//! is more than L + D older (`warm_from`), and the events in between are
//! re-read only to remember their ids for de-duplication, with every output
//! dropped. Alerts of windows ending before the mark are not emitted again.
//! The cost of a restart is thus about L + D of event time per partition,
//! not the whole topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::archive::commit_log::Record;
use crate::event::Micros;
use crate::window::clock::Checkpoint;

/// Where one partition resumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    /// First offset re-read (only to rebuild the clock); `None`: the beginning.
    pub warm_from: Option<u64>,
    /// The clock at `warm_from`.
    pub clock: Checkpoint,
    /// First offset whose events count again.
    pub emit_from: u64,
}

/// Resume points of every partition of `source` that has committed
/// ranges; `before` is the emitted mark, `horizon` is L + D.
pub fn plan(records: &[Record], source: &str, before: Option<Micros>, horizon: Micros) -> BTreeMap<u32, Resume> {
    let Some(before) = before else { return BTreeMap::new() };
    // Per partition, (end, checkpoint) of each committed range, in commit order.
    let mut commits: BTreeMap<u32, Vec<(u64, Checkpoint)>> = BTreeMap::new();
    for r in records {
        if let Record::Append { source: s, ranges, .. } = r {
            if s == source {
                for range in ranges {
                    if let Some(c) = range.checkpoint {
                        commits.entry(range.partition).or_default().push((range.end, c));
                    }
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (partition, list) in commits {
        // Counted windows only grow along a partition, so scan from the end.
        let done = |c: &Checkpoint| c.counted_end.is_none_or(|e| e < before);
        let Some(k) = list.iter().rposition(|(_, c)| done(c)) else { continue };
        let (emit_from, at_k) = list[k];
        let Some(max_k) = at_k.max_time else {
            // Nothing counted yet at k: no clock to rebuild.
            out.insert(partition, Resume { warm_from: Some(emit_from), clock: at_k, emit_from });
            continue;
        };
        // Ids older than max_k - horizon are forgotten at k: start where
        // every earlier event is older than that.
        let warm = list[..k].iter().rposition(|(_, c)| c.max_time.is_some_and(|m| m < max_k - horizon));
        let resume = match warm {
            Some(j) => Resume { warm_from: Some(list[j].0), clock: list[j].1, emit_from },
            None => Resume { warm_from: None, clock: Checkpoint::default(), emit_from },
        };
        out.insert(partition, resume);
    }
    out
}

/// The emitted mark of one source in an archive.
#[derive(Debug, Clone)]
pub struct EmittedMark {
    path: PathBuf,
    source: String,
    before: Option<Micros>,
    written: Option<Instant>,
    /// Each advance waits for the alert sinks to deliver (a Kafka flush),
    /// so not on every frontier step: at most this often.
    every: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MarkFile {
    source: String,
    /// Every alert of a window ending before this (micros) was delivered.
    before: Micros,
}

impl EmittedMark {
    /// Reads the mark of `source` in the archive at `root` (none yet: `None`).
    pub fn open(root: &Path, source: &str, every: Duration) -> anyhow::Result<Self> {
        let name: String =
            source.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = root.join("_clickwatch").join("emitted").join(format!("{name}.json"));
        let before = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<MarkFile>(&bytes)
                    .with_context(|| format!("{}: corrupt emitted mark", path.display()))?
                    .before,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(EmittedMark { path, source: source.to_owned(), before, written: None, every })
    }

    pub fn before(&self) -> Option<Micros> {
        self.before
    }

    /// Whether it is time to advance the mark to `frontier`.
    pub fn due(&self, frontier: Micros) -> bool {
        self.before.is_none_or(|b| frontier > b) && self.written.is_none_or(|t| t.elapsed() >= self.every)
    }

    /// Records durably that alerts of windows ending before `before` are
    /// delivered. Atomic: written aside, fsynced, renamed.
    pub fn advance(&mut self, before: Micros) -> anyhow::Result<()> {
        if self.before.is_some_and(|b| b >= before) {
            return Ok(());
        }
        let dir = self.path.parent().context("emitted mark path has a parent")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&MarkFile { source: self.source.clone(), before })?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("writing {}", self.path.display()))?;
        self.before = Some(before);
        self.written = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::commit_log::InputRange;

    const MIN: Micros = 60_000_000;

    fn record(ranges: Vec<(u32, u64, u64, Micros, Micros)>) -> Record {
        Record::Append {
            seq: 0,
            source: "kafka:t".into(),
            ranges: ranges
                .into_iter()
                .map(|(partition, start, end, max, counted)| InputRange {
                    partition,
                    start,
                    end,
                    checkpoint: Some(Checkpoint { max_time: Some(max), counted_end: Some(counted) }),
                })
                .collect(),
            files: vec![],
            committed_at: String::new(),
        }
    }

    #[test]
    fn no_mark_means_a_full_replay() {
        let records = vec![record(vec![(0, 0, 10, 5 * MIN, 15 * MIN)])];
        assert!(plan(&records, "kafka:t", None, 12 * MIN).is_empty());
    }

    #[test]
    fn resumes_after_the_last_commit_whose_windows_were_all_emitted() {
        // Commits every 10 minutes of event time; windows end 10 min after the pane.
        let records: Vec<Record> = (0..8u64)
            .map(|i| {
                let t = (i as Micros + 1) * 10 * MIN;
                record(vec![(0, i * 100, (i + 1) * 100, t, t + 10 * MIN)])
            })
            .collect();
        // Alerts out for every window ending before minute 55: commit 3
        // (events up to minute 40, windows up to minute 50) is the last
        // whose windows are all out.
        let p = plan(&records, "kafka:t", Some(55 * MIN), 12 * MIN)[&0];
        assert_eq!(p.emit_from, 400);
        // Its max time is minute 40; ids older than 28 are forgotten:
        // warm up from the commit at minute 20 (the last one before 28).
        assert_eq!(p.warm_from, Some(200));
        assert_eq!(p.clock.max_time, Some(20 * MIN));
    }

    #[test]
    fn early_commits_warm_up_from_the_beginning_and_other_sources_are_ignored() {
        let records = vec![record(vec![(0, 0, 100, 10 * MIN, 20 * MIN), (1, 0, 50, 9 * MIN, 20 * MIN)])];
        let p = plan(&records, "kafka:t", Some(25 * MIN), 12 * MIN);
        assert_eq!(p[&0], Resume { warm_from: None, clock: Checkpoint::default(), emit_from: 100 });
        assert_eq!(p[&1].emit_from, 50);
        assert!(plan(&records, "kafka:other", Some(25 * MIN), 12 * MIN).is_empty());
        // A window ending exactly at the mark may not be out yet.
        assert!(plan(&records, "kafka:t", Some(20 * MIN), 12 * MIN).is_empty());
        // The mark is before every counted window: replay everything.
        assert!(plan(&records, "kafka:t", Some(5 * MIN), 12 * MIN).is_empty());
    }

    #[test]
    fn the_mark_survives_a_reopen_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let every = Duration::from_secs(60);
        let mut m = EmittedMark::open(dir.path(), "kafka:t", every).unwrap();
        assert_eq!(m.before(), None);
        assert!(m.due(30 * MIN));
        m.advance(30 * MIN).unwrap();
        assert!(!m.due(40 * MIN), "advanced at most every {every:?}");
        m.advance(20 * MIN).unwrap();
        assert_eq!(EmittedMark::open(dir.path(), "kafka:t", every).unwrap().before(), Some(30 * MIN));
    }
}
