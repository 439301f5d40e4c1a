//! The serving layer of `stream --http ADDR`: the dashboard, Prometheus
//! metrics, a JSON API over the speed layer's alerts and windows, and the
//! `POST /collect` event source. A small blocking HTTP server (tiny_http)
//! runs on threads of its own, so it never runs on the dataflow's workers;
//! it reads shared state only: [`Metrics`], the [`RecentAlerts`] ring the
//! alert sinks fill, and the [`WindowDesk`] through which workers answer
//! window queries.
//!
//! Binds 127.0.0.1 unless an address says otherwise. With a token
//! configured (`[http] token` or `CLICKWATCH_HTTP_TOKEN`), every path but
//! `/api/health` needs `Authorization: Bearer <token>` (or `?token=` for
//! browsers, which cannot set headers on page loads and event streams).

pub mod alerts;
pub mod collect;
pub mod prometheus;
mod routes;
pub mod windows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;

pub use alerts::RecentAlerts;
use collect::{CollectChannel, CollectLimits};
pub use windows::WindowDesk;

use crate::config::ConfigError;
use crate::metrics::Metrics;

/// `[http]`: off unless an address is given.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// `host:port`, or just `port` for 127.0.0.1.
    pub addr: Option<String>,
    /// Bearer token required on every path but `/api/health`.
    pub token: Option<String>,
    /// How many recent alerts `/api/alerts` keeps.
    pub recent_alerts: usize,
    /// Largest `POST /collect` body.
    pub max_body_bytes: usize,
    /// Most events in one `POST /collect` batch.
    pub max_batch_events: usize,
    /// Most concurrent live alert streams (dashboards).
    pub max_streams: usize,
    /// Batch reports directory the dashboard links to (`batch --reports`).
    pub reports: Option<PathBuf>,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            addr: None,
            token: None,
            recent_alerts: 1000,
            max_body_bytes: 1 << 20,
            max_batch_events: 10_000,
            max_streams: 32,
            reports: None,
        }
    }
}

impl HttpSection {
    /// The address to bind, if serving is on; checks the whole section.
    pub fn socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid { key, message: message.into() };
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("http.token", "must not be empty"));
        }
        for (key, v) in [
            ("http.recent_alerts", self.recent_alerts),
            ("http.max_body_bytes", self.max_body_bytes),
            ("http.max_batch_events", self.max_batch_events),
            ("http.max_streams", self.max_streams),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        let Some(addr) = self.addr.as_deref() else { return Ok(None) };
        let full = if addr.parse::<u16>().is_ok() { format!("127.0.0.1:{addr}") } else { addr.to_owned() };
        full.parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| invalid("http.addr", &format!("expected host:port or a port, got {addr:?}")))
    }
}

/// What the dataflow shares with the server.
#[derive(Clone)]
pub struct Hub {
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<RecentAlerts>,
    pub windows: Arc<WindowDesk>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>, cfg: &HttpSection) -> Self {
        Hub { metrics, alerts: Arc::new(RecentAlerts::new(cfg.recent_alerts)), windows: Arc::default() }
    }
}

/// Everything a request handler reads.
pub struct ServeState {
    pub hub: Hub,
    pub token: Option<String>,
    pub started: Instant,
    /// With `stream --collect`: where `POST /collect` puts events.
    pub collect: Option<(CollectChannel, CollectLimits)>,
    pub reports: Option<PathBuf>,
    pub max_streams: usize,
    streams: AtomicUsize,
}

impl ServeState {
    pub fn new(hub: Hub, cfg: &HttpSection) -> Self {
        ServeState {
            hub,
            token: cfg.token.clone(),
            started: Instant::now(),
            collect: None,
            reports: cfg.reports.clone(),
            max_streams: cfg.max_streams,
            streams: AtomicUsize::new(0),
        }
    }

    pub fn with_collect(mut self, channel: CollectChannel, limits: CollectLimits) -> Self {
        self.collect = Some((channel, limits));
        self
    }
}

/// The running server; stops when dropped.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    state: Arc<ServeState>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl HttpServer {
    pub fn start(addr: SocketAddr, state: ServeState) -> anyhow::Result<Self> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?);
        let bound = server.server_addr().to_ip().context("the HTTP server has an IP address")?;
        let (s, st) = (server.clone(), Arc::new(state));
        let state = st.clone();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for request in s.incoming_requests() {
                    routes::serve(request, &st);
                }
            })
            .context("starting the HTTP thread")?;
        log::info!("serving http://{bound}/ (metrics at /metrics)");
        Ok(HttpServer { server, state, thread: Some(thread), addr: bound })
    }

    /// The dashboard's address, as a browser would open it.
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { self.addr.ip().to_string() };
        format!("http://{host}:{}/", self.addr.port())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.state.hub.alerts.stop();
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback_and_limits_are_checked() {
        let s = |a: &str| HttpSection { addr: Some(a.into()), ..Default::default() }.socket_addr();
        assert_eq!(s("9100").unwrap().unwrap().to_string(), "127.0.0.1:9100");
        assert_eq!(s("0.0.0.0:80").unwrap().unwrap().to_string(), "0.0.0.0:80");
        assert!(s("nope").unwrap_err().to_string().contains("http.addr"));
        let zero = HttpSection { max_body_bytes: 0, ..Default::default() };
        assert!(zero.socket_addr().unwrap_err().to_string().contains("http.max_body_bytes"));
        assert_eq!(HttpSection::default().socket_addr().unwrap(), None);
    }
}
