//! Fault injection on the real binary: a full disk and a read-only archive
//! (real tmpfs mounts; these tests need root and fail loudly without it),
//! SIGTERM on a file and on stdin, a flood of malformed events, and
//! timestamps at the ends of the representable range.
//! (Webhook faults are in tests/webhook.rs, Kafka broker restarts and
//! SIGTERM/SIGKILL of a Kafka stream in tests/kafka.rs.)

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("clickwatch")
}

fn generate(path: &Path, args: &[&str]) {
    let out = Command::new(bin()).arg("generate").args(args).arg("--output").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn stream(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir).args(["stream", "--no-console"]).args(args);
    c
}

fn output(c: &mut Command) -> Output {
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sorted alert lines of a JSONL alerts file, without `emitted_at` and `watermark`.
fn alerts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let mut a: serde_json::Value = serde_json::from_str(l).unwrap();
            // When and at which watermark it went out depends on timing.
            a.as_object_mut().unwrap().remove("emitted_at");
            a.as_object_mut().unwrap().remove("watermark");
            a.to_string()
        })
        .collect();
    v.sort();
    v
}

/// Files in `dir` (recursively) whose name starts with a dot: temporary
/// files a reader must never see, and that must not be left behind.
fn hidden_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with('.') {
                out.push(p);
            }
        }
    }
    out
}

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
        let out = out.expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (root, CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,{options}")]).arg(&self.0).status().unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_clearly_leaves_no_partial_file_and_a_rerun_completes_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, &["--events", "200000", "--seed", "5"]);
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "1m");
    let archive = disk.0.join("archive");
    let args = ["--input", "events.jsonl", "--archive", "disk/archive", "--archive-roll-rows", "50000"];

    let out = output(&mut stream(tmp.path(), &args));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("No space left on device") && err.contains("archive disk/archive"), "{err}");
    assert!(hidden_files(&archive).is_empty(), "left behind: {:?}", hidden_files(&archive));

    disk.remount("size=200m"); // space freed
    let out = output(&mut stream(tmp.path(), &args));
    assert!(out.status.success(), "{}", stderr(&out));
    support::check_archive(&input, &archive);
}

#[test]
fn a_read_only_archive_is_refused_clearly_and_used_once_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, &["--events", "20000", "--seed", "6"]);
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "50m");
    std::fs::create_dir_all(disk.0.join("archive")).unwrap();
    disk.remount("ro");
    let args = ["--input", "events.jsonl", "--archive", "disk/archive"];
    let out = output(&mut stream(tmp.path(), &args));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));

    disk.remount("rw");
    let out = output(&mut stream(tmp.path(), &args));
    assert!(out.status.success(), "{}", stderr(&out));
    support::check_archive(&input, &disk.0.join("archive"));
}

fn sigterm(child: &Child) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// Waits for exit, at most `secs`.
fn wait(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "no exit within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_on_a_file_commits_what_was_read_raises_no_alert_from_half_a_window_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, &["--events", "1500000", "--seed", "8", "--duplicate-share", "0.01"]);
    let reference = tmp.path().join("reference.jsonl");
    let out = output(&mut stream(
        tmp.path(),
        &["--input", "events.jsonl", "--alerts-file", "reference.jsonl", "--window-counts", "reference-w.jsonl"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = alerts(&reference);
    let lines = |f: &str| -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(tmp.path().join(f)).unwrap().lines().map(str::to_owned).collect()
    };

    let args = ["--input", "events.jsonl", "--archive", "archive", "--archive-roll-rows", "100000"];
    let mut child = stream(tmp.path(), &args)
        .args(["--alerts-file", "stopped.jsonl", "--window-counts", "stopped-w.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the run finished before the signal: make the input larger");
    sigterm(&child);
    let status = wait(&mut child, 30);
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "SIGTERM exits 0: {log}");
    assert!(log.contains("stopping"), "{log}");

    // Only complete windows were closed: each has the full run's counts.
    let (closed, all) = (lines("stopped-w.jsonl"), lines("reference-w.jsonl"));
    assert!(!closed.is_empty() && closed.len() < all.len(), "{} of {} windows closed", closed.len(), all.len());
    let partial: Vec<_> = closed.difference(&all).collect();
    assert!(
        partial.is_empty(),
        "{} windows closed with part of their events, e.g. {:?}",
        partial.len(),
        partial.first()
    );
    // So only alerts of complete windows: each is one of the full run's.
    let stopped = alerts(&tmp.path().join("stopped.jsonl"));
    assert!(stopped.len() < expected.len(), "the stop came before the end ({} alerts)", stopped.len());
    for a in &stopped {
        assert!(expected.contains(a), "alert from an incomplete window: {a}");
    }
    let archive = tmp.path().join("archive");
    assert!(hidden_files(&archive.join("events")).is_empty());
    let committed = std::fs::read_to_string(archive.join("_clickwatch/commits.jsonl")).unwrap();
    assert!(!committed.is_empty(), "what was read is committed");

    // A re-run completes the archive (exactly once) and raises every alert.
    let out = output(stream(tmp.path(), &args).args(["--alerts-file", "rerun.jsonl"]));
    assert!(out.status.success(), "{}", stderr(&out));
    support::check_archive(&input, &archive);
    assert_eq!(alerts(&tmp.path().join("rerun.jsonl")), expected);
}

#[test]
fn sigterm_on_stdin_ends_the_input_there_and_closes_every_window() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.jsonl");
    generate(&input, &["--events", "100000", "--seed", "4"]);
    let out = output(&mut stream(tmp.path(), &["--input", "events.jsonl", "--alerts-file", "file.jsonl"]));
    assert!(out.status.success(), "{}", stderr(&out));

    let mut child = stream(tmp.path(), &["--input", "-", "--alerts-file", "stdin.jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&input).unwrap()).unwrap();
    stdin.flush().unwrap();
    // Give the stream time to read what was written, then stop it with stdin still open.
    std::thread::sleep(Duration::from_secs(3));
    sigterm(&child);
    let status = wait(&mut child, 30);
    drop(stdin);
    assert!(status.success());
    let got = alerts(&tmp.path().join("stdin.jsonl"));
    assert!(!got.is_empty());
    assert_eq!(got, alerts(&tmp.path().join("file.jsonl")), "stdin stopped by SIGTERM = the same data as a file");
}

#[test]
fn a_flood_of_malformed_events_is_dead_lettered_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("junk.jsonl");
    generate(&input, &["--events", "300000", "--seed", "2", "--malformed-share", "1.0"]);
    let out = output(&mut stream(tmp.path(), &["--input", "junk.jsonl", "--dead-letter", "dead.jsonl", "-w", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("stream: 0 events"), "{}", stderr(&out));
    let dead = std::fs::read_to_string(tmp.path().join("dead.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 300_000);
    assert!(dead.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

#[test]
fn timestamps_at_the_ends_of_the_range_cannot_blow_up_state() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = |id: &str, ts: &str| {
        format!(r#"{{"event_id":"{id}","user_id":"u","product_id":"p","event_type":"view","timestamp":{ts}}}"#)
    };
    let mut lines = vec![
        ev("a", "\"1970-01-01T00:00:00Z\""),
        ev("b", "0"),
        ev("c", "\"2026-11-24T10:00:00Z\""),
        ev("d", "\"9999-12-31T23:59:59.999999Z\""),
        ev("e", "253402300799999"),
        ev("f", "9223372036854775807"),
        ev("g", "-9223372036854775808"),
        ev("h", "\"+275760-09-13T00:00:00Z\""),
        ev("i", "\"0000-01-01T00:00:00Z\""),
    ];
    // After the year-9999 event every later event is late, whatever its time.
    lines.extend((0..10_000).map(|i| ev(&format!("x{i}"), &format!("\"2026-11-24T10:{:02}:00Z\"", i % 60))));
    std::fs::write(tmp.path().join("edge.jsonl"), lines.join("\n") + "\n").unwrap();
    let started = Instant::now();
    let out = output(&mut stream(
        tmp.path(),
        &["--input", "edge.jsonl", "--dead-letter", "dead.jsonl", "--window-counts", "w.jsonl", "-w", "2"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(60));
    let err = stderr(&out);
    // a..e valid and counted; f..i refused (bad_timestamp); the rest valid but late.
    assert!(err.contains("stream: 10005 events"), "{err}");
    assert!(err.contains("4 refused, 10000 late"), "{err}");
    let dead = std::fs::read_to_string(tmp.path().join("dead.jsonl")).unwrap();
    assert_eq!(dead.matches("\"reason\":\"bad_timestamp\"").count(), 4, "{dead}");
    // The windows of 1970, 2026 and 9999, nothing in between.
    let windows = std::fs::read_to_string(tmp.path().join("w.jsonl")).unwrap();
    assert!(windows.lines().count() <= 6, "{windows}");
}
