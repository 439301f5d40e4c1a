//! `clickwatch schedule`: the daily batch without Airflow (the embedded
//! setup). Every day at `--at` (UTC) it reports the day that just ended —
//! the same `batch` run the Airflow DAG makes — then removes report
//! folders older than `--retention-days`. Runs until stopped, or for
//! `--runs` days.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use super::batch::report_one_day;
use crate::cli::ScheduleArgs;
use crate::config::ConfigError;

/// The first time of day `at` strictly after `now`.
pub fn next_run(now: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    let today = now.date_naive().and_time(at).and_utc();
    if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    }
}

/// The day a run at `run` reports: the one that ended before it.
pub fn report_day(run: DateTime<Utc>) -> NaiveDate {
    run.date_naive() - chrono::Duration::days(1)
}

/// Report folders (named YYYY-MM-DD) of days before `day - retention`.
pub fn expired<'a>(names: impl Iterator<Item = &'a str>, day: NaiveDate, retention_days: u32) -> Vec<String> {
    let keep_from = day - chrono::Duration::days(i64::from(retention_days));
    names.filter(|n| NaiveDate::parse_from_str(n, "%Y-%m-%d").is_ok_and(|d| d < keep_from)).map(str::to_owned).collect()
}

fn parse_at(s: &str) -> Result<NaiveTime, ConfigError> {
    NaiveTime::parse_from_str(s, "%H:%M:%S").or_else(|_| NaiveTime::parse_from_str(s, "%H:%M")).map_err(|_| {
        ConfigError::Invalid { key: "at", message: format!("expected HH:MM or HH:MM:SS (UTC), got {s:?}") }
    })
}

fn cleanup(reports: &Path, day: NaiveDate, retention_days: u32) -> anyhow::Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(reports) else { return Ok(Vec::new()) };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let old = expired(names.iter().map(String::as_str), day, retention_days);
    for name in &old {
        let dir = reports.join(name);
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(old)
}

pub fn run(args: &ScheduleArgs) -> anyhow::Result<()> {
    let at = parse_at(&args.at)?;
    let mut done = 0u32;
    while args.runs.is_none_or(|n| done < n) {
        let when = next_run(Utc::now(), at);
        eprintln!("schedule: next daily batch at {} (UTC)", when.format("%Y-%m-%dT%H:%M:%SZ"));
        while Utc::now() < when {
            let left = (when - Utc::now()).to_std().unwrap_or_default();
            std::thread::sleep(left.min(Duration::from_secs(60)));
        }
        let day = report_day(when);
        // A failed day is logged and retried by the next run's operator, not fatal to the loop.
        match report_one_day(&args.archive, &args.reports, &day.format("%Y-%m-%d").to_string()) {
            Ok(()) => {
                let removed = cleanup(&args.reports, day, args.retention_days)?;
                if !removed.is_empty() {
                    eprintln!(
                        "schedule: removed reports older than {} days: {}",
                        args.retention_days,
                        removed.join(", ")
                    );
                }
            }
            Err(e) => eprintln!("schedule: batch for {day} failed: {e:#}"),
        }
        done += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn runs_next_at_the_time_of_day_and_reports_the_day_before() {
        let at = NaiveTime::from_hms_opt(2, 0, 0).unwrap();
        assert_eq!(next_run(t("2026-11-25T01:59:59Z"), at), t("2026-11-25T02:00:00Z"));
        assert_eq!(next_run(t("2026-11-25T02:00:00Z"), at), t("2026-11-26T02:00:00Z"));
        assert_eq!(next_run(t("2026-12-31T23:00:00Z"), at), t("2027-01-01T02:00:00Z"));
        assert_eq!(report_day(t("2027-01-01T02:00:00Z")), NaiveDate::from_ymd_opt(2026, 12, 31).unwrap());
    }

    #[test]
    fn only_dated_folders_past_the_retention_expire() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let names = ["2026-10-24", "2026-10-25", "2026-11-23", "notes", "2026-13-01"];
        assert_eq!(expired(names.into_iter(), day, 30), vec!["2026-10-24".to_string()]);
        assert!(parse_at("2:00").is_ok() && parse_at("02:00:30").is_ok() && parse_at("25:00").is_err());
    }
}
