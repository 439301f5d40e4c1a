//! The batch layer (SPEC §5): a day's archive → a differential dataflow →
//! the day's metrics → reports.
//!
//! The batch reads only the archive, and only the files its commit log
//! lists (a consistent snapshot even while `stream` or `compact` runs).

pub mod metrics;
pub mod report;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use anyhow::Context;

use crate::archive::commit_log::snapshot;
use crate::archive::parquet::read_file;
use crate::dataflows::batch::{build, BatchEvent, Outputs};
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
    let files: Vec<String> = snapshot(archive)?.into_iter().filter(|f| f.date == date).map(|f| f.path).collect();
    let archive = archive.to_owned();
    let date = date.to_string();
    timely::execute_directly(move |worker| -> anyhow::Result<DailyReport> {
        let outputs = Rc::new(RefCell::new(Outputs::default()));
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| build(scope, outputs.clone()));
        for f in &files {
            let path = archive.join(f);
            for row in read_file(&path).with_context(|| format!("reading {}", path.display()))? {
                input.insert(BatchEvent::from(&row.event));
            }
        }
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(input.time()));
        let report = DailyReport::from_outputs(&date, files, &outputs.borrow());
        Ok(report)
    })
}
