//! The `clickwatch` binary: parse, run, map errors to exit codes (SPEC §7:
//! 0 success, 2 bad usage or configuration, 1 anything else, with a
//! one-line error on stderr).

use clap::Parser;
use clickwatch::cli::Cli;
use clickwatch::config::ConfigError;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse(); // exits 2 itself on bad usage
    let env = env_logger::Env::default().default_filter_or(cli.log_level.clone());
    env_logger::Builder::from_env(env).format_timestamp_millis().init();
    if let Err(e) = clickwatch::commands::run(cli) {
        eprintln!("clickwatch: error: {e:#}");
        let usage = e.downcast_ref::<ConfigError>().is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}
