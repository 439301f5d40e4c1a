//! The batch layer's differential dataflow (SPEC §5): one day's archived
//! events in, the day's metrics out, kept up to date as files are added.
//!
//! ```text
//! events ─▶ dedup by event_id ─┬─▶ per user ─▶ segment summary
//!                              ├─▶ views per (product, category) ─▶ top 5
//!                              └─▶ per category funnel
//! ```
//!
//! Every output is captured as a multiset of current values ([`Outputs`]),
//! updated from the dataflow's diffs; after the dataflow has caught up with
//! an input time it equals a from-scratch computation over the same files.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::batch::metrics::{CategoryFunnel, ProductViews, UserStats};
use crate::event::{Event, EventKind};

/// The part of an archived event the batch layer uses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BatchEvent {
    pub user: String,
    pub product: String,
    pub category: String,
    pub kind: EventKind,
    pub session: Option<String>,
    pub event_id: Option<String>,
    pub time: i64,
}

impl From<&Event> for BatchEvent {
    fn from(e: &Event) -> Self {
        BatchEvent {
            user: e.user_id.to_string(),
            product: e.product_id.to_string(),
            category: e.category.to_string(),
            kind: e.kind,
            session: e.session_id.as_ref().map(|s| s.to_string()),
            event_id: e.event_id.as_ref().map(|s| s.to_string()),
            time: e.time,
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

fn capture<'s, D: differential_dataflow::Data + Ord>(
    c: VecCollection<'s, u64, D, isize>,
    into: Shared<Outputs>,
    pick: fn(&mut Outputs) -> &mut BTreeMap<D, isize>,
) -> VecCollection<'s, u64, D, isize> {
    c.inspect(move |(d, _t, r)| {
        let mut out = into.borrow_mut();
        let map = pick(&mut out);
        let n = map.entry(d.clone()).or_insert(0);
        *n += r;
        if *n == 0 {
            map.remove(d);
        }
    })
}

/// Builds the dataflow; returns its input and a probe to wait on.
pub fn build<'s>(
    scope: Scope<'s, u64>,
    outputs: Shared<Outputs>,
) -> (InputSession<u64, BatchEvent, isize>, ProbeHandle<u64>) {
    let (input, events) = scope.new_collection::<BatchEvent, isize>();

    // Duplicates by event_id count once per day: keep the least copy, so
    // the choice never depends on arrival order.
    let with_id = events.clone().filter(|e| e.event_id.is_some()).map(|e| (e.event_id.clone().unwrap_or_default(), e));
    let deduped = with_id.reduce(|_id, copies, out| out.push((copies[0].0.clone(), 1isize))).map(|(_id, e)| e);
    let events = deduped.concat(events.filter(|e| e.event_id.is_none()));

    let counted = outputs.clone();
    let events = events.inspect(move |(_e, _t, r)| counted.borrow_mut().events += r);

    let users = events
        .clone()
        .map(|e| (e.user, (e.kind, e.product, e.session)))
        .reduce(|_user, input, out| out.push((UserStats::from_events(input), 1isize)));
    let users = capture(users, outputs.clone(), |o| &mut o.users);

    let products = events
        .clone()
        .filter(|e| e.kind == EventKind::View)
        .map(|e| ((e.product, e.category), e.user))
        .reduce(|(product, category), viewers, out| {
            let views: isize = viewers.iter().map(|(_, n)| *n).sum();
            out.push((ProductViews::new(product, category, views as u64, viewers.len() as u64), 1isize))
        })
        .map(|(_, v)| v);
    let products = capture(products, outputs.clone(), |o| &mut o.products);

    let categories = events
        .map(|e| (e.category, (e.user, e.kind)))
        .reduce(|category, input, out| out.push((CategoryFunnel::from_events(category, input), 1isize)))
        .map(|(_, f)| f);
    let categories = capture(categories, outputs, |o| &mut o.categories);

    let probe = ProbeHandle::new();
    use timely::dataflow::operators::Probe;
    users.inner.probe_with(&probe);
    products.inner.probe_with(&probe);
    categories.inner.probe_with(&probe);
    (input, probe)
}
