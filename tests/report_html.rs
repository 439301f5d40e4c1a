//! The HTML daily report opens in headless Chromium (Debian's `chromium`,
//! installed by `.ci/run`) without console errors, and the test keeps a
//! screenshot of it in `target/tmp/report.png`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(path.exists(), "{} not found: install Debian's chromium (apt-get install chromium)", path.display());
    path
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden_batch");
    let tmp = tempfile::tempdir().unwrap();
    let (archive, reports) = (tmp.path().join("archive"), tmp.path().join("reports"));
    Command::cargo_bin("clickwatch")
        .unwrap()
        .args(["stream", "--no-console", "--input"])
        .arg(golden.join("input.jsonl"))
        .arg("--archive")
        .arg(&archive)
        .arg("--dead-letter")
        .arg(tmp.path().join("d.jsonl"))
        .assert()
        .success();
    Command::cargo_bin("clickwatch")
        .unwrap()
        .args(["batch", "--date", "2026-11-24", "--archive"])
        .arg(&archive)
        .arg("--reports")
        .arg(&reports)
        .assert()
        .success();
    let html = reports.join("2026-11-24/report.html");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", tmp.path().join("profile").display()))
        .args(["--window-size=1100,900", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{log}");
    let console_errors: Vec<&str> =
        log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("net::ERR")).collect();
    assert!(console_errors.is_empty(), "console errors: {console_errors:?}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot is a real picture ({} bytes)", png.len());
}
