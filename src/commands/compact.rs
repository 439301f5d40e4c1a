//! `clickwatch compact`: merge one date's archive files.

use crate::archive::compact_date;
use crate::cli::CompactArgs;
use crate::config::ConfigError;

pub fn run(args: &CompactArgs) -> anyhow::Result<()> {
    if chrono::NaiveDate::parse_from_str(&args.date, "%Y-%m-%d").is_err() {
        return Err(
            ConfigError::Invalid { key: "date", message: format!("expected YYYY-MM-DD, got {:?}", args.date) }.into()
        );
    }
    if args.max_rows == 0 {
        return Err(ConfigError::Invalid { key: "max-rows", message: "must be positive".into() }.into());
    }
    let done = compact_date(&args.archive, &args.date, args.max_rows)?;
    eprintln!(
        "compact: {} {}: {} files -> {} files, {} rows",
        args.archive.display(),
        args.date,
        done.before_files,
        done.after_files,
        done.rows
    );
    Ok(())
}
