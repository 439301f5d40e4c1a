//! The webhook alert sink against a real local HTTP server (tiny_http on
//! 127.0.0.1): healthy, failing-then-recovering, slow, and dead endpoints.
//! Every alert must end up either delivered or in the spill file, and the
//! stream must finish (exit 0) whatever the endpoint does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assert_cmd::Command;

const INPUT: &str = "tests/golden/basic/input.jsonl";
const ALERTS: usize = 4; // what tests/golden/basic raises with these thresholds

#[derive(Clone, Copy)]
enum Behaviour {
    Ok,
    FailFirst(usize),
    Slow(Duration),
}

/// Bodies of the requests answered with 200.
type Bodies = Arc<Mutex<Vec<String>>>;
/// Requests received, whatever the answer.
type Attempts = Arc<Mutex<usize>>;

/// Starts a server that answers per `behaviour`; returns its URL, the
/// delivered bodies and the number of attempts.
fn server(behaviour: Behaviour) -> (String, Bodies, Attempts) {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1");
    let url = format!("http://{}/alerts", server.server_addr().to_ip().expect("ip address"));
    let got = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0usize));
    let (got2, attempts2) = (got.clone(), attempts.clone());
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            let n = {
                let mut a = attempts2.lock().unwrap();
                *a += 1;
                *a
            };
            let status = match behaviour {
                Behaviour::Ok => 200,
                Behaviour::FailFirst(k) if n <= k => 500,
                Behaviour::FailFirst(_) => 200,
                Behaviour::Slow(d) => {
                    std::thread::sleep(d);
                    200
                }
            };
            if status == 200 {
                assert_eq!(req.method(), &tiny_http::Method::Post);
                got2.lock().unwrap().push(body);
            }
            let _ = req.respond(tiny_http::Response::empty(status));
        }
    });
    (url, got, attempts)
}

fn run(dir: &Path, url: &str, settings: &str) -> (Vec<String>, Vec<String>, String) {
    let cfg = dir.join("c.toml");
    let spill = dir.join("spill.jsonl");
    std::fs::write(
        &cfg,
        format!("[alert]\nmin_views = 3\nmax_purchases = 2\n[sinks.webhook]\nurl = \"{url}\"\nspill_file = \"{}\"\n{settings}\n", spill.display()),
    )
    .unwrap();
    let alerts = dir.join("alerts.jsonl");
    let out = Command::cargo_bin("clickwatch")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["stream", "--no-console", "--input", INPUT, "--config"])
        .arg(&cfg)
        .arg("--alerts-file")
        .arg(&alerts)
        .arg("--dead-letter")
        .arg(dir.join("d.jsonl"))
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let read = |p: &PathBuf| -> Vec<String> {
        std::fs::read_to_string(p).unwrap_or_default().lines().map(String::from).collect()
    };
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    (read(&alerts), read(&spill), stderr)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn healthy_endpoint_receives_every_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, got, _) = server(Behaviour::Ok);
    let (alerts, spill, stderr) = run(tmp.path(), &url, "");
    assert_eq!(alerts.len(), ALERTS);
    assert!(spill.is_empty());
    assert_eq!(sorted(got.lock().unwrap().clone()), sorted(alerts), "bodies are the alert JSON lines");
    assert!(stderr.contains(&format!("{ALERTS} delivered, 0 spilled")), "{stderr}");
}

#[test]
fn failing_endpoint_is_retried_with_backoff() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, got, attempts) = server(Behaviour::FailFirst(3));
    let (alerts, spill, _) = run(tmp.path(), &url, "retries = 5\nbackoff = \"20ms\"");
    assert!(spill.is_empty(), "retries should have delivered everything: {spill:?}");
    assert_eq!(sorted(got.lock().unwrap().clone()), sorted(alerts));
    assert_eq!(*attempts.lock().unwrap(), ALERTS + 3);
}

#[test]
fn slow_endpoint_times_out_and_alerts_are_spilled() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _, _) = server(Behaviour::Slow(Duration::from_secs(3)));
    let (alerts, spill, stderr) = run(tmp.path(), &url, "timeout = \"100ms\"\nretries = 1\nbackoff = \"10ms\"");
    assert_eq!(sorted(spill), sorted(alerts));
    assert!(stderr.contains(&format!("0 delivered, {ALERTS} spilled")), "{stderr}");
}

#[test]
fn dead_endpoint_never_stalls_and_spills_everything() {
    let tmp = tempfile::tempdir().unwrap();
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/alerts");
    let (alerts, spill, _) = run(tmp.path(), &url, "retries = 2\nbackoff = \"10ms\"\nqueue = 1");
    assert_eq!(alerts.len(), ALERTS);
    assert_eq!(sorted(spill), sorted(alerts), "every undeliverable alert is in the spill file");
}
