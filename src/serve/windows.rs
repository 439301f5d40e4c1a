//! `/api/windows`: the speed layer's window state, asked of the workers
//! that own it.
//!
//! Window state lives in each worker's `WindowEngine` and is never shared.
//! The HTTP thread puts a [`WindowQuery`] in the inbox of each local worker
//! (a channel plus a `SyncActivator` that wakes a parked worker); the
//! Windows operator answers between batches with [`Answerer`], so a query
//! costs the dataflow a scan of the asking product (or, for the top N, of
//! the worker's products) and nothing when no one asks.
//!
//! Recently closed windows are kept by the same operator (the last few
//! window ends). When the dataflow has finished, the last closed windows
//! stay readable from the desk, so a dashboard kept up after a bounded run
//! still shows them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde::Serialize;
use timely::scheduling::SyncActivator;

use crate::event::timestamp::format_rfc3339_secs;
use crate::window::engine::{ClosedWindow, WindowEngine};

/// How many window ends of closed windows each worker keeps.
const CLOSED_ENDS_KEPT: usize = 3;
/// How long a query waits for the workers.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq)]
pub enum WindowQuery {
    /// Open and recently closed windows of one product.
    Product(String),
    /// The N products with most views in their next window to close, and
    /// in the last closed window.
    Top(usize),
}

/// One (product, window) in an answer, and a line of `--window-counts`.
/// Fields in alphabetical order: the order the counts file has always had.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WindowView {
    pub carts: u64,
    pub category: String,
    pub other: u64,
    pub product_id: String,
    pub purchases: u64,
    pub total: u64,
    pub views: u64,
    pub window_end: String,
    pub window_start: String,
}

impl From<&ClosedWindow> for WindowView {
    fn from(w: &ClosedWindow) -> Self {
        WindowView {
            carts: w.counts.carts,
            category: w.category.to_string(),
            other: w.counts.other,
            product_id: w.product.to_string(),
            purchases: w.counts.purchases,
            total: w.counts.total,
            views: w.counts.views,
            window_end: format_rfc3339_secs(w.end),
            window_start: format_rfc3339_secs(w.start),
        }
    }
}

/// What `/api/windows` returns.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WindowsAnswer {
    /// Still-open windows with their counts so far.
    pub open: Vec<WindowView>,
    /// Recently closed windows, latest first.
    pub closed: Vec<WindowView>,
    /// False once the stream has ended (only closed windows remain).
    pub live: bool,
}

struct Request {
    query: WindowQuery,
    reply: Sender<(Vec<ClosedWindow>, Vec<ClosedWindow>)>,
}

struct Inbox {
    tx: Sender<Request>,
    wake: SyncActivator,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeskError {
    #[error("product {0:?} is owned by a worker of another process; ask process {1}")]
    Elsewhere(String, usize),
    #[error("the workers did not answer within {0:?}")]
    Timeout(Duration),
}

/// Where the HTTP thread finds the workers of this process.
#[derive(Default)]
pub struct WindowDesk {
    inner: Mutex<Desk>,
    /// Closed windows left by finished workers.
    last_closed: Mutex<Vec<ClosedWindow>>,
}

#[derive(Default)]
struct Desk {
    /// Inboxes of the running local workers.
    inboxes: BTreeMap<usize, Inbox>,
    /// Every local worker that ever registered.
    local: BTreeSet<usize>,
    /// All workers of the cluster (products are spread over all of them).
    peers: usize,
}

impl WindowDesk {
    /// Called by each worker's Windows operator.
    pub fn register(&self, index: usize, peers: usize, wake: SyncActivator) -> Answerer {
        let (tx, rx) = unbounded();
        if let Ok(mut d) = self.inner.lock() {
            d.peers = peers;
            d.local.insert(index);
            d.inboxes.insert(index, Inbox { tx, wake });
        }
        Answerer { rx, closed: VecDeque::new() }
    }

    /// Asks the owning worker (a product) or every local worker (top N).
    pub fn ask(&self, query: WindowQuery, owner: impl Fn(&str) -> u64) -> Result<WindowsAnswer, DeskError> {
        let (reply, replies) = unbounded();
        let mut asked = 0;
        if let Ok(mut desk) = self.inner.lock() {
            let targets: Vec<usize> = match &query {
                WindowQuery::Product(p) if !desk.local.is_empty() => {
                    let index = (owner(p) % desk.peers.max(1) as u64) as usize;
                    if !desk.local.contains(&index) {
                        return Err(DeskError::Elsewhere(p.clone(), index / desk.local.len()));
                    }
                    vec![index]
                }
                WindowQuery::Product(_) => Vec::new(),
                WindowQuery::Top(_) => desk.inboxes.keys().copied().collect(),
            };
            for i in targets {
                let Some(inbox) = desk.inboxes.get(&i) else { continue };
                if inbox.tx.send(Request { query: query.clone(), reply: reply.clone() }).is_ok() {
                    let _ = inbox.wake.activate();
                    asked += 1;
                } else {
                    // The worker finished and dropped its receiver.
                    desk.inboxes.remove(&i);
                }
            }
        }
        drop(reply);
        if asked == 0 {
            return Ok(self.finished_answer(&query));
        }
        let deadline = Instant::now() + QUERY_TIMEOUT;
        let (mut open, mut closed) = (Vec::new(), Vec::new());
        for _ in 0..asked {
            match replies.recv_deadline(deadline) {
                Ok((o, c)) => {
                    open.extend(o);
                    closed.extend(c);
                }
                // A worker finished while asked: answer with what came.
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                Err(_) => return Err(DeskError::Timeout(QUERY_TIMEOUT)),
            }
        }
        Ok(shape(&query, open, closed, true))
    }

    /// A finished worker leaves its last closed windows here.
    pub fn leave(&self, closed: Vec<ClosedWindow>) {
        if let Ok(mut l) = self.last_closed.lock() {
            l.extend(closed);
        }
    }

    fn finished_answer(&self, query: &WindowQuery) -> WindowsAnswer {
        let closed = self.last_closed.lock().map(|l| l.clone()).unwrap_or_default();
        let closed = match query {
            WindowQuery::Product(p) => closed.into_iter().filter(|w| w.product == p.as_str()).collect(),
            WindowQuery::Top(_) => closed,
        };
        shape(query, Vec::new(), closed, false)
    }
}

/// Orders an answer: a product's windows by end; a top N by views.
fn shape(query: &WindowQuery, mut open: Vec<ClosedWindow>, mut closed: Vec<ClosedWindow>, live: bool) -> WindowsAnswer {
    match query {
        WindowQuery::Product(_) => {
            open.sort_by_key(|w| w.end);
        }
        WindowQuery::Top(n) => {
            rank(&mut open, *n);
            // Only the latest closed window end.
            let last = closed.iter().map(|w| w.end).max();
            closed.retain(|w| Some(w.end) == last);
            rank(&mut closed, *n);
        }
    }
    closed.sort_by(|a, b| b.end.cmp(&a.end).then(b.counts.views.cmp(&a.counts.views)).then(a.product.cmp(&b.product)));
    WindowsAnswer { open: open.iter().map(Into::into).collect(), closed: closed.iter().map(Into::into).collect(), live }
}

/// Most views first (ties by product id), at most `n`.
fn rank(windows: &mut Vec<ClosedWindow>, n: usize) {
    windows.sort_by(|a, b| b.counts.views.cmp(&a.counts.views).then(a.product.cmp(&b.product)));
    windows.truncate(n);
}

/// The worker side: answers queries from its engine and remembers the
/// windows it closed lately.
pub struct Answerer {
    rx: Receiver<Request>,
    /// Closed windows of the last few window ends, oldest first.
    closed: VecDeque<Vec<ClosedWindow>>,
}

impl Answerer {
    pub fn on_closed(&mut self, windows: &[ClosedWindow]) {
        for group in windows.chunk_by(|a, b| a.end == b.end) {
            if self.closed.len() == CLOSED_ENDS_KEPT {
                self.closed.pop_front();
            }
            self.closed.push_back(group.to_vec());
        }
    }

    /// Answers every waiting query.
    pub fn answer(&mut self, engine: &WindowEngine) {
        while let Ok(req) = self.rx.try_recv() {
            let answer = match &req.query {
                WindowQuery::Product(p) => (
                    engine.open_windows(p),
                    self.closed.iter().flatten().filter(|w| w.product == p.as_str()).cloned().collect(),
                ),
                WindowQuery::Top(n) => {
                    let mut open: Vec<ClosedWindow> =
                        engine.products().filter_map(|p| engine.open_windows(p).into_iter().next()).collect();
                    rank(&mut open, *n);
                    let mut closed = self.closed.back().cloned().unwrap_or_default();
                    rank(&mut closed, *n);
                    (open, closed)
                }
            };
            let _ = req.reply.send(answer);
        }
    }

    /// The worker is done: leave the last closed windows on the desk.
    pub fn finish(&mut self, desk: &WindowDesk) {
        desk.leave(self.closed.back().cloned().unwrap_or_default());
        self.closed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Micros;
    use crate::window::Counts;

    fn w(product: &str, end: Micros, views: u64) -> ClosedWindow {
        ClosedWindow {
            product: product.into(),
            category: "c".into(),
            start: end - 600,
            end,
            counts: Counts { views, total: views, ..Default::default() },
        }
    }

    #[test]
    fn top_n_ranks_by_views_then_product_and_keeps_the_last_closed_end() {
        let open = vec![w("b", 900, 5), w("a", 900, 5), w("c", 900, 9)];
        let closed = vec![w("x", 300, 100), w("y", 600, 1), w("z", 600, 2)];
        let a = shape(&WindowQuery::Top(2), open, closed, true);
        let ids = |v: &[WindowView]| v.iter().map(|w| w.product_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a.open), ["c", "a"]);
        assert_eq!(ids(&a.closed), ["z", "y"]);
    }

    #[test]
    fn a_finished_desk_answers_from_the_last_closed_windows() {
        let desk = WindowDesk::default();
        desk.leave(vec![w("p", 600, 3), w("q", 600, 7)]);
        let a = desk.ask(WindowQuery::Product("p".into()), |_| 0).unwrap();
        assert!(!a.live);
        assert_eq!(a.closed.len(), 1);
        assert_eq!(a.closed[0].views, 3);
        assert_eq!(desk.ask(WindowQuery::Top(1), |_| 0).unwrap().closed[0].product_id, "q");
    }
}
