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
//! chunk a PLAIN dictionary page, then one v1 data page per batch holding
//! definition levels (nullable columns) and RLE/bit-packed hybrid indices
//! (`RLE_DICTIONARY`), each page zstd-compressed. The page headers and the
//! chunk's metadata are the Parquet crate's own (`SerializedPageWriter`,
//! `ColumnChunkMetaData`); the chunk joins the file through
//! `SerializedRowGroupWriter::append_column`. If a dictionary outgrows
//! [`MAX_DICTIONARY_BYTES`] (ids that do not repeat), later pages of the
//! chunk are PLAIN, as arrow-rs falls back too.

use arrow_array::{Array, Float64Array, Int32Array, Int64Array, StringArray};
use arrow_buffer::NullBuffer;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::hybrid;

/// Dictionary page size past which a chunk's later pages are PLAIN (the
/// Parquet crate's default limit).
pub const MAX_DICTIONARY_BYTES: usize = 1024 * 1024;

/// The zstd level of every page (see `parquet::writer_properties`).
pub const ZSTD_LEVEL: i32 = 1;

/// How the dictionary's values are stored, and which statistics they get.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Physical {
    /// UTF-8 strings: no statistics (see `parquet::writer_properties`).
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

/// The first and last up to 8 bytes of `v`, each as a little-endian word
/// (zero-padded). Loads of fixed width only: copying a short value through
/// `copy_from_slice` called `memcpy` and stalled the load that followed.
#[inline]
fn words(v: &[u8]) -> (u64, u64) {
    let n = v.len();
    let word = |c: Option<&[u8; 8]>| c.map_or(0, |c| u64::from_le_bytes(*c));
    let half = |c: Option<&[u8; 4]>| c.map_or(0, |c| u64::from(u32::from_le_bytes(*c)));
    match n {
        8.. => (word(v.first_chunk()), word(v.last_chunk())),
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
        if self.slots.len() <= 2 * self.len() {
            self.grow();
        }
        let (a, b) = words(v);
        // Values are single fields of one event, far below 4 GiB.
        let len = v.len() as u32;
        let mask = self.slots.len() - 1;
        let mut at = hash_of(v, a, b) as usize & mask;
        loop {
            let slot = self.slots[at];
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
        // Dictionaries stay below `MAX_DICTIONARY_BYTES` plus one batch
        // of values, far from 4 G entries.
        let i = self.count;
        self.count += 1;
        self.slots[at] = Slot { a, b, len, index: i + 1 };
        self.bytes.extend_from_slice(v);
        self.ends.push(self.bytes.len() as u32);
        (i, true)
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

/// One column chunk being built: its dictionary and its data pages.
pub struct DictColumn {
    physical: Physical,
    nullable: bool,
    dict: Dictionary,
    /// Indices of the page being built (non-null values only).
    indices: Vec<u32>,
    /// Past the dictionary limit: the values of the page, PLAIN.
    plain: Option<Vec<u8>>,
    pages: Vec<CompressedPage>,
    bounds: Bounds,
    rows: u64,
    nulls: u64,
    /// NaN values (double columns).
    nans: u64,
    compressor: zstd::bulk::Compressor<'static>,
    /// Uncompressed page bytes, reused.
    scratch: Vec<u8>,
}

impl DictColumn {
    pub fn new(physical: Physical, nullable: bool) -> anyhow::Result<Self> {
        Ok(DictColumn {
            physical,
            nullable,
            dict: Dictionary::default(),
            indices: Vec::new(),
            plain: None,
            pages: Vec::new(),
            bounds: Bounds::None,
            rows: 0,
            nulls: 0,
            nans: 0,
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            scratch: Vec::new(),
        })
    }

    /// Adds one non-null value.
    #[inline]
    fn add(&mut self, v: &[u8]) {
        if self.physical == Physical::Double && v.len() == 8 {
            let bits = u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
            self.nans += u64::from(f64::from_bits(bits).is_nan());
        }
        if let Some(plain) = &mut self.plain {
            plain_value(self.physical, v, plain);
            self.bounds.observe(self.physical, v);
            return;
        }
        let (i, new) = self.dict.intern(v);
        if new && self.physical != Physical::Utf8 {
            self.bounds.observe(self.physical, v);
        }
        self.indices.push(i);
    }

    /// Writes `array`'s values as one data page; `array` is of the
    /// column's type (as the archive schema fixes it).
    pub fn write(&mut self, array: &dyn Array) -> anyhow::Result<()> {
        let any = array.as_any();
        match self.physical {
            Physical::Utf8 => {
                let Some(a) = any.downcast_ref::<StringArray>() else { anyhow::bail!("not a string column") };
                match a.nulls().filter(|n| n.null_count() > 0) {
                    None => (0..a.len()).for_each(|i| self.add(a.value(i).as_bytes())),
                    Some(n) => n.valid_indices().for_each(|i| self.add(a.value(i).as_bytes())),
                }
                self.page(a.len(), a.nulls())
            }
            Physical::Double => {
                let Some(a) = any.downcast_ref::<Float64Array>() else { anyhow::bail!("not a double column") };
                self.write_words(a.values().iter().map(|v| v.to_le_bytes()), a.nulls(), a.len())
            }
            Physical::Int64 => {
                let Some(a) = any.downcast_ref::<Int64Array>() else { anyhow::bail!("not an int64 column") };
                self.write_words(a.values().iter().map(|v| v.to_le_bytes()), a.nulls(), a.len())
            }
            Physical::Int32 => {
                let Some(a) = any.downcast_ref::<Int32Array>() else { anyhow::bail!("not an int32 column") };
                self.write_words(a.values().iter().map(|v| v.to_le_bytes()), a.nulls(), a.len())
            }
        }
    }

    fn write_words<const N: usize>(
        &mut self,
        values: impl Iterator<Item = [u8; N]>,
        nulls: Option<&NullBuffer>,
        len: usize,
    ) -> anyhow::Result<()> {
        match nulls.filter(|n| n.null_count() > 0) {
            None => values.for_each(|v| self.add(&v)),
            Some(n) => values.zip(n.iter()).filter(|(_, valid)| *valid).for_each(|(v, _)| self.add(&v)),
        }
        self.page(len, nulls)
    }

    /// Closes the page of `len` rows just added, `nulls` their validity.
    fn page(&mut self, len: usize, nulls: Option<&NullBuffer>) -> anyhow::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let nulls = nulls.filter(|n| n.null_count() > 0);
        if nulls.is_some() && !self.nullable {
            anyhow::bail!("null in a required archive column");
        }
        let null_count = nulls.map_or(0, NullBuffer::null_count);
        let buf = &mut self.scratch;
        buf.clear();
        if self.nullable {
            // Definition levels, v1: their byte length, then the hybrid runs.
            buf.extend_from_slice(&[0; 4]);
            match nulls {
                None => hybrid::repeat(1, 1, len, buf),
                Some(n) => hybrid::pack_bits(n, buf),
            }
            let levels = (buf.len() - 4) as u32;
            buf[..4].copy_from_slice(&levels.to_le_bytes());
        }
        let encoding = match &mut self.plain {
            Some(plain) => {
                buf.extend_from_slice(plain);
                plain.clear();
                Encoding::PLAIN
            }
            None => {
                let width = hybrid::width(self.dict.len().saturating_sub(1) as u32);
                buf.push(width);
                hybrid::pack(&self.indices, width, buf);
                self.indices.clear();
                Encoding::RLE_DICTIONARY
            }
        };
        let compressed = self.compressor.compress(buf)?;
        let page = Page::DataPage {
            buf: Bytes::from(compressed),
            // Pages hold one batch of rows, far below 4 G.
            num_values: len as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        self.pages.push(CompressedPage::new(page, buf.len()));
        self.rows += len as u64;
        self.nulls += null_count as u64;
        if self.plain.is_none() && self.dict.value_bytes() > MAX_DICTIONARY_BYTES {
            self.plain = Some(Vec::new());
        }
        Ok(())
    }

    /// The chunk's bytes (dictionary page first) and what the row group
    /// needs to know of them; the column is empty again afterwards.
    pub fn close(&mut self, descr: ColumnDescPtr) -> anyhow::Result<(Bytes, ColumnCloseResult)> {
        // The pages carry definition levels exactly when this column was
        // made nullable: the schema must say the same.
        if descr.max_def_level() != i16::from(self.nullable) || descr.max_rep_level() != 0 {
            anyhow::bail!("column {} is not a flat column of the nullability written", descr.path());
        }
        let mut sink = TrackedWrite::new(Vec::new());
        let (mut compressed, mut uncompressed) = (0u64, 0u64);
        let dict_pages = self.pages.iter().filter(|p| p.encoding() == Encoding::RLE_DICTIONARY).count();
        let plain_pages = self.pages.len() - dict_pages;
        let has_dict = dict_pages > 0;
        // RLE: the levels and indices; PLAIN: the dictionary page's values
        // or fallen-back data pages.
        let mut encodings = vec![Encoding::RLE, Encoding::PLAIN];
        if has_dict {
            encodings.push(Encoding::RLE_DICTIONARY);
        }
        let mut data_offset = None;
        {
            let mut pages = SerializedPageWriter::new(&mut sink);
            if has_dict {
                let plain = self.dict.plain(self.physical);
                let page = Page::DictionaryPage {
                    buf: Bytes::from(self.compressor.compress(&plain)?),
                    num_values: self.dict.len() as u32,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                };
                let spec = pages.write_page(CompressedPage::new(page, plain.len()))?;
                compressed += spec.compressed_size as u64;
                uncompressed += spec.uncompressed_size as u64;
            }
            for page in self.pages.drain(..) {
                let spec = pages.write_page(page)?;
                data_offset.get_or_insert(spec.offset);
                compressed += spec.compressed_size as u64;
                uncompressed += spec.uncompressed_size as u64;
            }
            pages.close()?;
        }
        // Which pages are dictionary-encoded: without these, parquet-mr
        // (Spark) cannot tell that no page fell back to PLAIN and does not
        // skip row groups by their dictionaries.
        let stat = |page_type, encoding, count: usize| PageEncodingStats { page_type, encoding, count: count as i32 };
        let mut page_stats = Vec::new();
        if has_dict {
            page_stats.push(stat(PageType::DICTIONARY_PAGE, Encoding::PLAIN, 1));
        }
        for (encoding, count) in [(Encoding::RLE_DICTIONARY, dict_pages), (Encoding::PLAIN, plain_pages)] {
            if count > 0 {
                page_stats.push(stat(PageType::DATA_PAGE, encoding, count));
            }
        }
        let mut meta = ColumnChunkMetaData::builder(descr)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_encodings(encodings)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_data_page_offset(data_offset.unwrap_or(0) as i64)
            .set_dictionary_page_offset(has_dict.then_some(0))
            .set_page_encoding_stats(page_stats);
        if self.physical != Physical::Utf8 {
            meta = meta.set_statistics(self.bounds.statistics(self.physical, self.nulls, self.nans));
        }
        let close = ColumnCloseResult {
            bytes_written: compressed,
            rows_written: self.rows,
            metadata: meta.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        let bytes = Bytes::from(sink.into_inner()?);
        self.dict = Dictionary::default();
        self.plain = None;
        self.bounds = Bounds::None;
        (self.rows, self.nulls, self.nans) = (0, 0, 0);
        Ok((bytes, close))
    }
}

#[cfg(test)]
#[path = "dictionary_tests.rs"]
mod tests;
