//! Archive rows in columns, as the decoding workers build them.
//!
//! A decoding worker copies each valid event's fields once, straight from
//! the input bytes, into these column vectors (the layout Arrow uses:
//! concatenated string bytes and their end offsets, plain value vectors).
//! The archive thread's column encoders read them where they are, one
//! borrowed [`Column`] each. Building an [`Event`] per row and copying it
//! into Arrow builders on the archive thread cost two copies and a quarter
//! of that thread's time; later, gathering pieces into 64 k-row Arrow
//! batches for the encoders still cost a tenth (a copy, Arrow's validity
//! bitmaps and checks), all on the one thread that cannot spread over
//! workers.
//!
//! Validity is kept only for columns that have had a null: most pieces
//! have none, and then nothing is stored per row for it.
//!
//! [`Event`]: crate::event::Event

use arrow_buffer::ToByteSlice;
use serde::{Deserialize, Serialize};

use crate::event::{EventRef, Micros};

/// Where an archived row was read, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Origin {
    pub ingest_time: Micros,
    pub partition: u32,
    pub position: u64,
}

/// One column of a piece, borrowed by a column encoder.
#[derive(Clone, Copy, Debug)]
pub struct Column<'a> {
    pub data: ColumnData<'a>,
    /// Empty while every value is present, else one flag per row (a null
    /// row still has a value in `data`: an empty string, a zero).
    pub valid: &'a [bool],
}

/// A column's values, as [`ArchiveColumns`] keeps them.
#[derive(Clone, Copy, Debug)]
pub enum ColumnData<'a> {
    /// `offsets[i]..offsets[i + 1]` of `bytes` is value `i` (UTF-8).
    Strings {
        bytes: &'a [u8],
        offsets: &'a [i32],
    },
    /// 64-bit integers and times (µs).
    Int64(&'a [i64]),
    Double(&'a [f64]),
    Int32(&'a [i32]),
}

impl<'a> Column<'a> {
    pub fn len(&self) -> usize {
        match self.data {
            ColumnData::Strings { offsets, .. } => offsets.len().saturating_sub(1),
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
        let (bytes, offsets) = match self.data {
            ColumnData::Strings { bytes, offsets } => (bytes, offsets),
            _ => (&[][..], &[][..]),
        };
        let column = *self;
        let values = offsets.windows(2).map(|w| (w[0] as usize, bytes.get(w[0] as usize..w[1] as usize)));
        values.enumerate().filter(move |&(i, _)| column.is_valid(i)).map(|(_, (at, v))| (at, v.unwrap_or_default()))
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

/// One string column: the values' bytes end to end and where each ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Strings {
    bytes: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is value `i`; starts with 0.
    offsets: Vec<i32>,
    /// Empty while every value is present.
    valid: Vec<bool>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings { bytes: Vec::new(), offsets: vec![0], valid: Vec::new() }
    }
}

impl Strings {
    fn len(&self) -> usize {
        // Saturating: a piece from another process may have lost its
        // leading 0; `holds` then reports the column inconsistent.
        self.offsets.len().saturating_sub(1)
    }

    fn end(&self) -> i32 {
        // Values come from one input chunk or message batch (at most one
        // line of `config::MAX_EVENT_BYTES`, 1 GiB, past 256 KiB), so the
        // bytes of a column stay far below 2 GiB.
        i32::try_from(self.bytes.len()).unwrap_or(i32::MAX)
    }

    // Inlined: six calls per row, each saving and restoring registers,
    // were a sixth of the instructions of building a row.
    #[inline(always)]
    fn push(&mut self, s: &str) {
        push_short(&mut self.bytes, s.as_bytes());
        self.offsets.push(self.end());
        if !self.valid.is_empty() {
            self.valid.push(true);
        }
    }

    #[inline(always)] // as `push`
    fn push_opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.push(s),
            None => {
                if self.valid.is_empty() {
                    self.valid.resize(self.len(), true);
                }
                self.valid.push(false);
                self.offsets.push(self.end());
            }
        }
    }

    /// Appends `other`'s values: their bytes and offsets, shifted, in two
    /// copies rather than one push per value.
    fn append(&mut self, other: &Strings) {
        let (rows, other_rows) = (self.len(), other.len());
        append_validity(&mut self.valid, rows, &other.valid, other_rows);
        let base = self.end();
        self.bytes.extend_from_slice(&other.bytes);
        // Offsets stay below 2 GiB (see `end`); saturating keeps them
        // monotonic even for a corrupt piece, which `is_consistent` refuses.
        let shifted = other.offsets.iter().skip(1).map(|&o| base.saturating_add(o));
        self.offsets.extend(shifted);
    }

    /// No values, the memory kept.
    fn clear(&mut self) {
        self.bytes.clear();
        self.offsets.clear();
        self.offsets.push(0);
        self.valid.clear();
    }

    fn get(&self, i: usize) -> Option<&str> {
        if self.valid.get(i) == Some(&false) {
            return None;
        }
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        // Pushed from `&str`s, split only where a value ends.
        std::str::from_utf8(self.bytes.get(start..end)?).ok()
    }

    fn value(&self, i: usize) -> &str {
        self.get(i).unwrap_or_default()
    }

    /// Whether there are `rows` values and, if the column is `foreign`
    /// (deserialized, not pushed here as `&str`s), offsets in order within
    /// the bytes and each value UTF-8: the bytes are, and no offset splits
    /// a character.
    fn holds(&self, rows: usize, foreign: bool) -> bool {
        let counted = self.len() == rows && (self.valid.is_empty() || self.valid.len() == rows);
        counted && (!foreign || self.well_formed())
    }

    fn well_formed(&self) -> bool {
        let ordered = self.offsets.first() == Some(&0) && self.offsets.windows(2).all(|w| w[0] <= w[1]);
        // A UTF-8 continuation byte is 0b10xx_xxxx: no value starts there.
        let at_char = |&o: &i32| self.bytes.get(o as usize).is_none_or(|&b| (b as i8) >= -0x40);
        ordered
            && self.end() == *self.offsets.last().unwrap_or(&0)
            && simdutf8::basic::from_utf8(&self.bytes).is_ok()
            && self.offsets.iter().all(at_char)
    }

    fn column(&self) -> Column<'_> {
        Column { data: ColumnData::Strings { bytes: &self.bytes, offsets: &self.offsets }, valid: &self.valid }
    }
}

/// Appends `v` to `out`. Most values are a few bytes (`u6788`, `view`),
/// and `extend_from_slice` of a few bytes is a call to `memcpy`: six per
/// event, about as much of a worker's time as the rest of building the
/// columns (perf, 2026-12-03). Up to 16 bytes are copied as two
/// overlapping fixed-width words instead, into 16 bytes of room made in
/// one step (one capacity check, where appending the two words took two)
/// and cut back to the value's end.
#[inline(always)]
pub(super) fn push_short(out: &mut Vec<u8>, v: &[u8]) {
    let (start, n) = (out.len(), v.len());
    if !(4..=16).contains(&n) {
        out.extend_from_slice(v);
        return;
    }
    out.extend_from_slice(&[0; 16]);
    let room = &mut out[start..start + 16];
    if let (Some(head), Some(tail)) = (v.first_chunk::<8>(), v.last_chunk::<8>()) {
        room[..8].copy_from_slice(head);
        room[n - 8..n].copy_from_slice(tail);
    } else if let (Some(head), Some(tail)) = (v.first_chunk::<4>(), v.last_chunk::<4>()) {
        room[..4].copy_from_slice(head);
        room[n - 4..n].copy_from_slice(tail);
    }
    out.truncate(start + n);
}

/// One column of numbers, with validity as for [`Strings`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Values<T> {
    values: Vec<T>,
    valid: Vec<bool>,
}

impl<T: Copy + Default> Values<T> {
    #[inline(always)]
    fn push(&mut self, v: T) {
        self.values.push(v);
        if !self.valid.is_empty() {
            self.valid.push(true);
        }
    }

    #[inline(always)]
    fn push_opt(&mut self, v: Option<T>) {
        match v {
            Some(v) => self.push(v),
            None => {
                if self.valid.is_empty() {
                    self.valid.resize(self.values.len(), true);
                }
                self.valid.push(false);
                self.values.push(T::default());
            }
        }
    }

    fn append(&mut self, other: &Values<T>) {
        let (rows, other_rows) = (self.values.len(), other.values.len());
        append_validity(&mut self.valid, rows, &other.valid, other_rows);
        self.values.extend_from_slice(&other.values);
    }

    fn clear(&mut self) {
        self.values.clear();
        self.valid.clear();
    }

    fn holds(&self, rows: usize) -> bool {
        self.values.len() == rows && (self.valid.is_empty() || self.valid.len() == rows)
    }

    fn get(&self, i: usize) -> Option<T> {
        (self.valid.get(i) != Some(&false)).then(|| self.values[i])
    }

    fn column<'a>(&'a self, data: impl FnOnce(&'a [T]) -> ColumnData<'a>) -> Column<'a> {
        Column { data: data(&self.values), valid: &self.valid }
    }
}

/// Validity of `rows` values followed by `other` of `other_rows`: stays
/// empty while both are (every value present).
pub(super) fn append_validity(valid: &mut Vec<bool>, rows: usize, other: &[bool], other_rows: usize) {
    if valid.is_empty() && other.is_empty() {
        return;
    }
    valid.resize(rows, true);
    if other.is_empty() {
        valid.resize(rows + other_rows, true);
    } else {
        valid.extend_from_slice(other);
    }
}

/// Emptied column sets on their way back from the archive thread to the
/// decoding workers, which fill them again. Each input chunk's columns are
/// allocated on a worker and freed on the archive thread; fresh ones came
/// as freshly faulted, kernel-zeroed pages (measured: a third of what the
/// archive added to a worker's time, in `clear_page_erms`). One per process.
pub struct Spares {
    /// A stack: the set emptied last, whose lines are likeliest still in
    /// a cache, is filled first.
    kept: std::sync::Mutex<Vec<ArchiveColumns>>,
}

/// Spare column sets kept: about as many as chunks in flight, ~150 KiB each.
const SPARES: usize = 32;

impl Default for Spares {
    fn default() -> Self {
        Spares { kept: std::sync::Mutex::new(Vec::with_capacity(SPARES)) }
    }
}

impl Spares {
    /// Empty columns with room for `rows` rows of about `bytes` bytes of
    /// input: a spare if there is one.
    pub fn take(&self, rows: usize, bytes: usize) -> ArchiveColumns {
        let spare = self.kept.lock().ok().and_then(|mut kept| kept.pop());
        let mut c = spare.unwrap_or_default();
        c.reserve(rows, bytes);
        c
    }

    /// Keeps `columns`' memory for a later [`Spares::take`] (drops it if
    /// enough are kept already, or if it has none).
    pub fn give(&self, mut columns: ArchiveColumns) {
        if columns.has_memory() {
            columns.clear();
            if let Ok(mut kept) = self.kept.lock() {
                if kept.len() < SPARES {
                    kept.push(columns);
                }
            }
        }
    }
}

/// Archive rows in the columns of [`schema`], in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveColumns {
    event_id: Strings,
    user_id: Strings,
    product_id: Strings,
    event_type: Strings,
    category: Strings,
    session_id: Strings,
    time: Values<Micros>,
    price: Values<f64>,
    quantity: Values<i64>,
    ingest_time: Values<Micros>,
    partition: Values<i32>,
    position: Values<i64>,
    /// Whether some rows were deserialized (from another process of a
    /// cluster), so their strings were not pushed here as `&str`s and
    /// [`ArchiveColumns::is_consistent`] must check that they are UTF-8
    /// and their offsets in order. That check is ~5 % of the archive
    /// thread, spent for nothing on the rows built here.
    #[serde(skip, default = "deserialized")]
    foreign: bool,
}

fn deserialized() -> bool {
    true
}

impl ArchiveColumns {
    /// Whether these columns have memory of their own (default ones have
    /// none); every column's is reserved and kept together.
    fn has_memory(&self) -> bool {
        self.time.values.capacity() > 0
    }

    /// The string columns, in schema order.
    fn strings_mut(&mut self) -> [&mut Strings; 6] {
        [
            &mut self.event_id,
            &mut self.user_id,
            &mut self.product_id,
            &mut self.event_type,
            &mut self.category,
            &mut self.session_id,
        ]
    }

    /// Room for `rows` more rows of about `bytes` bytes of input in all.
    pub fn reserve(&mut self, rows: usize, bytes: usize) {
        // Of a generated line's ~180 bytes, ~60 are field values: the two
        // long ids take most, the other strings a tenth each (shares in
        // the order of `strings_mut`).
        for (s, share) in self.strings_mut().into_iter().zip([10, 20, 20, 30, 20, 10]) {
            s.bytes.reserve(bytes / share);
            s.offsets.reserve(rows);
        }
        for v in [&mut self.time, &mut self.quantity, &mut self.ingest_time, &mut self.position] {
            v.values.reserve(rows);
        }
        self.price.values.reserve(rows);
        self.partition.values.reserve(rows);
    }

    pub fn len(&self) -> usize {
        self.time.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, e: EventRef<'_>, at: Origin) {
        self.event_id.push_opt(e.event_id);
        self.user_id.push(e.user_id);
        self.product_id.push(e.product_id);
        self.event_type.push(e.event_type);
        self.category.push(e.category);
        self.session_id.push_opt(e.session_id);
        self.time.push(e.time);
        self.price.push_opt(e.price);
        self.quantity.push_opt(e.quantity);
        self.ingest_time.push(at.ingest_time);
        self.partition.push(i32::try_from(at.partition).unwrap_or(i32::MAX));
        self.position.push(i64::try_from(at.position).unwrap_or(i64::MAX));
    }

    /// Whether every column has a value (and validity, if any) per row,
    /// the required columns no null, and every string is UTF-8: true of
    /// columns built here, checked of a piece from another process before
    /// its rows are read.
    pub fn is_consistent(&self) -> bool {
        let n = self.len();
        [&self.event_id, &self.user_id, &self.product_id, &self.event_type, &self.category, &self.session_id]
            .iter()
            .all(|s| s.holds(n, self.foreign))
            && [&self.time, &self.quantity, &self.ingest_time, &self.position].iter().all(|v| v.holds(n))
            && self.price.holds(n)
            && self.partition.holds(n)
            && self.required().iter().all(|valid| valid.is_empty())
    }

    /// The validity of the columns that never hold a null (the schema's
    /// required ones): always empty.
    fn required(&self) -> [&[bool]; 8] {
        [
            &self.user_id.valid,
            &self.product_id.valid,
            &self.event_type.valid,
            &self.category.valid,
            &self.time.valid,
            &self.ingest_time.valid,
            &self.partition.valid,
            &self.position.valid,
        ]
    }

    /// Row `i` (`i < len()`, columns consistent).
    pub fn row(&self, i: usize) -> (EventRef<'_>, Origin) {
        let event = EventRef {
            event_id: self.event_id.get(i),
            user_id: self.user_id.value(i),
            product_id: self.product_id.value(i),
            event_type: self.event_type.value(i),
            category: self.category.value(i),
            session_id: self.session_id.get(i),
            time: self.time.values[i],
            price: self.price.get(i),
            quantity: self.quantity.get(i),
        };
        let origin = Origin {
            ingest_time: self.ingest_time.values[i],
            partition: u32::try_from(self.partition.values[i]).unwrap_or(0),
            position: u64::try_from(self.position.values[i]).unwrap_or(0),
        };
        (event, origin)
    }

    /// The columns, in the order of the archive's schema
    /// ([`super::parquet::schema`]).
    pub fn columns(&self) -> [Column<'_>; 12] {
        [
            self.event_id.column(),
            self.user_id.column(),
            self.product_id.column(),
            self.event_type.column(),
            self.category.column(),
            self.session_id.column(),
            self.time.column(ColumnData::Int64),
            self.price.column(ColumnData::Double),
            self.quantity.column(ColumnData::Int64),
            self.ingest_time.column(ColumnData::Int64),
            self.partition.column(ColumnData::Int32),
            self.position.column(ColumnData::Int64),
        ]
    }

    /// Event times, row by row.
    pub fn times(&self) -> &[Micros] {
        &self.time.values
    }

    /// Input positions, row by row.
    pub fn positions(&self) -> impl Iterator<Item = u64> + '_ {
        self.position.values.iter().map(|&p| p as u64)
    }

    /// A copy of the rows `rows` says, in that order.
    pub fn select(&self, rows: impl IntoIterator<Item = usize>) -> ArchiveColumns {
        let mut out = ArchiveColumns::default();
        for i in rows {
            let (event, origin) = self.row(i);
            out.push(event, origin);
        }
        out
    }

    /// Appends `other`'s rows, column by column, and leaves `other` empty
    /// (its memory kept, for reuse). If this has no memory of its own yet,
    /// the two swap instead.
    pub fn append(&mut self, other: &mut ArchiveColumns) {
        if self.is_empty() && !self.has_memory() {
            std::mem::swap(self, other);
            return;
        }
        self.event_id.append(&other.event_id);
        self.user_id.append(&other.user_id);
        self.product_id.append(&other.product_id);
        self.event_type.append(&other.event_type);
        self.category.append(&other.category);
        self.session_id.append(&other.session_id);
        self.time.append(&other.time);
        self.price.append(&other.price);
        self.quantity.append(&other.quantity);
        self.ingest_time.append(&other.ingest_time);
        self.partition.append(&other.partition);
        self.position.append(&other.position);
        self.foreign |= other.foreign;
        other.clear();
    }

    /// No rows, the memory kept.
    pub fn clear(&mut self) {
        self.strings_mut().into_iter().for_each(Strings::clear);
        self.time.clear();
        self.price.clear();
        self.quantity.clear();
        self.ingest_time.clear();
        self.partition.clear();
        self.position.clear();
        self.foreign = false;
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
    let data = match array.data_type() {
        T::Utf8 => {
            let a = array.as_string::<i32>();
            ColumnData::Strings { bytes: a.values(), offsets: a.value_offsets() }
        }
        T::Int64 => ColumnData::Int64(array.as_primitive::<Int64Type>().values()),
        T::Timestamp(..) => ColumnData::Int64(array.as_primitive::<TimestampMicrosecondType>().values()),
        T::Float64 => ColumnData::Double(array.as_primitive::<Float64Type>().values()),
        T::Int32 => ColumnData::Int32(array.as_primitive::<Int32Type>().values()),
        other => panic!("no archive column of {other}"),
    };
    f(Column { data, valid: &valid })
}

#[cfg(test)]
#[path = "columns_tests.rs"]
mod tests;
