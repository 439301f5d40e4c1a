//! Golden tests: each folder under `tests/golden/` holds a small
//! hand-written `input.jsonl`, the `args` to run `clickwatch stream` with,
//! and the expected `alerts.jsonl`, `windows.jsonl` and `dead_letters.jsonl`.
//! The real binary runs on the input; its outputs, with the wall-clock and
//! progress fields (`emitted_at`, `received_at`, `watermark`) removed, must equal the expected
//! files line for line, and do so with 1, 2 and 4 workers.
//!
//! After a deliberate behaviour change, `UPDATE_GOLDEN=1 cargo test --test
//! golden` rewrites the expected files; review the diff before committing.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn normalize(path: &Path, drop: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad JSON line {l}: {e}", path.display()));
            for k in drop {
                assert!(v.remove(*k).is_some(), "{}: field {k} missing in {l}", path.display());
            }
            serde_json::Value::Object(v).to_string()
        })
        .collect()
}

fn run_case(dir: &Path, workers: usize) -> [(String, Vec<String>); 3] {
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let out = |name: &str| tmp.path().join(name);
    Command::cargo_bin("clickwatch")
        .expect("binary built")
        .current_dir(dir) // dead letters name the input as given: keep it relative
        .arg("stream")
        .args(["--input", "input.jsonl"])
        .arg("--alerts-file")
        .arg(out("alerts.jsonl"))
        .arg("--window-counts")
        .arg(out("windows.jsonl"))
        .arg("--dead-letter")
        .arg(out("dead_letters.jsonl"))
        .args(["--no-console", "--workers", &workers.to_string()])
        .args(args.split_whitespace())
        .assert()
        .success();
    let mut alerts = normalize(&out("alerts.jsonl"), &["emitted_at", "watermark"]);
    if args.contains("early") {
        // Provisional alerts go out as progress allows: the set is fixed,
        // the interleaving with finals of other windows is not.
        alerts.sort();
    }
    [
        ("alerts.jsonl".into(), alerts),
        ("windows.jsonl".into(), normalize(&out("windows.jsonl"), &[])),
        ("dead_letters.jsonl".into(), normalize(&out("dead_letters.jsonl"), &["received_at"])),
    ]
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("input.jsonl").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 4, "golden cases missing in {}", root.display());
    v
}

#[test]
fn golden_outputs_match_for_1_2_and_4_workers() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for dir in cases() {
        let got = run_case(&dir, 1);
        for (name, lines) in &got {
            let expected_path = dir.join(format!("expected_{name}"));
            if update {
                let mut text = lines.join("\n");
                if !lines.is_empty() {
                    text.push('\n');
                }
                std::fs::write(&expected_path, text).expect("write golden");
                continue;
            }
            let expected: Vec<String> = std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()))
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()))
                        .to_string()
                })
                .collect();
            assert_eq!(lines, &expected, "{} differs from {}", name, expected_path.display());
        }
        for workers in [2, 4] {
            assert_eq!(run_case(&dir, workers), got, "{} with {workers} workers", dir.display());
        }
    }
}
