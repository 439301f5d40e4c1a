//! Property test: the batch dataflow fed round by round (files landing,
//! files replaced by a compaction) always reports what a fresh dataflow
//! computes from everything fed so far.

use proptest::prelude::*;

use super::*;
use crate::dataflows::batch::{BatchEvent, Fact, IdHash, Names};
use crate::event::EventKind;
use ingest::DayIngest;

/// An event with names (interned into the test's table when fed).
type Named = (String, String, String, EventKind, Option<String>, Option<String>);

fn event() -> impl Strategy<Value = Named> {
    let kind = prop_oneof![
        Just(EventKind::View),
        Just(EventKind::AddToCart),
        Just(EventKind::Purchase),
        Just(EventKind::Other)
    ];
    (0..6u8, 0..7u8, 0..3u8, kind, proptest::option::of(0..3u8), proptest::option::of(0..40u8)).prop_map(
        |(u, p, c, kind, s, id)| {
            (
                format!("u{u}"),
                format!("p{p}"),
                ["books", "toys", "unknown"][c as usize].to_string(),
                kind,
                s.map(|s| format!("s{u}-{s}")),
                // Few ids: the same id lands in several files (duplicates).
                id.map(|i| format!("e{i}")),
            )
        },
    )
}

fn intern(e: &Named, n: &mut Names) -> BatchEvent {
    let (u, p, c, kind, s, id) = e;
    BatchEvent {
        fact: Fact {
            user: n.id(u),
            product: n.id(p),
            category: n.id(c),
            kind: *kind,
            session: s.as_ref().map(|s| n.id(s)),
        },
        event_id: id.as_ref().map(|i| IdHash::of(i)),
    }
}

/// The report of a fresh dataflow over `events`, its names interned in
/// the reverse order (the outputs must not depend on the ids).
fn recompute(worker: &mut timely::worker::Worker, events: &[Named]) -> DailyReport {
    let outputs = Rc::new(RefCell::new(Outputs::default()));
    let mut day = DayIngest::new(true);
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| build(scope, outputs.clone()));
    for e in events.iter().rev() {
        let ev = intern(e, &mut day.names);
        day.update(ev, 1, &mut |f, d| input.update(f, d));
    }
    input.advance_to(1);
    input.flush();
    worker.step_while(|| probe.less_than(input.time()));
    let report = DailyReport::from_outputs("d", Vec::new(), &outputs.borrow(), &day.names);
    report
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn incremental_rounds_equal_a_recompute(
        files in proptest::collection::vec(proptest::collection::vec(event(), 0..40), 1..6),
        compact in proptest::bool::ANY,
    ) {
        let result = timely::execute_directly(move |worker| -> Result<(), TestCaseError> {
            let outputs = Rc::new(RefCell::new(Outputs::default()));
            let day = RefCell::new(DayIngest::new(true));
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| build(scope, outputs.clone()));
            let feed = |input: &mut InputSession<u64, Fact, isize>, file: &[Named], diff: isize| {
                let mut day = day.borrow_mut();
                for e in file {
                    let ev = intern(e, &mut day.names);
                    day.update(ev, diff, &mut |f, d| input.update(f, d));
                }
            };
            let mut fed: Vec<Named> = Vec::new();
            let mut round = 0u64;
            let mut check = |worker: &mut timely::worker::Worker,
                             input: &mut InputSession<u64, Fact, isize>,
                             fed: &[Named]| {
                round += 1;
                input.advance_to(round);
                input.flush();
                worker.step_while(|| probe.less_than(input.time()));
                let incremental = DailyReport::from_outputs("d", Vec::new(), &outputs.borrow(), &day.borrow().names);
                prop_assert_eq!(incremental, recompute(worker, fed));
                Ok(())
            };
            for file in &files {
                feed(&mut input, file, 1);
                fed.extend(file.iter().cloned());
                check(worker, &mut input, &fed)?;
            }
            if compact && files.len() >= 2 {
                // The first two files are replaced by one with the same rows.
                let both: Vec<Named> = files[..2].concat();
                feed(&mut input, &both, -1);
                feed(&mut input, &both, 1);
                check(worker, &mut input, &fed)?;
                // Then one file is removed outright (a retention cleanup).
                feed(&mut input, &files[0], -1);
                let rest: Vec<Named> = files[1..].concat();
                check(worker, &mut input, &rest)?;
            }
            Ok(())
        });
        result?;
    }
}
