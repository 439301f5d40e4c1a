//! The serving layer over real HTTP: metrics, the alerts and windows API,
//! authentication, `POST /collect` as a source (every accepted event
//! archived exactly once, refused ones dead-lettered, bad requests refused
//! whole), and the dashboard in headless Chromium.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("clickwatch")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// (status, body) of a GET; `token` adds the bearer header.
fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().expect("HTTP GET");
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
}

/// (status, body) of a POST with a content type.
fn post(url: &str, token: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut resp = agent()
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", content_type)
        .send(body)
        .expect("HTTP POST");
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Waits for the "serving http://…" line on stderr; the rest of stderr is
/// collected on a thread and returned by the handle.
fn wait_serving(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("serving http://") {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not start:\n{seen}");
    }
    std::thread::spawn(move || lines.map_while(Result::ok).fold(seen, |acc, l| acc + &l + "\n"))
}

fn generate(path: &Path, events: u32, malformed: f64) {
    let out = Command::new(bin())
        .args(["generate", "--events", &events.to_string(), "--seed", "9", "--span", "3h"])
        .args(["--malformed-share", &malformed.to_string(), "--output"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn metrics_alerts_windows_and_auth_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    generate(&events, 60_000, 0.01);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(bin())
        .current_dir(dir.path())
        .args(["stream", "--input", "-", "--no-console", "--http", &port.to_string(), "--http-token", "s3cret"])
        .args(["--archive", "archive"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = wait_serving(&mut child);
    // Feed everything but keep stdin open: the stream stays live.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&events).unwrap()).unwrap();
    stdin.flush().unwrap();
    let t = Some("s3cret");

    // Alerts appear in the API as windows close.
    let deadline = Instant::now() + Duration::from_secs(60);
    let alerts = loop {
        let (status, body) = get(&format!("{base}/api/alerts"), t);
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            break v;
        }
        assert!(Instant::now() < deadline, "no alert served within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(alerts[0]["rule"], "flash_sale");
    let product = alerts[0]["product_id"].as_str().unwrap();
    let filtered = json(&get(&format!("{base}/api/alerts?product_id={product}&limit=1"), t).1);
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["product_id"], product);
    assert_eq!(get(&format!("{base}/api/alerts?status=withdrawn"), t).1, "[]");
    assert_eq!(get(&format!("{base}/api/alerts?limit=zero"), t).0, 400);
    assert_eq!(get(&format!("{base}/api/alerts?status=bogus"), t).0, 400);

    // Wait until the stream has read all of it.
    let size = std::fs::metadata(&events).unwrap().len() as f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&get(&format!("{base}/metrics"), t).1, "clickwatch_input_bytes_total") < size {
        assert!(Instant::now() < deadline, "the input was not read within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Window state, asked of the workers: the top products of the next
    // window to close, ranked by views, and one product's open windows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let top = loop {
        let v = json(&get(&format!("{base}/api/windows?top=5"), t).1);
        if v["open"].as_array().is_some_and(|o| o.len() == 5) {
            break v;
        }
        assert!(Instant::now() < deadline, "no open windows: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(top["live"], true);
    let views: Vec<u64> = top["open"].as_array().unwrap().iter().map(|w| w["views"].as_u64().unwrap()).collect();
    assert!(views.windows(2).all(|p| p[0] >= p[1]) && views[0] > 0, "ranked by views: {views:?}");
    assert!(!top["closed"].as_array().unwrap().is_empty(), "recently closed windows: {top}");
    let first = &top["open"][0];
    let one = json(&get(&format!("{base}/api/windows?product_id={}", first["product_id"].as_str().unwrap()), t).1);
    let same = one["open"].as_array().unwrap().iter().find(|w| w["window_end"] == first["window_end"]);
    assert_eq!(same.map(|w| &w["views"]), Some(&first["views"]), "{one}");
    assert_eq!(get(&format!("{base}/api/windows?top=0"), t).0, 400);

    // Prometheus text with the counters of this run.
    let (status, metrics) = get(&format!("{base}/metrics"), t);
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE clickwatch_events_total counter"), "{metrics}");
    assert!(metric(&metrics, "clickwatch_events_total{type=\"view\"}") > 10_000.0);
    assert!(metric(&metrics, "clickwatch_dead_letters_total{reason=\"not_json\"}") > 0.0);
    assert!(metric(&metrics, "clickwatch_alerts_total{status=\"final\"}") >= alerts.as_array().unwrap().len() as f64);
    assert!(metric(&metrics, "clickwatch_partition_watermark_seconds{partition=\"0\"}") > 1.7e9);
    assert!(metrics.contains("clickwatch_watermark_lag_seconds "), "{metrics}");
    // The archive's writer counts the time it works on what was read.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&get(&format!("{base}/metrics"), t).1, "clickwatch_archive_busy_seconds_total") <= 0.0 {
        assert!(Instant::now() < deadline, "the archive writer's busy time stayed 0");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metrics.contains("# TYPE clickwatch_archive_backpressure_seconds_total counter"), "{metrics}");
    let stats = json(&get(&format!("{base}/api/stats"), t).1);
    assert!(stats["events"].as_u64().unwrap() > 50_000, "{stats}");

    // The dashboard page, with the token as a query parameter (browsers).
    let (status, page) = get(&format!("{base}/?token=s3cret"), None);
    assert_eq!(status, 200);
    assert!(page.contains("<title>clickwatch") && !page.contains("http://") && !page.contains("https://"));

    // Auth: health is open, everything else needs the token.
    let (status, health) = get(&format!("{base}/api/health"), None);
    assert_eq!(status, 200);
    assert_eq!(json(&health)["status"], "ok");
    for path in ["/metrics", "/", "/api/alerts", "/api/windows", "/api/stats", "/api/alerts/stream", "/api/reports"] {
        assert_eq!(get(&format!("{base}{path}"), None).0, 401, "{path} without a token");
        assert_eq!(get(&format!("{base}{path}"), Some("wrong")).0, 401, "{path} with a wrong token");
    }
    assert_eq!(post(&format!("{base}/metrics"), "s3cret", "text/plain", b"").0, 405);
    assert_eq!(post(&format!("{base}/collect"), "s3cret", "application/json", b"{}").0, 404, "not a --collect stream");
    assert_eq!(get(&format!("{base}/nope"), t).0, 404);
    assert_eq!(get(&format!("{base}/reports/../../etc/passwd"), t).0, 404);

    drop(stdin); // end of input: every window closes, exit 0
    let status = child.wait().unwrap();
    let log = stderr.join().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains(&format!("serving http://127.0.0.1:{port}/")), "{log}");
}

#[test]
fn collected_events_are_archived_exactly_once_and_bad_requests_refused() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    generate(&events, 20_000, 0.01);
    let (archive, dead) = (dir.path().join("archive"), dir.path().join("dead.jsonl"));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/collect");
    let mut child = Command::new(bin())
        .current_dir(dir.path())
        .args(["stream", "--collect", "--no-console", "--http", &port.to_string(), "--http-token", "tok"])
        .arg("--archive")
        .arg(&archive)
        .arg("--dead-letter")
        .arg(&dead)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = wait_serving(&mut child);

    // Requests refused whole: nothing of them enters the stream.
    let refused = [
        ("application/json", b"{\"user_id\": ".to_vec(), 400, "not JSON"),
        ("application/json", b"   ".to_vec(), 400, "not JSON"),
        ("text/html", b"<p>".to_vec(), 415, "content type"),
        ("application/x-ndjson", vec![b'{'; 2 << 20], 413, "max_body_bytes"),
    ];
    for (kind, body, want, says) in refused {
        let (status, text) = post(&url, "tok", kind, &body);
        assert_eq!(status, want, "{text}");
        assert!(json(&text)["error"].as_str().unwrap().contains(says), "{text}");
    }
    assert_eq!(post(&url, "nope", "application/json", b"{}").0, 401);

    // The input in batches, alternately JSON arrays and NDJSON; batches
    // with malformed lines answer 422 and list them.
    let bytes = std::fs::read(&events).unwrap();
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    for (i, batch) in lines.chunks(700).enumerate() {
        let (kind, body) = if i % 2 == 0 {
            ("application/x-ndjson", batch.join(&b'\n'))
        } else {
            // An array needs each item to be JSON: malformed lines go as strings.
            let items: Vec<String> = batch
                .iter()
                .map(|l| match serde_json::from_slice::<Value>(l) {
                    Ok(_) => String::from_utf8(l.to_vec()).unwrap(),
                    Err(_) => Value::from(String::from_utf8_lossy(l)).to_string(),
                })
                .collect();
            ("application/json", format!("[{}]", items.join(",\n")).into_bytes())
        };
        let reply = loop {
            let (status, reply) = post(&url, "tok", kind, &body);
            if status != 503 {
                break (status, json(&reply));
            }
            std::thread::sleep(Duration::from_millis(50)); // busy: retry, as a client should
        };
        let n_rejected = reply.1["rejected"].as_array().map_or(0, |r| r.len()) as u64;
        assert_eq!(reply.0, if n_rejected == 0 { 202 } else { 422 }, "{}", reply.1);
        accepted += reply.1["accepted"].as_u64().unwrap();
        rejected += n_rejected;
    }
    assert_eq!(accepted + rejected, lines.len() as u64);
    assert!(rejected > 100, "the generator's malformed lines were refused: {rejected}");

    // SIGTERM: stop taking events, close every window, commit, exit 0.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let log = stderr.join().unwrap();
    assert!(status.success(), "{log}");

    support::check_archive(&events, &archive);
    let dead_lines = std::fs::read_to_string(&dead).unwrap();
    let refused_dead = dead_lines.lines().filter(|l| !l.contains("\"reason\":\"late")).count() as u64;
    assert_eq!(refused_dead, rejected, "every refused event is in the dead-letter file");
    assert!(dead_lines.contains("\"source\":\"http:/collect:"), "{dead_lines}");
}

#[test]
fn the_dashboard_shows_a_live_alert_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(bin())
        .current_dir(dir.path())
        .args(["stream", "--collect", "--no-console", "--http", &port.to_string(), "--http-token", "tok"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = wait_serving(&mut child);
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(support::python())
        .arg(support::root().join("tests/py/check_dashboard.py"))
        .args(["--url", &format!("http://127.0.0.1:{port}"), "--token", "tok", "--screenshot"])
        .arg(&shot)
        .output()
        .unwrap();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let log = stderr.join().unwrap();
    assert!(
        out.status.success(),
        "dashboard check failed:\n{}{}\nstream log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "{log}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot ({} bytes)", png.len());
}

#[test]
fn bad_http_settings_are_configuration_errors() {
    let out = Command::new(bin()).args(["stream", "--input", "-", "--http", "nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.addr"));
    let out = Command::new(bin()).args(["stream", "--collect"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--collect needs --http"));
}

#[test]
fn demo_serves_the_dashboard_and_links_the_batch_report() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(bin())
        .args(["demo", "--events", "150000", "--hold", "--http", &format!("127.0.0.1:{port}"), "--out"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut printed = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("stays up at") {
            break;
        }
    }
    let result = std::panic::catch_unwind(|| {
        assert!(printed.contains(&format!("demo: live dashboard at {base}/")), "{printed}");
        assert!(printed.contains(&format!("the dashboard stays up at {base}/")), "{printed}");
        let days = json(&get(&format!("{base}/api/reports"), None).1);
        assert_eq!(days[0]["date"], "2026-11-24", "{days}");
        let (status, html) = get(&format!("{base}{}", days[0]["html"].as_str().unwrap()), None);
        assert_eq!(status, 200);
        assert!(html.contains("<html"), "the day's report.html");
        assert!(!json(&get(&format!("{base}/api/alerts"), None).1).as_array().unwrap().is_empty());
        // The stream has ended: its last closed windows remain readable.
        let windows = json(&get(&format!("{base}/api/windows?top=3"), None).1);
        assert_eq!(windows["live"], false, "{windows}");
        assert_eq!(windows["closed"].as_array().unwrap().len(), 3, "{windows}");
    });
    child.kill().unwrap();
    child.wait().unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
