//! Archive rows in columns, as the decoding workers build them.
//!
//! A decoding worker copies each valid event's fields once, straight from
//! the input bytes, into these column vectors (the layout Arrow uses:
//! concatenated string bytes and their end offsets, plain value vectors).
//! The archive thread then hands them to the Parquet writer as Arrow
//! arrays without copying them again. Building an [`Event`] per row and
//! copying it into Arrow builders on the archive thread cost two copies
//! and a quarter of that thread's time, all on the one thread that
//! cannot spread over workers.
//!
//! Validity is kept only for columns that have had a null: most pieces
//! have none, and then nothing is stored per row for it.
//!
//! [`Event`]: crate::event::Event

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use serde::{Deserialize, Serialize};

use super::parquet::schema;
use crate::event::{EventRef, Micros};

/// Where an archived row was read, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Origin {
    pub ingest_time: Micros,
    pub partition: u32,
    pub position: u64,
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
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Strings { bytes: Vec::with_capacity(bytes), offsets, valid: Vec::new() }
    }

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

    fn push(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
        self.offsets.push(self.end());
        if !self.valid.is_empty() {
            self.valid.push(true);
        }
    }

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
    fn append(&mut self, other: Strings) {
        let (rows, other_rows) = (self.len(), other.len());
        append_validity(&mut self.valid, rows, other.valid, other_rows);
        let base = self.end();
        self.bytes.extend_from_slice(&other.bytes);
        // Offsets stay below 2 GiB (see `end`); saturating keeps them
        // monotonic even for a corrupt piece, which `into_array` refuses.
        let shifted = other.offsets.iter().skip(1).map(|&o| base.saturating_add(o));
        self.offsets.extend(shifted);
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

    fn holds(&self, rows: usize) -> bool {
        self.len() == rows && (self.valid.is_empty() || self.valid.len() == rows)
    }

    fn into_array(self) -> anyhow::Result<ArrayRef> {
        let nulls = nulls(self.valid);
        let offsets = ScalarBuffer::from(self.offsets);
        // `OffsetBuffer::new` panics on offsets that are not monotonic.
        if offsets.first() != Some(&0) || offsets.windows(2).any(|w| w[0] > w[1]) {
            anyhow::bail!("archive column offsets out of order");
        }
        let offsets = OffsetBuffer::new(offsets);
        Ok(Arc::new(StringArray::try_new(offsets, Buffer::from_vec(self.bytes), nulls)?))
    }
}

/// One column of numbers, with validity as for [`Strings`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Values<T> {
    values: Vec<T>,
    valid: Vec<bool>,
}

impl<T: Copy + Default> Values<T> {
    fn with_capacity(rows: usize) -> Self {
        Values { values: Vec::with_capacity(rows), valid: Vec::new() }
    }

    fn push(&mut self, v: T) {
        self.values.push(v);
        if !self.valid.is_empty() {
            self.valid.push(true);
        }
    }

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

    fn append(&mut self, other: Values<T>) {
        let (rows, other_rows) = (self.values.len(), other.values.len());
        append_validity(&mut self.valid, rows, other.valid, other_rows);
        self.values.extend(other.values);
    }

    fn holds(&self, rows: usize) -> bool {
        self.values.len() == rows && (self.valid.is_empty() || self.valid.len() == rows)
    }

    fn get(&self, i: usize) -> Option<T> {
        (self.valid.get(i) != Some(&false)).then(|| self.values[i])
    }

    fn parts(self) -> (ScalarBuffer<T>, Option<NullBuffer>)
    where
        T: arrow_buffer::ArrowNativeType,
    {
        (ScalarBuffer::from(self.values), nulls(self.valid))
    }
}

/// Validity of `rows` values followed by `other` of `other_rows`: stays
/// empty while both are (every value present).
fn append_validity(valid: &mut Vec<bool>, rows: usize, other: Vec<bool>, other_rows: usize) {
    if valid.is_empty() && other.is_empty() {
        return;
    }
    valid.resize(rows, true);
    if other.is_empty() {
        valid.resize(rows + other_rows, true);
    } else {
        valid.extend(other);
    }
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    (!valid.is_empty()).then(|| NullBuffer::from(valid))
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
}

impl ArchiveColumns {
    /// Room for `rows` rows of about `bytes` bytes of input in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        // Of a generated line's ~180 bytes, ~60 are field values: the two
        // long ids take most, the other strings a tenth each.
        let s = |share: usize| Strings::with_capacity(rows, bytes / share);
        ArchiveColumns {
            event_id: s(10),
            user_id: s(20),
            product_id: s(20),
            event_type: s(30),
            category: s(20),
            session_id: s(10),
            time: Values::with_capacity(rows),
            price: Values::with_capacity(rows),
            quantity: Values::with_capacity(rows),
            ingest_time: Values::with_capacity(rows),
            partition: Values::with_capacity(rows),
            position: Values::with_capacity(rows),
        }
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

    /// Whether every column has a value (and validity, if any) per row:
    /// true of columns built here, checked of a piece from another
    /// process before its rows are read.
    pub fn is_consistent(&self) -> bool {
        let n = self.len();
        [&self.event_id, &self.user_id, &self.product_id, &self.event_type, &self.category, &self.session_id]
            .iter()
            .all(|s| s.holds(n))
            && [&self.time, &self.quantity, &self.ingest_time, &self.position].iter().all(|v| v.holds(n))
            && self.price.holds(n)
            && self.partition.holds(n)
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

    /// Appends `other`'s rows, column by column (moves `other` if this is
    /// empty).
    pub fn append(&mut self, other: ArchiveColumns) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.event_id.append(other.event_id);
        self.user_id.append(other.user_id);
        self.product_id.append(other.product_id);
        self.event_type.append(other.event_type);
        self.category.append(other.category);
        self.session_id.append(other.session_id);
        self.time.append(other.time);
        self.price.append(other.price);
        self.quantity.append(other.quantity);
        self.ingest_time.append(other.ingest_time);
        self.partition.append(other.partition);
        self.position.append(other.position);
    }

    /// The rows as an Arrow record batch, the vectors moved, not copied.
    /// (`try_new` throughout: a piece from another process that broke the
    /// columns' invariants is an error here, not a panic.)
    pub fn into_batch(self) -> anyhow::Result<RecordBatch> {
        let timestamps = |v: Values<Micros>| -> anyhow::Result<ArrayRef> {
            let (values, nulls) = v.parts();
            Ok(Arc::new(TimestampMicrosecondArray::try_new(values, nulls)?.with_timezone("UTC")))
        };
        let (price, price_nulls) = self.price.parts();
        let (quantity, quantity_nulls) = self.quantity.parts();
        let (partition, partition_nulls) = self.partition.parts();
        let (position, position_nulls) = self.position.parts();
        let columns: Vec<ArrayRef> = vec![
            self.event_id.into_array()?,
            self.user_id.into_array()?,
            self.product_id.into_array()?,
            self.event_type.into_array()?,
            self.category.into_array()?,
            self.session_id.into_array()?,
            timestamps(self.time)?,
            Arc::new(Float64Array::try_new(price, price_nulls)?),
            Arc::new(Int64Array::try_new(quantity, quantity_nulls)?),
            timestamps(self.ingest_time)?,
            Arc::new(Int32Array::try_new(partition, partition_nulls)?),
            Arc::new(Int64Array::try_new(position, position_nulls)?),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn event(i: usize) -> (String, Option<String>) {
        (format!("u{i}"), (!i.is_multiple_of(3)).then(|| format!("s-ü{i}")))
    }

    fn columns(n: usize) -> ArchiveColumns {
        let mut c = ArchiveColumns::default();
        for i in 0..n {
            let (user, session) = event(i);
            let e = EventRef {
                event_id: (i != 1).then_some("e"),
                user_id: &user,
                product_id: "p1",
                event_type: "view",
                category: "books",
                session_id: session.as_deref(),
                time: i as i64,
                price: i.is_multiple_of(2).then_some(1.5),
                quantity: None,
            };
            c.push(e, Origin { ingest_time: 7, partition: 2, position: 10 * i as u64 });
        }
        c
    }

    #[test]
    fn rows_read_back_as_pushed_with_nulls_first_or_late() {
        let c = columns(5);
        assert_eq!(c.len(), 5);
        for i in 0..5 {
            let (e, at) = c.row(i);
            let (user, session) = event(i);
            assert_eq!(e.user_id, user);
            assert_eq!(e.session_id, session.as_deref(), "row {i}");
            assert_eq!(e.event_id.is_none(), i == 1);
            assert_eq!(e.price, i.is_multiple_of(2).then_some(1.5));
            assert_eq!(e.quantity, None);
            assert_eq!(at, Origin { ingest_time: 7, partition: 2, position: 10 * i as u64 });
        }
    }

    #[test]
    fn batch_has_the_schema_values_and_nulls() {
        let b = columns(4).into_batch().unwrap();
        assert_eq!(b.schema(), schema());
        assert_eq!(b.num_rows(), 4);
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.null_count(), 1);
        assert!(ids.is_null(1));
        let sessions = b.column(5).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((sessions.value(1), sessions.is_null(3)), ("s-ü1", true));
        assert_eq!(b.column(8).null_count(), 4, "quantity");
        assert_eq!(b.column(11).null_count(), 0, "positions have no validity");
    }

    #[test]
    fn broken_columns_from_elsewhere_are_an_error_not_a_panic() {
        let good = serde_json::to_value(columns(4)).unwrap();
        let broken = |path: &[&str], value: serde_json::Value| {
            let mut v = good.clone();
            let mut at = &mut v;
            for key in path {
                at = &mut at[*key];
            }
            *at = value;
            serde_json::from_value::<ArchiveColumns>(v).unwrap().into_batch()
        };
        assert!(broken(&["price", "valid"], serde_json::json!([true])).is_err(), "validity of another length");
        assert!(broken(&["user_id", "offsets"], serde_json::json!([0, 3, 2, 4, 6])).is_err(), "offsets out of order");
        assert!(broken(&["user_id", "offsets"], serde_json::json!([0, 1, 2, 3, 99])).is_err(), "past the bytes");
        assert!(broken(&["time", "values"], serde_json::json!([1, 2])).is_err(), "a short column");
        assert!(broken(&["user_id", "offsets"], serde_json::json!([])).is_err(), "no offsets at all");
        let mut short: serde_json::Value = good.clone();
        short["quantity"]["values"] = serde_json::json!([1]);
        assert!(!serde_json::from_value::<ArchiveColumns>(short).unwrap().is_consistent());
        assert!(columns(4).is_consistent());
        assert!(serde_json::from_value::<ArchiveColumns>(good).unwrap().into_batch().is_ok());
    }

    #[test]
    fn select_and_append_keep_rows_and_order() {
        let c = columns(6);
        let picked = c.select([4, 1, 3]);
        assert_eq!(picked.positions().collect::<Vec<_>>(), [40, 10, 30]);
        assert_eq!(picked.row(1).0, c.row(1).0);
        let mut all = c.select(0..3);
        all.append(c.select(3..6));
        assert_eq!(all.positions().collect::<Vec<_>>(), c.positions().collect::<Vec<_>>());
        assert_eq!((0..6).map(|i| all.row(i).0).collect::<Vec<_>>(), (0..6).map(|i| c.row(i).0).collect::<Vec<_>>());
        let empty = ArchiveColumns::default();
        assert!(empty.is_empty());
        assert_eq!(empty.into_batch().unwrap().num_rows(), 0);
    }

    #[test]
    fn append_joins_columns_with_and_without_nulls() {
        let c = columns(9);
        // Every split point: each side with or without nulls in a column
        // (row 2 alone has none but quantity's; row 1 has a null id).
        for (from, to) in [(0, 9), (2, 9), (1, 3), (2, 3)] {
            for k in from..=to {
                let mut joined = c.select(from..k);
                joined.append(c.select(k..to));
                assert!(joined.is_consistent());
                let want = c.select(from..to);
                assert_eq!(
                    joined.clone().into_batch().unwrap(),
                    want.clone().into_batch().unwrap(),
                    "{from}..{k}..{to}"
                );
                assert_eq!(joined, want.clone(), "{from}..{k}..{to}: validity only where a value is missing");
            }
        }
        let empty = ArchiveColumns::default();
        assert_eq!(empty.into_batch().unwrap().num_rows(), 0);
    }
}
