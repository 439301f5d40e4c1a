//! Archive rows in columns, as the decoding workers build them.
//!
//! A decoding worker records each valid event's strings as spans into the
//! input chunk it decoded them from, and its numbers in plain value
//! vectors; the chunk's bytes then move into the columns as their `text`
//! (`adopt`), and the worker hands the reader an emptied text buffer in
//! their place. So no string is copied on the workers: copying six per row
//! into column vectors made building a row's columns ~145 instructions
//! dearer (~400 instead of ~250; callgrind, 2026-12-03). Values that are
//! not in the input as they are (strings with escapes, decoded by serde)
//! are copied after it. The archive thread's column encoders read the
//! columns where they are, one borrowed [`Column`] each.
//!
//! Before that, building an [`Event`] per row and copying it into Arrow
//! builders on the archive thread cost two copies and a quarter of that
//! thread's time; gathering pieces into 64 k-row Arrow batches for the
//! encoders a tenth (a copy, Arrow's validity bitmaps and checks), all on
//! the one thread that cannot spread over workers.
//!
//! Validity is kept only for columns that have had a null: most pieces
//! have none, and then nothing is stored per row for it.
//!
//! [`Event`]: crate::event::Event

use serde::{Deserialize, Serialize};

use super::column::{Column, ColumnData, Span};
use crate::event::{EventRef, Micros};

/// Where an archived row was read, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Origin {
    pub ingest_time: Micros,
    pub partition: u32,
    pub position: u64,
}

/// One string column: where each value lies in the columns' text.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Strings {
    spans: Vec<Span>,
    /// Empty while every value is present.
    valid: Vec<bool>,
}

impl Strings {
    fn len(&self) -> usize {
        self.spans.len()
    }

    // Inlined: six calls per row, each saving and restoring registers,
    // were a sixth of the instructions of building a row.
    #[inline(always)]
    fn push(&mut self, span: Span) {
        self.spans.push(span);
        if !self.valid.is_empty() {
            self.valid.push(true);
        }
    }

    /// A value or, if `span` is `None`, a null: an empty span at `end`,
    /// where the text ends (so that appending columns, which shifts every
    /// span, keeps them equal to columns built in one go).
    #[inline(always)] // as `push`
    fn push_opt(&mut self, span: Option<Span>, end: usize) {
        match span {
            Some(span) => self.push(span),
            None => {
                if self.valid.is_empty() {
                    self.valid.resize(self.len(), true);
                }
                self.valid.push(false);
                let end = end as u32; // below 4 GiB, as `locate` says
                self.spans.push(Span { start: end, end });
            }
        }
    }

    /// Appends `other`'s values, whose text now starts at `shift` in this
    /// column's.
    fn append(&mut self, other: &Strings, shift: u32) {
        let (rows, other_rows) = (self.len(), other.len());
        append_validity(&mut self.valid, rows, &other.valid, other_rows);
        // Saturating keeps a corrupt piece's spans past the text, where
        // `is_consistent` refuses them.
        let shifted = |s: &Span| Span { start: s.start.saturating_add(shift), end: s.end.saturating_add(shift) };
        self.spans.extend(other.spans.iter().map(shifted));
    }

    /// No values, the memory kept.
    fn clear(&mut self) {
        self.spans.clear();
        self.valid.clear();
    }

    fn get<'t>(&self, text: &'t [u8], i: usize) -> Option<&'t str> {
        if self.valid.get(i) == Some(&false) {
            return None;
        }
        // Spans of `&str`s, or checked to be UTF-8 (`holds`).
        std::str::from_utf8(text.get(self.spans.get(i)?.range())?).ok()
    }

    fn value<'t>(&self, text: &'t [u8], i: usize) -> &'t str {
        self.get(text, i).unwrap_or_default()
    }

    /// Whether there are `rows` values and, if the column is `foreign`
    /// (deserialized, not pushed here from `&str`s), each span lies in
    /// `text` and is UTF-8.
    fn holds(&self, rows: usize, text: &[u8], foreign: bool) -> bool {
        let counted = self.len() == rows && (self.valid.is_empty() || self.valid.len() == rows);
        // `get` refuses a span past the text or ending before it starts.
        let utf8 = |s: &Span| text.get(s.range()).is_some_and(|v| simdutf8::basic::from_utf8(v).is_ok());
        counted && (!foreign || self.spans.iter().all(utf8))
    }

    fn column<'a>(&'a self, text: &'a [u8]) -> Column<'a> {
        Column { data: ColumnData::Strings { bytes: text, spans: &self.spans }, valid: &self.valid }
    }
}

/// Where `v` lies: in `input` if it is a slice of it, else copied to the
/// end of `out`, whose bytes will follow `input`'s (see
/// [`ArchiveColumns::adopt`]). A pointer comparison decides, so strings
/// decoded as they were in the input cost no copy.
#[inline(always)]
fn locate(v: &str, input: &[u8], out: &mut Vec<u8>) -> Span {
    let at = (v.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
    // Texts stay below 4 GiB: an input chunk is 256 KiB plus at most one
    // line of `config::MAX_EVENT_BYTES` (1 GiB), a Kafka batch is indexed
    // with u32 too, and the copies are that line's values again.
    let (start, end) = if at <= input.len() && v.len() <= input.len() - at {
        (at, at + v.len())
    } else {
        let start = input.len() + out.len();
        push_short(out, v.as_bytes());
        (start, start + v.len())
    };
    Span { start: start as u32, end: end as u32 }
}

/// Appends `v` to `out`. Most values are a few bytes (`u6788`, `view`),
/// and `extend_from_slice` of a few bytes is a call to `memcpy`: six per
/// event, about as much of a worker's time as the rest of building the
/// columns (perf, 2026-12-03). 4 to 16 bytes are copied as two
/// overlapping fixed-width words instead, into 16 bytes of room made in
/// one step (one capacity check, where appending the two words took two)
/// and cut back to the value's end; 1 to 3 bytes (an id's suffix in a
/// `DELTA_BYTE_ARRAY` page) byte by byte into the same room.
#[inline(always)]
pub(super) fn push_short(out: &mut Vec<u8>, v: &[u8]) {
    let (start, n) = (out.len(), v.len());
    if !(1..=16).contains(&n) {
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
    } else {
        // 1 to 3 bytes (the suffix of an id after the prefix it shares
        // with the one before): first, middle and last cover them.
        room[0] = v[0];
        room[n / 2] = v[n / 2];
        room[n - 1] = v[n - 1];
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
/// archive added to a worker's time, in `clear_page_erms`). A set's text
/// buffer, an input chunk's, goes on to the reader (see
/// [`ArchiveColumns::adopt`]). One per process.
pub struct Spares {
    /// A stack: the set emptied last, whose lines are likeliest still in
    /// a cache, is filled first.
    kept: std::sync::Mutex<Vec<ArchiveColumns>>,
}

/// Spare column sets kept: about as many as chunks in flight, ~300 KiB
/// each (a 256 KiB text, spans and values).
const SPARES: usize = 32;

impl Default for Spares {
    fn default() -> Self {
        Spares { kept: std::sync::Mutex::new(Vec::with_capacity(SPARES)) }
    }
}

impl Spares {
    /// Empty columns with room for `rows` rows: a spare if there is one.
    pub fn take(&self, rows: usize) -> ArchiveColumns {
        let spare = self.kept.lock().ok().and_then(|mut kept| kept.pop());
        let mut c = spare.unwrap_or_default();
        c.reserve(rows);
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

/// Archive rows in the columns of [`schema`](super::parquet::schema), in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveColumns {
    /// The string columns' bytes: the input the rows were decoded from
    /// (whole lines, keys and all), then any values copied.
    text: Vec<u8>,
    /// Values copied while rows are pushed from an input
    /// ([`ArchiveColumns::push_from`]) that is not yet `text`; empty
    /// otherwise.
    #[serde(skip)]
    copied: Vec<u8>,
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
    /// [`ArchiveColumns::is_consistent`] must check that their spans lie
    /// in the text and are UTF-8. That check is spent for nothing on the
    /// rows built here.
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

    /// Room for `rows` more rows.
    pub fn reserve(&mut self, rows: usize) {
        for s in self.strings_mut() {
            s.spans.reserve(rows);
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

    /// Adds a row, its strings copied into the text. Not between
    /// [`ArchiveColumns::push_from`] and [`ArchiveColumns::adopt`].
    pub fn push(&mut self, e: EventRef<'_>, at: Origin) {
        let mut text = std::mem::take(&mut self.text);
        self.push_row(e, at, &[], &mut text);
        self.text = text;
    }

    /// Adds a row decoded from `input`, which [`ArchiveColumns::adopt`]
    /// then makes the text: its strings are recorded where they lie in
    /// `input`, not copied. Every row pushed since these columns were
    /// empty must come from the same `input`.
    #[inline]
    pub fn push_from(&mut self, e: EventRef<'_>, at: Origin, input: &[u8]) {
        debug_assert!(self.text.is_empty(), "rows from an input go into empty columns");
        let mut copied = std::mem::take(&mut self.copied);
        self.push_row(e, at, input, &mut copied);
        self.copied = copied;
    }

    /// Makes `input`, which the rows since these columns were empty were
    /// pushed from, their text; returns the text buffer it replaces,
    /// emptied, for the reader to fill again.
    pub fn adopt(&mut self, input: Vec<u8>) -> Vec<u8> {
        let mut spent = std::mem::replace(&mut self.text, input);
        self.text.extend_from_slice(&self.copied);
        self.copied.clear();
        spent.clear();
        spent
    }

    /// A row's strings located in `input` or copied to `out`, which
    /// continues it.
    #[inline(always)]
    fn push_row(&mut self, e: EventRef<'_>, at: Origin, input: &[u8], out: &mut Vec<u8>) {
        self.event_id.push_opt(e.event_id.map(|v| locate(v, input, out)), input.len() + out.len());
        self.user_id.push(locate(e.user_id, input, out));
        self.product_id.push(locate(e.product_id, input, out));
        self.event_type.push(locate(e.event_type, input, out));
        self.category.push(locate(e.category, input, out));
        self.session_id.push_opt(e.session_id.map(|v| locate(v, input, out)), input.len() + out.len());
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
            .all(|s| s.holds(n, &self.text, self.foreign))
            && [&self.time, &self.quantity, &self.ingest_time, &self.position].iter().all(|v| v.holds(n))
            && self.price.holds(n)
            && self.partition.holds(n)
            && self.required().iter().all(|valid| valid.is_empty())
            && self.copied.is_empty()
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
        let text = &self.text;
        let event = EventRef {
            event_id: self.event_id.get(text, i),
            user_id: self.user_id.value(text, i),
            product_id: self.product_id.value(text, i),
            event_type: self.event_type.value(text, i),
            category: self.category.value(text, i),
            session_id: self.session_id.get(text, i),
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
        let text = &self.text;
        [
            self.event_id.column(text),
            self.user_id.column(text),
            self.product_id.column(text),
            self.event_type.column(text),
            self.category.column(text),
            self.session_id.column(text),
            self.time.column(ColumnData::Int64),
            self.price.column(ColumnData::Double),
            self.quantity.column(ColumnData::Int64),
            self.ingest_time.column(ColumnData::Int64),
            self.partition.column(ColumnData::Int32),
            self.position.column(ColumnData::Int64),
        ]
    }

    /// The bytes the string columns' spans point into.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Event times, row by row.
    pub fn times(&self) -> &[Micros] {
        &self.time.values
    }

    /// Input positions, row by row.
    pub fn positions(&self) -> impl Iterator<Item = u64> + '_ {
        self.position.values.iter().map(|&p| p as u64)
    }

    /// A copy of the rows `rows` says, in that order, with only their
    /// values as text.
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
        // Below 4 GiB, as `locate` says; saturating keeps a corrupt
        // piece's spans out of the text, where `is_consistent` refuses them.
        let shift = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        self.text.extend_from_slice(&other.text);
        self.event_id.append(&other.event_id, shift);
        self.user_id.append(&other.user_id, shift);
        self.product_id.append(&other.product_id, shift);
        self.event_type.append(&other.event_type, shift);
        self.category.append(&other.category, shift);
        self.session_id.append(&other.session_id, shift);
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
        self.text.clear();
        self.copied.clear();
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

#[cfg(test)]
#[path = "columns_tests.rs"]
mod tests;
