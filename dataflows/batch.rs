//! The batch layer's differential dataflow (SPEC §5): one day's archived
//! events in, the day's metrics out, kept up to date as files are added.
//!
//! ```text
//! events ─▶ dedup by event_id ─▶ input ─┬─▶ per user ─▶ segment summary
//!                                        ├─▶ views per (product, category) ─▶ top 5
//!                                        └─▶ per category funnel
//! ```
//!
//! De-duplication happens as events enter ([`DayInput`], `batch::dedup`):
//! the dataflow sees each event_id once.
//!
//! Every output is captured as a multiset of current values ([`Outputs`]),
//! updated from the dataflow's diffs; after the dataflow has caught up with
//! an input time it equals a from-scratch computation over the same files.

use std::cell::RefCell;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::VecCollection;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::batch::dedup::Dedup;
use crate::batch::metrics::{CategoryFunnel, ProductViews, UserStats};
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

/// Current contents of each output collection (value → multiplicity).
#[derive(Default, Debug)]
pub struct Outputs {
    pub users: BTreeMap<(String, UserStats), isize>,
    pub products: BTreeMap<ProductViews, isize>,
    pub categories: BTreeMap<CategoryFunnel, isize>,
    pub events: isize,
}

type Shared<T> = Rc<RefCell<T>>;

/// Adds each update of `c` to a multiset of `Outputs`, converting the
/// record (ids → names) with `value`.
fn capture<'s, D, V>(
    c: VecCollection<'s, u64, D, isize>,
    into: Shared<Outputs>,
    names: Shared<Names>,
    value: fn(&D, &Names) -> V,
    pick: fn(&mut Outputs) -> &mut BTreeMap<V, isize>,
) -> VecCollection<'s, u64, D, isize>
where
    D: differential_dataflow::Data,
    V: Ord + 'static,
{
    c.inspect(move |(d, _t, r)| {
        let v = value(d, &names.borrow());
        let mut out = into.borrow_mut();
        match pick(&mut out).entry(v) {
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
    })
}

/// The dataflow's input: every copy of an event that lands (`+1`) or is
/// removed (`-1`) goes in here; the dataflow gets the de-duplicated changes.
pub struct DayInput {
    session: InputSession<u64, Fact, isize>,
    dedup: Dedup,
    names: Shared<Names>,
}

impl DayInput {
    pub fn update(&mut self, e: BatchEvent, diff: isize) {
        let names = self.names.borrow();
        let session = &mut self.session;
        self.dedup.update(e, diff, &names, &mut |e, d| session.update(e, d));
    }

    pub fn insert(&mut self, e: BatchEvent) {
        self.update(e, 1);
    }

    /// Makes room for `rows` more events.
    pub fn reserve(&mut self, rows: usize) {
        self.dedup.reserve(rows);
    }

    pub fn advance_to(&mut self, time: u64) {
        self.session.advance_to(time);
    }

    pub fn flush(&mut self) {
        self.session.flush();
    }

    pub fn time(&self) -> &u64 {
        self.session.time()
    }
}

/// Builds the dataflow; returns its input and a probe to wait on. `names`
/// must be the table the input's events were interned with.
pub fn build<'s>(
    scope: Scope<'s, u64>,
    outputs: Shared<Outputs>,
    names: Shared<Names>,
) -> (DayInput, ProbeHandle<u64>) {
    let (session, events) = scope.new_collection::<Fact, isize>();
    let input = DayInput { session, dedup: Dedup::default(), names: names.clone() };

    let counted = outputs.clone();
    let events = events.inspect(move |(_e, _t, r)| counted.borrow_mut().events += r);

    let users = events
        .clone()
        .map(|e| (e.user, (e.kind, e.product, e.session)))
        .reduce(|_user, input, out| out.push((UserStats::from_events(input), 1isize)));
    let users = capture(
        users,
        outputs.clone(),
        names.clone(),
        |(u, s), n| (n.name(*u).to_string(), s.clone()),
        |o| &mut o.users,
    );

    let products =
        events.clone().filter(|e| e.kind == EventKind::View).map(|e| ((e.product, e.category), e.user)).reduce(
            |_key, viewers, out| {
                let views: isize = viewers.iter().map(|(_, n)| *n).sum();
                out.push(((views as u64, viewers.len() as u64), 1isize))
            },
        );
    let products = capture(
        products,
        outputs.clone(),
        names.clone(),
        |((p, c), (views, viewers)), n| ProductViews::new(n.name(*p), n.name(*c), *views, *viewers),
        |o| &mut o.products,
    );

    let categories = events
        .map(|e| (e.category, (e.user, e.kind)))
        .reduce(|_category, input, out| out.push((CategoryFunnel::from_events("", input), 1isize)));
    let categories = capture(
        categories,
        outputs,
        names,
        |(c, f), n| CategoryFunnel { category: n.name(*c).to_string(), ..f.clone() },
        |o| &mut o.categories,
    );

    let probe = ProbeHandle::new();
    use timely::dataflow::operators::Probe;
    users.inner.probe_with(&probe);
    products.inner.probe_with(&probe);
    categories.inner.probe_with(&probe);
    (input, probe)
}
