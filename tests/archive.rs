//! The Parquet archive, checked by readers clickwatch did not write
//! (pyarrow and DuckDB from PyPI, in the venv `bench/venv.sh` makes):
//! exactly the valid input rows, once, also after re-runs, `kill -9`s and
//! compaction.

mod support;

use support::check_archive;

use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};
use std::time::Duration;

use assert_cmd::Command;

/// `events` lines over two days unless `extra` sets `--span`.
fn generate(path: &Path, events: u64, extra: &[&str]) {
    let span = if extra.contains(&"--span") { &[][..] } else { &["--span", "2d"][..] };
    Command::cargo_bin("clickwatch")
        .unwrap()
        .args(["generate", "--events", &events.to_string(), "--seed", "5", "--output"])
        .arg(path)
        .args(span)
        .args(extra)
        .assert()
        .success();
}

fn stream_cmd(input: &Path, dir: &Path, extra: &[&str]) -> Std {
    let mut cmd = Std::new(assert_cmd::cargo::cargo_bin("clickwatch"));
    cmd.arg("stream")
        .arg("--input")
        .arg(input)
        .arg("--archive")
        .arg(dir.join("archive"))
        .arg("--dead-letter")
        .arg(dir.join("dead.jsonl"))
        .arg("--no-console")
        .args(extra);
    cmd
}

fn parquet_files(archive: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(archive.join("events")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v.sort();
    v
}

#[test]
fn archive_holds_every_valid_event_once_and_reruns_add_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, 200_000, &["--late-share", "0.01", "--duplicate-share", "0.01", "--malformed-share", "0.01"]);
    let out = stream_cmd(&input, tmp.path(), &["--archive-roll-rows", "30000", "-w", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = parquet_files(&tmp.path().join("archive"));
    assert!(files.len() >= 6, "rolled by size into several files: {files:?}");
    assert!(files.iter().any(|f| f.to_string_lossy().contains("event_date=2026-11-25")), "two days, two partitions");
    assert!(files.iter().all(|f| f.extension().is_some_and(|e| e == "parquet")), "no temporaries left: {files:?}");
    check_archive(&input, &tmp.path().join("archive"));

    // The same input again: everything is already committed.
    let out = stream_cmd(&input, tmp.path(), &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(": 0 rows in 0 files"), "{stderr}");
    assert_eq!(parquet_files(&tmp.path().join("archive")), files);
    check_archive(&input, &tmp.path().join("archive"));
}

#[test]
fn kill_9_at_random_points_then_restart_leaves_each_event_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, 2_000_000, &["--duplicate-share", "0.001", "--malformed-share", "0.001"]);
    // Small, frequent commits so kills land before, inside and after them.
    let args = ["--archive-roll-rows", "40000", "-w", "2"];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    while kills < 12 {
        let mut child = stream_cmd(&input, tmp.path(), &args).stderr(Stdio::null()).spawn().unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 1500));
        if child.try_wait().unwrap().is_some() {
            break; // it finished before we got to it: the archive is complete
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 10, "only {kills} kills landed; the run is too short to test crashes");
    let out = stream_cmd(&input, tmp.path(), &args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_archive(&input, &tmp.path().join("archive"));
}

#[test]
fn compaction_keeps_the_rows_and_replaces_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, 100_000, &["--span", "12h"]);
    let out = stream_cmd(&input, tmp.path(), &["--archive-roll-rows", "10000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archive = tmp.path().join("archive");
    let before = parquet_files(&archive);
    assert!(before.len() >= 10);
    // A concurrent reader: every file it can open must be complete.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, dir) = (stop.clone(), archive.join("events/event_date=2026-11-24"));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for f in std::fs::read_dir(&dir).unwrap().flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') || !name.ends_with(".parquet") {
                        continue; // hidden temporaries are not part of the dataset
                    }
                    match clickwatch::archive::parquet::read_file(&f.path()) {
                        Ok(_) => reads += 1,
                        // Deleted between listing and opening: not a partial file.
                        Err(_) if !f.path().exists() => {}
                        Err(e) => panic!("reader saw a broken file {name}: {e:#}"),
                    }
                }
            }
            reads
        })
    };
    Command::cargo_bin("clickwatch")
        .unwrap()
        .args(["compact", "--date", "2026-11-24", "--archive"])
        .arg(&archive)
        .assert()
        .success()
        .stderr(predicates::str::contains("-> 1 files"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().expect("reader thread") > 0);
    let after = parquet_files(&archive);
    assert_eq!(after.len(), 1, "{after:?}");
    check_archive(&input, &archive);
    // Compacting again is a no-op, and a bad date is a usage error.
    Command::cargo_bin("clickwatch")
        .unwrap()
        .args(["compact", "--date", "2026-11-24", "--archive"])
        .arg(&archive)
        .assert()
        .success();
    assert_eq!(parquet_files(&archive), after);
    Command::cargo_bin("clickwatch")
        .unwrap()
        .args(["compact", "--date", "24.11.2026", "--archive"])
        .arg(&archive)
        .assert()
        .code(2);
}

#[test]
fn a_quiet_stream_becomes_visible_within_the_age_limit() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, 500, &["--span", "1h"]);
    let mut child = stream_cmd(Path::new("-"), tmp.path(), &["--archive-roll-age", "1s"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&input).unwrap()).unwrap();
    stdin.flush().unwrap();
    // The input is still open: only the age roll can have committed these.
    let archive = tmp.path().join("archive");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !archive.join("events").exists() || parquet_files(&archive).is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing committed within 30 s with roll_age = 1s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.try_wait().unwrap().is_none(), "the stream is still running");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    check_archive(&input, &archive);
}
