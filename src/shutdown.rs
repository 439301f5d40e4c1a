//! Graceful shutdown of `stream` on SIGINT / SIGTERM.
//!
//! What "graceful" means depends on whether the input can be read again:
//!
//! - **Replayable inputs** (a file, a Kafka topic): the sources stop
//!   reading, everything read so far is archived and committed, alerts of
//!   windows already closed are delivered, and the windows still open are
//!   *left open*: their counts are incomplete, and a restart rebuilds them
//!   from the input (Kafka resumes from the commit log; a file re-run skips
//!   what the archive holds). No alert is raised from half a window.
//! - **Live inputs** (stdin, `POST /collect`): nothing can be re-read, so
//!   the stream ends as at the end of its input: every window closes and
//!   its alerts go out.
//!
//! In both cases the process exits 0 once sinks are flushed. A fatal error
//! ([`Fatal`]) stops the run like a stop of a replayable input, and exits 1. A second
//! signal exits at once with status 130 (what a kill would leave behind is
//! recovered like a crash).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Set once a stop was asked for; shared by sources and operators.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Requests a stop on SIGINT / SIGTERM (then runs `also`); a second
    /// signal exits at once. One handler per process.
    pub fn on_signals(&self, also: impl Fn() + Send + 'static) -> anyhow::Result<()> {
        let me = self.clone();
        ctrlc::set_handler(move || {
            if me.requested() {
                eprintln!("stream: second signal, exiting now");
                std::process::exit(130);
            }
            eprintln!("stream: stopping: finishing what was read (signal again to exit now)");
            me.request();
            also();
        })
        .map_err(|e| anyhow::anyhow!("installing the signal handler: {e}"))
    }
}

/// The first fatal error of the run (e.g. an unreadable input or a sink
/// that cannot write). Sources stop reading once it is set, the dataflow
/// drains, and `stream` exits 1 with this message.
#[derive(Clone, Default, Debug)]
pub struct Fatal(Arc<Mutex<Option<String>>>);

impl Fatal {
    pub fn set(&self, msg: impl Into<String>) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert_with(|| msg.into());
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

/// What the dataflow's operators need to know about a stop.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    pub shutdown: Shutdown,
    /// The input can be read again (a file, a Kafka topic).
    pub replayable: bool,
    pub fatal: Fatal,
}

impl Stop {
    pub fn requested(&self) -> bool {
        self.shutdown.requested()
    }

    /// Leave the open windows unclosed: a stop of a replayable input, or
    /// any fatal error (the run is incomplete; no alert from half a window).
    pub fn abandons_open_windows(&self) -> bool {
        (self.replayable && self.requested()) || self.fatal.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_request() {
        let a = Shutdown::default();
        let b = a.clone();
        assert!(!b.requested());
        a.request();
        assert!(b.requested());
    }
}
