//! One module per subcommand: turning parsed arguments into a running job.

pub mod batch;
pub mod cluster;
pub mod compact;
pub mod demo;
pub mod generate;
pub mod schedule;
pub mod stream;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run(&args),
        Command::Stream(args) => stream::run(&args).map(|_| ()),
        Command::Demo(args) => demo::run(&args),
        Command::Compact(args) => compact::run(&args),
        Command::Batch(args) => batch::run(&args),
        Command::Schedule(args) => schedule::run(&args),
    }
}
