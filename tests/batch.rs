//! The batch layer end to end on a small hand-written day
//! (`tests/golden_batch/input.jsonl`): ties in the top products, a user
//! with only carts, zero denominators, repeating decimals, a missing
//! category, an `other` event type, a repeated event_id and events without
//! ids. `stream --archive` writes the archive, `batch` reads it; the CSVs,
//! summary and JSON must equal the checked-in expectations.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn clickwatch() -> Command {
    Command::cargo_bin("clickwatch").expect("binary built")
}

#[test]
fn golden_day_reports() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden_batch");
    let tmp = tempfile::tempdir().unwrap();
    let (archive, reports) = (tmp.path().join("archive"), tmp.path().join("reports"));
    clickwatch()
        .args(["stream", "--no-console", "--input"])
        .arg(golden.join("input.jsonl"))
        .arg("--archive")
        .arg(&archive)
        .arg("--dead-letter")
        .arg(tmp.path().join("d.jsonl"))
        .assert()
        .success();
    for _ in 0..2 {
        // Twice: re-running replaces the day's reports.
        clickwatch()
            .args(["batch", "--date", "2026-11-24", "--archive"])
            .arg(&archive)
            .arg("--reports")
            .arg(&reports)
            .assert()
            .success()
            .stderr(predicate::str::contains("13 events"));
    }
    let day = reports.join("2026-11-24");
    for f in ["segment_summary.csv", "user_segments.csv", "top_products.csv", "conversion_rates.csv", "summary.txt"] {
        let got = std::fs::read_to_string(day.join(f)).unwrap();
        let want = std::fs::read_to_string(golden.join("expected").join(f)).unwrap();
        assert_eq!(got, want, "{f}");
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(day.join("report.json")).unwrap()).unwrap();
    let obj = json.as_object_mut().unwrap();
    assert!(obj.remove("generated_at").is_some());
    assert_eq!(obj.remove("version").unwrap(), env!("CARGO_PKG_VERSION"));
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("expected/report.json")).unwrap()).unwrap();
    assert_eq!(json, want);
    let html = std::fs::read_to_string(day.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("p5 (garden)"), "charts present");
    assert!(!html.contains("http://") && !html.contains("https://"), "self-contained: no external URLs");
    let leftovers: Vec<_> = std::fs::read_dir(&reports).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary directories left: {leftovers:?}");
}

#[test]
fn a_day_without_data_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    clickwatch()
        .args(["batch", "--from", "2026-11-20", "--to", "2026-11-21", "--archive"])
        .arg(tmp.path().join("empty-archive"))
        .arg("--reports")
        .arg(tmp.path().join("reports"))
        .assert()
        .success()
        .stderr(predicate::str::contains("no data"));
    for day in ["2026-11-20", "2026-11-21"] {
        let text = std::fs::read_to_string(tmp.path().join("reports").join(day).join("summary.txt")).unwrap();
        assert!(text.contains("No data for"), "{text}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("reports").join(day).join("report.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["has_data"], false);
        assert_eq!(json["event_count"], 0);
    }
    clickwatch()
        .args(["batch", "--date", "yesterday", "--archive", "x", "--reports", "y"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("date"));
}

/// The same metrics recomputed by DuckDB SQL on the archive must equal the
/// reports cell by cell, on a generated day of 1 M events with duplicates,
/// late and malformed lines and missing categories.
#[test]
fn one_million_events_agree_with_duckdb() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::process::Command::new("bash").arg(root.join("bench/venv.sh")).output().expect("bench/venv.sh");
    assert!(venv.status.success(), "making the Python venv failed:\n{}", String::from_utf8_lossy(&venv.stderr));
    let python = Path::new(String::from_utf8(venv.stdout).unwrap().trim()).join("bin/python");
    let tmp = tempfile::tempdir().unwrap();
    let (input, archive, reports) =
        (tmp.path().join("e.jsonl"), tmp.path().join("archive"), tmp.path().join("reports"));
    clickwatch()
        .args(["generate", "--events", "1000000", "--seed", "9", "--duplicate-share", "0.01"])
        .args(["--late-share", "0.01", "--malformed-share", "0.001", "--output"])
        .arg(&input)
        .assert()
        .success();
    clickwatch()
        .args(["stream", "--no-console", "-w", "2", "--input"])
        .arg(&input)
        .arg("--archive")
        .arg(&archive)
        .arg("--dead-letter")
        .arg(tmp.path().join("d.jsonl"))
        .assert()
        .success();
    clickwatch()
        .args(["batch", "--date", "2026-11-24", "--archive"])
        .arg(&archive)
        .arg("--reports")
        .arg(&reports)
        .assert()
        .success();
    let out = std::process::Command::new(python)
        .arg(root.join("tests/py/check_batch.py"))
        .arg("--archive")
        .arg(&archive)
        .args(["--date", "2026-11-24", "--reports"])
        .arg(&reports)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB disagrees:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `batch --follow`: after each archive commit (and after a compaction),
/// the followed reports equal a one-shot run over the same files.
#[test]
fn follow_mode_equals_one_shot_after_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let (archive, followed, once) = (tmp.path().join("archive"), tmp.path().join("followed"), tmp.path().join("once"));
    std::fs::create_dir_all(&archive).unwrap();
    let mut follower = std::process::Command::new(assert_cmd::cargo::cargo_bin("clickwatch"))
        .args(["batch", "--follow", "--poll", "100ms", "--date", "2026-11-24", "--archive"])
        .arg(&archive)
        .arg("--reports")
        .arg(&followed)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let read_json = |dir: &Path| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join("2026-11-24/report.json")).ok()?;
        let mut v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.as_object_mut()?.remove("generated_at");
        Some(v)
    };
    let files = ["segment_summary.csv", "user_segments.csv", "top_products.csv", "conversion_rates.csv", "summary.txt"];
    let check = |step: &str| {
        clickwatch()
            .args(["batch", "--date", "2026-11-24", "--archive"])
            .arg(&archive)
            .arg("--reports")
            .arg(&once)
            .assert()
            .success();
        let want = read_json(&once).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while read_json(&followed).as_ref() != Some(&want) {
            assert!(
                std::time::Instant::now() < deadline,
                "{step}: follow mode did not converge to the one-shot report"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for f in files {
            let a = std::fs::read_to_string(followed.join("2026-11-24").join(f)).unwrap();
            assert_eq!(a, std::fs::read_to_string(once.join("2026-11-24").join(f)).unwrap(), "{step}: {f}");
        }
    };
    for seed in ["1", "2", "3"] {
        let input = tmp.path().join(format!("e{seed}.jsonl"));
        clickwatch()
            .args(["generate", "--events", "20000", "--duplicate-share", "0.02", "--seed", seed, "--output"])
            .arg(&input)
            .assert()
            .success();
        clickwatch()
            .args(["stream", "--no-console", "--input"])
            .arg(&input)
            .arg("--archive")
            .arg(&archive)
            .arg("--dead-letter")
            .arg(tmp.path().join("d.jsonl"))
            .assert()
            .success();
        check(&format!("after input {seed}"));
    }
    clickwatch().args(["compact", "--date", "2026-11-24", "--archive"]).arg(&archive).assert().success();
    check("after compaction");
    follower.kill().unwrap();
    follower.wait().unwrap();
}
