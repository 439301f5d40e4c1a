//! Dictionary-encoded column chunks, encoded here rather than by the
//! Parquet crate's column writer.
//!
//! The archive's repeating columns (user, product, event type, category,
//! price, quantity, partition) are dictionary-encoded (SPEC §4), their
//! values interned by `intern::Dictionary`.
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
use super::column::{Column, ColumnData};
use super::hybrid;
use super::intern::{Dictionary, Probe};

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

/// `dict`'s values PLAIN-encoded, as a dictionary page holds them.
fn dictionary_page(dict: &Dictionary, physical: Physical) -> Vec<u8> {
    let mut out = Vec::with_capacity(dict.value_bytes() + 4 * dict.len());
    (0..dict.len()).for_each(|i| plain_value(physical, dict.value(i), &mut out));
    out
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
        let dictionary =
            self.dictionary_pages.then(|| (dictionary_page(&self.dict, self.physical), self.dict.len() as u32));
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
