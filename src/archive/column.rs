//! One column of an archive piece, as a column encoder borrows it: the
//! values where [`ArchiveColumns`] keeps them (strings as spans of the
//! piece's text, numbers as plain slices) and their validity.
//!
//! [`ArchiveColumns`]: super::columns::ArchiveColumns

use arrow_buffer::ToByteSlice;
use serde::{Deserialize, Serialize};

/// One column of a piece, borrowed by a column encoder.
#[derive(Clone, Copy, Debug)]
pub struct Column<'a> {
    pub data: ColumnData<'a>,
    /// Empty while every value is present, else one flag per row (a null
    /// row still has a value in `data`: an empty string, a zero).
    pub valid: &'a [bool],
}

/// Where one string value lies in a text: `start..end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A column's values, as [`ArchiveColumns`](super::columns::ArchiveColumns) keeps them.
#[derive(Clone, Copy, Debug)]
pub enum ColumnData<'a> {
    /// `bytes[spans[i].range()]` is value `i` (UTF-8). Values need not be
    /// end to end, nor in order: `bytes` is the input they were read from.
    Strings {
        bytes: &'a [u8],
        spans: &'a [Span],
    },
    /// 64-bit integers and times (µs).
    Int64(&'a [i64]),
    Double(&'a [f64]),
    Int32(&'a [i32]),
}

impl<'a> Column<'a> {
    pub fn len(&self) -> usize {
        match self.data {
            ColumnData::Strings { spans, .. } => spans.len(),
            ColumnData::Int64(v) => v.len(),
            ColumnData::Double(v) => v.len(),
            ColumnData::Int32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a column of integers, without nulls, all of one
    /// value (a piece's partition, say).
    pub fn is_constant_integer(&self) -> bool {
        fn same<T: PartialEq>(v: &[T]) -> bool {
            v.first().is_some_and(|first| v.iter().all(|x| x == first))
        }
        self.valid.is_empty()
            && match self.data {
                ColumnData::Int64(v) => same(v),
                ColumnData::Int32(v) => same(v),
                ColumnData::Double(_) | ColumnData::Strings { .. } => false,
            }
    }

    /// Whether row `i` has a value.
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        self.valid.get(i) != Some(&false)
    }

    /// The bytes of each present value of a string column, in order
    /// (nothing for a column of numbers).
    pub fn present_strings(&self) -> impl Iterator<Item = &'a [u8]> + Clone {
        self.present_strings_at().map(|(_, v)| v)
    }

    /// Each present value of a string column with where it starts in the
    /// column's bytes, in order (nothing for a column of numbers).
    pub fn present_strings_at(&self) -> impl Iterator<Item = (usize, &'a [u8])> + Clone {
        let (bytes, spans) = match self.data {
            ColumnData::Strings { bytes, spans } => (bytes, spans),
            _ => (&[][..], &[][..]),
        };
        let column = *self;
        let values = spans.iter().map(|s| (s.start as usize, bytes.get(s.range()).unwrap_or_default()));
        values.enumerate().filter(move |&(i, _)| column.is_valid(i)).map(|(_, v)| v)
    }

    /// The little-endian bytes of each present value of a column of
    /// numbers, in order (nothing for a string column).
    pub fn present_numbers(&self) -> impl Iterator<Item = &'a [u8]> + Clone {
        let (bytes, width) = match self.data {
            ColumnData::Int64(v) => (v.to_byte_slice(), 8),
            ColumnData::Double(v) => (v.to_byte_slice(), 8),
            ColumnData::Int32(v) => (v.to_byte_slice(), 4),
            ColumnData::Strings { .. } => (&[][..], 8),
        };
        let column = *self;
        bytes.chunks_exact(width).enumerate().filter(move |&(i, _)| column.is_valid(i)).map(|(_, v)| v)
    }
}

/// For the encoders' tests: `f` of `array` (a string, 64-bit integer,
/// time, double or 32-bit integer array, possibly sliced) as a [`Column`].
#[cfg(test)]
pub(crate) fn with_arrow_column<R>(array: &dyn arrow_array::Array, f: impl FnOnce(Column<'_>) -> R) -> R {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
    use arrow_schema::DataType as T;
    let valid: Vec<bool> = array.logical_nulls().map(|n| n.iter().collect()).unwrap_or_default();
    let spans: Vec<Span>;
    let data = match array.data_type() {
        T::Utf8 => {
            let a = array.as_string::<i32>();
            spans = a.value_offsets().windows(2).map(|w| Span { start: w[0] as u32, end: w[1] as u32 }).collect();
            ColumnData::Strings { bytes: a.values(), spans: &spans }
        }
        T::Int64 => ColumnData::Int64(array.as_primitive::<Int64Type>().values()),
        T::Timestamp(..) => ColumnData::Int64(array.as_primitive::<TimestampMicrosecondType>().values()),
        T::Float64 => ColumnData::Double(array.as_primitive::<Float64Type>().values()),
        T::Int32 => ColumnData::Int32(array.as_primitive::<Int32Type>().values()),
        other => panic!("no archive column of {other}"),
    };
    f(Column { data, valid: &valid })
}
