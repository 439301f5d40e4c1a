//! A JSON-lines output file: alerts, dead letters, late events and window
//! counts all go through this one writer.
//!
//! The file is created (with its parent directories) and truncated at
//! start — or, for a stream that resumes (Kafka), opened for appending
//! with a torn last line from a crash cut off — buffered while running,
//! and flushed and fsynced by `finish`, so a clean exit never leaves a
//! torn last line.

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

    /// Opens `path` to add lines after the complete ones it has: a last
    /// line without its newline (a crash mid-write) is cut off.
    pub fn append(path: &Path) -> anyhow::Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
        }
        let open = || -> std::io::Result<File> {
            let mut f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
            // Find the end of the last complete line, scanning back in blocks.
            let mut end = f.metadata()?.len();
            let mut block = vec![0u8; 64 << 10];
            let keep = loop {
                if end == 0 {
                    break 0;
                }
                let start = end.saturating_sub(block.len() as u64);
                let buf = &mut block[..(end - start) as usize];
                f.seek(SeekFrom::Start(start))?;
                f.read_exact(buf)?;
                if let Some(i) = memchr::memrchr(b'\n', buf) {
                    break start + i as u64 + 1;
                }
                end = start;
            };
            f.set_len(keep)?;
            f.seek(SeekFrom::End(0))?;
            Ok(f)
        };
        let f = open().with_context(|| format!("opening {} to append", path.display()))?;
        Ok(JsonlFile { path: path.to_owned(), out: BufWriter::with_capacity(1 << 16, f), lines: 0 })
    }

    /// Creates `path`, or with `append` adds to it (see [`JsonlFile::append`]).
    pub fn open(path: &Path, append: bool) -> anyhow::Result<Self> {
        if append {
            Self::append(path)
        } else {
            Self::create(path)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_keeps_complete_lines_and_cuts_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let mut f = JsonlFile::append(&path).unwrap();
        f.write_line("{\"d\":4}").unwrap();
        f.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"d\":4}\n");
        let fresh = dir.path().join("new/b.jsonl");
        JsonlFile::append(&fresh).unwrap().finish().unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "");
    }
}
