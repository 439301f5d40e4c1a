//! Column tests: rows read back as pushed, the columns the encoders read,
//! appends across nulls, memory handed back for reuse, and broken pieces
//! from elsewhere.

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
fn columns_are_in_schema_order_with_their_nulls() {
    let c = columns(4);
    let cols = c.columns();
    let schema = crate::archive::parquet::schema();
    for (column, field) in cols.iter().zip(schema.fields()) {
        use arrow_schema::DataType as T;
        let matches = matches!(
            (column.data, field.data_type()),
            (ColumnData::Strings { .. }, T::Utf8)
                | (ColumnData::Int64(_), T::Int64 | T::Timestamp(..))
                | (ColumnData::Double(_), T::Float64)
                | (ColumnData::Int32(_), T::Int32)
        );
        assert!(matches, "{}", field.name());
        assert_eq!(column.len(), 4, "{}", field.name());
        assert!(field.is_nullable() || column.valid.is_empty(), "{} has no nulls", field.name());
    }
    assert_eq!(cols.len(), schema.fields().len());
    let ids: Vec<&[u8]> = cols[0].present_strings().collect();
    assert_eq!(ids, [b"e", b"e", b"e"], "row 1 has no event id");
    assert!(!cols[0].is_valid(1) && cols[0].is_valid(2));
    let sessions: Vec<&[u8]> = cols[5].present_strings().collect();
    assert_eq!(sessions, ["s-ü1".as_bytes(), "s-ü2".as_bytes()]);
    assert_eq!(cols[8].present_numbers().count(), 0, "quantity is null throughout");
    let prices: Vec<&[u8]> = cols[7].present_numbers().collect();
    assert_eq!(prices, [1.5f64.to_le_bytes(), 1.5f64.to_le_bytes()]);
    let partitions: Vec<&[u8]> = cols[10].present_numbers().collect();
    assert_eq!(partitions, [2i32.to_le_bytes(); 4]);
    assert!(cols[11].valid.is_empty(), "positions have no validity");
    assert!(cols[1].present_numbers().next().is_none() && cols[6].present_strings().next().is_none());
}

#[test]
fn broken_columns_from_elsewhere_are_refused() {
    let good = serde_json::to_value(columns(4)).unwrap();
    let broken = |path: &[&str], value: serde_json::Value| {
        let mut v = good.clone();
        let mut at = &mut v;
        for key in path {
            at = &mut at[*key];
        }
        *at = value;
        !serde_json::from_value::<ArchiveColumns>(v).unwrap().is_consistent()
    };
    assert!(broken(&["price", "valid"], serde_json::json!([true])), "validity of another length");
    let span = |start: usize, end: usize| serde_json::json!({ "start": start, "end": end });
    let spans = |last| serde_json::json!([span(0, 1), span(1, 2), span(2, 3), last]);
    assert!(broken(&["user_id", "spans"], spans(span(3, 2))), "a span that ends before it starts");
    assert!(broken(&["user_id", "spans"], spans(span(3, 999))), "past the text");
    assert!(broken(&["user_id", "spans"], spans(span(u32::MAX as usize, 0))), "past the text, backwards");
    assert!(broken(&["user_id", "spans"], serde_json::json!([span(0, 1), span(1, 2), span(2, 3)])), "a short column");
    assert!(broken(&["time", "values"], serde_json::json!([1, 2])), "a short column");
    // Bytes past the values: "ü" (C3 BC) and a byte never in UTF-8. A span
    // of the first alone splits the character.
    let mut text: Vec<u8> = serde_json::from_value(good["text"].clone()).unwrap();
    let end = text.len();
    text.extend_from_slice(&[0xC3, 0xBC, 0xFF]);
    let with_text = |last| {
        let mut v = good.clone();
        v["text"] = serde_json::json!(text);
        v["user_id"]["spans"] = spans(last);
        serde_json::from_value::<ArchiveColumns>(v).unwrap().is_consistent()
    };
    assert!(with_text(span(end, end + 2)), "ü");
    assert!(!with_text(span(end, end + 1)), "half of ü");
    assert!(!with_text(span(end + 1, end + 2)), "the other half");
    assert!(!with_text(span(end + 2, end + 3)), "not UTF-8");
    assert!(broken(&["time", "valid"], serde_json::json!([true, false, true, true])), "a null in a required column");
    assert!(
        broken(&["user_id", "valid"], serde_json::json!([true, true, true, true])),
        "validity on a required column"
    );
    assert!(broken(&["quantity", "values"], serde_json::json!([1])), "a short column with validity");
    assert!(columns(4).is_consistent());
    // Rows from elsewhere are checked wherever they go, until cleared.
    let received = serde_json::from_value::<ArchiveColumns>(good).unwrap();
    assert!(received.foreign && !columns(4).foreign);
    assert!(received.is_consistent());
    let mut gathered = columns(2);
    gathered.append(&mut received.clone());
    assert!(gathered.foreign && gathered.is_consistent());
    gathered.clear();
    assert!(!gathered.foreign);
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
    assert!(empty.is_empty() && empty.is_consistent());
    assert!(empty.columns().iter().all(Column::is_empty));
}

#[test]
fn spares_hand_emptied_columns_back_to_the_decoders() {
    let spares = Spares::default();
    let mut pending = columns(3);
    let mut piece = columns(5);
    let memory = piece.user_id.spans.as_ptr();
    pending.append(&mut piece);
    assert!(piece.is_empty() && piece.is_consistent(), "emptied by append");
    spares.give(piece);
    let mut taken = spares.take(5); // no more than it had room for
    assert_eq!(taken.user_id.spans.as_ptr(), memory, "the same memory, taken again");
    assert!(taken.is_empty() && taken.time.values.capacity() >= 5);
    taken.append(&mut columns(2));
    assert_eq!(taken, columns(2));
    // Without a spare, or for columns without memory, fresh ones.
    spares.give(ArchiveColumns::default());
    assert!(spares.take(4).time.values.capacity() >= 4);
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
            assert_eq!(joined, want, "{from}..{k}..{to}: validity only where a value is missing");
        }
    }
}

#[test]
fn short_copies_append_exactly_the_value() {
    let source: Vec<u8> = (1..=40).collect();
    for start in [0usize, 3] {
        let mut out = vec![0xEE; start];
        let mut want = out.clone();
        for n in 0..=33 {
            push_short(&mut out, &source[..n]);
            want.extend_from_slice(&source[..n]);
            assert_eq!(out, want, "a value of {n} bytes after {start}");
        }
    }
}

#[test]
fn the_spare_given_last_is_taken_first() {
    let spares = Spares::default();
    let (a, b) = (columns(4), columns(6));
    let (first, last) = (a.user_id.spans.as_ptr(), b.user_id.spans.as_ptr());
    spares.give(a);
    spares.give(b);
    assert_eq!(spares.take(1).user_id.spans.as_ptr(), last, "most recently emptied, likeliest in cache");
    assert_eq!(spares.take(1).user_id.spans.as_ptr(), first);
}

#[test]
fn rows_pushed_from_an_input_point_into_it_and_copy_only_what_is_not_there() {
    let mut input = Vec::with_capacity(256);
    input.extend_from_slice(br#"{"user_id":"u7","product_id":"p1","category":"books","session_id":"s-7"}"#);
    let at = |s: &str| {
        std::str::from_utf8(&input[input.windows(s.len()).position(|w| w == s.as_bytes()).unwrap()..][..s.len()])
            .unwrap()
    };
    let e = EventRef {
        event_id: None,
        user_id: at("u7"),
        product_id: at("p1"),
        event_type: "view", // decoded elsewhere (an escape, say): copied
        category: at("books"),
        session_id: Some(at("s-7")),
        time: 5,
        price: None,
        quantity: Some(2),
    };
    let origin = Origin { ingest_time: 1, partition: 0, position: 9 };
    let (mut c, mut copy) = (Spares::default().take(2), ArchiveColumns::default());
    for _ in 0..2 {
        c.push_from(e, origin, &input);
        copy.push(e, origin);
    }
    let user_span = c.user_id.spans[1];
    assert_eq!(&input[user_span.range()], b"u7", "where it lies in the input");
    let (len, memory) = (input.len(), input.as_ptr());
    let spent = c.adopt(input);
    assert!(spent.is_empty());
    assert_eq!(c.text().as_ptr(), memory, "the input itself is the text, not a copy of it");
    assert_eq!(&c.text()[len..], b"viewview", "only the values not in the input are copied, after it");
    assert!(c.is_consistent() && copy.is_consistent());
    assert_eq!((0..2).map(|i| c.row(i)).collect::<Vec<_>>(), (0..2).map(|i| copy.row(i)).collect::<Vec<_>>());
    // The encoders see the same values either way.
    for (a, b) in c.columns().iter().zip(copy.columns().iter()) {
        assert_eq!(a.present_strings().collect::<Vec<_>>(), b.present_strings().collect::<Vec<_>>());
        assert_eq!(a.present_numbers().collect::<Vec<_>>(), b.present_numbers().collect::<Vec<_>>());
    }
}
