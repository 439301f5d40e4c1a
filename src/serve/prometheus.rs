//! `/metrics`: every counter of [`Metrics`] in the Prometheus text format
//! (version 0.0.4). The names are defined here, in one place; each series
//! has its `# HELP` and `# TYPE` lines.

use std::fmt::Write;

use crate::alert::AlertStatus;
use crate::event::timestamp::now_micros;
use crate::event::{EventKind, Reason};
use crate::metrics::Metrics;

const KINDS: [(EventKind, &str); 4] = [
    (EventKind::View, "view"),
    (EventKind::AddToCart, "add_to_cart"),
    (EventKind::Purchase, "purchase"),
    (EventKind::Other, "other"),
];
const STATUSES: [AlertStatus; 3] = [AlertStatus::Final, AlertStatus::Provisional, AlertStatus::Withdrawn];

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.0, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// One gauge family with a sample per partition that has a value.
    fn per_partition<V: std::fmt::Display>(
        &mut self,
        name: &str,
        help: &str,
        values: impl Iterator<Item = (u32, Option<V>)>,
    ) {
        self.family(name, "gauge", help);
        for (p, v) in values {
            if let Some(v) = v {
                self.sample(name, &[("partition", &p.to_string())], v);
            }
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(m: &Metrics) -> String {
    let mut o = Out(String::with_capacity(4096));
    o.family("clickwatch_events_total", "counter", "Valid events read, by event type.");
    for (kind, label) in KINDS {
        o.sample("clickwatch_events_total", &[("type", label)], m.events(kind));
    }
    o.family("clickwatch_dead_letters_total", "counter", "Refused inputs and late events, by reason.");
    for reason in Reason::ALL {
        o.sample("clickwatch_dead_letters_total", &[("reason", reason.as_str())], m.dead(reason));
    }
    o.counter("clickwatch_late_events_total", "Events in no open window (late or late_after_idle).", m.late());
    o.counter(
        "clickwatch_duplicates_total",
        "Repeated event_ids dropped from the counts.",
        Metrics::get(&m.duplicates),
    );
    o.counter("clickwatch_input_bytes_total", "Bytes of input read.", Metrics::get(&m.bytes_in));
    o.counter("clickwatch_windows_closed_total", "(window, product) pairs closed.", Metrics::get(&m.windows_closed));
    o.family("clickwatch_alerts_total", "counter", "Alerts emitted, by status.");
    for status in STATUSES {
        o.sample("clickwatch_alerts_total", &[("status", status.as_str())], m.alerts_of(status));
    }
    o.counter(
        "clickwatch_webhook_delivered_total",
        "Alerts delivered to the webhook.",
        Metrics::get(&m.webhook_delivered),
    );
    o.counter(
        "clickwatch_webhook_spilled_total",
        "Alerts spilled to the webhook spill file.",
        Metrics::get(&m.webhook_spilled),
    );
    o.counter("clickwatch_archive_rows_total", "Rows committed to the Parquet archive.", Metrics::get(&m.archive_rows));
    o.counter("clickwatch_archive_files_total", "Parquet files committed.", Metrics::get(&m.archive_files));
    o.counter("clickwatch_archive_bytes_total", "Bytes of Parquet committed.", Metrics::get(&m.archive_bytes));
    o.counter(
        "clickwatch_archive_busy_seconds_total",
        "Time the archive thread spent encoding and committing (a rate near 1: the archive is the bottleneck).",
        Metrics::seconds(&m.archive_busy_micros),
    );
    o.counter(
        "clickwatch_archive_backpressure_seconds_total",
        "Time the speed layer waited for room in the archive's queue.",
        Metrics::seconds(&m.archive_wait_micros),
    );
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let cells_help = "(product, pane) cells of the open windows, all workers.";
    o.gauge("clickwatch_window_state_cells", cells_help, m.window_cells.load(relaxed));
    let ids_help = "Event ids remembered for de-duplication (last L + D of event time).";
    o.gauge("clickwatch_dedup_ids", ids_help, m.dedup_ids.load(relaxed));
    if let Some(rss) = resident_bytes() {
        o.gauge("clickwatch_process_resident_bytes", "Resident memory of this process.", rss);
    }
    let now = now_micros();
    let w = m.watermark.load(relaxed);
    if w > 0 {
        o.gauge("clickwatch_watermark_seconds", "The input frontier (event time), Unix seconds.", w as f64 / 1e6);
        o.gauge("clickwatch_watermark_lag_seconds", "Wall clock minus the watermark.", (now - w) as f64 / 1e6);
    }
    let partitions = m.partition_stats();
    if !partitions.is_empty() {
        let stats = || partitions.iter().map(|(p, s)| (*p, s));
        o.per_partition(
            "clickwatch_partition_watermark_seconds",
            "Per source partition: W_p, Unix seconds.",
            stats().map(|(p, s)| (p, s.watermark.map(|w| w as f64 / 1e6))),
        );
        o.per_partition(
            "clickwatch_partition_watermark_lag_seconds",
            "Per source partition: wall clock minus W_p.",
            stats().map(|(p, s)| (p, s.watermark.map(|w| (now - w) as f64 / 1e6))),
        );
        o.per_partition(
            "clickwatch_kafka_consumer_lag",
            "Per Kafka partition: messages behind its end.",
            stats().map(|(p, s)| (p, s.lag)),
        );
    }
    o.0
}

/// Resident set size from `/proc/self/statm` (Linux), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_labels_are_escaped() {
        let m = Metrics::default();
        m.add_events(EventKind::View, 3);
        m.observe_partition_lag(2, 7, 100);
        let text = render(&m);
        assert!(text.contains("clickwatch_events_total{type=\"view\"} 3\n"), "{text}");
        assert!(text.contains("clickwatch_kafka_consumer_lag{partition=\"2\"} 7\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
        }
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
