//! Helpers shared by integration tests.

#[allow(dead_code)]
pub mod kafka;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv with pyarrow and duckdb (bench/venv.sh); fails loudly if it cannot be made.
pub fn python() -> PathBuf {
    let out = Command::new("bash").arg(root().join("bench/venv.sh")).output().expect("run bench/venv.sh");
    assert!(out.status.success(), "making the Python venv failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("bin/python")
}

/// The archive holds every valid line of `input` exactly once, as read by
/// pyarrow and DuckDB (tests/py/check_archive.py).
pub fn check_archive(input: &Path, archive: &Path) {
    let out = Command::new(python())
        .arg(root().join("tests/py/check_archive.py"))
        .arg("--input")
        .arg(input)
        .arg("--archive")
        .arg(archive)
        .output()
        .expect("run check_archive.py");
    assert!(
        out.status.success(),
        "archive check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
