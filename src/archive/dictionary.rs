//! Dictionary-encoded column chunks, encoded here rather than by the
//! Parquet crate's column writer.
//!
//! The archive's repeating columns (user, product, event type, category,
//! price, quantity, partition) are dictionary-encoded (SPEC §4). Through
//! arrow-rs, every value of them went through a general interner (ahash of
//! the bytes, a hash table of indices into a value store, `memcmp` through
//! that store), a gather, and a `u64` index per value: about half of the
//! archive thread's encoding time. The values here are short (`u2927`,
//! `view`, a price), so [`Dictionary`] keys each by its first and last 8
//! bytes inline and finds it with one multiply and, almost always, one
//! probe, with no call for the comparison.
//!
//! What is written is ordinary Parquet that every reader knows: per column
//! chunk a PLAIN dictionary page, then one v1 data page per ~64 k rows holding
//! definition levels (nullable columns) and RLE/bit-packed hybrid indices
//! (`RLE_DICTIONARY`); `Chunk` compresses the pages and writes their
//! headers and the chunk's metadata. If a dictionary outgrows
//! [`MAX_DICTIONARY_BYTES`] (ids that do not repeat), later pages of the
//! chunk are PLAIN, as arrow-rs falls back too.

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{Chunk, Compressor, Extras};
use super::column::{Column, ColumnData, Span};
use super::hybrid;

/// Dictionary page size past which a chunk's later pages are PLAIN (the
/// Parquet crate's default limit).
pub const MAX_DICTIONARY_BYTES: usize = 1024 * 1024;

/// How the dictionary's values are stored, and which statistics they get.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Physical {
    /// UTF-8 strings: no statistics (events arrive in time order, not in
    /// the order of users or products, so a row group's string range prunes
    /// nothing while computing it compares every value).
    Utf8,
    Double,
    Int64,
    Int32,
}

/// Distinct values and their indices, in first-seen order.
#[derive(Default)]
pub struct Dictionary {
    /// Open addressing, linear probing, at most half full. A slot holds
    /// what a lookup compares, so a hit costs one (likely cache-missing)
    /// load rather than one for the slot and one for the key.
    slots: Vec<Slot>,
    /// Values in the dictionary.
    count: u32,
    /// Per value, where its bytes end in `bytes`.
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The value's first and last 8 bytes (zero-padded): the whole value
    /// when it is at most 16 bytes long.
    a: u64,
    b: u64,
    len: u32,
    /// Index + 1; 0 for an empty slot.
    index: u32,
}

/// How far ahead of its lookup [`Dictionary::intern_all`] hashes a value:
/// enough lookups in flight to cover a load from L3 (measured: 8).
const AHEAD: usize = 8;

/// Tables of at most this many slots (96 KiB) are looked up without
/// prefetching.
const CACHED_SLOTS: usize = 4096;

/// A value's words and where its search starts.
#[derive(Clone, Copy, Default)]
struct Probe {
    a: u64,
    b: u64,
    hash: u64,
}

impl Probe {
    #[inline]
    fn of(v: &[u8]) -> Probe {
        let (a, b) = words(v);
        Probe { a, b, hash: hash_of(v, a, b) }
    }

    /// The probe of `v`, which starts at `at` in `buffer` (a piece's
    /// string bytes): when 16 bytes from `at` lie in `buffer`, its words
    /// are two fixed loads masked to its length, with no branch on that
    /// length. In a column like `category` (4 to 11 bytes, in no order)
    /// the branches of [`words`] were mispredicted about every other value.
    #[inline]
    fn at(buffer: &[u8], at: usize, v: &[u8]) -> Probe {
        let n = v.len();
        match buffer.get(at..).and_then(<[u8]>::first_chunk::<16>) {
            Some(w) if n <= 16 => {
                let x = u128::from_le_bytes(*w);
                let (a, b) = (low_bytes(x as u64, n), low_bytes((x >> 64) as u64, n.saturating_sub(8)));
                Probe { a, b, hash: hash(a, b, n) }
            }
            _ => Probe::of(v),
        }
    }
}

/// The low `n` bytes of `w` (all of it from 8 on), the rest zero: one
/// load from a table, where computing the mask (a 128-bit shift, so that
/// 8 bytes do not overflow it) took seven instructions, twice per value.
#[inline]
fn low_bytes(w: u64, n: usize) -> u64 {
    w & LOW_BYTES[n.min(8)]
}

/// `LOW_BYTES[n]` keeps the low `n` bytes of a word.
const LOW_BYTES: [u64; 9] = {
    let mut masks = [u64::MAX; 9];
    let mut n = 0;
    while n < 8 {
        masks[n] = (1 << (8 * n)) - 1;
        n += 1;
    }
    masks
};

/// Asks for the cache line of `at` (a dictionary slot, a value's bytes)
/// ahead of its use (a hint; no effect on what is computed).
#[inline]
pub(super) fn prefetch<T>(at: &T) {
    // SAFETY: a prefetch reads nothing and cannot fault, whatever the
    // address; SSE, its target feature, is part of every x86-64 CPU.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(at).cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The words a slot keeps of `v`: for up to 16 bytes the value itself,
/// zero-padded (bytes 0–7, then 8–15); for longer values its first and
/// last 8 bytes. Loads of fixed width only: copying a short value through
/// `copy_from_slice` called `memcpy` and stalled the load that followed.
#[inline]
fn words(v: &[u8]) -> (u64, u64) {
    let n = v.len();
    let word = |c: Option<&[u8; 8]>| c.map_or(0, |c| u64::from_le_bytes(*c));
    let half = |c: Option<&[u8; 4]>| c.map_or(0, |c| u64::from(u32::from_le_bytes(*c)));
    match n {
        17.. => (word(v.first_chunk()), word(v.last_chunk())),
        // The last 8 bytes shifted down to what follows the first 8.
        9..=16 => (word(v.first_chunk()), word(v.last_chunk()) >> (8 * (16 - n))),
        8 => (word(v.first_chunk()), 0),
        // Two overlapping halves; the bytes they share are the same.
        4..=7 => (half(v.first_chunk()) | half(v.last_chunk()) << (8 * (n - 4)), 0),
        1..=3 => {
            let byte = |i: usize| u64::from(v[i]) << (8 * i);
            (byte(0) | byte(n / 2) | byte(n - 1), 0)
        }
        0 => (0, 0),
    }
}

/// Where a value's search starts: for values of at most 16 bytes, a mix
/// of the two words (they are the whole value); longer ones are hashed
/// whole, so that ids differing only in the middle (`user-000123@shop`)
/// do not all share one probe chain.
#[inline]
fn hash_of(v: &[u8], a: u64, b: u64) -> u64 {
    if v.len() <= 16 {
        hash(a, b, v.len())
    } else {
        xxhash_rust::xxh3::xxh3_64(v)
    }
}

#[inline]
fn hash(a: u64, b: u64, len: usize) -> u64 {
    // Two multiply-xorshift rounds: enough to spread ids that differ only
    // in their last digits over the table.
    let h = (a ^ (len as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let h = (h ^ b ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

impl Dictionary {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the dictionary; its memory is kept (the table its size).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.count = 0;
        self.ends.clear();
        self.bytes.clear();
    }

    /// Bytes of the values, end to end.
    pub fn value_bytes(&self) -> usize {
        self.bytes.len()
    }

    fn value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// The index of `v`, added if new; and whether it was new.
    #[inline]
    pub fn intern(&mut self, v: &[u8]) -> (u32, bool) {
        self.intern_probe(v, Probe::of(v))
    }

    /// Interns each of `values` (with its [`Probe`]) in order: its index
    /// goes to `indices`, and a value seen for the first time also to
    /// `new`.
    ///
    /// Values are probed `AHEAD` ahead of their lookup and their slot's
    /// cache line prefetched: a table of 20 k users is larger than a core's
    /// L2, and waiting for the slot's load was 40 % of interning.
    fn intern_all<'v>(
        &mut self,
        values: impl Iterator<Item = (&'v [u8], Probe)>,
        indices: &mut Vec<u32>,
        mut new: impl FnMut(&[u8]),
    ) {
        let mut record = |v, (i, is_new)| {
            indices.push(i);
            if is_new {
                new(v);
            }
        };
        if self.slots.len() <= CACHED_SLOTS {
            // The table is in L1/L2 anyway (event types, categories,
            // quantities, prices): a prefetch would only cost.
            values.for_each(|(v, probe)| record(v, self.intern_probe(v, probe)));
            return;
        }
        let mut ring: [(&[u8], Probe); AHEAD] = [(&[], Probe::default()); AHEAD];
        let mut values = values.fuse();
        let mut queued = 0;
        for (n, (v, probe)) in values.by_ref().take(AHEAD).enumerate() {
            ring[n] = (v, self.prefetched(probe));
            queued += 1;
        }
        let mut at = 0;
        while queued > 0 {
            let (v, probe) = ring[at];
            record(v, self.intern_probe(v, probe));
            match values.next() {
                Some((next, probe)) => ring[at] = (next, self.prefetched(probe)),
                None => queued -= 1,
            }
            at = (at + 1) % AHEAD;
        }
    }

    /// Interns every value of a string column without nulls (`spans` of
    /// `bytes`, as [`ColumnData::Strings`] holds them), in order, their
    /// indices to `indices`. A table in L1/L2 (the common case) is looked
    /// up in one loop over the spans: through
    /// [`Dictionary::intern_all`]'s iterator of `(value, probe)` pairs each
    /// probe went through the stack, and interning a value took ~25 cycles
    /// (now ~18; ~20 through those pairs still, paired bench runs). Larger
    /// tables take `intern_all`'s prefetching loop (as fast as a copy of it
    /// over the spans).
    fn intern_strings(&mut self, bytes: &[u8], spans: &[Span], indices: &mut Vec<u32>) {
        indices.reserve(spans.len());
        let value = |s: &Span| (s.start as usize, bytes.get(s.range()).unwrap_or_default());
        if self.slots.len() <= CACHED_SLOTS {
            for s in spans {
                let (at, v) = value(s);
                indices.push(self.intern_probe(v, Probe::at(bytes, at, v)).0);
            }
        } else {
            let values = spans.iter().map(value).map(|(at, v)| (v, Probe::at(bytes, at, v)));
            self.intern_all(values, indices, |_| {});
        }
    }

    /// Interns 8-byte numbers (`word` of each of `values`: its
    /// little-endian bytes as a `u64`), in order, as
    /// [`Dictionary::intern_strings`] does strings; `new` sees each value
    /// seen for the first time. Number columns are small tables (prices,
    /// quantities), looked up without prefetching.
    fn intern_words<T: Copy>(
        &mut self,
        column: (&[T], &[bool]),
        word: impl Fn(T) -> u64,
        indices: &mut Vec<u32>,
        mut new: impl FnMut(&[u8]),
    ) {
        let (values, valid) = column;
        indices.reserve(values.len());
        let mut intern = |x: T| {
            let v = word(x).to_le_bytes();
            let (i, is_new) = self.intern_probe(&v, Probe::of(&v));
            indices.push(i);
            if is_new {
                new(&v);
            }
        };
        match valid {
            [] => values.iter().for_each(|&x| intern(x)),
            valid => values.iter().zip(valid).filter(|(_, &ok)| ok).for_each(|(&x, _)| intern(x)),
        }
    }

    /// `probe`, its slot's cache line prefetched.
    #[inline]
    fn prefetched(&self, probe: Probe) -> Probe {
        if let Some(slot) = self.slots.get(probe.hash as usize & self.slots.len().wrapping_sub(1)) {
            prefetch(slot);
        }
        probe
    }

    /// Looks `v` up; a value not yet in the dictionary is added (out of
    /// line: after the first pages of a chunk almost every lookup hits,
    /// and the hit path inlined into the loop over a piece is most of
    /// interning).
    #[inline(always)]
    fn intern_probe(&mut self, v: &[u8], Probe { a, b, hash }: Probe) -> (u32, bool) {
        // Values are single fields of one event, far below 4 GiB.
        let len = v.len() as u32;
        let mask = self.slots.len().wrapping_sub(1);
        let mut at = hash as usize & mask;
        while let Some(slot) = self.slots.get(at) {
            if slot.index == 0 {
                break;
            }
            if slot.a == a && slot.b == b && slot.len == len {
                let i = slot.index - 1;
                if v.len() <= 16 || self.value(i as usize) == v {
                    return (i, false);
                }
            }
            at = (at + 1) & mask;
        }
        (self.insert(v, Probe { a, b, hash }), true)
    }

    /// Adds `v`, which is not in the dictionary; returns its index.
    #[cold]
    #[inline(never)]
    fn insert(&mut self, v: &[u8], Probe { a, b, hash }: Probe) -> u32 {
        if self.slots.len() <= 2 * self.len() + 2 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        while self.slots[at].index != 0 {
            at = (at + 1) & mask;
        }
        // Dictionaries stay below `MAX_DICTIONARY_BYTES` plus one page
        // of values, far from 4 G entries.
        let i = self.count;
        self.count += 1;
        self.slots[at] = Slot { a, b, len: v.len() as u32, index: i + 1 };
        self.bytes.extend_from_slice(v);
        self.ends.push(self.bytes.len() as u32);
        i
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(256);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s.index != 0) {
            let value = self.value(slot.index as usize - 1);
            let mut at = hash_of(value, slot.a, slot.b) as usize & mask;
            while self.slots[at].index != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
        }
    }

    /// The values PLAIN-encoded, as a dictionary page holds them.
    fn plain(&self, physical: Physical) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 4 * self.len());
        (0..self.len()).for_each(|i| plain_value(physical, self.value(i), &mut out));
        out
    }
}

/// One value PLAIN-encoded: strings length-prefixed, numbers as they are.
fn plain_value(physical: Physical, v: &[u8], out: &mut Vec<u8>) {
    if physical == Physical::Utf8 {
        // A string value is one field of one event, far below 4 GiB.
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(v);
}

/// Smallest and largest value of a numeric column, NaN left out (as the
/// Parquet format asks).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bounds {
    None,
    Double(f64, f64),
    Int64(i64, i64),
    Int32(i32, i32),
}

impl Bounds {
    fn observe(&mut self, physical: Physical, v: &[u8]) {
        let mut w = [0u8; 8];
        w[..v.len().min(8)].copy_from_slice(&v[..v.len().min(8)]);
        let word = u64::from_le_bytes(w);
        *self = match (physical, *self) {
            (Physical::Double, b) => {
                let x = f64::from_bits(word);
                match b {
                    _ if x.is_nan() => b,
                    Bounds::Double(lo, hi) => Bounds::Double(
                        if x.total_cmp(&lo).is_lt() { x } else { lo },
                        if x.total_cmp(&hi).is_gt() { x } else { hi },
                    ),
                    _ => Bounds::Double(x, x),
                }
            }
            (Physical::Int64, Bounds::Int64(lo, hi)) => Bounds::Int64(lo.min(word as i64), hi.max(word as i64)),
            (Physical::Int64, _) => Bounds::Int64(word as i64, word as i64),
            (Physical::Int32, Bounds::Int32(lo, hi)) => Bounds::Int32(lo.min(word as i32), hi.max(word as i32)),
            (Physical::Int32, _) => Bounds::Int32(word as i32, word as i32),
            (Physical::Utf8, b) => b,
        };
    }

    fn statistics(self, physical: Physical, nulls: u64, nans: u64) -> Statistics {
        match self {
            // Arrow-rs gives doubles the IEEE 754 total order (-0.0 below
            // +0.0), whose statistics also count the NaNs left out.
            Bounds::Double(lo, hi) => {
                let stats = ValueStatistics::new(Some(lo), Some(hi), None, Some(nulls), false);
                Statistics::Double(stats.with_nan_count(Some(nans)))
            }
            Bounds::Int64(lo, hi) => Statistics::new(Some(lo), Some(hi), None, Some(nulls), false),
            Bounds::Int32(lo, hi) => Statistics::new(Some(lo), Some(hi), None, Some(nulls), false),
            // No value, or only NaNs: counts alone, of the column's type.
            Bounds::None => match physical {
                Physical::Double => Statistics::Double(
                    ValueStatistics::new(None, None, None, Some(nulls), false).with_nan_count(Some(nans)),
                ),
                Physical::Int32 => Statistics::new::<i32>(None, None, None, Some(nulls), false),
                _ => Statistics::new::<i64>(None, None, None, Some(nulls), false),
            },
        }
    }
}

/// Whether `v`, the bytes of a double, is NaN.
fn is_nan(v: &[u8]) -> bool {
    v.first_chunk().is_some_and(|w: &[u8; 8]| f64::from_le_bytes(*w).is_nan())
}

/// One column chunk being built: its dictionary and its data pages.
pub struct DictColumn {
    physical: Physical,
    dict: Dictionary,
    /// Indices of the page being built (non-null values only).
    indices: Vec<u32>,
    /// Past the dictionary limit: the values of the page, PLAIN.
    plain: Option<Vec<u8>>,
    /// Whether any page refers to the dictionary.
    dictionary_pages: bool,
    chunk: Chunk,
    bounds: Bounds,
    /// NaN values (double columns).
    nans: u64,
}

impl DictColumn {
    pub fn new(physical: Physical, nullable: bool) -> Self {
        DictColumn {
            physical,
            dict: Dictionary::default(),
            indices: Vec::new(),
            plain: None,
            dictionary_pages: false,
            chunk: Chunk::new(nullable),
            bounds: Bounds::None,
            nans: 0,
        }
    }

    /// Adds non-null values.
    fn add_all<'v>(&mut self, values: impl Iterator<Item = (&'v [u8], Probe)> + Clone) {
        if self.physical == Physical::Double {
            self.nans += values.clone().filter(|(v, _)| is_nan(v)).count() as u64;
        }
        let (physical, bounds) = (self.physical, &mut self.bounds);
        match &mut self.plain {
            Some(plain) => values.for_each(|(v, _)| {
                plain_value(physical, v, plain);
                bounds.observe(physical, v);
            }),
            // A string column has no bounds; a numeric value is bounded
            // when first seen.
            None if physical == Physical::Utf8 => self.dict.intern_all(values, &mut self.indices, |_| {}),
            None => self.dict.intern_all(values, &mut self.indices, |v| bounds.observe(physical, v)),
        }
    }

    /// Adds `column`'s values to the page being built; `column` is of
    /// this column's type (as the archive schema fixes it).
    pub fn add(&mut self, column: Column<'_>) -> anyhow::Result<()> {
        // A string column's bytes; `None` for numbers.
        let strings = match (self.physical, column.data) {
            (Physical::Utf8, ColumnData::Strings { bytes, .. }) => Some(bytes),
            (Physical::Double, ColumnData::Double(_))
            | (Physical::Int64, ColumnData::Int64(_))
            | (Physical::Int32, ColumnData::Int32(_)) => None,
            (physical, _) => anyhow::bail!("not a column of {physical:?}"),
        };
        self.chunk.add_rows(&column)?;
        match strings {
            Some(bytes) => match column.data {
                ColumnData::Strings { spans, .. } if column.valid.is_empty() && self.plain.is_none() => {
                    self.dict.intern_strings(bytes, spans, &mut self.indices)
                }
                _ => self.add_all(column.present_strings_at().map(|(at, v)| (v, Probe::at(bytes, at, v)))),
            },
            None if self.plain.is_none() && column.is_constant_integer() => {
                // One value throughout (a piece comes from one partition):
                // one lookup for the piece.
                self.add_all(column.present_numbers().take(1).map(|v| (v, Probe::of(v))));
                if let Some(&index) = self.indices.last() {
                    self.indices.extend(std::iter::repeat_n(index, column.len() - 1));
                }
            }
            None => match column.data {
                ColumnData::Double(values) if self.plain.is_none() => {
                    let (physical, bounds) = (self.physical, &mut self.bounds);
                    self.nans += column.present_numbers().filter(|v| is_nan(v)).count() as u64;
                    let new = |v: &[u8]| bounds.observe(physical, v);
                    self.dict.intern_words((values, column.valid), f64::to_bits, &mut self.indices, new);
                }
                ColumnData::Int64(values) if self.plain.is_none() => {
                    let (physical, bounds) = (self.physical, &mut self.bounds);
                    let new = |v: &[u8]| bounds.observe(physical, v);
                    self.dict.intern_words((values, column.valid), |x| x as u64, &mut self.indices, new);
                }
                _ => self.add_all(column.present_numbers().map(|v| (v, Probe::of(v)))),
            },
        }
        Ok(())
    }

    /// Closes the page of the values added since the last.
    pub fn page(&mut self, zstd: &mut Compressor) -> anyhow::Result<()> {
        let (dict, indices) = (&self.dict, &mut self.indices);
        match &mut self.plain {
            Some(plain) => self.chunk.data_page(zstd, Encoding::PLAIN, |body| {
                body.extend_from_slice(plain);
                plain.clear();
            })?,
            None if self.chunk.page_len() > 0 => {
                self.chunk.data_page(zstd, Encoding::RLE_DICTIONARY, |body| {
                    let width = hybrid::width(dict.len().saturating_sub(1) as u32);
                    body.push(width);
                    hybrid::pack(indices, width, body);
                    indices.clear();
                })?;
                self.dictionary_pages = true;
            }
            None => {}
        }
        if self.plain.is_none() && self.dict.value_bytes() > MAX_DICTIONARY_BYTES {
            self.plain = Some(Vec::new());
        }
        Ok(())
    }

    /// The chunk's bytes (dictionary page first, its last data page
    /// closed first) and what the row group needs to know of them; the
    /// column is empty again afterwards.
    pub fn close(&mut self, zstd: &mut Compressor, descr: ColumnDescPtr) -> anyhow::Result<(Bytes, ColumnCloseResult)> {
        self.page(zstd)?;
        let dictionary = self.dictionary_pages.then(|| (self.dict.plain(self.physical), self.dict.len() as u32));
        let statistics = (self.physical != Physical::Utf8)
            .then(|| self.bounds.statistics(self.physical, self.chunk.nulls(), self.nans));
        let closed = self.chunk.close(zstd, descr, Extras { dictionary, statistics })?;
        self.dict.clear();
        self.plain = None;
        self.dictionary_pages = false;
        self.bounds = Bounds::None;
        self.nans = 0;
        Ok(closed)
    }
}

#[cfg(test)]
#[path = "dictionary_tests.rs"]
mod tests;
