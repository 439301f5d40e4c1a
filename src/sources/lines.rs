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
//! The chunks go into one queue shared by every worker of the reading
//! process (a [`Feed`]): a worker takes the next chunk whenever it has time
//! to decode one, so a busy worker simply takes fewer. The reader numbers
//! the chunks, and after every send it wakes the workers' read operators,
//! so an idle worker parks instead of spinning while it waits for stdin.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
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

/// One message from the reader thread. `seq` numbers the chunks of the
/// input 0, 1, 2, ... in input order. The input has ended when the queue
/// is closed and empty.
#[derive(Debug)]
pub enum Chunk {
    /// Whole lines starting at byte `offset` of the input.
    Lines { seq: u64, offset: u64, data: Vec<u8> },
    /// A line of `len` bytes at `offset`, over the size limit; `prefix`
    /// holds its first bytes.
    Oversize { seq: u64, offset: u64, len: u64, prefix: Vec<u8> },
    /// Reading failed; the stream stops with this error.
    Failed(String),
}

// 256 KiB: small enough that the decoded vectors are recycled by the
// allocator instead of being faulted in fresh (measured: 1 MiB chunks spent
// ~20% of a worker in page zeroing), large enough to amortise the hand-offs.
const CHUNK: usize = 1 << 18;
/// Bytes of an oversized line kept in its dead letter.
pub const OVERSIZE_PREFIX: usize = 4096;

/// Chunks taken from a [`Feed`] and not yet settled, at most (plus one per
/// other worker taking at the same moment): the bound on decoded input
/// waiting for the in-order pass (`IN_FLIGHT` × 256 KiB of input plus its
/// decoded records).
const IN_FLIGHT: usize = 12;
/// Chunks read ahead, waiting to be taken.
const QUEUE: usize = 8;

/// The reader's side of a line input, shared by the workers of the process
/// that reads it (timely workers are threads; the queue is multi-consumer).
#[derive(Default)]
pub struct Feed {
    chunks: OnceLock<Receiver<Chunk>>,
    /// Hands spent chunk buffers back to the reader, which fills them
    /// again: a buffer freshly allocated for every chunk came as freshly
    /// faulted, kernel-zeroed pages (a third of the reader thread's CPU).
    recycle: OnceLock<Sender<Vec<u8>>>,
    /// The read operators to wake when there is something to take.
    wakers: Mutex<Vec<SyncActivator>>,
    /// Chunks taken and not yet settled (see [`Feed::settle`]).
    in_flight: AtomicUsize,
}

/// What [`Feed::take`] found.
pub enum Take {
    Chunk(Chunk),
    /// Nothing now: the reader is behind, or enough chunks are in flight.
    Wait,
    /// The input has ended (or the reader is gone).
    Ended,
}

impl Feed {
    /// Wakes `activator` whenever the feed may have something new.
    /// Register before the operator first runs, so no wake is missed.
    pub fn register(&self, activator: SyncActivator) {
        if let Ok(mut w) = self.wakers.lock() {
            w.push(activator);
        }
    }

    /// Wakes every registered read operator.
    pub fn wake(&self) {
        if let Ok(w) = self.wakers.lock() {
            for a in w.iter() {
                let _ = a.activate(); // fails only once that worker is gone
            }
        }
    }

    /// Starts the reader thread; once (by one worker of the reading process).
    pub fn start(self: &Arc<Self>, input: LineInput, max_line: usize) -> io::Result<()> {
        let reader: Box<dyn Read + Send> = match &input {
            LineInput::File(p) => Box::new(File::open(p)?),
            LineInput::Stdin => Box::new(io::stdin()),
            LineInput::Collect(c) => Box::new(c.reader()),
        };
        let (tx, rx) = bounded(QUEUE);
        let (recycle, recycled) = bounded(QUEUE + IN_FLIGHT + 2);
        if self.chunks.set(rx).is_err() || self.recycle.set(recycle).is_err() {
            return Err(io::Error::other("the line reader was started twice"));
        }
        // Weak: once the workers are gone the feed (and its receiver) goes,
        // and the reader's next send fails, which ends the thread.
        let feed = Arc::downgrade(self);
        std::thread::Builder::new().name("line-reader".into()).spawn(move || {
            let mut r = Reader { tx, recycled, feed, max_line, fill: !input.is_live(), seq: 0 };
            if let Err(e) = r.run(reader) {
                let _ = r.tx.send(Chunk::Failed(format!("reading {}: {e}", input.name())));
            }
            // Closed before the last wake, so every woken worker sees the end.
            let Reader { tx, feed, .. } = r;
            drop(tx);
            if let Some(f) = feed.upgrade() {
                f.wake();
            }
        })?;
        Ok(())
    }

    /// The next chunk, in input order, unless `IN_FLIGHT` chunks are out
    /// and `bounded`; each chunk taken must be [`settle`](Feed::settle)d.
    pub fn take(&self, bounded: bool) -> Take {
        let Some(rx) = self.chunks.get() else { return Take::Wait };
        if bounded && self.in_flight.load(Ordering::Acquire) >= IN_FLIGHT {
            return Take::Wait;
        }
        match rx.try_recv() {
            Ok(c) => {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                Take::Chunk(c)
            }
            Err(TryRecvError::Empty) => Take::Wait,
            Err(TryRecvError::Disconnected) => Take::Ended,
        }
    }

    /// A chunk went through the in-order pass; its input buffer, spent, goes
    /// back to the reader (or is freed if the reader has enough). Wakes the
    /// read operators if they were waiting for room.
    pub fn settle(&self, spent: Vec<u8>) {
        if let Some(recycle) = self.recycle.get() {
            let _ = recycle.try_send(spent);
        }
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) >= IN_FLIGHT {
            self.wake();
        }
    }
}

struct Reader {
    tx: Sender<Chunk>,
    recycled: Receiver<Vec<u8>>,
    feed: Weak<Feed>,
    max_line: usize,
    /// A file: fill each chunk. A live input sends what it has.
    fill: bool,
    /// The next chunk's number.
    seq: u64,
}

impl Reader {
    /// Sends a chunk; `false` if the dataflow has gone away.
    fn send(&mut self, c: Chunk) -> bool {
        let ok = self.tx.send(c).is_ok();
        self.seq += 1;
        if let Some(f) = self.feed.upgrade() {
            f.wake();
        }
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
                        let c =
                            Chunk::Oversize { seq: self.seq, offset: *at, len: *len, prefix: std::mem::take(prefix) };
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
                        let c =
                            Chunk::Oversize { seq: self.seq, offset: *at, len: *len, prefix: std::mem::take(prefix) };
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
                if !self.send(Chunk::Lines { seq: self.seq, offset, data }) {
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
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file of `lines` numbered lines, a few chunks long.
    fn file(lines: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let text: Vec<u8> =
            (0..lines).flat_map(|i| format!("{{\"line\":{i},\"pad\":\"{:0>40}\"}}\n", i).into_bytes()).collect();
        f.write_all(&text).unwrap();
        (f, text)
    }

    /// Takes until the end, settling at once; the chunks seen, as (seq, offset, data).
    fn drain(feed: &Feed) -> Vec<(u64, u64, Vec<u8>)> {
        let mut seen = Vec::new();
        loop {
            match feed.take(true) {
                Take::Chunk(Chunk::Lines { seq, offset, data }) => {
                    seen.push((seq, offset, data));
                    feed.settle(Vec::new());
                }
                Take::Chunk(other) => panic!("unexpected {other:?}"),
                Take::Wait => std::thread::yield_now(),
                Take::Ended => return seen,
            }
        }
    }

    #[test]
    fn takers_share_every_chunk_once_in_input_order_and_all_see_the_end() {
        let (f, text) = file(60_000); // ~3.6 MB: over a dozen chunks
        let feed = Arc::new(Feed::default());
        feed.start(LineInput::File(f.path().to_owned()), 1 << 20).unwrap();
        let takers: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn({
                    let feed = feed.clone();
                    move || drain(&feed)
                })
            })
            .collect();
        let mut all: Vec<_> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_by_key(|c| c.0);
        assert!(all.len() > 10, "{} chunks", all.len());
        assert!(all.iter().enumerate().all(|(i, c)| c.0 == i as u64), "each seq once, none missing");
        let mut offset = 0;
        for (_, at, data) in &all {
            assert_eq!(*at, offset, "chunks are contiguous");
            assert_eq!(data.last(), Some(&b'\n'), "chunks end on a newline");
            offset += data.len() as u64;
        }
        assert_eq!(all.into_iter().flat_map(|c| c.2).collect::<Vec<u8>>(), text);
    }

    #[test]
    fn chunks_in_flight_are_bounded_until_settled() {
        let (f, _) = file(200_000); // ~12 MB: more chunks than the bound
        let feed = Arc::new(Feed::default());
        feed.start(LineInput::File(f.path().to_owned()), 1 << 20).unwrap();
        let mut taken = 0;
        while taken < IN_FLIGHT {
            match feed.take(true) {
                Take::Chunk(_) => taken += 1,
                Take::Wait => std::thread::yield_now(),
                Take::Ended => panic!("ended after {taken} chunks"),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50)); // the reader has refilled its queue
        assert!(matches!(feed.take(true), Take::Wait), "the bound holds");
        assert!(matches!(feed.take(false), Take::Chunk(_)), "unbounded takes (a stop) go on");
        feed.settle(Vec::new());
        feed.settle(Vec::new());
        assert!(matches!(feed.take(true), Take::Chunk(_)), "room again once settled");
    }
}
