//! Timely cluster configuration from `-w/-n/-p/-h`.

use std::path::Path;

use crate::cli::ClusterArgs;
use crate::config::ConfigError;

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// Builds timely's configuration; one process unless `-n` > 1.
pub fn timely_config(args: &ClusterArgs) -> Result<timely::Config, ConfigError> {
    if args.workers == 0 {
        return Err(invalid("workers", "must be at least 1".into()));
    }
    if args.processes == 0 || args.process >= args.processes {
        return Err(invalid(
            "process",
            format!("process index {} is not below --processes {}", args.process, args.processes),
        ));
    }
    let communication = if args.processes == 1 {
        timely::CommunicationConfig::Process(args.workers)
    } else {
        let addresses = match &args.hostfile {
            Some(path) => read_hostfile(path, args.processes)?,
            None => (0..args.processes).map(|i| format!("localhost:{}", 2101 + i)).collect(),
        };
        timely::CommunicationConfig::Cluster {
            threads: args.workers,
            process: args.process,
            addresses,
            report: false,
            zerocopy: false,
        }
    };
    Ok(timely::Config { communication, worker: timely::WorkerConfig::default() })
}

fn read_hostfile(path: &Path, processes: usize) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let hosts: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
    if hosts.len() < processes {
        return Err(invalid(
            "hostfile",
            format!("{} lists {} hosts but --processes is {processes}", path.display(), hosts.len()),
        ));
    }
    Ok(hosts.into_iter().take(processes).collect())
}
