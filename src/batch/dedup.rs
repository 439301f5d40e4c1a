//! De-duplication of one day's events by `event_id` (SPEC §3: duplicates
//! count once per day), incrementally, ahead of the batch dataflow.
//!
//! Every copy of an event that lands (or is retracted, when compaction
//! removes a file) goes through [`Dedup::update`], which reports how the
//! de-duplicated collection changes: usually "insert this event", and only
//! for ids with several copies a swap of the copy that counts. Which copy
//! counts is the least by names (then kind, time), so the result never
//! depends on the order files land in.
//!
//! Why here and not as a `reduce` in the dataflow: keyed by a 128-bit id,
//! that reduce arranged every event twice (its input and its output), and
//! was 45 % of a one-shot run, to find the few ids that repeat. A hash map
//! of the copies that count, with the rare extra copies aside, does the
//! same job in one probe per event.

use std::cmp::Ordering;

use rustc_hash::FxHashMap;

use crate::dataflows::batch::{BatchEvent, Fact, IdHash, Names};

/// The copies of each event_id seen so far.
#[derive(Default, Debug)]
pub struct Dedup {
    /// The copy that counts, per id.
    counted: FxHashMap<IdHash, Fact>,
    /// The other copies of ids seen more than once (a multiset).
    others: FxHashMap<IdHash, Vec<Fact>>,
}

/// Orders copies of one id: the least counts.
fn order(a: &Fact, b: &Fact, n: &Names) -> Ordering {
    a.copy_key(n).cmp(&b.copy_key(n))
}

impl Dedup {
    /// Adds (`diff > 0`) or retracts (`diff < 0`) `diff` copies of `e`,
    /// calling `out` with each change to the de-duplicated collection.
    /// Events without an id are never duplicates: they pass through.
    pub fn update(&mut self, e: BatchEvent, diff: isize, names: &Names, out: &mut impl FnMut(Fact, isize)) {
        let (e, Some(id)) = (e.fact, e.event_id) else {
            out(e.fact, diff);
            return;
        };
        for _ in 0..diff.unsigned_abs() {
            if diff > 0 {
                self.insert(id, e, names, out);
            } else {
                self.remove(id, e, names, out);
            }
        }
    }

    fn insert(&mut self, id: IdHash, e: Fact, names: &Names, out: &mut impl FnMut(Fact, isize)) {
        let Some(current) = self.counted.get_mut(&id) else {
            self.counted.insert(id, e);
            out(e, 1);
            return;
        };
        if order(&e, current, names) == Ordering::Less {
            let previous = std::mem::replace(current, e);
            self.others.entry(id).or_default().push(previous);
            out(previous, -1);
            out(e, 1);
        } else {
            self.others.entry(id).or_default().push(e);
        }
    }

    fn remove(&mut self, id: IdHash, e: Fact, names: &Names, out: &mut impl FnMut(Fact, isize)) {
        // An identical spare copy goes first: the counted one stays as is.
        if let Some(spares) = self.others.get_mut(&id) {
            if let Some(i) = spares.iter().position(|s| *s == e) {
                spares.swap_remove(i);
                if spares.is_empty() {
                    self.others.remove(&id);
                }
                return;
            }
        }
        if self.counted.get(&id) != Some(&e) {
            // Retracting a copy that was never added: the caller only
            // retracts rows it fed, so this cannot happen; ignore it rather
            // than corrupt the counts.
            debug_assert!(false, "retracting an event that was never added");
            return;
        }
        out(e, -1);
        let next = self.others.get_mut(&id).and_then(|spares| {
            let least = (0..spares.len()).min_by(|&a, &b| order(&spares[a], &spares[b], names))?;
            Some(spares.swap_remove(least))
        });
        match next {
            Some(next) => {
                if self.others.get(&id).is_some_and(Vec::is_empty) {
                    self.others.remove(&id);
                }
                self.counted.insert(id, next);
                out(next, 1);
            }
            None => {
                self.counted.remove(&id);
            }
        }
    }

    /// Reserves room for `additional` more ids (the rows about to land).
    pub fn reserve(&mut self, additional: usize) {
        self.counted.reserve(additional);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// An event of `user`; `product` tells copies with equal users apart.
    fn ev(names: &mut Names, user: &str, id: Option<&str>, product: i64) -> BatchEvent {
        BatchEvent {
            fact: Fact {
                user: names.id(user),
                product: names.id(&format!("p{product}")),
                category: names.id("c"),
                kind: EventKind::View,
                session: None,
            },
            event_id: id.map(IdHash::of),
        }
    }

    /// The de-duplicated collection, kept from `out`'s changes.
    fn apply(into: &mut BTreeMap<Fact, isize>) -> impl FnMut(Fact, isize) + '_ {
        move |e, d| {
            let n = into.entry(e).or_default();
            *n += d;
            if *n == 0 {
                into.remove(&e);
            }
        }
    }

    #[test]
    fn the_least_copy_counts_whatever_the_order() {
        let mut names = Names::default();
        // Interned in an order opposite to the names' order.
        let b = ev(&mut names, "bob", Some("e1"), 5);
        let a = ev(&mut names, "alice", Some("e1"), 9);
        let lone = ev(&mut names, "carol", None, 1);
        let mut d = Dedup::default();
        let mut set = BTreeMap::new();
        d.update(b, 1, &names, &mut apply(&mut set));
        d.update(lone, 1, &names, &mut apply(&mut set));
        d.update(a, 1, &names, &mut apply(&mut set));
        assert_eq!(set, BTreeMap::from([(a.fact, 1), (lone.fact, 1)]));
        // Retracting the counted copy promotes the other one.
        d.update(a, -1, &names, &mut apply(&mut set));
        assert_eq!(set, BTreeMap::from([(b.fact, 1), (lone.fact, 1)]));
        d.update(b, -1, &names, &mut apply(&mut set));
        d.update(lone, -1, &names, &mut apply(&mut set));
        assert!(set.is_empty());
        assert!(d.counted.is_empty() && d.others.is_empty());
    }

    #[test]
    fn identical_copies_count_once_until_the_last_is_retracted() {
        let mut names = Names::default();
        let a = ev(&mut names, "alice", Some("e1"), 9);
        let mut d = Dedup::default();
        let mut set = BTreeMap::new();
        d.update(a, 3, &names, &mut apply(&mut set));
        assert_eq!(set, BTreeMap::from([(a.fact, 1)]));
        d.update(a, -2, &names, &mut apply(&mut set));
        assert_eq!(set, BTreeMap::from([(a.fact, 1)]));
        d.update(a, -1, &names, &mut apply(&mut set));
        assert!(set.is_empty());
    }

    proptest! {
        /// Any sequence of adds, then retractions of some of what was
        /// added, leaves exactly the least copy of each id still present.
        #[test]
        fn equals_the_least_copy_of_what_remains(
            adds in proptest::collection::vec((0..4u8, proptest::option::of(0..5u8), 0..3i64), 0..60),
            retract in proptest::collection::vec(proptest::bool::ANY, 60),
        ) {
            let mut names = Names::default();
            let events: Vec<BatchEvent> = adds
                .iter()
                .map(|(u, id, t)| ev(&mut names, &format!("u{u}"), id.map(|i| format!("e{i}")).as_deref(), *t))
                .collect();
            let mut d = Dedup::default();
            let mut set = BTreeMap::new();
            for e in &events {
                d.update(*e, 1, &names, &mut apply(&mut set));
            }
            let mut kept = Vec::new();
            for (e, r) in events.iter().zip(&retract) {
                if *r {
                    d.update(*e, -1, &names, &mut apply(&mut set));
                } else {
                    kept.push(*e);
                }
            }
            let mut want: BTreeMap<Fact, isize> = BTreeMap::new();
            let mut least: BTreeMap<IdHash, Fact> = BTreeMap::new();
            for e in &kept {
                match e.event_id {
                    None => *want.entry(e.fact).or_default() += 1,
                    Some(id) => {
                        let slot = least.entry(id).or_insert(e.fact);
                        if order(&e.fact, slot, &names) == Ordering::Less {
                            *slot = e.fact;
                        }
                    }
                }
            }
            for e in least.values() {
                *want.entry(*e).or_default() += 1;
            }
            prop_assert_eq!(set, want);
        }
    }
}
