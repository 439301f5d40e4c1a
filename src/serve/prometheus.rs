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

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
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
    o.family("clickwatch_window_state_cells", "gauge", "(product, pane) cells of the open windows, all workers.");
    o.sample("clickwatch_window_state_cells", &[], m.window_cells.load(std::sync::atomic::Ordering::Relaxed));
    o.family("clickwatch_dedup_ids", "gauge", "Event ids remembered for de-duplication (last L + D of event time).");
    o.sample("clickwatch_dedup_ids", &[], m.dedup_ids.load(std::sync::atomic::Ordering::Relaxed));
    if let Some(rss) = resident_bytes() {
        o.family("clickwatch_process_resident_bytes", "gauge", "Resident memory of this process.");
        o.sample("clickwatch_process_resident_bytes", &[], rss);
    }
    let w = m.watermark.load(std::sync::atomic::Ordering::Relaxed);
    if w > 0 {
        o.family("clickwatch_watermark_seconds", "gauge", "The input frontier (event time), Unix seconds.");
        o.sample("clickwatch_watermark_seconds", &[], w as f64 / 1e6);
        o.family("clickwatch_watermark_lag_seconds", "gauge", "Wall clock minus the watermark.");
        o.sample("clickwatch_watermark_lag_seconds", &[], (now_micros() - w) as f64 / 1e6);
    }
    let partitions = m.partition_stats();
    if !partitions.is_empty() {
        o.family("clickwatch_partition_watermark_seconds", "gauge", "Per source partition: W_p, Unix seconds.");
        for (p, s) in &partitions {
            if let Some(w) = s.watermark {
                o.sample("clickwatch_partition_watermark_seconds", &[("partition", &p.to_string())], w as f64 / 1e6);
            }
        }
        o.family("clickwatch_partition_watermark_lag_seconds", "gauge", "Per source partition: wall clock minus W_p.");
        for (p, s) in &partitions {
            if let Some(w) = s.watermark {
                let lag = (now_micros() - w) as f64 / 1e6;
                o.sample("clickwatch_partition_watermark_lag_seconds", &[("partition", &p.to_string())], lag);
            }
        }
        o.family("clickwatch_kafka_consumer_lag", "gauge", "Per Kafka partition: messages behind its end.");
        for (p, s) in &partitions {
            if let Some(lag) = s.lag {
                o.sample("clickwatch_kafka_consumer_lag", &[("partition", &p.to_string())], lag);
            }
        }
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
