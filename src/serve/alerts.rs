//! Recent alerts for the HTTP API: a bounded ring the alert sinks fill,
//! queried by `/api/alerts` and followed live by `/api/alerts/stream`
//! (server-sent events).
//!
//! Every alert gets a sequence number; an SSE client remembers the last one
//! it saw (`Last-Event-ID` on reconnect), so a reconnecting dashboard misses
//! nothing that is still in the ring.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::alert::Alert;

/// The last alerts emitted, oldest first, at most `capacity`.
#[derive(Debug)]
pub struct RecentAlerts {
    ring: Mutex<Ring>,
    /// Signalled on every push (and on shutdown).
    changed: Condvar,
    capacity: usize,
    stopping: AtomicBool,
}

#[derive(Debug, Default)]
struct Ring {
    alerts: VecDeque<(u64, Alert)>,
    /// Sequence number of the next alert.
    next: u64,
}

impl RecentAlerts {
    pub fn new(capacity: usize) -> Self {
        RecentAlerts {
            ring: Mutex::new(Ring { alerts: VecDeque::with_capacity(capacity.min(4096)), next: 1 }),
            changed: Condvar::new(),
            capacity,
            stopping: AtomicBool::new(false),
        }
    }

    pub fn push(&self, alert: &Alert) {
        if let Ok(mut r) = self.ring.lock() {
            if r.alerts.len() == self.capacity {
                r.alerts.pop_front();
            }
            let seq = r.next;
            r.next += 1;
            r.alerts.push_back((seq, alert.clone()));
        }
        self.changed.notify_all();
    }

    /// Newest first, filtered by product and status, at most `limit`.
    pub fn query(&self, product: Option<&str>, status: Option<&str>, limit: usize) -> Vec<Alert> {
        let Ok(r) = self.ring.lock() else { return Vec::new() };
        r.alerts
            .iter()
            .rev()
            .map(|(_, a)| a)
            .filter(|a| product.is_none_or(|p| a.product_id == p))
            .filter(|a| status.is_none_or(|s| a.status.as_str() == s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The sequence number the next alert will get.
    pub fn next_seq(&self) -> u64 {
        self.ring.lock().map_or(1, |r| r.next)
    }

    /// Alerts numbered `from` or later, waiting up to `timeout` for one.
    pub fn wait_from(&self, from: u64, timeout: Duration) -> Vec<(u64, Alert)> {
        let Ok(mut r) = self.ring.lock() else { return Vec::new() };
        let deadline = Instant::now() + timeout;
        while r.next <= from && !self.stopping.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            r = match self.changed.wait_timeout(r, left) {
                Ok((guard, _)) => guard,
                Err(_) => return Vec::new(),
            };
        }
        r.alerts.iter().filter(|(s, _)| *s >= from).cloned().collect()
    }

    /// Ends every live stream (the server is going away).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// How often an idle stream sends a comment line: keeps proxies from
/// closing it and notices clients that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Serves one `text/event-stream` client until it disconnects or the
/// server stops: one `alert` event per alert, `id` = its sequence number.
/// `last_id` is the client's `Last-Event-ID` (resume after it), else only
/// new alerts are sent.
pub fn stream_to(mut out: impl Write, alerts: Arc<RecentAlerts>, last_id: Option<u64>) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
          Connection: close\r\nX-Accel-Buffering: no\r\n\r\nretry: 2000\n\n",
    )?;
    out.flush()?;
    let mut from = last_id.map_or_else(|| alerts.next_seq(), |id| id + 1);
    let mut quiet_since = Instant::now();
    loop {
        let batch = alerts.wait_from(from, Duration::from_secs(1));
        for (seq, alert) in &batch {
            let json = serde_json::to_string(alert).unwrap_or_default();
            write!(out, "id: {seq}\nevent: alert\ndata: {json}\n\n")?;
            from = seq + 1;
        }
        if !batch.is_empty() {
            out.flush()?;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= KEEPALIVE {
            out.write_all(b": keepalive\n\n")?;
            out.flush()?;
            quiet_since = Instant::now();
        }
        if alerts.stopping() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;
    use crate::window::engine::ClosedWindow;

    fn alert(product: &str, minute: u64) -> Alert {
        let start = minute as i64 * 60_000_000;
        let w = ClosedWindow {
            product: product.into(),
            category: "c".into(),
            start,
            end: start + 600_000_000,
            counts: Default::default(),
        };
        Alert::new(AlertStatus::Final, &w, None, 0)
    }

    #[test]
    fn the_ring_keeps_the_newest_and_filters() {
        let r = RecentAlerts::new(3);
        for (i, p) in ["a", "b", "a", "c"].iter().enumerate() {
            r.push(&alert(p, i as u64));
        }
        let all = r.query(None, None, 10);
        assert_eq!(all.iter().map(|a| a.product_id.as_str()).collect::<Vec<_>>(), ["c", "a", "b"]);
        assert_eq!(r.query(Some("a"), None, 10).len(), 1);
        assert_eq!(r.query(None, Some("final"), 1).len(), 1);
        assert!(r.query(None, Some("withdrawn"), 10).is_empty());
    }

    #[test]
    fn a_stream_sends_new_alerts_with_ids_and_resumes_after_the_last_id() {
        let r = Arc::new(RecentAlerts::new(10));
        r.push(&alert("old", 1));
        let (r2, r3) = (r.clone(), r.clone());
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            r2.push(&alert("new", 2));
            std::thread::sleep(Duration::from_millis(100));
            r2.stop();
        });
        let mut out = Vec::new();
        stream_to(&mut out, r3, None).unwrap();
        pusher.join().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"));
        assert!(text.contains("id: 2\nevent: alert\ndata: {"), "{text}");
        assert!(text.contains("\"product_id\":\"new\""));
        assert!(!text.contains("\"product_id\":\"old\""), "only alerts after the connection");

        let mut again = Vec::new();
        stream_to(&mut again, r, Some(0)).unwrap(); // stopped: replays the ring and returns
        let text = String::from_utf8(again).unwrap();
        assert!(text.contains("id: 1\n") && text.contains("id: 2\n"), "{text}");
    }
}
