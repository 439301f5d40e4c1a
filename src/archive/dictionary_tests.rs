//! Tests of the hand-written dictionary columns: whole files read back
//! by the Parquet crate's reader (written through `PartWriter`, the
//! archive's only writer). The interner's own tests are in intern.rs.

use std::fs::File;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Encoding;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

use super::*;
use crate::archive::chunk::{write_test_file, Compressor};
use crate::archive::column::with_arrow_column;

/// Rows per piece handed to the encoders in the round trips below: pages
/// hold several (a page closes after the piece that reaches its size).
const PIECE: usize = 1_000;

/// Writes `columns` (name, array) as one row group, `DictColumn`s only,
/// added in pieces of `PIECE` rows, a page closed after the piece that
/// reaches `batch` rows; and reads it back.
fn round_trip(columns: Vec<(&str, ArrayRef)>, batch: usize) -> (RecordBatch, SerializedFileReader<File>) {
    let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
    let schema = Arc::new(Schema::new(fields));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.parquet");
    let mut zstd = Compressor::new().unwrap();
    write_test_file(&path, &schema, |i, descr| {
        let array = &columns[i].1;
        let physical = match array.data_type() {
            DataType::Utf8 => Physical::Utf8,
            DataType::Float64 => Physical::Double,
            DataType::Int64 => Physical::Int64,
            _ => Physical::Int32,
        };
        let mut d = DictColumn::new(physical, true);
        let mut in_page = 0;
        for at in (0..array.len()).step_by(PIECE) {
            let piece = array.slice(at, PIECE.min(array.len() - at));
            with_arrow_column(piece.as_ref(), |c| d.add(c))?;
            in_page += piece.len();
            if in_page >= batch {
                d.page(&mut zstd)?;
                in_page = 0;
            }
        }
        // The last page is closed by `close`.
        d.close(&mut zstd, descr)
    })
    .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let read = arrow_select_concat(&batches);
    (read, SerializedFileReader::new(File::open(&path).unwrap()).unwrap())
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    // One batch per 1024 rows by default: compare column by column.
    let schema = batches[0].schema();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            concat(&parts)
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

fn concat(parts: &[&dyn Array]) -> ArrayRef {
    let any = parts[0].as_any();
    if any.is::<StringArray>() {
        let v: Vec<Option<&str>> =
            parts.iter().flat_map(|p| p.as_any().downcast_ref::<StringArray>().unwrap().iter()).collect();
        Arc::new(StringArray::from(v))
    } else if any.is::<Float64Array>() {
        let v: Vec<Option<f64>> =
            parts.iter().flat_map(|p| p.as_any().downcast_ref::<Float64Array>().unwrap().iter()).collect();
        Arc::new(Float64Array::from(v))
    } else if any.is::<Int64Array>() {
        let v: Vec<Option<i64>> =
            parts.iter().flat_map(|p| p.as_any().downcast_ref::<Int64Array>().unwrap().iter()).collect();
        Arc::new(Int64Array::from(v))
    } else {
        let v: Vec<Option<i32>> =
            parts.iter().flat_map(|p| p.as_any().downcast_ref::<Int32Array>().unwrap().iter()).collect();
        Arc::new(Int32Array::from(v))
    }
}

#[test]
fn columns_read_back_with_nulls_widths_and_statistics() {
    let n = 70_000usize;
    let strings: ArrayRef = Arc::new(StringArray::from(
        (0..n).map(|i| (i % 7 != 3).then(|| format!("user-{}", (i * 7919) % 3000))).collect::<Vec<_>>(),
    ));
    let one_value: ArrayRef = Arc::new(Int32Array::from(vec![4; n]));
    let prices: ArrayRef = Arc::new(Float64Array::from(
        (0..n).map(|i| (i % 5 == 0).then_some(-3.5 + (i % 301) as f64 * 0.25)).collect::<Vec<_>>(),
    ));
    let quantities: ArrayRef = Arc::new(Int64Array::from((0..n).map(|i| i as i64 % 9 - 4).collect::<Vec<_>>()));
    let no_value: ArrayRef = Arc::new(Float64Array::from(vec![None; n]));
    // One value per piece, another in the next (a piece's partition).
    let runs: ArrayRef = Arc::new(Int64Array::from((0..n).map(|i| (i / PIECE) as i64 % 3 - 1).collect::<Vec<_>>()));
    let columns = vec![
        ("s", strings),
        ("one", one_value),
        ("price", prices),
        ("q", quantities),
        ("none", no_value),
        ("runs", runs),
    ];
    let (read, reader) = round_trip(columns.clone(), 6_000);
    for (i, (name, array)) in columns.iter().enumerate() {
        assert_eq!(read.column(i).as_ref(), array.as_ref(), "column {name}");
    }
    let rg = reader.metadata().row_group(0);
    for c in rg.columns() {
        assert!(c.dictionary_page_offset().is_some(), "{}", c.column_path());
        assert!(c.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
    }
    for c in rg.columns() {
        let mask = c.page_encoding_stats_mask().expect("page encoding statistics");
        assert!(mask.is_only(Encoding::RLE_DICTIONARY), "every data page dictionary-encoded");
    }
    assert!(rg.column(0).statistics().is_none(), "no string statistics");
    match rg.column(2).statistics() {
        Some(Statistics::Double(s)) => {
            assert_eq!((s.min_opt(), s.max_opt()), (Some(&-3.5), Some(&71.5)));
            assert_eq!(s.null_count_opt(), Some((n - n / 5) as u64));
            assert_eq!(s.nan_count_opt(), Some(0), "doubles in total order count their NaNs");
        }
        other => panic!("price statistics {other:?}"),
    }
    match rg.column(3).statistics() {
        Some(Statistics::Int64(s)) => assert_eq!((s.min_opt(), s.max_opt()), (Some(&-4), Some(&4))),
        other => panic!("quantity statistics {other:?}"),
    }
    match rg.column(5).statistics() {
        Some(Statistics::Int64(s)) => assert_eq!((s.min_opt(), s.max_opt()), (Some(&-1), Some(&1))),
        other => panic!("runs statistics {other:?}"),
    }
    let none = rg.column(4).statistics().expect("a column of nulls has statistics");
    assert_eq!((none.null_count_opt(), none.min_bytes_opt()), (Some(n as u64), None));
}

/// Columns without nulls take loops of their own (strings straight from
/// their offsets, with and without prefetching; numbers as words): they
/// must read back exactly as the general path's do.
#[test]
fn columns_without_nulls_read_back_through_their_own_loops() {
    let n = 30_000usize;
    // 5,000 values: a table past `CACHED_SLOTS`, looked up with prefetches.
    let many: ArrayRef = Arc::new(StringArray::from(
        (0..n)
            .map(|i| match (i * 7) % 5_000 {
                k if k % 5 == 0 => format!("u{k}"),
                k if k % 5 == 1 => format!("{k:0>12}"),
                k if k % 5 == 2 => format!("a-rather-long-identifier-{k}-with-a-common-suffix"),
                k if k % 5 == 3 => format!("ü{k:0>15}"),
                _ => String::new(),
            })
            .collect::<Vec<_>>(),
    ));
    let few: ArrayRef =
        Arc::new(StringArray::from((0..n).map(|i| ["view", "add_to_cart", "purchase"][i % 3]).collect::<Vec<_>>()));
    let doubles = |i: usize| match i % 6 {
        0 => f64::NAN,
        1 => -0.0,
        2 => 0.0,
        k => k as f64 * 1.25 - (i % 97) as f64,
    };
    let prices: ArrayRef = Arc::new(Float64Array::from((0..n).map(doubles).collect::<Vec<_>>()));
    let sparse: ArrayRef =
        Arc::new(Float64Array::from((0..n).map(|i| (i % 4 == 1).then(|| doubles(i / 4))).collect::<Vec<_>>()));
    let columns = vec![("many", many), ("few", few), ("prices", prices), ("sparse", sparse)];
    let (read, reader) = round_trip(columns.clone(), 8_000);
    for (i, (name, array)) in columns.iter().enumerate() {
        let (got, want) = (read.column(i), array);
        if let (Some(g), Some(w)) =
            (got.as_any().downcast_ref::<Float64Array>(), want.as_any().downcast_ref::<Float64Array>())
        {
            // NaN != NaN: compare bits (and nulls).
            let bits = |a: &Float64Array| a.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>();
            assert_eq!(bits(g), bits(w), "column {name}");
        } else {
            assert_eq!(got.as_ref(), want.as_ref(), "column {name}");
        }
    }
    let rg = reader.metadata().row_group(0);
    for (i, nans, nulls) in
        [(2, n.div_ceil(6), 0), (3, (0..n).filter(|i| i % 4 == 1 && (i / 4) % 6 == 0).count(), n - n / 4)]
    {
        match rg.column(i).statistics() {
            Some(Statistics::Double(s)) => {
                assert_eq!(s.nan_count_opt(), Some(nans as u64), "column {i}");
                assert_eq!(s.null_count_opt(), Some(nulls as u64), "column {i}");
                let lo = (0..n).map(doubles).filter(|x| !x.is_nan()).min_by(f64::total_cmp);
                if i == 2 {
                    assert_eq!(s.min_opt().copied().map(f64::to_bits), lo.map(f64::to_bits));
                }
            }
            other => panic!("column {i} statistics {other:?}"),
        }
    }
}

#[test]
fn a_dictionary_past_its_limit_falls_back_to_plain_pages() {
    // Unique ids of ~40 bytes: the dictionary passes 1 MiB within the
    // first pages; the rest is PLAIN, and every value still reads back.
    let n = 60_000usize;
    // Nulls in some pieces only, before and after the fallback.
    let ids: ArrayRef = Arc::new(StringArray::from(
        (0..n)
            .map(|i| (i % 7 != 0 || (i / 2_500) % 2 == 0).then(|| format!("{i:08}-0000-4000-8000-{:012}", i * 31)))
            .collect::<Vec<_>>(),
    ));
    let (read, reader) = round_trip(vec![("id", ids.clone())], 5_000);
    assert_eq!(read.column(0).as_ref(), ids.as_ref());
    let c = reader.metadata().row_group(0).column(0).clone();
    let encodings: Vec<Encoding> = c.encodings().collect();
    assert!(encodings.contains(&Encoding::PLAIN) && encodings.contains(&Encoding::RLE_DICTIONARY), "{encodings:?}");
    // The page encoding statistics say that some data pages fell back
    // (read back, by default, as the mask of data page encodings).
    let mask = c.page_encoding_stats_mask().expect("page encoding statistics");
    assert!(mask.is_set(Encoding::PLAIN) && mask.is_set(Encoding::RLE_DICTIONARY));
}
