//! `clickwatch demo`: the embedded pipeline end to end on one machine, no
//! Kafka, no Airflow: generate a realistic skewed day, stream it through
//! the speed layer, show the alerts and say where every output is.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::alert::Alert;
use crate::cli::{ClusterArgs, DemoArgs};
use crate::config::StreamConfig;
use crate::generate::{GenerateConfig, Profile};
use crate::serve::{HttpServer, Hub};
use crate::sources::lines::LineInput;

use super::{generate, stream};

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let events = out.join("events.jsonl");

    // A day of skewed traffic with the imperfections real feeds have.
    let gen = GenerateConfig {
        events: args.events,
        seed: args.seed,
        profile: Profile::Skewed,
        late_share: 0.001,
        duplicate_share: 0.001,
        malformed_share: 0.0005,
        ..GenerateConfig::default()
    };
    let t = Instant::now();
    let stats = generate::write(&gen, &events.to_string_lossy())?;
    println!(
        "demo: generated {} events ({} malformed, {} duplicates, {} late) in {:.1}s -> {}",
        stats.lines,
        stats.malformed,
        stats.duplicates,
        stats.late,
        t.elapsed().as_secs_f64(),
        events.display()
    );

    let mut config = StreamConfig::default();
    config.sinks.console = args.verbose;
    config.sinks.alerts_file = Some(out.join("alerts.jsonl"));
    config.sinks.dead_letter = out.join("dead-letters.jsonl");
    config.sinks.late_file = Some(out.join("late-events.jsonl"));
    config.sinks.window_counts = Some(out.join("window-counts.jsonl"));
    // A fresh archive each run, so the demo's numbers are its own.
    let archive = out.join("archive");
    if archive.exists() {
        std::fs::remove_dir_all(&archive).with_context(|| format!("clearing {}", archive.display()))?;
    }
    config.archive = Some(crate::archive::ArchiveConfig::new(archive.clone()));
    let reports = out.join("reports");
    let cluster = ClusterArgs { workers: args.workers, processes: 1, process: 0, hostfile: None };
    let (hub, server) = dashboard(args, &mut config, &reports, &cluster)?;
    let t = Instant::now();
    let metrics = stream::execute(&config, Some(LineInput::File(events.clone())), &cluster, &hub, &Default::default())?;
    let secs = t.elapsed().as_secs_f64();
    println!("{}", stream::summary(&metrics, secs, &config));

    let alerts = read_alerts(&out.join("alerts.jsonl"))?;
    print_alert_table(&alerts);

    // The batch layer over the archive the stream just wrote.
    let t = Instant::now();
    let day = crate::archive::parquet::event_date(gen.start_ms * 1000); // the generated day
    let report = crate::batch::run_day(&archive, &day)?;
    let dir = crate::batch::report::write(&reports, &report)?;
    println!("\ndemo: batch for {day} in {:.1}s:\n", t.elapsed().as_secs_f64());
    print!("{}", crate::batch::report::summary_text(&report));
    println!("\ndemo: outputs in {}:", out.display());
    for (name, what) in [
        ("events.jsonl", "generated input"),
        ("alerts.jsonl", "flash-sale alerts, one JSON object per line"),
        ("window-counts.jsonl", "counts of every closed (window, product)"),
        ("dead-letters.jsonl", "refused input with reasons"),
        ("late-events.jsonl", "events that arrived after their windows closed"),
        ("archive/", "Parquet archive, events/event_date=YYYY-MM-DD/part-*.parquet (DuckDB, Spark, pyarrow)"),
        ("reports/", "daily batch reports: CSVs, summary.txt, report.json, report.html"),
    ] {
        println!("  {:<40} {what}", out.join(name).display().to_string());
    }
    println!("\ndemo: open {} in a browser for the day's charts", dir.join("report.html").display());
    if let Some(s) = &server {
        if args.hold {
            println!("demo: the dashboard stays up at {} (Ctrl-C to stop)", s.url());
            loop {
                std::thread::park();
            }
        }
        println!("demo: the dashboard was at {} (add --hold to keep it up after the run)", s.url());
    }
    Ok(())
}

/// Starts the live dashboard on `args.http`, or on a free port when that
/// one is taken; prints its URL.
fn dashboard(
    args: &DemoArgs,
    config: &mut StreamConfig,
    reports: &Path,
    cluster: &ClusterArgs,
) -> anyhow::Result<(Hub, Option<HttpServer>)> {
    if args.no_dashboard {
        return stream::serve(config, None, cluster);
    }
    config.http.addr = Some(args.http.clone());
    config.http.reports = Some(reports.to_path_buf());
    let served = stream::serve(config, None, cluster).or_else(|e| {
        let Some(addr) = config.http.socket_addr()? else { return Err(e) };
        eprintln!("demo: {addr} is taken ({e:#}); using a free port");
        config.http.addr = Some(format!("{}:0", addr.ip()));
        stream::serve(config, None, cluster)
    })?;
    if let Some(s) = &served.1 {
        println!("demo: live dashboard at {}", s.url());
    }
    Ok(served)
}

fn read_alerts(path: &Path) -> anyhow::Result<Vec<Alert>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad alert line in {}: {l}", path.display())))
        .collect()
}

fn print_alert_table(alerts: &[Alert]) {
    println!("\ndemo: {} flash-sale alerts; the 10 with most views:", alerts.len());
    println!(
        "  {:<10} {:<12} {:<22} {:>6} {:>6} {:>9} {:>6}",
        "product", "category", "window start", "views", "carts", "purchases", "conv%"
    );
    let mut top: Vec<&Alert> = alerts.iter().collect();
    top.sort_by(|a, b| b.views.cmp(&a.views).then(a.window_start.cmp(&b.window_start)));
    for a in top.iter().take(10) {
        println!(
            "  {:<10} {:<12} {:<22} {:>6} {:>6} {:>9} {:>6.2}",
            a.product_id, a.category, a.window_start, a.views, a.carts, a.purchases, a.conversion_rate
        );
    }
}
