//! `clickwatch batch`: one report per requested day.

use chrono::NaiveDate;

use crate::batch::{follow, report, run_day};
use crate::cli::BatchArgs;
use crate::config::ConfigError;

fn date(key: &'static str, s: &str) -> Result<NaiveDate, ConfigError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| ConfigError::Invalid { key, message: format!("expected YYYY-MM-DD, got {s:?}") })
}

/// The requested days, in order, each once.
pub fn days(args: &BatchArgs) -> Result<Vec<NaiveDate>, ConfigError> {
    let mut v = Vec::new();
    for d in &args.date {
        v.push(date("date", d)?);
    }
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        let (mut d, to) = (date("from", from)?, date("to", to)?);
        if to < d {
            return Err(ConfigError::Invalid { key: "to", message: format!("{to} is before --from {d}") });
        }
        while d <= to {
            v.push(d);
            match d.succ_opt() {
                Some(next) => d = next,
                None => break,
            }
        }
    }
    if v.is_empty() {
        return Err(ConfigError::Invalid { key: "date", message: "give --date or --from/--to".into() });
    }
    v.sort();
    v.dedup();
    Ok(v)
}

/// One-shot report of `day` (YYYY-MM-DD) into `reports/<day>/`.
pub fn report_one_day(archive: &std::path::Path, reports: &std::path::Path, day: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let r = run_day(archive, day)?;
    let dir = report::write(reports, &r)?;
    if r.is_empty() {
        eprintln!("batch {day}: no data in {} (report says so) -> {}", archive.display(), dir.display());
    } else {
        eprintln!(
            "batch {day}: {} events from {} files, {} users in {:.2}s -> {}",
            r.events,
            r.input_files.len(),
            r.users.len(),
            started.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    Ok(())
}

pub fn run(args: &BatchArgs) -> anyhow::Result<()> {
    if args.follow {
        let dates: Vec<String> = days(args)?.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect();
        let reports = args.reports.clone();
        eprintln!("batch: following {} for {} (every {:?})", args.archive.display(), dates.join(", "), args.poll);
        return follow(&args.archive, &dates, args.poll, move |r| {
            let dir = report::write(&reports, r)?;
            eprintln!("batch {}: {} events from {} files -> {}", r.date, r.events, r.input_files.len(), dir.display());
            Ok(true)
        });
    }
    for day in days(args)? {
        report_one_day(&args.archive, &args.reports, &day.format("%Y-%m-%d").to_string())?;
    }
    Ok(())
}
