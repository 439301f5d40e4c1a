//! The real `clickwatch` binary: determinism across worker counts on a
//! generated stream with disorder, late events, duplicates and malformed
//! lines; exit codes and error messages; configuration layering.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn clickwatch() -> Command {
    Command::cargo_bin("clickwatch").expect("binary built")
}

/// Lines of a JSONL file with the given fields removed, in file order.
fn lines_without(path: &Path, drop: &[&str]) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l).expect("JSON line");
            for k in drop {
                v.remove(*k);
            }
            serde_json::Value::Object(v).to_string()
        })
        .collect()
}

fn generate(dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    let input = dir.join("events.jsonl");
    clickwatch()
        .args(["generate", "--events", "300000", "--seed", "11", "--span", "6h", "--output"])
        .arg(&input)
        .args(extra)
        .assert()
        .success();
    input
}

fn stream(input: &Path, out: &Path, workers: usize, extra: &[&str]) {
    clickwatch()
        .arg("stream")
        .arg("--input")
        .arg(input)
        .arg("--alerts-file")
        .arg(out.join("alerts.jsonl"))
        .arg("--window-counts")
        .arg(out.join("windows.jsonl"))
        .arg("--dead-letter")
        .arg(out.join("dead.jsonl"))
        .args(["--no-console", "-w", &workers.to_string()])
        .args(extra)
        .assert()
        .success()
        .stderr(predicate::str::contains("windows closed"));
}

#[test]
fn workers_1_2_4_give_identical_alerts_and_window_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let input = generate(
        tmp.path(),
        &["--late-share", "0.01", "--duplicate-share", "0.01", "--malformed-share", "0.01", "--jitter", "2m"],
    );
    let mut runs = Vec::new();
    for workers in [1, 2, 4] {
        let out = tmp.path().join(format!("w{workers}"));
        stream(&input, &out, workers, &[]);
        let alerts = lines_without(&out.join("alerts.jsonl"), &["emitted_at", "watermark"]);
        let windows = lines_without(&out.join("windows.jsonl"), &[]);
        let mut dead = lines_without(&out.join("dead.jsonl"), &["received_at"]);
        dead.sort();
        runs.push((alerts, windows, dead));
    }
    let (alerts, windows, dead) = &runs[0];
    assert!(alerts.len() > 50, "the skewed profile must raise alerts, got {}", alerts.len());
    assert!(windows.len() > 10_000);
    assert!(dead.iter().any(|l| l.contains("\"reason\":\"late\"")), "late events expected");
    assert!(dead.iter().any(|l| l.contains("\"reason\":\"not_json\"")), "malformed lines expected");
    for (i, run) in runs.iter().enumerate().skip(1) {
        assert!(run == &runs[0], "run {i} differs from the 1-worker run");
    }
    // on_close order: by window end, then product.
    let keys: Vec<(String, String)> = alerts
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["window_end"].as_str().unwrap().to_owned(), v["product_id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "alerts not in (window_end, product) order");
}

#[test]
fn nothing_is_lost_valid_plus_refused_equals_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let input = generate(tmp.path(), &["--malformed-share", "0.02"]);
    let out = tmp.path().join("out");
    let assert = clickwatch()
        .arg("stream")
        .arg("--input")
        .arg(&input)
        .arg("--dead-letter")
        .arg(out.join("dead.jsonl"))
        .arg("--no-console")
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let events: u64 = stderr
        .split("stream: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("event count in summary");
    let dead = std::fs::read_to_string(out.join("dead.jsonl")).unwrap().lines().count() as u64;
    let lines = std::fs::read(&input).unwrap().split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    assert!(dead > 1000, "malformed lines must be dead-lettered, got {dead}");
    assert_eq!(events + dead, lines, "every line is either a valid event or a dead letter");
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    clickwatch()
        .args(["stream", "--window", "7m", "--input"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("window.length").and(predicate::str::contains("multiple of window.slide")));
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[window]\nsilde = \"5m\"\n").unwrap();
    clickwatch()
        .args(["stream", "--config"])
        .arg(&cfg)
        .arg("--input")
        .arg(&input)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("silde"));
    clickwatch().args(["stream", "--bogus-flag"]).assert().code(2);
    clickwatch().args(["stream", "--emit", "sometimes", "--input"]).arg(&input).assert().code(2);
}

#[test]
fn missing_input_exits_1_with_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let assert = clickwatch()
        .args(["stream", "--no-console", "--input", "/nonexistent/events.jsonl", "--dead-letter"])
        .arg(tmp.path().join("d.jsonl"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("clickwatch: error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("/nonexistent/events.jsonl"), "{stderr}");
}

#[test]
fn config_file_env_and_flags_layer_in_that_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/basic");
    let cfg = tmp.path().join("c.toml");
    // The file asks for a threshold that raises nothing; env and flag lower it.
    std::fs::write(&cfg, "[alert]\nmin_views = 1000\nmax_purchases = 2\n[sinks]\nconsole = false\n").unwrap();
    let count = |envs: &[(&str, &str)], flags: &[&str]| {
        let alerts = tmp.path().join("a.jsonl");
        let mut cmd = clickwatch();
        cmd.arg("stream").arg("--config").arg(&cfg).arg("--input").arg(dir.join("input.jsonl"));
        cmd.arg("--alerts-file").arg(&alerts).arg("--dead-letter").arg(tmp.path().join("d.jsonl"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.args(flags).assert().success().stdout(predicate::str::is_empty());
        std::fs::read_to_string(&alerts).unwrap().lines().count()
    };
    assert_eq!(count(&[], &[]), 0);
    assert_eq!(count(&[("CLICKWATCH_MIN_VIEWS", "3")], &[]), 4);
    assert_eq!(count(&[("CLICKWATCH_MIN_VIEWS", "3")], &["--min-views", "1000"]), 0);
}

#[test]
fn console_prints_the_seed_format_and_stdin_works() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/basic");
    let tmp = tempfile::tempdir().unwrap();
    clickwatch()
        .args(["stream", "--input", "-", "--min-views", "3", "--max-purchases", "2", "--dead-letter"])
        .arg(tmp.path().join("d.jsonl"))
        .pipe_stdin(dir.join("input.jsonl"))
        .unwrap()
        .assert()
        .success()
        .stdout(
            predicate::str::contains("FLASH SALE ALERT")
                .and(predicate::str::contains("Product ID: p1"))
                .and(predicate::str::contains("Conversion Rate: 25.00%")),
        );
}

#[test]
fn generate_is_deterministic_and_validates() {
    let a = clickwatch().args(["generate", "--events", "5000", "--seed", "3"]).output().unwrap();
    let b = clickwatch().args(["generate", "--events", "5000", "--seed", "3"]).output().unwrap();
    let c = clickwatch().args(["generate", "--events", "5000", "--seed", "4"]).output().unwrap();
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
    assert_eq!(a.stdout.iter().filter(|b| **b == b'\n').count(), 5000);
    clickwatch()
        .args(["generate", "--events", "10", "--profile", "zipfy"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("profile"));
    clickwatch()
        .args(["generate", "--events", "10", "--late-share", "1.5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("late"));
}

#[test]
fn two_process_cluster_matches_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let input = generate(tmp.path(), &["--jitter", "1m", "--late-share", "0.005"]);
    let single = tmp.path().join("single");
    stream(&input, &single, 1, &[]);

    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).unwrap();
    let cluster = tmp.path().join("cluster");
    let spawn = |p: usize| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("clickwatch"))
            .arg("stream")
            .arg("--input")
            .arg(&input)
            .arg("--alerts-file")
            .arg(cluster.join("alerts.jsonl"))
            .arg("--window-counts")
            .arg(cluster.join("windows.jsonl"))
            .arg("--dead-letter")
            .arg(cluster.join("dead.jsonl"))
            .args(["--no-console", "-w", "2", "-n", "2", "-p", &p.to_string(), "-h"])
            .arg(&hosts)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn cluster process")
    };
    let procs = [spawn(0), spawn(1)];
    for child in procs {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for (file, drop) in [("alerts.jsonl", &["emitted_at", "watermark"][..]), ("windows.jsonl", &[][..])] {
        let a = lines_without(&single.join(file), drop);
        assert!(!a.is_empty());
        assert_eq!(a, lines_without(&cluster.join(file), drop), "{file}");
    }
}

#[test]
fn generate_rate_limits_output() {
    let started = std::time::Instant::now();
    let out = clickwatch().args(["generate", "--events", "600", "--rate", "1000"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), 600);
    // 600 lines at 1000/s cannot take less than ~0.5 s if the limit works.
    assert!(started.elapsed() >= std::time::Duration::from_millis(450), "{:?}", started.elapsed());
}

#[test]
fn schedule_runs_the_daily_batch_at_its_time_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    // Run 3 seconds from now; it reports the UTC day before the run.
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let day = at.date_naive() - chrono::Duration::days(1);
    let input = dir.path().join("events.jsonl");
    clickwatch()
        .args(["generate", "--events", "5000", "--start", &format!("{day}T00:00:00Z"), "--output"])
        .arg(&input)
        .assert()
        .success();
    clickwatch()
        .args(["stream", "--no-console", "--input"])
        .arg(&input)
        .arg("--archive")
        .arg(dir.path().join("archive"))
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .assert()
        .success();
    let reports = dir.path().join("reports");
    let old = day - chrono::Duration::days(31);
    std::fs::create_dir_all(reports.join(old.to_string())).unwrap();
    let started = std::time::Instant::now();
    clickwatch()
        .args(["schedule", "--runs", "1", "--retention-days", "30", "--at", &at.format("%H:%M:%S").to_string()])
        .arg("--archive")
        .arg(dir.path().join("archive"))
        .arg("--reports")
        .arg(&reports)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success()
        .stderr(predicate::str::contains("next daily batch at"));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "it waited for its time");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join(day.to_string()).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["event_count"], 5000);
    assert!(!reports.join(old.to_string()).exists(), "reports past the retention are removed");
}

/// The process's `THP_enabled` flag (`/proc/PID/status`) once `generate`
/// has printed its first event, so `main` has certainly begun.
#[cfg(target_os = "linux")]
fn huge_pages_enabled(allow_thp: Option<&str>) -> String {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("clickwatch"));
    cmd.args(["generate", "--events", "100", "--rate", "10"]).stdout(std::process::Stdio::piped());
    cmd.env_remove("MIMALLOC_ALLOW_THP");
    if let Some(v) = allow_thp {
        cmd.env("MIMALLOC_ALLOW_THP", v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("event_id"), "{first}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("kernel reports THP_enabled");
    line["THP_enabled:".len()..].trim().to_string()
}

#[cfg(target_os = "linux")]
#[test]
fn transparent_huge_pages_are_off_unless_the_operator_allows_them() {
    assert_eq!(huge_pages_enabled(None), "0");
    assert_eq!(huge_pages_enabled(Some("1")), "1");
}
