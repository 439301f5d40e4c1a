//! `POST /collect`: events from a storefront straight into the stream, an
//! embedded alternative to Kafka (`stream --collect --http ADDR`).
//!
//! A request body is one event (a JSON object), a batch (a JSON array of
//! objects, or `application/x-ndjson` lines). The handler checks each
//! event with the same decoder every source uses and answers:
//!
//! - `202` `{"accepted": n}`: every event entered the stream;
//! - `422` `{"accepted": n, "rejected": [{"index", "reason", "message"}]}`:
//!   the listed events were refused (and written to the dead-letter file
//!   like any refused input), the others entered the stream;
//! - `400` (not JSON, empty), `413` (body or batch too large), `415`
//!   (content type), `503` (the stream is busy or shutting down; retry):
//!   nothing entered the stream.
//!
//! Accepted bodies become newline-terminated lines on a bounded channel
//! that the line source reads like stdin ([`CollectChannel::reader`]), so
//! decoding, lateness, the archive and the dead letters are the line
//! source's own: one path for every input.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::value::RawValue;

use crate::event::decode::decode;
use crate::event::{Limits, Micros};

/// Request bodies waiting for the line reader; when full, `503`.
const QUEUED_BODIES: usize = 64;

/// The channel between `POST /collect` and the stream's line source.
#[derive(Clone, Debug)]
pub struct CollectChannel {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    /// Set on shutdown: no more requests; the reader ends once drained.
    closed: Arc<AtomicBool>,
}

impl PartialEq for CollectChannel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.closed, &other.closed)
    }
}

impl Eq for CollectChannel {}

impl Default for CollectChannel {
    fn default() -> Self {
        let (tx, rx) = bounded(QUEUED_BODIES);
        CollectChannel { tx, rx, closed: Arc::new(AtomicBool::new(false)) }
    }
}

impl CollectChannel {
    /// Stops taking requests; the stream ends when the queue is drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The byte stream of accepted events, for the line reader.
    pub fn reader(&self) -> CollectReader {
        CollectReader { rx: self.rx.clone(), closed: self.closed.clone(), body: Vec::new(), at: 0 }
    }

    fn offer(&self, lines: Vec<u8>) -> Result<(), Refusal> {
        if self.is_closed() {
            return Err(Refusal::new(503, "the stream is shutting down"));
        }
        self.tx.try_send(lines).map_err(|e| match e {
            TrySendError::Full(_) => Refusal::new(503, "the stream is busy; retry shortly"),
            TrySendError::Disconnected(_) => Refusal::new(503, "the stream has ended"),
        })
    }
}

/// Reads accepted bodies one after another; EOF once closed and drained.
pub struct CollectReader {
    rx: Receiver<Vec<u8>>,
    closed: Arc<AtomicBool>,
    body: Vec<u8>,
    at: usize,
}

impl Read for CollectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.body.len() {
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(body) => (self.body, self.at) = (body, 0),
                Err(RecvTimeoutError::Timeout) if !self.closed.load(Ordering::SeqCst) => {}
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.body.len() - self.at);
        buf[..n].copy_from_slice(&self.body[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `[http]` limits of `/collect`.
#[derive(Clone, Copy, Debug)]
pub struct CollectLimits {
    pub max_body_bytes: usize,
    pub max_batch_events: usize,
    /// The decoder's limits (event size, future skew).
    pub event: Limits,
}

/// A request refused as a whole.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into() }
    }
}

/// One refused event of a batch.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct Rejected {
    pub index: usize,
    pub reason: &'static str,
    pub message: String,
}

/// A batch taken into the stream.
#[derive(Debug, PartialEq)]
pub struct Accepted {
    pub accepted: usize,
    pub rejected: Vec<Rejected>,
}

/// How the body is framed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Framing {
    Json,
    Lines,
}

impl Framing {
    /// From the `Content-Type` header (JSON when absent).
    pub fn of(content_type: Option<&str>) -> Result<Framing, Refusal> {
        let mime = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        match mime.as_deref() {
            None | Some("application/json") => Ok(Framing::Json),
            Some("application/x-ndjson" | "application/jsonl" | "application/jsonlines" | "text/plain") => {
                Ok(Framing::Lines)
            }
            Some(other) => Err(Refusal::new(
                415,
                format!("content type {other:?} not accepted; use application/json or application/x-ndjson"),
            )),
        }
    }
}

/// Reads, checks and queues one request body.
pub fn collect(
    body: impl Read,
    framing: Framing,
    limits: &CollectLimits,
    channel: &CollectChannel,
    now: Micros,
) -> Result<Accepted, Refusal> {
    let mut bytes = Vec::new();
    body.take(limits.max_body_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Refusal::new(400, format!("reading the body: {e}")))?;
    if bytes.len() > limits.max_body_bytes {
        return Err(Refusal::new(413, format!("body exceeds max_body_bytes = {}", limits.max_body_bytes)));
    }
    let events = split(&bytes, framing)?;
    if events.is_empty() {
        return Err(Refusal::new(400, "no events in the body"));
    }
    if events.len() > limits.max_batch_events {
        return Err(Refusal::new(
            413,
            format!("{} events exceed max_batch_events = {}", events.len(), limits.max_batch_events),
        ));
    }
    let mut lines = Vec::with_capacity(bytes.len() + events.len());
    let mut rejected = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if let Err(e) = decode(event, &limits.event, now) {
            rejected.push(Rejected { index, reason: e.reason.as_str(), message: e.detail });
        }
        // Refused events go in too: the stream dead-letters them with
        // their reason, like a refused line of any other input.
        lines.extend(event.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
        lines.push(b'\n');
    }
    channel.offer(lines)?;
    Ok(Accepted { accepted: events.len() - rejected.len(), rejected })
}

/// The events of a body, as raw JSON texts.
fn split(bytes: &[u8], framing: Framing) -> Result<Vec<&[u8]>, Refusal> {
    match framing {
        Framing::Lines => Ok(bytes
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect()),
        Framing::Json => {
            let text = std::str::from_utf8(bytes).map_err(|e| Refusal::new(400, format!("body is not UTF-8: {e}")))?;
            let not_json = |e: serde_json::Error| Refusal::new(400, format!("body is not JSON: {e}"));
            let whole: &RawValue = serde_json::from_str(text).map_err(not_json)?;
            // JSON strings escape their newlines, so the raw text of an
            // event only has newlines as whitespace: safe to flatten.
            if whole.get().starts_with('[') {
                let events: Vec<&RawValue> = serde_json::from_str(whole.get()).map_err(not_json)?;
                Ok(events.into_iter().map(|r| r.get().as_bytes()).collect())
            } else {
                Ok(vec![whole.get().as_bytes()])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CollectLimits {
        CollectLimits {
            max_body_bytes: 1000,
            max_batch_events: 3,
            event: Limits { max_event_bytes: 200, max_future_skew: None },
        }
    }

    const EV: &str = r#"{"user_id":"u","product_id":"p","event_type":"view","timestamp":"2026-11-24T10:00:00Z"}"#;

    fn drain(ch: &CollectChannel) -> String {
        ch.close();
        let mut s = String::new();
        ch.reader().read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn single_events_arrays_and_lines_become_one_line_each() {
        let ch = CollectChannel::default();
        let l = limits();
        let one = collect(EV.as_bytes(), Framing::Json, &l, &ch, 0).unwrap();
        assert_eq!(one, Accepted { accepted: 1, rejected: vec![] });
        let pretty = format!("[\n  {EV},\n  {}\n]", EV.replace(",", ",\n   "));
        assert_eq!(collect(pretty.as_bytes(), Framing::Json, &l, &ch, 0).unwrap().accepted, 2);
        let nd = format!("{EV}\r\n\n{EV}\n");
        assert_eq!(collect(nd.as_bytes(), Framing::Lines, &l, &ch, 0).unwrap().accepted, 2);
        let text = drain(&ch);
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    }

    #[test]
    fn invalid_events_are_listed_and_still_sent_to_be_dead_lettered() {
        let ch = CollectChannel::default();
        let body = format!(r#"[{EV}, {{"user_id":"u"}}, 7]"#);
        let a = collect(body.as_bytes(), Framing::Json, &limits(), &ch, 0).unwrap();
        assert_eq!(a.accepted, 1);
        let reasons: Vec<_> = a.rejected.iter().map(|r| (r.index, r.reason)).collect();
        assert_eq!(reasons, [(1, "missing_field"), (2, "not_object")]);
        assert_eq!(drain(&ch).lines().count(), 3);
    }

    #[test]
    fn whole_requests_are_refused_with_nothing_sent() {
        let ch = CollectChannel::default();
        let l = limits();
        let status = |body: &str, f| collect(body.as_bytes(), f, &l, &ch, 0).unwrap_err().status;
        assert_eq!(status("{not json", Framing::Json), 400);
        assert_eq!(status("", Framing::Json), 400);
        assert_eq!(status("\n\n", Framing::Lines), 400);
        assert_eq!(status(&format!("[{EV},{EV},{EV},{EV}]"), Framing::Json), 413);
        assert_eq!(status(&"x".repeat(1001), Framing::Lines), 413);
        assert_eq!(Framing::of(Some("text/html")).unwrap_err().status, 415);
        assert_eq!(Framing::of(Some("application/json; charset=utf-8")).unwrap(), Framing::Json);
        assert_eq!(drain(&ch), "");
    }

    #[test]
    fn a_full_or_closed_channel_answers_503() {
        let ch = CollectChannel::default();
        for _ in 0..QUEUED_BODIES {
            collect(EV.as_bytes(), Framing::Json, &limits(), &ch, 0).unwrap();
        }
        assert_eq!(collect(EV.as_bytes(), Framing::Json, &limits(), &ch, 0).unwrap_err().status, 503);
        ch.close();
        let refused = collect(EV.as_bytes(), Framing::Json, &limits(), &ch, 0).unwrap_err();
        assert_eq!(refused.message, "the stream is shutting down");
    }
}
