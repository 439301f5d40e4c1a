//! The archive's file format: one Parquet file of events (SPEC §4).
//!
//! Columns, in order: `event_id`, `user_id`, `product_id`, `event_type`,
//! `category`, `session_id`, `event_time` (timestamp µs UTC), `price`,
//! `quantity`, `ingest_time` (timestamp µs UTC), `source_partition`,
//! `source_offset`. The date is not a column: it is the Hive directory
//! `event_date=YYYY-MM-DD`, which Spark, DuckDB and pyarrow turn back into
//! a column. Zstd compression; every column encoded by hand ([`PartWriter`]
//! says why): the repeating ones dictionary-encoded by [`DictColumn`],
//! times and offsets `DELTA_BINARY_PACKED` by [`DeltaColumn`], event and
//! session ids `DELTA_BYTE_ARRAY` by [`BytesColumn`].

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow_array::TimestampMicrosecondArray;
use arrow_array::{Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, SchemaDescPtr};

use super::chunk::{Compressor, ZSTD_LEVEL};
use super::column::Column;
use super::columns::{ArchiveColumns, Origin};
use super::delta::{BytesColumn, DeltaColumn};
use super::dictionary::{DictColumn, Physical};
use crate::event::{Event, EventRef, Micros};

/// One archived row: the event plus where and when it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchiveRow {
    pub event: Event,
    pub ingest_time: Micros,
    pub partition: u32,
    pub position: u64,
}

/// Rows per data page written, and per record batch read.
const BATCH: usize = 64 * 1024;

pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("product_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("event_time", ts.clone(), false),
        Field::new("price", DataType::Float64, true),
        Field::new("quantity", DataType::Int64, true),
        Field::new("ingest_time", ts, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
    ]))
}

/// The file's properties. The columns are encoded by hand (see
/// [`PartWriter`]): what is left here is what the file's footer says.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default()))
        .set_created_by(format!("clickwatch {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Days since the epoch of an event time (cheap; see [`event_date`]).
pub fn day_of(t: Micros) -> i64 {
    t.div_euclid(86_400_000_000)
}

/// The UTC date (YYYY-MM-DD) of an event time: its partition.
pub fn event_date(t: Micros) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_micros(t) {
        Some(dt) => dt.format("%Y-%m-%d").to_string(),
        None => "invalid".to_string(),
    }
}

/// Rows per row group (about; a group closes after the page that
/// reaches it).
const ROW_GROUP: u64 = 1 << 20;

/// How one column of a row group is encoded (all three boxed: they differ
/// in size by hundreds of bytes).
enum ColumnEncoder {
    /// The columns that repeat: user, product, event type, category,
    /// price, quantity, partition.
    Dictionary(Box<DictColumn>),
    /// Times and offsets.
    Delta(Box<DeltaColumn>),
    /// Event and session ids.
    Bytes(Box<BytesColumn>),
}

impl ColumnEncoder {
    /// The encoder of one column of [`schema`].
    fn of(field: &Field) -> anyhow::Result<Self> {
        let dictionary =
            |physical| Ok(ColumnEncoder::Dictionary(Box::new(DictColumn::new(physical, field.is_nullable()))));
        match (field.name().as_str(), field.data_type()) {
            // Ids that do not repeat: DELTA_BYTE_ARRAY stores what differs
            // from the row before and bit-packs the lengths. Generated and
            // many real event ids share long prefixes (archive -12 % CPU and
            // -12 % bytes); session ids share little, but their lengths
            // take a few bits instead of PLAIN's 4 bytes (zstd reads 40 %
            // fewer bytes, encoder -5 %, +2 % compressed).
            ("event_id" | "session_id", DataType::Utf8) => Ok(ColumnEncoder::Bytes(Box::default())),
            (_, DataType::Utf8) => dictionary(Physical::Utf8),
            (_, DataType::Float64) => dictionary(Physical::Double),
            ("quantity", DataType::Int64) => dictionary(Physical::Int64),
            (_, DataType::Int32) => dictionary(Physical::Int32),
            (_, DataType::Int64 | DataType::Timestamp(TimeUnit::Microsecond, _)) => {
                Ok(ColumnEncoder::Delta(Box::default()))
            }
            (name, other) => bail!("no encoding for archive column {name} ({other})"),
        }
    }

    fn add(&mut self, column: Column<'_>) -> anyhow::Result<()> {
        match self {
            ColumnEncoder::Dictionary(c) => c.add(column),
            ColumnEncoder::Delta(c) => c.add(column),
            ColumnEncoder::Bytes(c) => c.add(column),
        }
    }

    fn page(&mut self, zstd: &mut Compressor) -> anyhow::Result<()> {
        match self {
            ColumnEncoder::Dictionary(c) => c.page(zstd),
            ColumnEncoder::Delta(c) => c.page(zstd),
            ColumnEncoder::Bytes(c) => c.page(zstd),
        }
    }

    fn close(&mut self, zstd: &mut Compressor, descr: ColumnDescPtr) -> anyhow::Result<(Bytes, ColumnCloseResult)> {
        match self {
            ColumnEncoder::Dictionary(c) => c.close(zstd, descr),
            ColumnEncoder::Delta(c) => c.close(zstd, descr),
            ColumnEncoder::Bytes(c) => c.close(zstd, descr),
        }
    }
}

/// A file's column encoders and the compressor they share, empty between
/// files. The archive thread keeps them from file to file
/// ([`PartWriter::finish`] gives them back): their dictionary tables,
/// page buffers and zstd tables are faulted in once, not once per file.
pub struct Encoders {
    zstd: Compressor,
    /// One per column of [`schema`], in order.
    columns: Vec<ColumnEncoder>,
}

impl Encoders {
    pub fn new() -> anyhow::Result<Self> {
        let columns = schema().fields().iter().map(|f| ColumnEncoder::of(f)).collect::<anyhow::Result<_>>()?;
        Ok(Encoders { zstd: Compressor::new()?, columns })
    }
}

/// A Parquet file being written. Pieces (one input chunk each, ~1.5 k
/// rows) go to the column encoders as they come, read where the decoding
/// worker put them; a page closes every `BATCH` rows: closing one costs
/// a fixed amount per column, which on chunk-sized pages was ~10 % of the
/// archive thread (more when the workers share its core).
pub struct PartWriter {
    file: SerializedFileWriter<File>,
    descr: SchemaDescPtr,
    /// The row group being built; between row groups, empty.
    encoders: Encoders,
    /// Rows in the pages being built, and in the row group.
    page_rows: usize,
    group_rows: u64,
    path: std::path::PathBuf,
    /// Rows handed to the encoders.
    written: u64,
}

impl PartWriter {
    /// A file at `path`, written by `encoders` (fresh ones, or those a
    /// finished file gave back).
    pub fn create(path: &Path, encoders: Encoders) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let arrow_schema = schema();
        let mut props = writer_properties();
        // As `ArrowWriter` does: readers take column types (the UTC time
        // zone) from the Arrow schema kept in the footer.
        add_encoded_arrow_schema_to_metadata(&arrow_schema, &mut props);
        let descr =
            Arc::new(ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(&arrow_schema)?);
        let file = SerializedFileWriter::new(file, descr.root_schema_ptr(), Arc::new(props))?;
        let path = path.to_owned();
        Ok(PartWriter { file, descr, encoders, page_rows: 0, group_rows: 0, path, written: 0 })
    }

    /// Writes the rows of `columns` (to the file once a row group is
    /// full); returns `columns` emptied, their memory kept for reuse.
    pub fn write(&mut self, mut columns: ArchiveColumns) -> anyhow::Result<ArchiveColumns> {
        let n = columns.len();
        if n == 0 {
            return Ok(columns);
        }
        // Checked before any encoder takes a row, so none is left ahead.
        if columns.columns().iter().any(|c| c.len() != n) {
            bail!("archive columns of different lengths");
        }
        for (encoder, column) in self.encoders.columns.iter_mut().zip(columns.columns()) {
            encoder.add(column)?;
        }
        self.written += n as u64;
        self.group_rows += n as u64;
        self.page_rows += n;
        if self.page_rows >= BATCH {
            self.pages()?;
            if self.group_rows >= ROW_GROUP {
                self.close_group().with_context(|| format!("writing {}", self.path.display()))?;
            }
        }
        columns.clear();
        Ok(columns)
    }

    /// Closes every column's page being built.
    fn pages(&mut self) -> anyhow::Result<()> {
        let Encoders { zstd, columns } = &mut self.encoders;
        for encoder in columns {
            encoder.page(zstd)?;
        }
        self.page_rows = 0;
        Ok(())
    }

    /// Appends the row group being built to the file.
    fn close_group(&mut self) -> anyhow::Result<()> {
        if self.group_rows == 0 {
            return Ok(());
        }
        // Each encoder closes its last page itself, and is empty again.
        self.page_rows = 0;
        let mut group = self.file.next_row_group()?;
        let Encoders { zstd, columns } = &mut self.encoders;
        for (i, encoder) in columns.iter_mut().enumerate() {
            let (bytes, close) = encoder.close(zstd, self.descr.column(i))?;
            group.append_column(&bytes, close)?;
        }
        group.close()?;
        self.group_rows = 0;
        Ok(())
    }

    /// Rows in the file so far.
    pub fn rows(&self) -> u64 {
        self.written
    }

    /// Closes and fsyncs the file; returns its size in bytes and its
    /// encoders, empty, for the next file.
    pub fn finish(mut self) -> anyhow::Result<(u64, Encoders)> {
        self.close_group().with_context(|| format!("writing {}", self.path.display()))?;
        let file = self.file.into_inner().with_context(|| format!("finishing {}", self.path.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", self.path.display()))?;
        Ok((file.metadata()?.len(), self.encoders))
    }
}

/// Writes `rows` as one Parquet file at `path` and fsyncs it; returns its
/// size in bytes.
pub fn write_file(path: &Path, rows: &[ArchiveRow]) -> anyhow::Result<u64> {
    let mut w = PartWriter::create(path, Encoders::new()?)?;
    for rows in rows.chunks(BATCH) {
        let mut columns = ArchiveColumns::default();
        for r in rows {
            let at = Origin { ingest_time: r.ingest_time, partition: r.partition, position: r.position };
            columns.push(r.event.fields(), at);
        }
        w.write(columns)?;
    }
    Ok(w.finish()?.0)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
    match batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()) {
        Some(c) => Ok(c),
        None => bail!("column {name} missing or of the wrong type"),
    }
}

/// The string and time columns of a decoded batch, the part of an event
/// both readers below need.
struct EventColumns<'a> {
    id: &'a StringArray,
    user: &'a StringArray,
    product: &'a StringArray,
    etype: &'a StringArray,
    cat: &'a StringArray,
    session: &'a StringArray,
    time: &'a TimestampMicrosecondArray,
}

impl<'a> EventColumns<'a> {
    fn of(b: &'a RecordBatch) -> anyhow::Result<Self> {
        Ok(EventColumns {
            id: column(b, "event_id")?,
            user: column(b, "user_id")?,
            product: column(b, "product_id")?,
            etype: column(b, "event_type")?,
            cat: column(b, "category")?,
            session: column(b, "session_id")?,
            time: column(b, "event_time")?,
        })
    }

    fn row(&self, i: usize) -> BatchColumns<'a> {
        BatchColumns {
            event_id: (!self.id.is_null(i)).then(|| self.id.value(i)),
            user_id: self.user.value(i),
            product_id: self.product.value(i),
            event_type: self.etype.value(i),
            category: self.cat.value(i),
            session_id: (!self.session.is_null(i)).then(|| self.session.value(i)),
            time: self.time.value(i),
        }
    }
}

/// Reads a file written by [`write_file`] back into rows.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<ArchiveRow>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(BATCH).build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let b = batch.with_context(|| format!("reading {}", path.display()))?;
        let cols = EventColumns::of(&b)?;
        let ingest = column::<TimestampMicrosecondArray>(&b, "ingest_time")?;
        let price = column::<Float64Array>(&b, "price")?;
        let qty = column::<Int64Array>(&b, "quantity")?;
        let part = column::<Int32Array>(&b, "source_partition")?;
        let off = column::<Int64Array>(&b, "source_offset")?;
        for i in 0..b.num_rows() {
            let c = cols.row(i);
            let event = EventRef {
                event_id: c.event_id,
                user_id: c.user_id,
                product_id: c.product_id,
                event_type: c.event_type,
                category: c.category,
                session_id: c.session_id,
                time: c.time,
                price: (!price.is_null(i)).then(|| price.value(i)),
                quantity: (!qty.is_null(i)).then(|| qty.value(i)),
            };
            rows.push(ArchiveRow {
                event: event.into(),
                ingest_time: ingest.value(i),
                partition: u32::try_from(part.value(i)).unwrap_or(0),
                position: u64::try_from(off.value(i)).unwrap_or(0),
            });
        }
    }
    Ok(rows)
}

/// The columns of one archived event the batch layer reads, borrowed from
/// the decoded batch (no per-row allocation).
pub struct BatchColumns<'a> {
    pub event_id: Option<&'a str>,
    pub user_id: &'a str,
    pub product_id: &'a str,
    pub event_type: &'a str,
    pub category: &'a str,
    pub session_id: Option<&'a str>,
    pub time: Micros,
}

/// Reads only the batch layer's columns of a file, row by row into `f`.
pub fn for_each_batch_row(path: &Path, mut f: impl FnMut(BatchColumns<'_>)) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let wanted = ["event_id", "user_id", "product_id", "event_type", "category", "session_id", "event_time"];
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), wanted);
    let reader = builder.with_projection(mask).with_batch_size(BATCH).build()?;
    for batch in reader {
        let b = batch.with_context(|| format!("reading {}", path.display()))?;
        let cols = EventColumns::of(&b)?;
        (0..b.num_rows()).for_each(|i| f(cols.row(i)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn row(i: u64, full: bool) -> ArchiveRow {
        ArchiveRow {
            event: Event {
                event_id: full.then(|| format!("e\"{i}").into()),
                user_id: format!("ü{i}").into(),
                product_id: "p1".into(),
                event_type: if i.is_multiple_of(2) { "view".into() } else { "wishlist".into() },
                kind: if i.is_multiple_of(2) { EventKind::View } else { EventKind::Other },
                category: "books".into(),
                session_id: full.then(|| "s1".into()),
                time: if i == 0 { 0 } else { 253_402_300_799_999_999 - i as i64 },
                price: full.then_some(9.99),
                quantity: full.then_some(2),
            },
            ingest_time: 1_000_000 + i as i64,
            partition: 3,
            position: 10 * i,
        }
    }

    #[test]
    fn round_trip_with_nulls_and_extremes() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<ArchiveRow> = (0..1000).map(|i| row(i, i % 3 != 0)).collect();
        let path = dir.path().join("x.parquet");
        let bytes = write_file(&path, &rows).unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(read_file(&path).unwrap(), rows);
    }

    #[test]
    fn pieces_join_into_pages_and_their_memory_comes_back() {
        // Pieces of 1000 rows, nulls in some only: a page closes after
        // the piece that reaches 64 k rows, so it joins pieces with and
        // without nulls.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let rows: Vec<ArchiveRow> = (0..70_000).map(|i| row(i, i % 3 != 0 || (i / 2_500) % 2 == 0)).collect();
        let mut w = PartWriter::create(&path, Encoders::new().unwrap()).unwrap();
        for piece in rows.chunks(1_000) {
            let mut columns = ArchiveColumns::default();
            for r in piece {
                let at = Origin { ingest_time: r.ingest_time, partition: r.partition, position: r.position };
                columns.push(r.event.fields(), at);
            }
            let memory = columns.times().as_ptr();
            let back = w.write(columns).unwrap();
            assert!(back.is_empty() && back.times().as_ptr() == memory, "emptied, memory kept");
        }
        assert_eq!(w.rows(), 70_000);
        w.finish().unwrap();
        assert_eq!(read_file(&path).unwrap(), rows);
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let time = reader.metadata().row_group(0).column(6).clone();
        let mut pages = reader.get_row_group(0).unwrap().get_column_page_reader(6).unwrap();
        let mut data_pages = 0;
        while let Some(page) = pages.get_next_page().unwrap() {
            data_pages += usize::from(page.page_type() == parquet::basic::PageType::DATA_PAGE);
        }
        assert_eq!((data_pages, time.num_values()), (2, 70_000), "a page of 66 pieces and one of the rest");
    }

    /// Writes `rows` in pieces of 1000 through `encoders`; the file's
    /// bytes and the encoders back.
    fn write_with(path: &Path, rows: &[ArchiveRow], encoders: Encoders) -> (Vec<u8>, Encoders) {
        let mut w = PartWriter::create(path, encoders).unwrap();
        for piece in rows.chunks(1_000) {
            let mut columns = ArchiveColumns::default();
            for r in piece {
                columns.push(
                    r.event.fields(),
                    Origin { ingest_time: r.ingest_time, partition: r.partition, position: r.position },
                );
            }
            w.write(columns).unwrap();
        }
        let (_, encoders) = w.finish().unwrap();
        (std::fs::read(path).unwrap(), encoders)
    }

    #[test]
    fn encoders_kept_from_file_to_file_write_what_fresh_ones_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        // A first file leaves dictionaries, pages and compression state
        // behind: 70 k rows of 20 k users in no order (their index pages
        // do not compress, so the column's next pages go raw), nulls in
        // some pieces.
        let first: Vec<ArchiveRow> = (0..70_000u64)
            .map(|i| {
                let mut r = row(i, i % 3 != 0);
                r.event.user_id = format!("u{}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 50).into();
                r
            })
            .collect();
        let (_, kept) = write_with(&path, &first, Encoders::new().unwrap());
        // Four users in turn: pages that compress, unless the column
        // wrongly went on storing them raw.
        let second: Vec<ArchiveRow> = (0..3_000u64)
            .map(|i| {
                let mut r = row(i * 7 + 5, i % 5 != 0);
                r.event.user_id = format!("u{}", i % 4).into();
                r
            })
            .collect();
        let (reused, _) = write_with(&path, &second, kept);
        let (fresh, _) = write_with(&path, &second, Encoders::new().unwrap());
        assert!(reused == fresh, "the same bytes, nothing of the first file in the second");
        assert_eq!(read_file(&path).unwrap(), second);
    }

    #[test]
    fn schema_compression_and_dictionaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        write_file(&path, &(0..100).map(|i| row(i, true)).collect::<Vec<_>>()).unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let meta = reader.metadata();
        let rg = meta.row_group(0);
        assert_eq!(rg.num_columns(), 12);
        for c in rg.columns() {
            assert!(matches!(c.compression(), Compression::ZSTD(_)), "{:?}", c.column_path());
        }
        let product = rg.columns().iter().find(|c| c.column_path().string() == "product_id").unwrap();
        assert!(product.dictionary_page_offset().is_some(), "strings are dictionary-encoded");
        assert!(product.statistics().is_none(), "no string statistics");
        let time = rg.columns().iter().find(|c| c.column_path().string() == "event_time").unwrap();
        assert!(time.statistics().is_some_and(|s| s.min_bytes_opt().is_some()), "times keep min/max");
        let arrow_schema =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().schema().clone();
        assert_eq!(arrow_schema.fields(), schema().fields());
    }

    #[test]
    fn event_date_boundaries() {
        let midnight = 1_795_478_400_000_000; // 2026-11-24T00:00:00Z
        assert_eq!(event_date(midnight - 1), "2026-11-23");
        assert_eq!(event_date(midnight), "2026-11-24");
    }
}
