//! The `clickwatch` binary: parse, run, map errors to exit codes (SPEC §7:
//! 0 success, 2 bad usage or configuration, 1 anything else, with a
//! one-line error on stderr).

use clap::Parser;
use clickwatch::cli::Cli;
use clickwatch::config::ConfigError;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; not named by the -sys crate).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Freed memory is returned to the OS 10 ms after by default, and taken
    // back (page faults, zeroed pages) moments later: half of a batch run's
    // time went to clear_page_erms. Keep it instead; the peak is the bound.
    // SAFETY: sets an integer option of the allocator; no pointers involved.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse(); // exits 2 itself on bad usage
    let env = env_logger::Env::default().default_filter_or(cli.log_level.clone());
    env_logger::Builder::from_env(env).format_timestamp_millis().init();
    if let Err(e) = clickwatch::commands::run(cli) {
        eprintln!("clickwatch: error: {e:#}");
        let usage = e.downcast_ref::<ConfigError>().is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}
