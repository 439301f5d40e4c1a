//! The archive's columns that do not repeat, encoded by hand: times and
//! offsets as `DELTA_BINARY_PACKED`, event and session ids as
//! `DELTA_BYTE_ARRAY`.
//!
//! Through arrow-rs's column writers these five columns took about a
//! quarter of the archive thread (its general encoders, level builders
//! and a gather per value). Here a page is one pass over the pieces'
//! values into one buffer, which `Chunk` compresses; the formats are the
//! Parquet specification's, which Spark (≥ 3.3), DuckDB and pyarrow read.
//!
//! - `DELTA_BINARY_PACKED`: a header (block size 128, 4 miniblocks, value
//!   count, first value), then per block of 128 deltas their minimum and,
//!   per miniblock of 32, the deltas less the minimum bit-packed at the
//!   miniblock's width. Times arrive nearly in order and offsets in
//!   order, so deltas are small: a few bits where a value takes 64.
//! - `DELTA_BYTE_ARRAY`: per value the length of the prefix it shares
//!   with the previous value and the suffix that differs: prefix lengths
//!   and suffix lengths each `DELTA_BINARY_PACKED`, then the suffixes end
//!   to end. Generated and many real ids share long prefixes.

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{Chunk, Compressor, Extras};
use super::columns::{push_short, Column, ColumnData};

/// Values per block of deltas, and miniblocks per block (arrow-rs's and
/// parquet-mr's choice).
const BLOCK: usize = 128;
const MINIBLOCKS: usize = 4;
const MINIBLOCK: usize = BLOCK / MINIBLOCKS;

/// `v` as an unsigned LEB128 varint.
fn uleb(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Packs 32 values of `width` bits (at most 64), least significant bit
/// first: `4 × width` bytes.
fn pack32(values: &[u64; MINIBLOCK], width: u32, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let (mut acc, mut bits) = (0u128, 0u32);
    for &v in values {
        // `bits` < 64 and `v` < 2^64: the shifted value fits in 128 bits.
        acc |= u128::from(v) << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    // 32 × width bits: what is left is 0 or 32 bits.
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..(bits / 8) as usize]);
}

/// `values` `DELTA_BINARY_PACKED`.
pub fn delta_binary_packed(values: &[i64], out: &mut Vec<u8>) {
    let mut stream = DeltaStream::default();
    values.iter().for_each(|&v| stream.push(v));
    stream.finish(out);
}

/// A `DELTA_BINARY_PACKED` stream built value by value: each block of
/// 128 deltas is packed as soon as it is full, into a buffer of a byte or
/// two per value. Collecting a page's values first (64 k of them, 512 KiB
/// per column, eight streams in all) and packing them when the page
/// closed wrote and read back more memory than a core's L2 holds.
pub struct DeltaStream {
    /// Values pushed since the last `finish`, the first, and the last.
    count: usize,
    first: i64,
    last: i64,
    /// Deltas not yet packed (fewer than a block); boxed, so that the
    /// column encoders stay small.
    deltas: Box<[i64; BLOCK]>,
    pending: usize,
    /// The blocks packed so far.
    blocks: Vec<u8>,
}

impl Default for DeltaStream {
    fn default() -> Self {
        DeltaStream { count: 0, first: 0, last: 0, deltas: Box::new([0; BLOCK]), pending: 0, blocks: Vec::new() }
    }
}

impl DeltaStream {
    #[inline]
    pub fn push(&mut self, v: i64) {
        if self.count == 0 {
            self.first = v;
        } else {
            // Deltas wrap, as the format's arithmetic does.
            self.deltas[self.pending] = v.wrapping_sub(self.last);
            self.pending += 1;
            if self.pending == BLOCK {
                pack_block(&self.deltas[..], &mut self.blocks);
                self.pending = 0;
            }
        }
        self.last = v;
        self.count += 1;
    }

    /// Appends the stream (header, then its blocks) to `out`; the stream
    /// is empty again, its memory kept.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        uleb(BLOCK as u64, out);
        uleb(MINIBLOCKS as u64, out);
        uleb(self.count as u64, out);
        uleb(zigzag(self.first), out);
        if self.pending > 0 {
            pack_block(&self.deltas[..self.pending], &mut self.blocks);
        }
        out.extend_from_slice(&self.blocks);
        self.blocks.clear();
        (self.count, self.first, self.last, self.pending) = (0, 0, 0, 0);
    }
}

/// One block of deltas (at most `BLOCK`; a short last block has empty
/// miniblocks, whose widths are 0): their minimum, then per miniblock
/// its width and the deltas less the minimum, bit-packed.
fn pack_block(deltas: &[i64], out: &mut Vec<u8>) {
    let min = deltas.iter().copied().min().unwrap_or(0);
    uleb(zigzag(min), out);
    let widths_at = out.len();
    out.extend_from_slice(&[0; MINIBLOCKS]);
    let mut mini = [0u64; MINIBLOCK];
    for (m, part) in deltas.chunks(MINIBLOCK).enumerate() {
        // Above the minimum: fits in 64 bits unsigned.
        mini.fill(0);
        for (slot, &d) in mini.iter_mut().zip(part) {
            *slot = d.wrapping_sub(min) as u64;
        }
        let width = 64 - mini.iter().fold(0, |acc, v| acc | v).leading_zeros();
        out[widths_at + m] = width as u8;
        pack32(&mini, width, out);
    }
}

/// The length of the prefix `a` and `b` share. Ids are mostly 8 to 16
/// bytes: those are compared as two overlapping words, with no loop over
/// bytes (whose exit was mispredicted about once per id).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let word = |x: &[u8], at: usize| x.get(at..at + 8).and_then(<[u8]>::first_chunk).map(|w| u64::from_le_bytes(*w));
    let differ = |at: usize, x: u64, y: u64| at + ((x ^ y).trailing_zeros() / 8) as usize;
    let mut at = 0;
    loop {
        match (word(a, at), word(b, at)) {
            (Some(x), Some(y)) if x != y => return differ(at, x, y),
            // The last 8 bytes, overlapping those just compared (equal).
            (Some(_), Some(_)) if n - at <= 16 => {
                return match (word(a, n - 8), word(b, n - 8)) {
                    (Some(x), Some(y)) if x != y => differ(n - 8, x, y),
                    _ => n,
                };
            }
            (Some(_), Some(_)) => at += 8,
            _ => return at + a[at..].iter().zip(&b[at..]).take_while(|(x, y)| x == y).count(),
        }
    }
}

/// A required 64-bit integer column (times, offsets), delta-encoded, with
/// min/max statistics: readers prune row groups by time with them.
pub struct DeltaColumn {
    chunk: Chunk,
    bounds: Option<(i64, i64)>,
    /// The page being built.
    values: DeltaStream,
}

impl Default for DeltaColumn {
    fn default() -> Self {
        DeltaColumn { chunk: Chunk::new(false), bounds: None, values: DeltaStream::default() }
    }
}

impl DeltaColumn {
    /// Adds `column`'s values (64-bit integers or times, no nulls) to the
    /// page being built.
    pub fn add(&mut self, column: Column<'_>) -> anyhow::Result<()> {
        let ColumnData::Int64(values) = column.data else { anyhow::bail!("not a 64-bit integer column") };
        self.chunk.add_rows(&column)?;
        if values.is_empty() {
            return Ok(());
        }
        let (lo, hi) =
            values.iter().fold(self.bounds.unwrap_or((i64::MAX, i64::MIN)), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        self.bounds = Some((lo, hi));
        values.iter().for_each(|&v| self.values.push(v));
        Ok(())
    }

    /// Closes the page of the values added since the last.
    pub fn page(&mut self, zstd: &mut Compressor) -> anyhow::Result<()> {
        let values = &mut self.values;
        self.chunk.data_page(zstd, Encoding::DELTA_BINARY_PACKED, |body| values.finish(body))
    }

    /// The chunk (its last page closed first).
    pub fn close(&mut self, zstd: &mut Compressor, descr: ColumnDescPtr) -> anyhow::Result<(Bytes, ColumnCloseResult)> {
        self.page(zstd)?;
        let (lo, hi) = self.bounds.take().unzip();
        let statistics = Some(Statistics::new(lo, hi, None, Some(0), false));
        self.chunk.close(zstd, descr, Extras { dictionary: None, statistics })
    }
}

/// A nullable string column of (nearly) unique values, `DELTA_BYTE_ARRAY`:
/// per value the prefix it shares with the previous one is stored as a
/// length. No statistics: events arrive in time order, not id order, so a
/// row group's id range prunes nothing.
pub struct BytesColumn {
    chunk: Chunk,
    /// The page being built: per value the shared prefix's and the
    /// suffix's length, and the suffixes end to end.
    prefixes: DeltaStream,
    suffixes: DeltaStream,
    bytes: Vec<u8>,
    /// The page's last value so far (the next one's prefix is shared
    /// with it).
    previous: Vec<u8>,
}

impl Default for BytesColumn {
    fn default() -> Self {
        let (prefixes, suffixes) = (DeltaStream::default(), DeltaStream::default());
        BytesColumn { chunk: Chunk::new(true), prefixes, suffixes, bytes: Vec::new(), previous: Vec::new() }
    }
}

impl BytesColumn {
    /// Adds `column`'s values (strings) to the page being built.
    pub fn add(&mut self, column: Column<'_>) -> anyhow::Result<()> {
        if !matches!(column.data, ColumnData::Strings { .. }) {
            anyhow::bail!("not a string column");
        }
        self.chunk.add_rows(&column)?;
        let mut last: &[u8] = &self.previous;
        let mut added = None;
        for v in column.present_strings() {
            let shared = common_prefix(last, v);
            self.prefixes.push(shared as i64);
            self.suffixes.push((v.len() - shared) as i64);
            push_short(&mut self.bytes, &v[shared..]);
            (last, added) = (v, Some(v));
        }
        if let Some(v) = added {
            self.previous.clear();
            self.previous.extend_from_slice(v);
        }
        Ok(())
    }

    /// Closes the page of the values added since the last.
    pub fn page(&mut self, zstd: &mut Compressor) -> anyhow::Result<()> {
        let (prefixes, suffixes, bytes) = (&mut self.prefixes, &mut self.suffixes, &self.bytes);
        self.chunk.data_page(zstd, Encoding::DELTA_BYTE_ARRAY, |body| {
            prefixes.finish(body);
            suffixes.finish(body);
            body.extend_from_slice(bytes);
        })?;
        self.bytes.clear();
        self.previous.clear();
        Ok(())
    }

    /// The chunk (its last page closed first).
    pub fn close(&mut self, zstd: &mut Compressor, descr: ColumnDescPtr) -> anyhow::Result<(Bytes, ColumnCloseResult)> {
        self.page(zstd)?;
        self.chunk.close(zstd, descr, Extras { dictionary: None, statistics: None })
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
