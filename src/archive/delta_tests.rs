//! Tests of the delta encoders: `DELTA_BINARY_PACKED` against a decoder
//! written from the format's definition, and whole columns (times,
//! offsets, ids; nulls, shared prefixes, raw zstd frames) read back by
//! the Parquet crate's reader.

use std::fs::File;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;

use super::*;
use crate::archive::chunk::{raw_frame, write_test_file, Compressor};
use crate::archive::column::with_arrow_column;

fn read_uleb(bytes: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Decodes one `DELTA_BINARY_PACKED` stream (test oracle, from the
/// Parquet format's definition); returns the values and the bytes used.
fn decode(bytes: &[u8]) -> (Vec<i64>, usize) {
    let mut at = 0;
    let block = read_uleb(bytes, &mut at) as usize;
    let minis = read_uleb(bytes, &mut at) as usize;
    let count = read_uleb(bytes, &mut at) as usize;
    let mut values = vec![unzigzag(read_uleb(bytes, &mut at))];
    let per_mini = block / minis;
    while values.len() < count {
        let min = unzigzag(read_uleb(bytes, &mut at));
        let widths: Vec<usize> = bytes[at..at + minis].iter().map(|&w| w as usize).collect();
        at += minis;
        for width in widths {
            if values.len() >= count {
                break;
            }
            let body = &bytes[at..at + per_mini * width / 8];
            at += body.len();
            for i in 0..per_mini {
                let mut v = 0u64;
                for bit in 0..width {
                    let b = i * width + bit;
                    v |= u64::from(body[b / 8] >> (b % 8) & 1) << bit;
                }
                if values.len() < count {
                    let last = *values.last().unwrap();
                    values.push(last.wrapping_add(min).wrapping_add(v as i64));
                }
            }
        }
    }
    values.truncate(count);
    (values, at)
}

#[test]
fn delta_binary_packed_round_trips_every_width_and_length() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for n in [0, 1, 2, 31, 32, 33, 127, 128, 129, 130, 255, 256, 257, 1000] {
        for width in 0u32..=64 {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let values: Vec<i64> = (0..n).map(|_| (next() & mask) as i64).collect();
            let mut out = Vec::new();
            delta_binary_packed(&values, &mut out);
            let (back, used) = decode(&out);
            assert_eq!(back, values, "{n} values of {width} bits");
            assert_eq!(used, out.len(), "{n} values of {width} bits: no trailing bytes");
        }
    }
    // Deltas that overflow wrap, as the format's arithmetic does.
    let extremes = vec![i64::MIN, i64::MAX, 0, i64::MIN, -1, i64::MAX, i64::MAX];
    let mut out = Vec::new();
    delta_binary_packed(&extremes, &mut out);
    assert_eq!(decode(&out).0, extremes);
    // Increasing times take a few bits each, not 64.
    let times: Vec<i64> = (0..1280).map(|i| 1_795_478_400_000_000 + i * 1_000 + i % 3).collect();
    out.clear();
    delta_binary_packed(&times, &mut out);
    assert!(out.len() < 1280 * 2, "{} bytes", out.len());
}

#[test]
fn common_prefix_of_every_length() {
    let a: Vec<u8> = (0..40).collect();
    for n in 0..=40 {
        for differ in 0..n {
            let mut b = a[..n].to_vec();
            b[differ] ^= 0x80;
            assert_eq!(common_prefix(&a[..n], &b), differ);
        }
        assert_eq!(common_prefix(&a, &a[..n]), n);
        assert_eq!(common_prefix(&a[..n], &a), n);
    }
}

#[test]
fn raw_zstd_frames_decode_to_their_content() {
    for n in [0, 1, 255, 256, 65_791, 65_792, 131_072, 131_073, 300_000] {
        let body: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        // Appended after what the buffer holds (a chunk's earlier pages).
        let mut out = b"pages".to_vec();
        raw_frame(&body, &mut out);
        let (earlier, frame) = out.split_at(5);
        assert_eq!(earlier, b"pages");
        assert_eq!(zstd::bulk::decompress(frame, n + 1).unwrap(), body, "{n} bytes");
        assert!(frame.len() <= n + 9 + 3 * (n / 131_072 + 1));
    }
}

enum Encoder {
    Delta(DeltaColumn),
    Bytes(BytesColumn),
}

/// Writes `columns` as one row group, each through `encoder`, added in
/// pieces of `piece` rows and paged every `page` rows (a multiple of
/// `piece`; the rest closed with the chunk), and reads it back.
fn round_trip(
    columns: Vec<(&str, ArrayRef, Encoder)>,
    piece: usize,
    page: usize,
) -> (RecordBatch, SerializedFileReader<File>) {
    let nullable = |e: &Encoder| matches!(e, Encoder::Bytes(_));
    let fields: Vec<Field> =
        columns.iter().map(|(n, a, e)| Field::new(*n, a.data_type().clone(), nullable(e))).collect();
    let schema = Arc::new(Schema::new(fields));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.parquet");
    let mut columns: Vec<(ArrayRef, Encoder)> = columns.into_iter().map(|(_, a, e)| (a, e)).collect();
    let mut zstd = Compressor::new().unwrap();
    write_test_file(&path, &schema, |i, descr| {
        let (array, encoder) = &mut columns[i];
        for at in (0..array.len()).step_by(piece) {
            let part = array.slice(at, piece.min(array.len() - at));
            match encoder {
                Encoder::Delta(c) => with_arrow_column(part.as_ref(), |column| c.add(column))?,
                Encoder::Bytes(c) => with_arrow_column(part.as_ref(), |column| c.add(column))?,
            }
            // The last, partial page is left to `close`.
            if (at + piece).is_multiple_of(page) {
                match encoder {
                    Encoder::Delta(c) => c.page(&mut zstd)?,
                    Encoder::Bytes(c) => c.page(&mut zstd)?,
                }
            }
        }
        match encoder {
            Encoder::Delta(c) => c.close(&mut zstd, descr),
            Encoder::Bytes(c) => c.close(&mut zstd, descr),
        }
    })
    .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().with_batch_size(1 << 20);
    let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    let options = ReadOptionsBuilder::new().with_page_index().build();
    (batches[0].clone(), SerializedFileReader::new_with_options(File::open(&path).unwrap(), options).unwrap())
}

#[test]
fn columns_read_back_with_nulls_prefixes_and_raw_pages() {
    let n = 100_000usize;
    let mut seed = 7u64;
    let mut noise = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 11) as i64
    };
    // Random times do not compress: after the first page, raw frames.
    let times: ArrayRef = Arc::new(Int64Array::from((0..n).map(|_| noise()).collect::<Vec<_>>()));
    let offsets: ArrayRef = Arc::new(Int64Array::from((0..n as i64).map(|i| i * 181 - 5).collect::<Vec<_>>()));
    // Prefixes shared and not, multi-byte characters split by a shared
    // prefix, the empty string, nulls.
    let ids: ArrayRef = Arc::new(StringArray::from(
        (0..n)
            .map(|i| match i % 6 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(format!("é{}ü", "é".repeat(i % 5))),
                _ => Some(format!("e-42-{i}")),
            })
            .collect::<Vec<_>>(),
    ));
    // Nulls in some pieces only: a page joins pieces with and without.
    let sessions: ArrayRef = Arc::new(StringArray::from(
        (0..n).map(|i| (i % 4 != 0 || (i / 1_500) % 3 == 0).then(|| format!("s{}-1", i % 977))).collect::<Vec<_>>(),
    ));
    let columns = vec![
        ("time", times.clone(), Encoder::Delta(DeltaColumn::default())),
        ("offset", offsets.clone(), Encoder::Delta(DeltaColumn::default())),
        ("id", ids.clone(), Encoder::Bytes(BytesColumn::default())),
        ("session", sessions.clone(), Encoder::Bytes(BytesColumn::default())),
    ];
    let (read, reader) = round_trip(columns, 1_000, 9_000);
    for (i, array) in [times, offsets.clone(), ids, sessions].iter().enumerate() {
        assert_eq!(read.column(i).as_ref(), array.as_ref(), "column {i}");
    }
    let rg = reader.metadata().row_group(0);
    let encodings = |i: usize| rg.column(i).encodings().collect::<Vec<_>>();
    assert!(encodings(0).contains(&Encoding::DELTA_BINARY_PACKED));
    assert!(encodings(2).contains(&Encoding::DELTA_BYTE_ARRAY));
    assert!(encodings(3).contains(&Encoding::DELTA_BYTE_ARRAY));
    match rg.column(1).statistics() {
        Some(Statistics::Int64(s)) => {
            assert_eq!((s.min_opt(), s.max_opt()), (Some(&-5), Some(&((n as i64 - 1) * 181 - 5))));
            assert_eq!(s.null_count_opt(), Some(0));
        }
        other => panic!("offset statistics {other:?}"),
    }
    assert!(rg.column(2).statistics().is_none(), "no string statistics");
    // Raw frames are a little larger than their content (zstd's own
    // output would be too, each time it tried); offsets of constant step
    // take well under a byte per row.
    let time = rg.column(0);
    assert!(time.compressed_size() > time.uncompressed_size(), "random times stored raw");
    assert!(rg.column(1).uncompressed_size() < n as i64 / 8, "{}", rg.column(1).uncompressed_size());
    // The offset index lists every page and its first row, so readers can
    // skip pages by row.
    let index = reader.metadata().page_index_for_row_group(0);
    for c in 0..4 {
        let column = index.offset_index(c).expect("offset index");
        let first_rows: Vec<i64> = column.page_locations().iter().map(|p| p.first_row_index).collect();
        assert_eq!(first_rows, (0..n as i64).step_by(9_000).collect::<Vec<_>>());
    }
}

#[test]
fn a_null_in_a_required_column_is_refused() {
    let mut c = DeltaColumn::default();
    let err = with_arrow_column(&Int64Array::from(vec![Some(1), None]), |column| c.add(column)).unwrap_err();
    assert!(err.to_string().contains("null in a required"), "{err}");
}
