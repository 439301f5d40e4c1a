//! The batch layer's differential dataflow (SPEC §5): one day's archived
//! events in, the day's metrics out, kept up to date as files are added.
//!
//! ```text
//! facts ─┬─▶ events per (user, kind)      ─┐
//!        ├─▶ distinct (user, product)      ├─▶ per user ─▶ segments
//!        ├─▶ distinct (user, session)     ─┘
//!        ├─▶ views per (product, category) ─┐
//!        ├─▶ distinct viewers per product  ─┴─▶ top 5
//!        ├─▶ events per (category, kind)  ─┐
//!        └─▶ distinct users per category  ─┴─▶ conversion rates
//! ```
//!
//! Its input is already de-duplicated by event_id (`batch::dedup`, as rows
//! are read) and its records are interned ids ([`Names`]).
//!
//! Every output is captured as a multiset of current values ([`Outputs`]),
//! updated from the dataflow's diffs; after the dataflow has caught up with
//! an input time it equals a from-scratch computation over the same files.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::rc::Rc;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::ThresholdTotal;
use differential_dataflow::VecCollection;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::event::EventKind;

/// One day's strings as small integer ids: the dataflow sorts, hashes and
/// copies `u32`s instead of strings (string compares and copies were most
/// of a run's time). Ids are only ever looked up, never ordered, so the
/// outputs do not depend on the order names were first seen.
#[derive(Default, Debug)]
pub struct Names {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Names {
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        // More than 4 billion distinct names in one day would not fit in
        // memory long before this overflows.
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }
}

/// What the metrics use of an event, names interned: the dataflow's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fact {
    pub user: u32,
    pub product: u32,
    pub category: u32,
    pub kind: EventKind,
    pub session: Option<u32>,
}

impl Fact {
    /// Which of several copies of one event_id counts: the least by names
    /// (then kind), whatever order the copies or names came in. Copies
    /// equal in all of these are the same fact: which of them counts makes
    /// no difference to any metric.
    pub(crate) fn copy_key<'n>(&self, n: &'n Names) -> (&'n str, &'n str, &'n str, EventKind, Option<&'n str>) {
        let session = self.session.map(|s| n.name(s));
        (n.name(self.user), n.name(self.product), n.name(self.category), self.kind, session)
    }
}

/// A 128-bit hash of an event_id: a false match is practically impossible.
/// Two words rather than a `u128`, whose 16-byte alignment would pad every
/// row held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdHash(u64, u64);

impl IdHash {
    pub fn of(event_id: &str) -> Self {
        let h = xxhash_rust::xxh3::xxh3_128(event_id.as_bytes());
        IdHash((h >> 64) as u64, h as u64)
    }
}

/// One archived row as the batch layer holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchEvent {
    pub fact: Fact,
    pub event_id: Option<IdHash>,
}

impl BatchEvent {
    /// From the columns the archive reader hands over.
    pub fn from_columns(c: &crate::archive::parquet::BatchColumns<'_>, names: &mut Names) -> Self {
        BatchEvent {
            fact: Fact {
                user: names.id(c.user_id),
                product: names.id(c.product_id),
                category: names.id(c.category),
                kind: EventKind::from_type(c.event_type),
                session: c.session_id.map(|s| names.id(s)),
            },
            event_id: c.event_id.map(IdHash::of),
        }
    }
}

/// The dataflow's outputs as multisets (value → multiplicity), in ids:
/// names are looked up when a report is made, so the dataflow never
/// touches the names table (which the reader fills). Counts are the
/// multiplicities of projected facts, and distinct counts those of the
/// keys of distinct pairs; `batch::DailyReport` assembles the metrics.
#[derive(Default, Debug)]
pub struct Outputs {
    /// Events per (user, kind).
    pub user_kinds: FxHashMap<(u32, EventKind), isize>,
    /// Distinct products per user.
    pub user_products: FxHashMap<u32, isize>,
    /// Distinct sessions per user.
    pub user_sessions: FxHashMap<u32, isize>,
    /// Views per (product, category).
    pub product_views: FxHashMap<(u32, u32), isize>,
    /// Distinct viewers per (product, category).
    pub product_viewers: FxHashMap<(u32, u32), isize>,
    /// Events per (category, kind).
    pub category_kinds: FxHashMap<(u32, EventKind), isize>,
    /// Distinct users per category.
    pub category_users: FxHashMap<u32, isize>,
    pub events: isize,
}

type Shared<T> = Rc<RefCell<T>>;

/// Adds each update of `c` to one multiset of `Outputs`; `probe` learns
/// when the multiset is complete up to a time.
fn capture<'s, D>(
    c: VecCollection<'s, u64, D, isize>,
    into: &Shared<Outputs>,
    pick: fn(&mut Outputs) -> &mut FxHashMap<D, isize>,
    probe: &ProbeHandle<u64>,
) where
    D: differential_dataflow::Data + std::hash::Hash,
{
    use timely::dataflow::operators::Probe;
    let into = into.clone();
    let c = c.inspect(move |(d, _t, r)| {
        let mut out = into.borrow_mut();
        match pick(&mut out).entry(d.clone()) {
            Entry::Occupied(mut o) => {
                *o.get_mut() += *r;
                if *o.get() == 0 {
                    o.remove();
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(*r);
            }
        }
    });
    c.inner.probe_with(probe);
}

/// Builds the dataflow; returns its input (de-duplicated facts, see
/// `batch::dedup`) and a probe to wait on.
///
/// Plain counts need no operator: the multiset of a projection is its
/// counts. Distinct counts go through `distinct_total`, whose work on an
/// update is proportional to the keys it touches (a `reduce` per user or
/// per category replayed every value of a touched key: 4 % → 1 % of a
/// one-shot run for a 1 % refresh; see the README).
pub fn build<'s>(
    scope: Scope<'s, u64>,
    outputs: Shared<Outputs>,
) -> (InputSession<u64, Fact, isize>, ProbeHandle<u64>) {
    let (input, facts) = scope.new_collection::<Fact, isize>();
    let o = &outputs;
    let probe = ProbeHandle::new();

    let facts = facts.inspect({
        let o = o.clone();
        move |(_f, _t, r)| o.borrow_mut().events += r
    });
    let views = facts.clone().filter(|f| f.kind == EventKind::View);

    capture(facts.clone().map(|f| (f.user, f.kind)), o, |o| &mut o.user_kinds, &probe);
    let products = facts.clone().map(|f| (f.user, f.product)).distinct_total();
    capture(products.map(|(u, _)| u), o, |o| &mut o.user_products, &probe);
    let sessions = facts.clone().flat_map(|f| f.session.map(|s| (f.user, s))).distinct_total();
    capture(sessions.map(|(u, _)| u), o, |o| &mut o.user_sessions, &probe);

    capture(views.clone().map(|f| (f.product, f.category)), o, |o| &mut o.product_views, &probe);
    let viewers = views.map(|f| ((f.product, f.category), f.user)).distinct_total();
    capture(viewers.map(|(pc, _)| pc), o, |o| &mut o.product_viewers, &probe);

    capture(facts.clone().map(|f| (f.category, f.kind)), o, |o| &mut o.category_kinds, &probe);
    let users = facts.map(|f| (f.category, f.user)).distinct_total();
    capture(users.map(|(c, _)| c), o, |o| &mut o.category_users, &probe);

    (input, probe)
}
