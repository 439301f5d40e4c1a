//! Line-oriented inputs (a file or stdin), read on a thread of their own.
//!
//! The reader cuts the byte stream into chunks that end on a newline, so a
//! worker can decode a chunk without looking at the next one, and sends
//! them over a bounded channel (back-pressure: the reader never runs more
//! than a few MiB ahead of the dataflow). Each chunk carries the byte offset
//! it starts at, which is the source position the archive's commit log
//! records. A line longer than the event size limit is not buffered: its
//! first bytes are kept for the dead letter and the rest is skipped.
//!
//! After every send the reader pokes the timely operator's activator, so an
//! idle worker parks instead of spinning while it waits for stdin.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use timely::scheduling::SyncActivator;

use crate::serve::collect::CollectChannel;

/// What a line source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineInput {
    File(PathBuf),
    Stdin,
    /// Events POSTed to `/collect` (`stream --collect`).
    Collect(CollectChannel),
}

impl LineInput {
    pub fn parse(s: &str) -> LineInput {
        if s == "-" {
            LineInput::Stdin
        } else {
            LineInput::File(PathBuf::from(s))
        }
    }

    /// Stdin and `/collect` are live (the future-skew check applies);
    /// files are replays.
    pub fn is_live(&self) -> bool {
        matches!(self, LineInput::Stdin | LineInput::Collect(_))
    }

    /// The `source` field of dead letters from this input.
    pub fn name(&self) -> String {
        match self {
            LineInput::File(p) => format!("file:{}", p.display()),
            LineInput::Stdin => "stdin".to_string(),
            LineInput::Collect(_) => "http:/collect".to_string(),
        }
    }
}

/// One message from the reader thread.
#[derive(Debug)]
pub enum Chunk {
    /// Whole lines starting at byte `offset` of the input.
    Lines { offset: u64, data: Vec<u8> },
    /// A line of `len` bytes at `offset`, over the size limit; `prefix`
    /// holds its first bytes.
    Oversize { offset: u64, len: u64, prefix: Vec<u8> },
    /// The input ended after `offset` bytes.
    End { offset: u64 },
    /// Reading failed; the stream stops with this error.
    Failed(String),
}

// 256 KiB: small enough that the decoded vectors are recycled by the
// allocator instead of being faulted in fresh (measured: 1 MiB chunks spent
// ~20% of a worker in page zeroing), large enough to amortise the hand-offs.
const CHUNK: usize = 1 << 18;
/// Bytes of an oversized line kept in its dead letter.
pub const OVERSIZE_PREFIX: usize = 4096;

/// Hands spent chunk buffers back to the reader, which fills them again:
/// a buffer freshly allocated for every chunk came as freshly faulted,
/// kernel-zeroed pages (a third of the reader thread's CPU).
pub type Recycle = Sender<Vec<u8>>;

/// Spawns the reader; chunks arrive on the returned channel, and their
/// buffers, once spent, may go back through the returned [`Recycle`].
pub fn spawn(
    input: LineInput,
    max_line: usize,
    activator: SyncActivator,
) -> io::Result<(Receiver<Chunk>, Recycle, JoinHandle<()>)> {
    let reader: Box<dyn Read + Send> = match &input {
        LineInput::File(p) => Box::new(File::open(p)?),
        LineInput::Stdin => Box::new(io::stdin()),
        LineInput::Collect(c) => Box::new(c.reader()),
    };
    let (tx, rx) = bounded(8);
    let (recycle, recycled) = bounded(16);
    let handle = std::thread::Builder::new().name("line-reader".into()).spawn(move || {
        let mut r = Reader { tx, recycled, activator, max_line, fill: !input.is_live() };
        if let Err(e) = r.run(reader) {
            let _ = r.tx.send(Chunk::Failed(format!("reading {}: {e}", input.name())));
            let _ = r.activator.activate();
        }
    })?;
    Ok((rx, recycle, handle))
}

struct Reader {
    tx: Sender<Chunk>,
    recycled: Receiver<Vec<u8>>,
    activator: SyncActivator,
    max_line: usize,
    /// A file: fill each chunk. A live input sends what it has.
    fill: bool,
}

impl Reader {
    /// Sends a chunk; `false` if the dataflow has gone away.
    fn send(&self, c: Chunk) -> bool {
        let ok = self.tx.send(c).is_ok();
        let _ = self.activator.activate();
        ok
    }

    /// A buffer for the next chunk, starting with `rest` (a partial line),
    /// with room for a whole chunk more: a spent one if there is one.
    fn buffer(&self, rest: &[u8]) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.clear();
        buf.reserve(rest.len() + CHUNK);
        buf.extend_from_slice(rest);
        buf
    }

    /// Appends up to a chunk of input to `buf`; 0 at the end.
    fn read(&self, input: &mut dyn Read, buf: &mut Vec<u8>) -> io::Result<usize> {
        if self.fill {
            // A file never blocks: fill the buffer's spare capacity, which
            // `read_to_end` does without zeroing it first (zeroing, only to
            // overwrite, was a pass over every byte of the input).
            return input.take(CHUNK as u64).read_to_end(buf);
        }
        // A live input may pause for long: take what is there now.
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let read = input.read(&mut buf[start..]);
        buf.truncate(start + read.as_ref().map_or(0, |n| *n));
        read
    }

    fn run(&mut self, mut input: Box<dyn Read + Send>) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut offset = 0u64; // input offset of buf[0]
                               // While skipping an oversized line: (its offset, bytes so far, prefix).
        let mut skipping: Option<(u64, u64, Vec<u8>)> = None;
        loop {
            let n = match self.read(&mut *input, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let eof = n == 0;

            if let Some((at, len, prefix)) = &mut skipping {
                match memchr::memchr(b'\n', &buf) {
                    Some(i) => {
                        *len += i as u64;
                        let c = Chunk::Oversize { offset: *at, len: *len, prefix: std::mem::take(prefix) };
                        if !self.send(c) {
                            return Ok(());
                        }
                        skipping = None;
                        buf.drain(..=i);
                        offset += i as u64 + 1;
                    }
                    None => {
                        *len += buf.len() as u64;
                        offset += buf.len() as u64;
                        buf.clear();
                        if !eof {
                            continue;
                        }
                        let c = Chunk::Oversize { offset: *at, len: *len, prefix: std::mem::take(prefix) };
                        if !self.send(c) {
                            return Ok(());
                        }
                        skipping = None;
                    }
                }
            }

            // Send everything up to the last newline (or all of it at EOF).
            let cut = if eof { buf.len() } else { memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1) };
            if cut > 0 {
                let next = self.buffer(&buf[cut..]);
                buf.truncate(cut);
                let data = std::mem::replace(&mut buf, next);
                let len = data.len() as u64;
                if !self.send(Chunk::Lines { offset, data }) {
                    return Ok(());
                }
                offset += len;
            }
            // A partial line already longer than the limit: stop buffering it.
            if !eof && buf.len() > self.max_line {
                let prefix = buf[..OVERSIZE_PREFIX.min(buf.len())].to_vec();
                skipping = Some((offset, buf.len() as u64, prefix));
                offset += buf.len() as u64;
                buf.clear();
            }
            if eof {
                self.send(Chunk::End { offset });
                return Ok(());
            }
        }
    }
}
