//! The HTTP routes: authentication, method checks and one small handler
//! per path. Everything answers JSON except `/metrics` (Prometheus text),
//! `/` (the dashboard) and the report files.
//!
//! | path                  | method | what                                   |
//! |-----------------------|--------|----------------------------------------|
//! | `/api/health`         | GET    | liveness, no token needed              |
//! | `/`                   | GET    | the dashboard                          |
//! | `/metrics`            | GET    | Prometheus exposition                  |
//! | `/api/stats`          | GET    | counters + watermarks for the charts   |
//! | `/api/alerts`         | GET    | recent alerts (`product_id`, `status`, `limit`) |
//! | `/api/alerts/stream`  | GET    | live alerts, server-sent events        |
//! | `/api/windows`        | GET    | `product_id=P` or `top=N`              |
//! | `/api/reports`        | GET    | batch report dates, newest first       |
//! | `/reports/D/FILE`     | GET    | a batch report file                    |
//! | `/collect`            | POST   | events in (with `stream --collect`)    |

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

use serde_json::json;
use tiny_http::{Header, Method, Request, Response};

use super::collect::{self, Framing};
use super::windows::{DeskError, WindowQuery};
use super::{alerts, prometheus, ServeState};
use crate::alert::AlertStatus;
use crate::event::timestamp::{format_rfc3339_secs, now_micros};
use crate::metrics::Metrics;

type Reply = Response<std::io::Cursor<Vec<u8>>>;

const DASHBOARD: &str = include_str!("dashboard.html");
/// Files of a day's report directory that may be served.
const REPORT_FILES: [&str; 8] = [
    "report.html",
    "report.json",
    "summary.txt",
    "segment_summary.csv",
    "user_segments.csv",
    "top_products.csv",
    "conversion_rates.csv",
    "user_segments.parquet",
];

/// Answers one request (a live stream gets a thread of its own).
pub fn serve(mut request: Request, state: &Arc<ServeState>) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let params = url_params(query);
    let reply = match check(&request, path, &params, state) {
        Err(refused) => refused,
        Ok(()) if path == "/api/alerts/stream" => return live_alerts(request, state),
        Ok(()) => route(&mut request, path, &params, state),
    };
    let _ = request.respond(reply);
}

/// Authentication and methods: `Err` is the refusal to send.
fn check(request: &Request, path: &str, params: &Params, state: &ServeState) -> Result<(), Reply> {
    if path == "/api/health" {
        return Ok(());
    }
    if let Some(token) = &state.token {
        let bearer = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .and_then(|h| h.value.as_str().strip_prefix("Bearer "));
        let given = bearer.or_else(|| param(params, "token"));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return Err(error(401, "missing or wrong bearer token").with_header(header("WWW-Authenticate", "Bearer")));
        }
    }
    let wanted = if path == "/collect" { Method::Post } else { Method::Get };
    if *request.method() != wanted {
        let allow = if wanted == Method::Post { "POST" } else { "GET" };
        return Err(error(405, &format!("{path} takes {allow}")).with_header(header("Allow", allow)));
    }
    Ok(())
}

/// Compares without stopping at the first difference (token checks).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn route(request: &mut Request, path: &str, params: &Params, state: &ServeState) -> Reply {
    match path {
        "/api/health" => health(state),
        "/" | "/index.html" => {
            Response::from_string(DASHBOARD).with_header(header("Content-Type", "text/html; charset=utf-8"))
        }
        "/metrics" => Response::from_string(prometheus::render(&state.hub.metrics))
            .with_header(header("Content-Type", "text/plain; version=0.0.4")),
        "/api/stats" => json_reply(200, &stats(state)),
        "/api/alerts" => recent_alerts(params, state),
        "/api/windows" => windows(params, state),
        "/api/reports" => report_dates(state),
        "/collect" => collect(request, state),
        p if p.starts_with("/reports/") => report_file(&p["/reports/".len()..], state),
        _ => error(404, "no such path; see /api/health, /metrics, /api/alerts, /api/windows, /collect"),
    }
}

fn health(state: &ServeState) -> Reply {
    let w = state.hub.metrics.watermark.load(Relaxed);
    json_reply(
        200,
        &json!({
            "status": "ok",
            "uptime_seconds": state.started.elapsed().as_secs(),
            "watermark": (w > 0).then(|| format_rfc3339_secs(w)),
            "events": state.hub.metrics.valid_events(),
        }),
    )
}

/// What the dashboard's charts plot.
fn stats(state: &ServeState) -> serde_json::Value {
    let m = &state.hub.metrics;
    let now = now_micros();
    let w = m.watermark.load(Relaxed);
    let partitions: Vec<_> = m
        .partition_stats()
        .into_iter()
        .map(|(p, s)| {
            json!({
                "partition": p,
                "watermark": s.watermark.map(format_rfc3339_secs),
                "watermark_lag_seconds": s.watermark.map(|w| (now - w) as f64 / 1e6),
                "kafka_lag": s.lag,
            })
        })
        .collect();
    json!({
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "events": m.valid_events(),
        "refused": m.refused(),
        "late": m.late(),
        "duplicates": m.duplicates.load(Relaxed),
        "alerts": m.alerts_of(AlertStatus::Final) + m.alerts_of(AlertStatus::Provisional),
        "watermark": (w > 0).then(|| format_rfc3339_secs(w)),
        "watermark_lag_seconds": (w > 0).then(|| (now - w) as f64 / 1e6),
        "archive_rows": m.archive_rows.load(Relaxed),
        "archive_files": m.archive_files.load(Relaxed),
        "archive_busy_seconds": Metrics::seconds(&m.archive_busy_micros),
        "archive_backpressure_seconds": Metrics::seconds(&m.archive_wait_micros),
        "partitions": partitions,
        "window_state_cells": m.window_cells.load(Relaxed),
        "dedup_ids": m.dedup_ids.load(Relaxed),
        "resident_bytes": prometheus::resident_bytes(),
    })
}

fn recent_alerts(params: &Params, state: &ServeState) -> Reply {
    let limit = match param(params, "limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return error(400, "limit must be a positive integer"),
    };
    if let Some(s) = param(params, "status").filter(|s| !["provisional", "final", "withdrawn"].contains(s)) {
        return error(400, &format!("status must be provisional, final or withdrawn, not {s:?}"));
    }
    let alerts = state.hub.alerts.query(param(params, "product_id"), param(params, "status"), limit);
    json_reply(200, &serde_json::to_value(alerts).unwrap_or_default())
}

/// Hands the connection to a thread that streams alerts until it closes.
fn live_alerts(request: Request, state: &Arc<ServeState>) {
    if state.streams.fetch_add(1, SeqCst) >= state.max_streams {
        state.streams.fetch_sub(1, SeqCst);
        let _ = request.respond(error(503, "too many live streams; raise http.max_streams"));
        return;
    }
    let last_id = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Last-Event-ID"))
        .and_then(|h| h.value.as_str().parse::<u64>().ok());
    let state = state.clone();
    let spawned = std::thread::Builder::new().name("http-sse".into()).spawn(move || {
        let _ = alerts::stream_to(request.into_writer(), state.hub.alerts.clone(), last_id);
        state.streams.fetch_sub(1, SeqCst);
    });
    if let Err(e) = spawned {
        log::warn!("cannot start a live alert stream: {e}");
    }
}

fn windows(params: &Params, state: &ServeState) -> Reply {
    let query = match (param(params, "product_id"), param(params, "top").map(str::parse::<usize>)) {
        (Some(p), None) if !p.is_empty() => WindowQuery::Product(p.to_owned()),
        (None, None) => WindowQuery::Top(10),
        (None, Some(Ok(n))) if (1..=1000).contains(&n) => WindowQuery::Top(n),
        _ => return error(400, "give product_id=P or top=N (1..=1000), not both"),
    };
    match state.hub.windows.ask(query, crate::dataflows::operators::route) {
        Ok(answer) => json_reply(200, &serde_json::to_value(answer).unwrap_or_default()),
        Err(e @ DeskError::Elsewhere(..)) => error(421, &e.to_string()),
        Err(e @ DeskError::Timeout(_)) => error(503, &e.to_string()),
    }
}

fn collect(request: &mut Request, state: &ServeState) -> Reply {
    let Some((channel, limits)) = &state.collect else {
        return error(404, "this stream does not collect events; start it with --collect");
    };
    let content_type =
        request.headers().iter().find(|h| h.field.equiv("Content-Type")).map(|h| h.value.as_str().to_owned());
    let framing = match Framing::of(content_type.as_deref()) {
        Ok(f) => f,
        Err(r) => return error(r.status, &r.message),
    };
    if request.body_length().is_some_and(|n| n > limits.max_body_bytes) {
        return error(413, &format!("body exceeds max_body_bytes = {}", limits.max_body_bytes));
    }
    match collect::collect(request.as_reader(), framing, limits, channel, now_micros()) {
        Ok(a) if a.rejected.is_empty() => json_reply(202, &json!({ "accepted": a.accepted })),
        Ok(a) => json_reply(
            422,
            &json!({
                "error": format!("{} of {} events refused (dead-lettered); the others were accepted",
                    a.rejected.len(), a.accepted + a.rejected.len()),
                "accepted": a.accepted,
                "rejected": a.rejected,
            }),
        ),
        Err(r) if r.status == 503 => error(503, &r.message).with_header(header("Retry-After", "1")),
        Err(r) => error(r.status, &r.message),
    }
}

/// Report days under the reports directory, newest first.
fn report_dates(state: &ServeState) -> Reply {
    let Some(dir) = &state.reports else { return json_reply(200, &json!([])) };
    let mut days: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|d| is_date(d) && dir.join(d).join("report.html").is_file())
        .collect();
    days.sort_unstable_by(|a, b| b.cmp(a));
    let list: Vec<_> = days.iter().map(|d| json!({ "date": d, "html": format!("/reports/{d}/report.html") })).collect();
    json_reply(200, &json!(list))
}

/// `YYYY-MM-DD/FILE` with FILE one of the report's own files: nothing else
/// under the directory (and nothing outside it) is ever served.
fn report_file(rest: &str, state: &ServeState) -> Reply {
    let Some(dir) = &state.reports else { return error(404, "no reports directory configured (http.reports)") };
    let Some((day, file)) = rest.split_once('/') else { return error(404, "expected /reports/YYYY-MM-DD/FILE") };
    if !is_date(day) || !REPORT_FILES.contains(&file) {
        return error(404, "expected /reports/YYYY-MM-DD/FILE with a report file name");
    }
    match std::fs::read(dir.join(day).join(file)) {
        Ok(bytes) => {
            let kind = match file.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("json") => "application/json",
                Some("csv") => "text/csv; charset=utf-8",
                Some("parquet") => "application/vnd.apache.parquet",
                _ => "text/plain; charset=utf-8",
            };
            Response::from_data(bytes).with_header(header("Content-Type", kind))
        }
        Err(_) => error(404, &format!("no {file} for {day}")),
    }
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

fn header(name: &str, value: &str) -> Header {
    // Names are constants and values ASCII text we wrote: always parses.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn json_reply(status: u16, body: &serde_json::Value) -> Reply {
    Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

fn error(status: u16, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `a=1&b=x%20y` → pairs, percent-decoded.
fn url_params(query: &str) -> Params {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            url_params("product_id=p%2042&status=final&x"),
            vec![("product_id".into(), "p 42".into()), ("status".into(), "final".into()), ("x".into(), "".into())]
        );
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("a+b%zz"), "a b%zz");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cre", b"s3cret"));
        assert!(!same(b"s3creT", b"s3cret"));
    }

    #[test]
    fn only_report_dates_are_dates() {
        assert!(is_date("2026-11-24"));
        assert!(!is_date("../etc"));
        assert!(!is_date("2026-11-24/.."));
    }
}
