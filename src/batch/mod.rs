//! The batch layer (SPEC §5): a day's archive → a differential dataflow →
//! the day's metrics → reports.
//!
//! The batch reads only the archive, and only the files its commit log
//! lists (a consistent snapshot even while `stream` or `compact` runs).

pub mod dedup;
pub mod ingest;
pub mod metrics;
pub mod report;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use timely::dataflow::operators::probe::Handle as ProbeHandle;

use crate::archive::commit_log::snapshot;
use differential_dataflow::input::InputSession;

use rustc_hash::FxHashMap;

use crate::dataflows::batch::{build, Fact, Names, Outputs};
use ingest::{read_round, Chunk, DayIngest, Plan};
use metrics::{segment_summary, CategoryFunnel, ProductViews, SegmentSummary, UserStats};

/// Number of products in the top list.
pub const TOP_N: usize = 5;

/// Everything the reports of one day say.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyReport {
    pub date: String,
    /// Events after de-duplication by event_id.
    pub events: u64,
    pub input_files: Vec<String>,
    pub segments: Vec<SegmentSummary>,
    /// (user_id, stats), ordered by user_id.
    pub users: Vec<(String, UserStats)>,
    pub top_products: Vec<ProductViews>,
    /// Ordered by overall conversion rate desc, then category asc.
    pub categories: Vec<CategoryFunnel>,
}

impl DailyReport {
    fn from_outputs(date: &str, files: Vec<String>, out: &Outputs, names: &Names) -> Self {
        // Multiplicities are positive once the dataflow has caught up.
        let n = |m: Option<&isize>| m.copied().unwrap_or(0).max(0) as u64;
        let mut users: FxHashMap<u32, UserStats> = FxHashMap::default();
        for (&(u, kind), m) in &out.user_kinds {
            users.entry(u).or_default().count(kind, n(Some(m)));
        }
        let mut users: Vec<(String, UserStats)> = users
            .into_iter()
            .map(|(u, mut s)| {
                s.unique_products = n(out.user_products.get(&u));
                s.sessions = n(out.user_sessions.get(&u));
                (names.name(u).to_string(), s)
            })
            .collect();
        users.sort();
        let mut products: Vec<ProductViews> = out
            .product_views
            .iter()
            .map(|(pc @ (p, c), views)| {
                ProductViews::new(names.name(*p), names.name(*c), n(Some(views)), n(out.product_viewers.get(pc)))
            })
            .collect();
        // Ordered by (views desc, product, category).
        products.sort();
        products.truncate(TOP_N);
        let mut funnels: FxHashMap<u32, CategoryFunnel> = FxHashMap::default();
        for (&(c, kind), m) in &out.category_kinds {
            funnels.entry(c).or_insert_with(|| CategoryFunnel::new(names.name(c))).count(kind, n(Some(m)));
        }
        let mut categories: Vec<CategoryFunnel> = funnels
            .into_iter()
            .map(|(c, mut f)| {
                f.unique_users = n(out.category_users.get(&c));
                f
            })
            .collect();
        categories.sort_by(|a, b| {
            b.overall_conversion_rate().cmp(&a.overall_conversion_rate()).then_with(|| a.category.cmp(&b.category))
        });
        DailyReport {
            date: date.to_string(),
            events: out.events.max(0) as u64,
            input_files: files,
            segments: segment_summary(users.iter().map(|(_, s)| s)),
            top_products: products,
            users,
            categories,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }
}

/// Computes the report of `date` from the archive at `archive`.
pub fn run_day(archive: &Path, date: &str) -> anyhow::Result<DailyReport> {
    let last = std::sync::Arc::new(std::sync::Mutex::new(None));
    let keep = last.clone();
    rounds(archive, &[date.to_string()], None, move |r| {
        if let Ok(mut slot) = keep.lock() {
            *slot = Some(r.clone());
        }
        Ok(false)
    })?;
    let report = last.lock().ok().and_then(|mut s| s.take());
    report.ok_or_else(|| anyhow::anyhow!("no report computed for {date}"))
}

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; not named by the -sys crate).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc (the binary's allocator) returns freed memory to the OS 10 ms
/// later and faults it back in moments after: half of a one-shot batch's
/// time went to the kernel zeroing pages (`clear_page_erms`). The batch
/// keeps it instead (its peak is the bound). Not for `stream`, whose
/// workers free on other threads: there it cost time and memory.
fn keep_freed_memory() {
    // SAFETY: sets an integer option of the allocator; no pointers are
    // involved, and with another global allocator it is simply unused.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// One date's dataflow (the reading side is its [`DayIngest`]).
struct DayFlow {
    date: String,
    input: InputSession<u64, Fact, isize>,
    probe: ProbeHandle<u64>,
    outputs: Rc<RefCell<Outputs>>,
}

/// Keeps the reports of `dates` up to date: every `poll`, files committed
/// (or removed by compaction) since the last round are fed to the same
/// differential dataflow as updates, and `on_report` gets the report of
/// every date that changed (all of them in the first round). Stops when
/// `on_report` returns `false`.
pub fn follow(
    archive: &Path,
    dates: &[String],
    poll: Duration,
    on_report: impl FnMut(&DailyReport) -> anyhow::Result<bool> + Send + 'static,
) -> anyhow::Result<()> {
    rounds(archive, dates, Some(poll), on_report)
}

/// [`follow`], or a single round when `poll` is `None` (a one-shot run,
/// which keeps no rows for retractions that cannot come).
fn rounds(
    archive: &Path,
    dates: &[String],
    poll: Option<Duration>,
    on_report: impl FnMut(&DailyReport) -> anyhow::Result<bool> + Send + 'static,
) -> anyhow::Result<()> {
    keep_freed_memory();
    let archive = archive.to_owned();
    let dates = dates.to_vec();
    // The dataflow needs a worker; `execute_directly` runs it on this thread.
    let on_report = std::sync::Mutex::new(on_report);
    timely::execute_directly(move |worker| -> anyhow::Result<()> {
        let mut flows: Vec<DayFlow> = dates
            .iter()
            .map(|date| {
                let outputs = Rc::new(RefCell::new(Outputs::default()));
                let (input, probe) = worker.dataflow::<u64, _, _>(|scope| build(scope, outputs.clone()));
                DayFlow { date: date.clone(), input, probe, outputs }
            })
            .collect();
        let mut ingests: Vec<DayIngest> = dates.iter().map(|_| DayIngest::new(poll.is_some())).collect();
        let mut round = 0u64;
        loop {
            let live = snapshot(&archive)?;
            let plans: Vec<Plan> = ingests.iter().zip(&dates).map(|(d, date)| d.plan(&live, date)).collect();
            let changed: Vec<bool> = plans.iter().map(|p| round == 0 || !p.is_empty()).collect();
            // Read on a second thread while this one feeds the dataflow.
            std::thread::scope(|s| -> anyhow::Result<()> {
                let (to, from) = std::sync::mpsc::sync_channel::<Chunk>(4);
                let (archive, ingests, plans) = (&archive, &mut ingests, &plans);
                let reader = s.spawn(move || read_round(archive, ingests, plans, to));
                for (day, chunk) in from {
                    let input = &mut flows[day].input;
                    for (fact, diff) in chunk {
                        input.update(fact, diff);
                    }
                    worker.step();
                }
                reader.join().map_err(|_| anyhow::anyhow!("the archive reader panicked"))?
            })?;
            for flow in &mut flows {
                flow.input.advance_to(round + 1);
                flow.input.flush();
            }
            worker.step_while(|| flows.iter().any(|d| d.probe.less_than(d.input.time())));
            let mut go_on = true;
            for ((flow, ingest), _) in flows.iter().zip(&ingests).zip(&changed).filter(|(_, c)| **c) {
                let report =
                    DailyReport::from_outputs(&flow.date, ingest.files(), &flow.outputs.borrow(), &ingest.names);
                let mut f = on_report.lock().map_err(|_| anyhow::anyhow!("report callback poisoned"))?;
                go_on &= (*f)(&report)?;
            }
            let Some(poll) = poll.filter(|_| go_on) else {
                return Ok(());
            };
            round += 1;
            std::thread::sleep(poll);
        }
    })
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod incremental_tests;
