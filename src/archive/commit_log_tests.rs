//! Commit protocol tests: every crash point between the steps of a commit
//! is simulated by doing the steps by hand, then reopening the log.

use super::*;

fn entry(path: &str) -> FileEntry {
    FileEntry { path: path.to_string(), date: "2026-11-24".into(), rows: 1, bytes: 3 }
}

fn append(seq: u64, start: u64, end: u64, files: &[&str]) -> Record {
    Record::Append {
        seq,
        source: "file:x".into(),
        ranges: vec![InputRange { partition: 0, start, end, checkpoint: None }],
        files: files.iter().map(|f| entry(f)).collect(),
        committed_at: "t".into(),
    }
}

fn write_temp(root: &Path, rel: &str) {
    let fin = root.join(rel);
    std::fs::create_dir_all(fin.parent().unwrap()).unwrap();
    std::fs::write(temp_path(&fin), b"abc").unwrap();
}

const F1: &str = "events/event_date=2026-11-24/part-1.parquet";
const F2: &str = "events/event_date=2026-11-24/part-2.parquet";

#[test]
fn commit_publishes_and_records_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = CommitLog::open(dir.path()).unwrap();
    write_temp(dir.path(), F1);
    log.commit(append(log.next_seq(), 0, 100, &[F1])).unwrap();
    assert!(dir.path().join(F1).exists());
    assert!(!temp_path(&dir.path().join(F1)).exists());
    assert!(log.is_committed("file:x", 0, 0));
    assert!(log.is_committed("file:x", 0, 99));
    assert!(!log.is_committed("file:x", 0, 100));
    assert!(!log.is_committed("file:y", 0, 5));
    write_temp(dir.path(), F2);
    log.commit(append(log.next_seq(), 100, 250, &[F2])).unwrap();
    assert_eq!(log.committed_prefix("file:x", 0), 250);
    drop(log);
    let log = CommitLog::open(dir.path()).unwrap();
    assert_eq!(log.committed_prefix("file:x", 0), 250);
    assert_eq!(log.files_of("2026-11-24").len(), 2);
    assert_eq!(log.next_seq(), 2);
}

#[test]
fn crash_before_record_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    drop(CommitLog::open(dir.path()).unwrap());
    write_temp(dir.path(), F1); // step 1 done, crash before step 2
    let log = CommitLog::open(dir.path()).unwrap();
    assert!(!temp_path(&dir.path().join(F1)).exists(), "uncommitted temporary removed");
    assert!(!dir.path().join(F1).exists());
    assert!(!log.is_committed("file:x", 0, 0));
}

#[test]
fn crash_after_record_rolls_forward() {
    let dir = tempfile::tempdir().unwrap();
    drop(CommitLog::open(dir.path()).unwrap());
    write_temp(dir.path(), F1);
    // Step 2 done by hand, crash before the rename.
    let line = serde_json::to_string(&append(0, 0, 10, &[F1])).unwrap() + "\n";
    let log_path = dir.path().join("_clickwatch/commits.jsonl");
    std::fs::write(&log_path, line).unwrap();
    let log = CommitLog::open(dir.path()).unwrap();
    assert!(dir.path().join(F1).exists(), "commit completed on open");
    assert!(log.is_committed("file:x", 0, 5));
}

#[test]
fn torn_record_is_dropped_and_its_files_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = CommitLog::open(dir.path()).unwrap();
    write_temp(dir.path(), F1);
    log.commit(append(0, 0, 10, &[F1])).unwrap();
    drop(log);
    write_temp(dir.path(), F2);
    let log_path = dir.path().join("_clickwatch/commits.jsonl");
    let full = serde_json::to_string(&append(1, 10, 20, &[F2])).unwrap();
    let mut f = OpenOptions::new().append(true).open(&log_path).unwrap();
    f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap(); // crash mid-append
    drop(f);
    let log = CommitLog::open(dir.path()).unwrap();
    assert!(!log.is_committed("file:x", 0, 15));
    assert!(!temp_path(&dir.path().join(F2)).exists());
    assert!(dir.path().join(F1).exists());
    assert_eq!(std::fs::read_to_string(&log_path).unwrap().lines().count(), 1);
}

#[test]
fn compaction_record_replaces_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = CommitLog::open(dir.path()).unwrap();
    write_temp(dir.path(), F1);
    log.commit(append(0, 0, 10, &[F1])).unwrap();
    let merged = "events/event_date=2026-11-24/part-c.parquet";
    write_temp(dir.path(), merged);
    log.commit(Record::Compact {
        seq: 1,
        date: "2026-11-24".into(),
        removed: vec![F1.into()],
        files: vec![entry(merged)],
        committed_at: "t".into(),
    })
    .unwrap();
    assert!(!dir.path().join(F1).exists());
    assert_eq!(log.files_of("2026-11-24").iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), vec![merged]);
    assert!(log.is_committed("file:x", 0, 3), "ranges survive compaction");
}

#[test]
fn one_writer_per_archive() {
    let dir = tempfile::tempdir().unwrap();
    let _log = CommitLog::open(dir.path()).unwrap();
    let err = CommitLog::open(dir.path()).err().expect("second open refused").to_string();
    assert!(err.contains("in use"), "{err}");
}

/// How far a commit got before the simulated crash.
#[derive(Clone, Copy, Debug)]
enum Crash {
    /// Data files written under their temporary names only.
    TempsOnly,
    /// The record half appended (a torn line).
    TornRecord,
    /// The record appended and synced, no file renamed yet.
    RecordWritten,
    /// The record appended and the first file renamed.
    FirstRenamed,
    /// No crash.
    None,
}

fn crash_strategy() -> impl proptest::strategy::Strategy<Value = Crash> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Crash::TempsOnly),
        Just(Crash::TornRecord),
        Just(Crash::RecordWritten),
        Just(Crash::FirstRenamed),
        Just(Crash::None)
    ]
}

/// Carries out `record`'s commit up to `crash`, then (if it crashed)
/// reopens the log as a restart would. Returns the log and whether the
/// record is durable (a restart must roll it forward).
fn commit_until(root: &Path, mut log: CommitLog, record: Record, crash: Crash) -> (CommitLog, bool) {
    for f in record.files() {
        write_temp(root, &f.path);
    }
    if let Crash::None = crash {
        log.commit(record).unwrap();
        return (log, true);
    }
    let line = serde_json::to_string(&record).unwrap() + "\n";
    let log_path = root.join("_clickwatch/commits.jsonl");
    let mut file = OpenOptions::new().append(true).open(&log_path).unwrap();
    let durable = match crash {
        Crash::TempsOnly => false,
        Crash::TornRecord => {
            file.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
            false
        }
        _ => {
            file.write_all(line.as_bytes()).unwrap();
            if let (Crash::FirstRenamed, Some(f)) = (crash, record.files().first()) {
                let fin = root.join(&f.path);
                std::fs::rename(temp_path(&fin), fin).unwrap();
            }
            true
        }
    };
    drop(file);
    drop(log); // the process dies; the lock goes with it
    (CommitLog::open(root).unwrap(), durable)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random appends and compactions, each crashed at a random step and
    /// recovered: the archive always equals the durable records applied in
    /// order: their files live (and present), nothing else, no temporary
    /// file left, and the committed input ranges those of durable appends.
    #[test]
    fn any_crash_point_recovers_to_the_durable_records(
        steps in proptest::collection::vec((1usize..4, proptest::bool::ANY, crash_strategy()), 1..12)
    ) {
        use std::collections::BTreeSet;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut log = CommitLog::open(root).unwrap();
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut committed_end = 0u64;
        let mut name = 0;
        for (n_files, compact, crash) in steps {
            let fresh = |name: &mut usize| {
                *name += 1;
                format!("events/event_date=2026-11-24/part-{name:04}.parquet")
            };
            let seq = log.next_seq();
            let record = if compact && live.len() >= 2 {
                let removed: Vec<String> = live.iter().take(2).cloned().collect();
                let merged = fresh(&mut name);
                Record::Compact {
                    seq,
                    date: "2026-11-24".into(),
                    removed,
                    files: vec![entry(&merged)],
                    committed_at: "t".into(),
                }
            } else {
                let files: Vec<String> = (0..n_files).map(|_| fresh(&mut name)).collect();
                let refs: Vec<&str> = files.iter().map(String::as_str).collect();
                append(seq, committed_end, committed_end + 10, &refs)
            };
            let (reopened, durable) = commit_until(root, log, record.clone(), crash);
            log = reopened;
            if durable {
                if let Record::Compact { removed, .. } = &record {
                    for r in removed {
                        live.remove(r);
                    }
                } else {
                    committed_end += 10;
                }
                live.extend(record.files().iter().map(|f| f.path.clone()));
            }
            let logged: BTreeSet<String> = log.files_of("2026-11-24").into_iter().map(|f| f.path).collect();
            proptest::prop_assert_eq!(&logged, &live);
            let on_disk: BTreeSet<String> = std::fs::read_dir(root.join("events/event_date=2026-11-24"))
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .map(|f| format!("events/event_date=2026-11-24/{f}"))
                .collect();
            proptest::prop_assert_eq!(&on_disk, &live, "files on disk (temporaries included)");
            proptest::prop_assert_eq!(log.committed_prefix("file:x", 0), committed_end);
        }
    }
}
