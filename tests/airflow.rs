//! The daily DAG (airflow/dags/clickwatch_daily.py) run by a real Apache
//! Airflow from PyPI (venv made by airflow/venv.sh, cached outside the
//! clone): it imports without errors, a day with data produces verified
//! reports, a day without takes the no-data branch, the notification
//! webhook is called and old reports are cleaned up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("clickwatch")
}

/// The Airflow venv; fails loudly if it cannot be made.
fn venv() -> PathBuf {
    let out = Command::new("bash").arg(root().join("airflow/venv.sh")).output().expect("run airflow/venv.sh");
    assert!(out.status.success(), "making the Airflow venv failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Airflow {
    venv: PathBuf,
    home: PathBuf,
    data: PathBuf,
    notify_url: String,
}

impl Airflow {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(self.venv.join("bin").join(program));
        c.env("AIRFLOW_HOME", &self.home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", root().join("airflow/dags"))
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("AIRFLOW_VAR_CLICKWATCH_BIN", bin())
            .env("AIRFLOW_VAR_CLICKWATCH_ARCHIVE", self.data.join("archive"))
            .env("AIRFLOW_VAR_CLICKWATCH_REPORTS", self.data.join("reports"))
            .env("AIRFLOW_VAR_CLICKWATCH_RETENTION_DAYS", "30")
            .env("AIRFLOW_VAR_CLICKWATCH_NOTIFY_URL", &self.notify_url);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd("airflow").args(args).output().expect("run airflow");
        assert!(
            out.status.success(),
            "airflow {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Task id → state of the run of `date`.
    fn task_states(&self, date: &str) -> serde_json::Map<String, Value> {
        let runs = self.run(&["dags", "list-runs", "clickwatch_daily", "-o", "json"]);
        let runs: Value = serde_json::from_str(json_line(&runs.stdout)).unwrap();
        let run = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["logical_date"].as_str().is_some_and(|d| d.starts_with(date)))
            .unwrap_or_else(|| panic!("no run for {date}: {runs}"));
        let run_id = run["run_id"].as_str().unwrap();
        let states = self.run(&["tasks", "states-for-dag-run", "clickwatch_daily", run_id, "-o", "json"]);
        let states: Value = serde_json::from_str(json_line(&states.stdout)).unwrap();
        states
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["task_id"].as_str().unwrap().to_owned(), t["state"].clone()))
            .collect()
    }
}

/// The JSON document in a CLI's stdout (Airflow may print warnings first).
fn json_line(stdout: &[u8]) -> &str {
    let text = std::str::from_utf8(stdout).unwrap();
    text.lines().rev().find(|l| l.starts_with('[') || l.starts_with('{')).unwrap_or("[]")
}

/// A day of archived events for 2026-11-24.
fn archive(data: &Path) {
    let events = data.join("events.jsonl");
    let ok = Command::new(bin())
        .args(["generate", "--events", "20000", "--seed", "3", "--output"])
        .arg(&events)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new(bin())
        .args(["stream", "--no-console", "--input"])
        .arg(&events)
        .arg("--archive")
        .arg(data.join("archive"))
        .arg("--dead-letter")
        .arg(data.join("dead.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A local HTTP endpoint that records the JSON bodies POSTed to it.
fn notify_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", server.server_addr().to_ip().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            let _ = request.as_reader().read_to_string(&mut body);
            if let Ok(v) = serde_json::from_str(&body) {
                seen.lock().unwrap().push(v);
            }
            let _ = request.respond(tiny_http::Response::from_string("ok"));
        }
    });
    (url, bodies)
}

#[test]
fn the_daily_dag_runs_in_real_airflow_for_days_with_and_without_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    archive(&data);
    // Reports of earlier days: one past the 30-day retention, one within.
    for old in ["2026-10-01", "2026-11-20"] {
        std::fs::create_dir_all(data.join("reports").join(old)).unwrap();
        std::fs::write(data.join("reports").join(old).join("summary.txt"), "old").unwrap();
    }
    let (notify_url, notified) = notify_server();
    let af = Airflow { venv: venv(), home: tmp.path().join("airflow"), data: data.clone(), notify_url };
    af.run(&["db", "migrate"]);

    // The DAG file imports cleanly.
    let errors = af.run(&["dags", "list-import-errors", "--local", "-o", "json"]);
    let errors: Value = serde_json::from_str(json_line(&errors.stdout)).unwrap();
    assert_eq!(errors, serde_json::json!([]), "DAG import errors");
    let dags = af.run(&["dags", "list", "--local", "-o", "json"]);
    assert!(json_line(&dags.stdout).contains("\"clickwatch_daily\""), "the DAG is not listed");

    // A day with data: batch → verified reports → notify → cleanup.
    af.run(&["dags", "test", "clickwatch_daily", "2026-11-24"]);
    let day = data.join("reports/2026-11-24");
    for f in ["segment_summary.csv", "user_segments.csv", "top_products.csv", "conversion_rates.csv", "summary.txt"] {
        assert!(day.join(f).is_file(), "{f} missing");
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(day.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["date"], "2026-11-24");
    assert_eq!(report["event_count"], 20000);
    // The same reports as running clickwatch by hand.
    let direct = tmp.path().join("direct");
    let out = Command::new(bin())
        .args(["batch", "--date", "2026-11-24", "--archive"])
        .arg(data.join("archive"))
        .arg("--reports")
        .arg(&direct)
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in ["segment_summary.csv", "top_products.csv", "conversion_rates.csv", "user_segments.csv"] {
        assert_eq!(
            std::fs::read_to_string(day.join(f)).unwrap(),
            std::fs::read_to_string(direct.join("2026-11-24").join(f)).unwrap(),
            "{f} differs from a direct run"
        );
    }
    let states = af.task_states("2026-11-24");
    assert_eq!(states["run_batch"], "success", "{states:?}");
    assert_eq!(states["verify_reports"], "success", "{states:?}");
    assert_eq!(states["no_data"], "skipped", "{states:?}");
    assert_eq!(states["cleanup"], "success", "{states:?}");
    assert!(!data.join("reports/2026-10-01").exists(), "reports past the retention are removed");
    assert!(data.join("reports/2026-11-20").exists(), "recent reports are kept");

    // A day without data: the no-data branch, no report, still a success.
    af.run(&["dags", "test", "clickwatch_daily", "2026-11-10"]);
    let states = af.task_states("2026-11-10");
    assert_eq!(states["no_data"], "success", "{states:?}");
    assert_eq!(states["run_batch"], "skipped", "{states:?}");
    assert_eq!(states["notify"], "success", "{states:?}");
    assert!(!data.join("reports/2026-11-10").exists());

    let notified = notified.lock().unwrap().clone();
    assert_eq!(notified.len(), 2, "one notification per run: {notified:?}");
    assert_eq!(notified[0]["status"], "ok");
    assert_eq!(notified[0]["events"], 20000);
    assert_eq!(notified[1]["status"], "no data");
    assert_eq!(notified[1]["date"], "2026-11-10");
}

#[test]
fn docker_compose_refers_to_files_that_exist() {
    // PyYAML comes with Airflow; no Docker engine runs here, so the file is
    // checked for what can be checked without one.
    let out = Command::new(venv().join("bin/python"))
        .arg(root().join("tests/py/check_compose.py"))
        .arg(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-compose.yaml check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
