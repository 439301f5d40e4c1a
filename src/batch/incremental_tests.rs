//! Property test: the batch dataflow fed round by round (files landing,
//! files replaced by a compaction) always reports what a fresh dataflow
//! computes from everything fed so far.

use proptest::prelude::*;

use super::*;
use crate::event::EventKind;

fn event() -> impl Strategy<Value = BatchEvent> {
    let kind = prop_oneof![
        Just(EventKind::View),
        Just(EventKind::AddToCart),
        Just(EventKind::Purchase),
        Just(EventKind::Other)
    ];
    (0..6u8, 0..7u8, 0..3u8, kind, proptest::option::of(0..3u8), proptest::option::of(0..40u8), 0..86_400i64).prop_map(
        |(u, p, c, kind, s, id, t)| BatchEvent {
            user: format!("u{u}"),
            product: format!("p{p}"),
            category: ["books", "toys", "unknown"][c as usize].to_string(),
            kind,
            session: s.map(|s| format!("s{u}-{s}")),
            // Few ids: the same id lands in several files (duplicates).
            event_id: id.map(|i| format!("e{i}")),
            time: 1_763_942_400_000_000 + t * 1_000_000,
        },
    )
}

/// The report of a fresh dataflow over `events`.
fn recompute(worker: &mut timely::worker::Worker, events: &[BatchEvent]) -> DailyReport {
    let outputs = Rc::new(RefCell::new(Outputs::default()));
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| build(scope, outputs.clone()));
    for e in events {
        input.insert(e.clone());
    }
    input.advance_to(1);
    input.flush();
    worker.step_while(|| probe.less_than(input.time()));
    let report = DailyReport::from_outputs("d", Vec::new(), &outputs.borrow());
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
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| build(scope, outputs.clone()));
            let mut fed: Vec<BatchEvent> = Vec::new();
            let mut round = 0u64;
            let mut check = |worker: &mut timely::worker::Worker, input: &mut InputSession<u64, BatchEvent, isize>, fed: &[BatchEvent]| {
                round += 1;
                input.advance_to(round);
                input.flush();
                worker.step_while(|| probe.less_than(input.time()));
                let incremental = DailyReport::from_outputs("d", Vec::new(), &outputs.borrow());
                prop_assert_eq!(incremental, recompute(worker, fed));
                Ok(())
            };
            for file in &files {
                for e in file {
                    input.insert(e.clone());
                }
                fed.extend(file.iter().cloned());
                check(worker, &mut input, &fed)?;
            }
            if compact && files.len() >= 2 {
                // The first two files are replaced by one with the same rows.
                for e in files[0].iter().chain(&files[1]) {
                    input.update(e.clone(), -1);
                }
                for e in files[0].iter().chain(&files[1]) {
                    input.insert(e.clone());
                }
                check(worker, &mut input, &fed)?;
                // Then one file is removed outright (a retention cleanup).
                for e in &files[0] {
                    input.update(e.clone(), -1);
                }
                let rest: Vec<BatchEvent> = files[1..].concat();
                check(worker, &mut input, &rest)?;
            }
            Ok(())
        });
        result?;
    }
}
