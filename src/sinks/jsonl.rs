//! A JSON-lines output file: alerts, dead letters, late events and window
//! counts all go through this one writer.
//!
//! The file is created (with its parent directories) and truncated at
//! start, buffered while running, and flushed and fsynced by `finish`, so
//! a clean exit never leaves a torn last line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug)]
pub struct JsonlFile {
    path: PathBuf,
    out: BufWriter<File>,
    lines: u64,
}

impl JsonlFile {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
        }
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(JsonlFile { path: path.to_owned(), out: BufWriter::with_capacity(1 << 16, f), lines: 0 })
    }

    /// Appends one line; `line` must not contain a newline.
    pub fn write_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.lines += 1;
        Ok(())
    }

    /// Pushes buffered lines to the OS so readers (tail -f) see them.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and fsyncs, keeping the file open.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.out.get_ref().sync_all().with_context(|| format!("syncing {}", self.path.display()))
    }

    /// Flushes and fsyncs.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.sync()
    }
}
