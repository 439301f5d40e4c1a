//! One column chunk of a row group, as the archive's hand-written column
//! encoders build it: zstd-compressed v1 data pages (and a dictionary
//! page for dictionary columns), then the chunk's bytes and metadata in
//! the form `SerializedRowGroupWriter::append_column` takes.
//!
//! The encoders ([`DictColumn`], [`DeltaColumn`], [`BytesColumn`]) decide
//! what goes into a page; everything a reader needs around the pages —
//! page headers, the chunk's encodings, page encoding statistics, the
//! offset index, sizes and offsets — is done here once. Headers and
//! metadata are the Parquet crate's own types (`SerializedPageWriter`,
//! `ColumnChunkMetaData`, `OffsetIndexBuilder`).
//!
//! [`DictColumn`]: super::dictionary::DictColumn
//! [`DeltaColumn`]: super::delta::DeltaColumn
//! [`BytesColumn`]: super::delta::BytesColumn

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::column::Column;
use super::columns::append_validity;
use super::hybrid;

/// The zstd level of every page. Level 1: measured ~25 % less archive CPU
/// than the default 3 for a few percent more bytes; the archive must keep
/// up with the stream.
pub const ZSTD_LEVEL: i32 = 1;

/// log2 of the entries of zstd's match-finding table. Level 1 sizes it
/// by the input (zstd 1.5.7: 2^13–2^14 four-byte entries, 32–64 KiB, for
/// pages past 16 KiB): a core's whole L1 data cache or more, which the
/// page being read and the frame being written share with it. Most bytes
/// zstd is given here are ids and deltas in no order, where matches are
/// few and short, and a table of 256 entries finds nearly as many: on the
/// benchmark input `session_id`'s pages compress in half the time (85 →
/// 41–48 cycles per row) for 0.1 % more bytes in all (`cargo bench
/// --bench archive_encode`).
const ZSTD_HASH_LOG: u32 = 8;

/// Pages left to store raw after one whose compression saved less than
/// [`MIN_SAVING`]; then compression is tried again.
const RAW_PAGES: u32 = 7;

/// The share of a page's bytes that zstd must save to be worth its CPU.
const MIN_SAVING: f64 = 0.1;

/// zstd at the archive's level, shared by the columns of a file: one
/// context, whose tables stay warm in cache. A context per column chunk
/// (twelve per row group) faulted in twelve sets of tables per file:
/// with the page buffers below, about half of a `-w 2 --archive` run's
/// page faults (1,900 → 1,000).
pub struct Compressor(zstd::bulk::Compressor<'static>);

impl Compressor {
    pub fn new() -> anyhow::Result<Self> {
        let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
        zstd.set_parameter(zstd::zstd_safe::CParameter::HashLog(ZSTD_HASH_LOG))?;
        Ok(Compressor(zstd))
    }

    /// Appends `body` to `out` as one zstd frame; returns its length.
    fn frame(&mut self, body: &[u8], out: &mut Vec<u8>) -> anyhow::Result<usize> {
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(body.len()));
        let mut end = std::io::Cursor::new(&mut *out);
        end.set_position(start as u64);
        Ok(self.0.compress_to_buffer(body, &mut end)?)
    }
}

/// How a column's data pages are framed: zstd for page bodies that
/// compress, a raw zstd frame (the bytes as they are, in zstd's framing)
/// for those that do not.
///
/// Some columns do not compress: bit-packed indices into a dictionary of
/// 20 k users, deltas of out-of-order times (measured: 0–6 % smaller,
/// a quarter of the bytes zstd was given). Any zstd decoder reads a raw
/// frame, and the chunk stays declared ZSTD as SPEC §4 asks.
#[derive(Default)]
struct Framing {
    /// Pages to store raw before trying compression again.
    raw_pages: u32,
}

impl Framing {
    /// Appends `body` to `out` as one zstd frame, compressed or raw.
    fn frame(&mut self, zstd: &mut Compressor, body: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        if self.raw_pages > 0 {
            self.raw_pages -= 1;
            raw_frame(body, out);
        } else if zstd.frame(body, out)? as f64 > (1.0 - MIN_SAVING) * body.len() as f64 {
            self.raw_pages = RAW_PAGES;
        }
        Ok(())
    }
}

/// Largest block of a zstd frame (RFC 8878, 3.1.1.2.3).
const ZSTD_BLOCK: usize = 128 * 1024;

/// Appends `body` to `out` as one zstd frame of raw blocks (RFC 8878,
/// 3.1.1): single segment, its content size stated, no checksum.
pub fn raw_frame(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + 16 + 3 * (body.len() / ZSTD_BLOCK + 1));
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    let n = body.len() as u64;
    // Frame header descriptor: Single_Segment_flag (bit 5) and the size
    // of the content size field (bits 7–6: 1, 2, 4 or 8 bytes).
    match n {
        0..=255 => out.extend_from_slice(&[0x20, n as u8]),
        256..=65_791 => {
            out.push(0x60);
            out.extend_from_slice(&((n - 256) as u16).to_le_bytes());
        }
        65_792..=0xFFFF_FFFF => {
            out.push(0xA0);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(0xE0);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    let mut blocks = body.chunks(ZSTD_BLOCK).peekable();
    if blocks.peek().is_none() {
        // No content: one empty last block.
        out.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(block) = blocks.next() {
        // Block header: Last_Block (bit 0), Block_Type 0 = raw (bits
        // 1–2), Block_Size (bits 3–23; at most 128 KiB).
        let last = u32::from(blocks.peek().is_none());
        let header = last | (block.len() as u32) << 3;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(block);
    }
}

/// The data pages of one column chunk being built.
pub struct Chunk {
    /// Whether pages carry definition levels (the schema must agree).
    nullable: bool,
    /// The compressed pages end to end, and what each is: one buffer kept
    /// from chunk to chunk rather than a `Vec` per page (zstd's `compress`
    /// gives one sized for the worst case, held until the row group is
    /// written).
    compressed: Vec<u8>,
    pages: Vec<PageSpan>,
    rows: u64,
    nulls: u64,
    framing: Framing,
    /// Rows added to the page being built, and their validity (empty
    /// while all are present).
    page_len: usize,
    page_valid: Vec<bool>,
    /// The uncompressed body of the page being written, reused.
    body: Vec<u8>,
}

/// One data page in [`Chunk::compressed`].
struct PageSpan {
    /// Where its compressed bytes end.
    end: usize,
    uncompressed: usize,
    rows: u32,
    encoding: Encoding,
}

/// What the encoder adds to the chunk when it closes.
pub struct Extras {
    /// A dictionary page: the PLAIN values and how many.
    pub dictionary: Option<(Vec<u8>, u32)>,
    pub statistics: Option<Statistics>,
}

impl Chunk {
    pub fn new(nullable: bool) -> Self {
        let (compressed, pages, body, page_valid) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        Chunk {
            nullable,
            compressed,
            pages,
            rows: 0,
            nulls: 0,
            framing: Framing::default(),
            page_len: 0,
            page_valid,
            body,
        }
    }

    /// Adds `column`'s rows to the page being built: their number and
    /// which are null (the values are the encoder's to keep).
    pub fn add_rows(&mut self, column: &Column<'_>) -> anyhow::Result<()> {
        let (len, valid) = (column.len(), column.valid);
        if !valid.is_empty() && valid.len() != len {
            anyhow::bail!("archive column of {len} rows with {} validity flags", valid.len());
        }
        let nulls = valid.iter().filter(|&&v| !v).count();
        if nulls > 0 && !self.nullable {
            anyhow::bail!("null in a required archive column");
        }
        let valid = if nulls > 0 { valid } else { &[] };
        append_validity(&mut self.page_valid, self.page_len, valid, len);
        self.page_len += len;
        self.nulls += nulls as u64;
        Ok(())
    }

    /// Rows added to the page being built.
    pub fn page_len(&self) -> usize {
        self.page_len
    }

    /// Null values written so far in this chunk.
    pub fn nulls(&self) -> u64 {
        self.nulls
    }

    /// Compresses and keeps the page of the rows added since the last
    /// one (if any): its body is their definition levels (if the chunk is
    /// nullable), then what `values` appends, the page's non-null values
    /// in `encoding`.
    pub fn data_page(
        &mut self,
        zstd: &mut Compressor,
        encoding: Encoding,
        values: impl FnOnce(&mut Vec<u8>),
    ) -> anyhow::Result<()> {
        let rows = self.page_len;
        if rows == 0 {
            return Ok(());
        }
        self.body.clear();
        if self.nullable {
            hybrid::levels(&self.page_valid, rows, &mut self.body);
        }
        values(&mut self.body);
        self.framing.frame(zstd, &self.body, &mut self.compressed)?;
        // A page holds about 64 k rows (a few pieces), far below 4 G.
        let (end, uncompressed, rows) = (self.compressed.len(), self.body.len(), rows as u32);
        self.pages.push(PageSpan { end, uncompressed, rows, encoding });
        self.rows += u64::from(rows);
        self.page_len = 0;
        self.page_valid.clear();
        Ok(())
    }

    /// The chunk's bytes (dictionary page first) and what the row group
    /// needs to know of them; the chunk is empty again afterwards.
    pub fn close(
        &mut self,
        zstd: &mut Compressor,
        descr: ColumnDescPtr,
        extras: Extras,
    ) -> anyhow::Result<(Bytes, ColumnCloseResult)> {
        // The pages carry definition levels exactly when this column was
        // made nullable: the schema must say the same.
        if descr.max_def_level() != i16::from(self.nullable) || descr.max_rep_level() != 0 {
            anyhow::bail!("column {} is not a flat column of the nullability written", descr.path());
        }
        // Sized once: page headers take a few dozen bytes each.
        let room =
            self.compressed.len() + 64 * (self.pages.len() + 1) + extras.dictionary.as_ref().map_or(0, |d| d.0.len());
        let mut sink = TrackedWrite::new(Vec::with_capacity(room));
        let (mut compressed, mut uncompressed) = (0u64, 0u64);
        // Data pages per encoding, in first-used order.
        let mut counts: Vec<(Encoding, usize)> = Vec::new();
        for page in &self.pages {
            match counts.iter_mut().find(|(e, _)| *e == page.encoding) {
                Some((_, n)) => *n += 1,
                None => counts.push((page.encoding, 1)),
            }
        }
        let stat = |page_type, encoding, count: usize| PageEncodingStats { page_type, encoding, count: count as i32 };
        let mut page_stats = Vec::new();
        // RLE: the levels of every v1 page (declared even where absent).
        let mut encodings = vec![Encoding::RLE];
        let mut offsets = OffsetIndexBuilder::new();
        let mut data_offset = None;
        {
            let mut pages = SerializedPageWriter::new(&mut sink);
            if let Some((plain, count)) = &extras.dictionary {
                let mut buf = Vec::new();
                zstd.frame(plain, &mut buf)?;
                let page = Page::DictionaryPage {
                    buf: Bytes::from(buf),
                    num_values: *count,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                };
                let spec = pages.write_page(CompressedPage::new(page, plain.len()))?;
                compressed += spec.compressed_size as u64;
                uncompressed += spec.uncompressed_size as u64;
                encodings.push(Encoding::PLAIN);
                page_stats.push(stat(PageType::DICTIONARY_PAGE, Encoding::PLAIN, 1));
            }
            let mut start = 0;
            for page in self.pages.drain(..) {
                let data = Page::DataPage {
                    // A copy, freed once written (and its memory reused for
                    // the next page's copy).
                    buf: Bytes::copy_from_slice(&self.compressed[start..page.end]),
                    num_values: page.rows,
                    encoding: page.encoding,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                };
                start = page.end;
                let spec = pages.write_page(CompressedPage::new(data, page.uncompressed))?;
                data_offset.get_or_insert(spec.offset);
                // Offsets here are within the chunk; `append_column` moves
                // them to where the chunk lands in the file.
                offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
                offsets.append_row_count(i64::from(page.rows));
                compressed += spec.compressed_size as u64;
                uncompressed += spec.uncompressed_size as u64;
            }
            pages.close()?;
        }
        self.compressed.clear();
        // Which pages are dictionary-encoded: without these, parquet-mr
        // (Spark) cannot tell that no page fell back to PLAIN and does not
        // skip row groups by their dictionaries.
        for (encoding, count) in counts {
            if !encodings.contains(&encoding) {
                encodings.push(encoding);
            }
            page_stats.push(stat(PageType::DATA_PAGE, encoding, count));
        }
        let mut meta = ColumnChunkMetaData::builder(descr)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_encodings(encodings)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_data_page_offset(data_offset.unwrap_or(0) as i64)
            .set_dictionary_page_offset(extras.dictionary.is_some().then_some(0))
            .set_page_encoding_stats(page_stats);
        if let Some(statistics) = extras.statistics {
            meta = meta.set_statistics(statistics);
        }
        let close = ColumnCloseResult {
            bytes_written: compressed,
            rows_written: self.rows,
            metadata: meta.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(offsets.build()),
        };
        (self.rows, self.nulls) = (0, 0);
        // The next chunk tries compression afresh, as a new one would.
        self.framing = Framing::default();
        Ok((Bytes::from(sink.into_inner()?), close))
    }
}

/// For the encoders' tests: writes a file of one row group whose column
/// `i` is what `column(i, its descriptor)` encodes.
#[cfg(test)]
pub(crate) fn write_test_file(
    path: &std::path::Path,
    schema: &arrow_schema::Schema,
    mut column: impl FnMut(usize, ColumnDescPtr) -> anyhow::Result<(Bytes, ColumnCloseResult)>,
) -> anyhow::Result<()> {
    let descr = std::sync::Arc::new(parquet::arrow::ArrowSchemaConverter::new().convert(schema)?);
    let file = std::fs::File::create(path)?;
    let mut file = parquet::file::writer::SerializedFileWriter::new(file, descr.root_schema_ptr(), Default::default())?;
    let mut group = file.next_row_group()?;
    for i in 0..descr.num_columns() {
        let (bytes, close) = column(i, descr.column(i))?;
        group.append_column(&bytes, close)?;
    }
    group.close()?;
    file.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_that_do_not_compress_are_stored_raw_for_a_while() {
        let (mut zstd, mut framing) = (Compressor::new().unwrap(), Framing::default());
        let mut frame = |body: &[u8]| {
            let mut out = Vec::new();
            framing.frame(&mut zstd, body, &mut out).unwrap();
            out
        };
        let raw = |body: &[u8]| {
            let mut out = Vec::new();
            raw_frame(body, &mut out);
            out
        };
        let mut seed = 1u64;
        let noise: Vec<u8> = (0..50_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        let text = b"view,view,add_to_cart,view,purchase,".repeat(1_000);
        // Compression is tried, saves nothing: the next pages are raw, even
        // those that would compress...
        assert!(frame(&noise).len() >= noise.len());
        for _ in 0..RAW_PAGES {
            assert!(frame(&text) == raw(&text), "stored raw");
        }
        // ...then it is tried again, and pays.
        let again = frame(&text);
        assert!(again.len() * 10 < text.len());
        assert_eq!(zstd::bulk::decompress(&again, text.len()).unwrap(), text);
    }

    #[test]
    fn frames_go_after_what_the_buffer_holds() {
        let mut zstd = Compressor::new().unwrap();
        let text = b"view,view,add_to_cart,view,purchase,".repeat(100);
        let mut out = b"earlier pages".to_vec();
        let n = zstd.frame(&text, &mut out).unwrap();
        assert_eq!(out.len(), 13 + n);
        assert_eq!(&out[..13], b"earlier pages");
        assert_eq!(zstd::bulk::decompress(&out[13..], text.len()).unwrap(), text);
    }
}
