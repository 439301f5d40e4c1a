//! Column tests: rows read back as pushed, Arrow batches, appends across
//! nulls, memory handed back for reuse, and broken pieces from elsewhere.

use super::*;

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
    all.append(&mut c.select(3..6));
    assert_eq!(all.positions().collect::<Vec<_>>(), c.positions().collect::<Vec<_>>());
    assert_eq!((0..6).map(|i| all.row(i).0).collect::<Vec<_>>(), (0..6).map(|i| c.row(i).0).collect::<Vec<_>>());
    let empty = ArchiveColumns::default();
    assert!(empty.is_empty());
    assert_eq!(empty.into_batch().unwrap().num_rows(), 0);
}

#[test]
fn a_written_batch_gives_its_memory_back_for_the_next() {
    let c = columns(100);
    let (bytes, values) = (c.session_id.bytes.as_ptr(), c.position.values.as_ptr());
    let batch = c.into_batch().unwrap();
    let mut again = ArchiveColumns::reclaim(batch.clone());
    assert!(again.is_empty() && again.is_consistent());
    assert_eq!(again.session_id.bytes.capacity(), 0, "a batch still held elsewhere is not reused");
    again = ArchiveColumns::reclaim(batch);
    assert_eq!(again.session_id.bytes.as_ptr(), bytes, "the same string bytes");
    assert_eq!(again.position.values.as_ptr(), values, "the same values");
    // Refilled, the reused columns hold exactly the new rows.
    again.append(&mut columns(7));
    assert_eq!(again.position.values.as_ptr(), values);
    assert_eq!(again.into_batch().unwrap(), columns(7).into_batch().unwrap());
}

#[test]
fn spares_hand_emptied_columns_back_to_the_decoders() {
    let spares = Spares::default();
    let mut pending = columns(3);
    let mut piece = columns(5);
    let memory = piece.user_id.bytes.as_ptr();
    pending.append(&mut piece);
    assert!(piece.is_empty() && piece.is_consistent(), "emptied by append");
    spares.give(piece);
    let mut taken = spares.take(5, 0); // no more than it had room for
    assert_eq!(taken.user_id.bytes.as_ptr(), memory, "the same memory, taken again");
    assert!(taken.is_empty() && taken.time.values.capacity() >= 5);
    taken.append(&mut columns(2));
    assert_eq!(taken.into_batch().unwrap(), columns(2).into_batch().unwrap());
    // Without a spare, or for columns without memory, fresh ones.
    spares.give(ArchiveColumns::default());
    assert!(spares.take(4, 100).time.values.capacity() >= 4);
}

#[test]
fn append_joins_columns_with_and_without_nulls() {
    let c = columns(9);
    // Every split point: each side with or without nulls in a column
    // (row 2 alone has none but quantity's; row 1 has a null id).
    for (from, to) in [(0, 9), (2, 9), (1, 3), (2, 3)] {
        for k in from..=to {
            let mut joined = c.select(from..k);
            joined.append(&mut c.select(k..to));
            assert!(joined.is_consistent());
            let want = c.select(from..to);
            assert_eq!(joined.clone().into_batch().unwrap(), want.clone().into_batch().unwrap(), "{from}..{k}..{to}");
            assert_eq!(joined, want.clone(), "{from}..{k}..{to}: validity only where a value is missing");
        }
    }
    let empty = ArchiveColumns::default();
    assert_eq!(empty.into_batch().unwrap().num_rows(), 0);
}
