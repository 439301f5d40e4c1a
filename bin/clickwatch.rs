//! The `clickwatch` binary: parse, run, map errors to exit codes (SPEC §7:
//! 0 success, 2 bad usage or configuration, 1 anything else, with a
//! one-line error on stderr).

use clap::Parser;
use clickwatch::cli::Cli;
use clickwatch::config::ConfigError;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process unless the operator
/// chose with mimalloc's own `MIMALLOC_ALLOW_THP`.
///
/// mimalloc asks the kernel for 2 MiB pages, and each first touch of one
/// zeroes all of it. On the virtual machines measured (README,
/// Performance) that zeroing was 16 % of a `stream -w 2 --archive` run's
/// samples, against 0.2 % with 4 KiB pages, and 20 interleaved rounds
/// ran 9 % faster (5 % without the archive) with peak memory halved; one
/// worker measured within noise. The flag holds for every later page
/// fault of the process, so memory mimalloc mapped before `main` is
/// covered too.
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it sets a flag of this
    // process. A kernel without it returns EINVAL, which leaves huge
    // pages as they were: nothing to report.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() {
    no_transparent_huge_pages();
    let cli = Cli::parse(); // exits 2 itself on bad usage
    let env = env_logger::Env::default().default_filter_or(cli.log_level.clone());
    env_logger::Builder::from_env(env).format_timestamp_millis().init();
    if let Err(e) = clickwatch::commands::run(cli) {
        eprintln!("clickwatch: error: {e:#}");
        let usage = e.downcast_ref::<ConfigError>().is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}
