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

use super::bitpack;
use super::chunk::{Chunk, Compressor, Extras};
use super::column::{Column, ColumnData};
use super::columns::push_short;
use super::intern::prefetch;

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

/// `values` `DELTA_BINARY_PACKED`.
pub fn delta_binary_packed(values: &[i64], out: &mut Vec<u8>) {
    uleb(BLOCK as u64, out);
    uleb(MINIBLOCKS as u64, out);
    uleb(values.len() as u64, out);
    uleb(zigzag(values.first().copied().unwrap_or(0)), out);
    let mut deltas = [0i64; BLOCK];
    let mut mini = [0u64; MINIBLOCK];
    for start in (1..values.len()).step_by(BLOCK) {
        let block = &values[start - 1..values.len().min(start + BLOCK)];
        let n = block.len() - 1;
        // Deltas and their minimum in one pass. Deltas wrap, as the
        // format's arithmetic does.
        let mut min = i64::MAX;
        for (d, w) in deltas.iter_mut().zip(block.windows(2)) {
            *d = w[1].wrapping_sub(w[0]);
            min = min.min(*d);
        }
        uleb(zigzag(min), out);
        let widths_at = out.len();
        out.extend_from_slice(&[0; MINIBLOCKS]);
        for (m, part) in deltas[..n].chunks(MINIBLOCK).enumerate() {
            // Above the minimum: fits in 64 bits unsigned. A short last
            // miniblock is padded with zeros (readers ignore the padding).
            let mut any = 0;
            for (slot, &d) in mini.iter_mut().zip(part) {
                *slot = d.wrapping_sub(min) as u64;
                any |= *slot;
            }
            mini[part.len()..].fill(0);
            let width = 64 - any.leading_zeros();
            out[widths_at + m] = width as u8;
            bitpack::pack(&mini, width, out);
        }
    }
}

/// The length of the prefix `a` and `b` share. Ids are mostly 8 to 16
/// bytes: those are compared as two overlapping words, with no loop over
/// bytes (whose exit was mispredicted about once per id); shorter ones
/// (`s6788-1`) as two overlapping 4-byte words.
#[inline(always)]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    if n < 8 {
        prefix_in_words::<4>(a, b)
    } else {
        prefix_in_words::<8>(a, b)
    }
}

/// [`common_prefix`] of two values of the same length, compared `W` bytes
/// (at most 8) at a time, the last `W` overlapping those before; bytes
/// one by one only below `W`.
#[inline]
fn prefix_in_words<const W: usize>(a: &[u8], b: &[u8]) -> usize {
    let n = a.len();
    let word = |x: &[u8], at: usize| {
        x.get(at..at + W).and_then(<[u8]>::first_chunk::<W>).map(|w| {
            let mut le = [0; 8];
            le[..W].copy_from_slice(w);
            u64::from_le_bytes(le)
        })
    };
    let differ = |at: usize, x: u64, y: u64| at + ((x ^ y).trailing_zeros() / 8) as usize;
    let mut at = 0;
    loop {
        match (word(a, at), word(b, at)) {
            (Some(x), Some(y)) if x != y => return differ(at, x, y),
            // The last W bytes, overlapping those just compared (equal).
            (Some(_), Some(_)) if n - at <= 2 * W => {
                return match (word(a, n - W), word(b, n - W)) {
                    (Some(x), Some(y)) if x != y => differ(n - W, x, y),
                    _ => n,
                };
            }
            (Some(_), Some(_)) => at += W,
            _ => return at + a[at..].iter().zip(&b[at..]).take_while(|(x, y)| x == y).count(),
        }
    }
}

/// A required 64-bit integer column (times, offsets), delta-encoded, with
/// min/max statistics: readers prune row groups by time with them.
pub struct DeltaColumn {
    chunk: Chunk,
    bounds: Option<(i64, i64)>,
    /// The values of the page being built.
    values: Vec<i64>,
}

impl Default for DeltaColumn {
    fn default() -> Self {
        DeltaColumn { chunk: Chunk::new(false), bounds: None, values: Vec::new() }
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
        self.values.extend_from_slice(values);
        Ok(())
    }

    /// Closes the page of the values added since the last.
    pub fn page(&mut self, zstd: &mut Compressor) -> anyhow::Result<()> {
        let values = &self.values;
        self.chunk.data_page(zstd, Encoding::DELTA_BINARY_PACKED, |body| delta_binary_packed(values, body))?;
        self.values.clear();
        Ok(())
    }

    /// The chunk (its last page closed first).
    pub fn close(&mut self, zstd: &mut Compressor, descr: ColumnDescPtr) -> anyhow::Result<(Bytes, ColumnCloseResult)> {
        self.page(zstd)?;
        let (lo, hi) = self.bounds.take().unzip();
        let statistics = Some(Statistics::new(lo, hi, None, Some(0), false));
        self.chunk.close(zstd, descr, Extras { dictionary: None, statistics })
    }
}

/// How many values ahead `BytesColumn::add` asks for a value's bytes.
/// `event_id` is the first column a piece's encoding reads, and its
/// values lie one per input line, ~180 bytes apart in a chunk a decoding
/// worker read on another core: the encoder waited for them (the
/// columns read after it find the chunk in cache). Fetching them 16
/// values ahead made the encoder faster in 17 of 22 paired runs of
/// `cargo bench --bench archive_encode` (12 rounds: 306 → 262 CPU ns per
/// row, medians) with no change in instructions; 32 ahead measured no
/// better.
const TEXT_AHEAD: usize = 16;

/// One value of a `DELTA_BYTE_ARRAY` page: the prefix it shares with
/// `last`, the suffix's length, and the suffix.
#[inline(always)]
fn add_suffix(last: &[u8], v: &[u8], prefixes: &mut Vec<i64>, suffixes: &mut Vec<i64>, out: &mut Vec<u8>) {
    let shared = common_prefix(last, v);
    prefixes.push(shared as i64);
    suffixes.push((v.len() - shared) as i64);
    push_short(out, &v[shared..]);
}

/// A nullable string column of (nearly) unique values, `DELTA_BYTE_ARRAY`:
/// per value the prefix it shares with the previous one is stored as a
/// length. No statistics: events arrive in time order, not id order, so a
/// row group's id range prunes nothing.
pub struct BytesColumn {
    chunk: Chunk,
    /// The page being built: per value the shared prefix's and the
    /// suffix's length, and the suffixes end to end.
    prefixes: Vec<i64>,
    suffixes: Vec<i64>,
    bytes: Vec<u8>,
    /// The page's last value so far (the next one's prefix is shared
    /// with it).
    previous: Vec<u8>,
}

impl Default for BytesColumn {
    fn default() -> Self {
        let (prefixes, suffixes, bytes, previous) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        BytesColumn { chunk: Chunk::new(true), prefixes, suffixes, bytes, previous }
    }
}

impl BytesColumn {
    /// Adds `column`'s values (strings) to the page being built.
    pub fn add<'c>(&mut self, column: Column<'c>) -> anyhow::Result<()> {
        if !matches!(column.data, ColumnData::Strings { .. }) {
            anyhow::bail!("not a string column");
        }
        self.chunk.add_rows(&column)?;
        let (prefixes, suffixes, out) = (&mut self.prefixes, &mut self.suffixes, &mut self.bytes);
        let mut last: &[u8] = &self.previous;
        let mut added: Option<&'c [u8]> = None;
        match column.data {
            // Without nulls (ids nearly always), straight from the
            // spans: the general iterator's per-row validity test and
            // checks were a third of this loop's instructions. The loop
            // body is written out in each arm, where one closure shared by
            // both was a call per value (its prologue and epilogue a sixth
            // of the loop).
            ColumnData::Strings { bytes, spans } if column.valid.is_empty() => {
                prefixes.reserve(spans.len());
                suffixes.reserve(spans.len());
                for (i, s) in spans.iter().enumerate() {
                    if let Some(ahead) = spans.get(i + TEXT_AHEAD).and_then(|a| bytes.get(a.start as usize)) {
                        prefetch(ahead);
                    }
                    let v = bytes.get(s.range()).unwrap_or_default();
                    add_suffix(last, v, prefixes, suffixes, out);
                    (last, added) = (v, Some(v));
                }
            }
            _ => {
                for v in column.present_strings() {
                    add_suffix(last, v, prefixes, suffixes, out);
                    (last, added) = (v, Some(v));
                }
            }
        }
        if let Some(v) = added {
            self.previous.clear();
            self.previous.extend_from_slice(v);
        }
        Ok(())
    }

    /// Closes the page of the values added since the last.
    pub fn page(&mut self, zstd: &mut Compressor) -> anyhow::Result<()> {
        let (prefixes, suffixes, bytes) = (&self.prefixes, &self.suffixes, &self.bytes);
        self.chunk.data_page(zstd, Encoding::DELTA_BYTE_ARRAY, |body| {
            delta_binary_packed(prefixes, body);
            delta_binary_packed(suffixes, body);
            body.extend_from_slice(bytes);
        })?;
        self.prefixes.clear();
        self.suffixes.clear();
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
