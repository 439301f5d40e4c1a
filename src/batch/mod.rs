//! The batch layer (SPEC §5): a day's archive → a differential dataflow →
//! the day's metrics → reports.
//!
//! The batch reads only the archive, and only the files its commit log
//! lists (a consistent snapshot even while `stream` or `compact` runs).

pub mod dedup;
pub mod metrics;
pub mod report;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use timely::dataflow::operators::probe::Handle as ProbeHandle;

use anyhow::Context;

use crate::archive::commit_log::snapshot;
use crate::archive::parquet::for_each_batch_row;
use crate::dataflows::batch::{build, BatchEvent, DayInput, Names, Outputs};
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
    fn from_outputs(date: &str, files: Vec<String>, out: &Outputs) -> Self {
        let users: Vec<(String, UserStats)> =
            out.users.iter().filter(|(_, n)| **n > 0).map(|((u, s), _)| (u.clone(), s.clone())).collect();
        let mut categories: Vec<CategoryFunnel> =
            out.categories.iter().filter(|(_, n)| **n > 0).map(|(c, _)| c.clone()).collect();
        categories.sort_by(|a, b| {
            b.overall_conversion_rate().cmp(&a.overall_conversion_rate()).then_with(|| a.category.cmp(&b.category))
        });
        DailyReport {
            date: date.to_string(),
            events: out.events.max(0) as u64,
            input_files: files,
            segments: segment_summary(users.iter().map(|(_, s)| s)),
            // The map is ordered by (views desc, product, category).
            top_products: out.products.iter().filter(|(_, n)| **n > 0).take(TOP_N).map(|(p, _)| p.clone()).collect(),
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
    follow(archive, &[date.to_string()], Duration::ZERO, move |r| {
        if let Ok(mut slot) = keep.lock() {
            *slot = Some(r.clone());
        }
        Ok(false) // one round: a one-shot run
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

/// One date's dataflow and the files it has been fed.
struct Day {
    date: String,
    input: DayInput,
    probe: ProbeHandle<u64>,
    outputs: Rc<RefCell<Outputs>>,
    names: Rc<RefCell<Names>>,
    /// Files fed so far, with their rows (to retract if compaction removes them).
    loaded: BTreeMap<String, Vec<BatchEvent>>,
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
    keep_freed_memory();
    let archive = archive.to_owned();
    let dates = dates.to_vec();
    // The dataflow needs a worker; `execute_directly` runs it on this thread.
    let on_report = std::sync::Mutex::new(on_report);
    timely::execute_directly(move |worker| -> anyhow::Result<()> {
        let mut days: Vec<Day> = dates
            .iter()
            .map(|date| {
                let outputs = Rc::new(RefCell::new(Outputs::default()));
                let names = Rc::new(RefCell::new(Names::default()));
                let (input, probe) = worker.dataflow::<u64, _, _>(|scope| build(scope, outputs.clone(), names.clone()));
                Day { date: date.clone(), input, probe, outputs, names, loaded: BTreeMap::new() }
            })
            .collect();
        let mut round = 0u64;
        loop {
            let live = snapshot(&archive)?;
            let mut changed = vec![round == 0; days.len()];
            for (i, day) in days.iter_mut().enumerate() {
                let want: BTreeMap<&str, ()> =
                    live.iter().filter(|f| f.date == day.date).map(|f| (f.path.as_str(), ())).collect();
                let gone: Vec<String> = day.loaded.keys().filter(|p| !want.contains_key(p.as_str())).cloned().collect();
                for p in gone {
                    for e in day.loaded.remove(&p).unwrap_or_default() {
                        day.input.update(e, -1);
                    }
                    changed[i] = true;
                }
                let new: Vec<&str> = want.keys().filter(|p| !day.loaded.contains_key(**p)).copied().collect();
                let total: u64 = live.iter().filter(|f| new.contains(&f.path.as_str())).map(|f| f.rows).sum();
                let mut progress = crate::progress::Progress::new("batch: reading archive rows", total);
                let mut done = 0u64;
                for p in new {
                    let path = archive.join(p);
                    let mut rows: Vec<BatchEvent> = Vec::new();
                    {
                        // Only the columns the metrics use, straight into ids.
                        let mut names = day.names.borrow_mut();
                        for_each_batch_row(&path, |c| rows.push(BatchEvent::from_columns(&c, &mut names)))
                            .with_context(|| format!("reading {}", path.display()))?;
                    }
                    day.input.reserve(rows.len());
                    for e in &rows {
                        day.input.insert(*e);
                    }
                    done += rows.len() as u64;
                    progress.set(done);
                    day.loaded.insert(p.to_string(), rows);
                    changed[i] = true;
                }
                progress.finish();
                day.input.advance_to(round + 1);
                day.input.flush();
            }
            worker.step_while(|| days.iter().any(|d| d.probe.less_than(d.input.time())));
            let mut go_on = true;
            for (day, _) in days.iter().zip(&changed).filter(|(_, c)| **c) {
                let files = day.loaded.keys().cloned().collect();
                let report = DailyReport::from_outputs(&day.date, files, &day.outputs.borrow());
                let mut f = on_report.lock().map_err(|_| anyhow::anyhow!("report callback poisoned"))?;
                go_on &= (*f)(&report)?;
            }
            if !go_on {
                return Ok(());
            }
            round += 1;
            std::thread::sleep(poll);
        }
    })
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod incremental_tests;
