//! `clickwatch generate`: a deterministic clickstream generator (SPEC §6).
//!
//! This module owns the generator's configuration ([`GenerateConfig`]) and
//! its validation, the line-by-line engine ([`EventLines`]), the writer loop
//! with progress and rate limiting ([`generate`], [`Pacer`]), the line mix
//! (malformed, duplicate) and the hand-written JSON writing: no serde per
//! line. What each event is (popularity, funnels, who buys, when) and how
//! its time is spelled live in [`profile`].
//!
//! Lines are bytes, not `String`s: one malformed variety is deliberately not
//! UTF-8, so [`EventLines`] yields `Vec<u8>` (without the trailing `'\n'`).
//!
//! Determinism: the output is a function of the configuration only. All
//! randomness comes from ChaCha8 seeded with `seed`; the wall clock is read
//! only in `realtime` mode (the rate limiter's sleeping never changes bytes).

pub mod profile;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use rand::RngExt;

pub use profile::{category_of, price_cents_of, Profile, CATEGORIES};
use profile::{push_u64, Draft, Kind, Traffic, TsFormat};

/// 2026-11-24T00:00:00Z in epoch milliseconds.
pub const DEFAULT_START_MS: i64 = 1_795_478_400_000;
/// Latest time the pipeline accepts (9999-12-31T23:59:59.999Z), in millis.
const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Upper bound on `users` and `products`: the user table is 16 bytes a user.
pub const MAX_IDS: u32 = 10_000_000;
/// `progress` is called every this many lines.
pub const PROGRESS_EVERY: u64 = 100_000;
/// Typical line length; preallocating avoids regrowth for almost every line.
const LINE_CAPACITY: usize = 320;
/// Duplicates repeat one of the last this many valid lines, so they fall well
/// inside the speed layer's de-duplication horizon (L + D) in dense streams.
const RECENT: usize = 32;

/// Everything that determines the generated lines (and, with `rate`, their pace).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Number of lines to write, malformed and duplicate lines included.
    pub events: u64,
    pub seed: u64,
    pub profile: Profile,
    /// Base event time of the first line, epoch millis.
    pub start_ms: i64,
    /// Base event times are spread evenly over `[start, start + span)` in
    /// generation order.
    pub span_ms: i64,
    pub products: u32,
    pub users: u32,
    /// Skewed profile only: flash-sale candidates `p0..p{hot-1}`.
    pub hot_products: u32,
    /// Each event time is its base time minus uniform `[0, jitter]`; no event
    /// is moved before `start` (so a day's run stays within its day).
    pub jitter_ms: i64,
    /// Share of fresh events moved back a further 15–60 minutes (not those
    /// within that distance of `start`).
    pub late_share: f64,
    /// Share of lines repeating a recent valid line verbatim (same event_id).
    pub duplicate_share: f64,
    /// Share of lines that are malformed in assorted ways.
    pub malformed_share: f64,
    /// Lines per second (None = as fast as possible).
    pub rate: Option<f64>,
    /// Event base time is the wall clock at emission instead of simulated.
    pub realtime: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            events: 2_000_000,
            seed: 42,
            profile: Profile::default(),
            start_ms: DEFAULT_START_MS,
            span_ms: 86_400_000,
            products: 2000,
            users: 20_000,
            hot_products: 5,
            jitter_ms: 30_000,
            late_share: 0.0,
            duplicate_share: 0.0,
            malformed_share: 0.0,
            rate: None,
            realtime: false,
        }
    }
}

/// A refused generator configuration. Messages name the command-line option.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    #[error("{option} must be {rule}, got {got}")]
    Invalid { option: &'static str, rule: String, got: String },
    #[error("unknown profile {0:?} (expected uniform or skewed)")]
    UnknownProfile(String),
}

fn invalid(option: &'static str, rule: impl Into<String>, got: impl ToString) -> GenerateError {
    GenerateError::Invalid { option, rule: rule.into(), got: got.to_string() }
}

impl GenerateConfig {
    /// Checks every option; the first bad one is reported.
    pub fn validate(&self) -> Result<(), GenerateError> {
        if !(0..=MAX_TIME_MS).contains(&self.start_ms) {
            return Err(invalid("--start", "between 1970 and 9999", format!("{} ms", self.start_ms)));
        }
        if self.span_ms < 1 || self.span_ms > MAX_TIME_MS - self.start_ms {
            return Err(invalid("--span", "positive and end before year 10000", format!("{} ms", self.span_ms)));
        }
        for (option, n) in [("--products", self.products), ("--users", self.users)] {
            if !(1..=MAX_IDS).contains(&n) {
                return Err(invalid(option, format!("within [1, {MAX_IDS}]"), n));
            }
        }
        if self.profile == Profile::Skewed && self.hot_products >= self.products {
            return Err(invalid("--hot-products", "less than --products", self.hot_products));
        }
        if !(0..=86_400_000).contains(&self.jitter_ms) {
            return Err(invalid("--jitter", "within [0, 1 day]", format!("{} ms", self.jitter_ms)));
        }
        for (option, share) in [
            ("--late-share", self.late_share),
            ("--duplicate-share", self.duplicate_share),
            ("--malformed-share", self.malformed_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(invalid(option, "within [0, 1]", share));
            }
        }
        if self.duplicate_share + self.malformed_share > 1.0 {
            let sum = self.duplicate_share + self.malformed_share;
            return Err(invalid("--duplicate-share", "at most 1 - --malformed-share", sum));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid("--rate", "a positive number of lines per second", rate));
            }
        }
        Ok(())
    }
}

/// What was generated. `lines = valid + malformed`; `duplicates` and `late`
/// are subsets of `valid` (late = fresh events moved back 15–60 min; whether
/// the pipeline finds them late also depends on its watermark). `bytes`
/// counts each line plus its `'\n'`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenerateStats {
    pub lines: u64,
    pub valid: u64,
    pub malformed: u64,
    pub duplicates: u64,
    pub late: u64,
    pub bytes: u64,
}

/// What one generated line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Valid,
    /// Valid, event time moved back 15–60 minutes.
    Late,
    /// Valid, a verbatim repeat of a recent valid line.
    Duplicate,
    /// Refused by a SPEC §2 decoder.
    Malformed,
}

/// How a malformed line is broken; each maps to one dead-letter reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Truncated,
    MissingUser,
    NumericProduct,
    BadTimestamp,
    MissingTimestamp,
    EmptyType,
    NotUtf8,
    NotObject,
}

const FAULTS: [Fault; 8] = [
    Fault::Truncated,
    Fault::MissingUser,
    Fault::NumericProduct,
    Fault::BadTimestamp,
    Fault::MissingTimestamp,
    Fault::EmptyType,
    Fault::NotUtf8,
    Fault::NotObject,
];
const BAD_TIMESTAMPS: [&str; 4] = ["yesterday", "24/11/2026 10:00:00", "", "2026-11-24 at noon"];
/// Unknown fields, ignored by the pipeline (SPEC §2).
const EXTRA_FIELDS: [&str; 2] = [r#","referrer":"email""#, r#","ab_test":{"variant":"B","ids":[1,2]}"#];

/// The generator as an iterator of lines (bytes, no `'\n'`). [`generate`] is
/// this plus output, progress and pacing; use [`EventLines::next_into`] to
/// avoid one allocation per line.
pub struct EventLines {
    traffic: Traffic,
    events: u64,
    seed: u64,
    duplicate_share: f64,
    malformed_share: f64,
    /// Ring of recent valid lines that duplicates repeat.
    recent: Vec<Vec<u8>>,
    recent_next: usize,
    ts: TsFormat,
    n: u64,
    stats: GenerateStats,
}

impl EventLines {
    /// `cfg` should have passed [`GenerateConfig::validate`]; out-of-range
    /// values are clamped so that this never panics.
    pub fn new(cfg: &GenerateConfig) -> EventLines {
        let share = |s: f64| if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) };
        EventLines {
            traffic: Traffic::new(cfg),
            events: cfg.events,
            seed: cfg.seed,
            duplicate_share: share(cfg.duplicate_share),
            malformed_share: share(cfg.malformed_share),
            recent: Vec::with_capacity(RECENT),
            recent_next: 0,
            ts: TsFormat::default(),
            n: 0,
            stats: GenerateStats::default(),
        }
    }

    /// Counts of the lines produced so far.
    pub fn stats(&self) -> &GenerateStats {
        &self.stats
    }

    /// Replaces `buf`'s contents with the next line (no `'\n'`) and says what
    /// it is; `None` once `events` lines have been produced.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<LineKind> {
        if self.n >= self.events {
            return None;
        }
        let n = self.n;
        self.n += 1;
        buf.clear();
        let r: f64 = self.traffic.rng.random();
        let kind = if r < self.malformed_share {
            let draft = self.traffic.draft(n);
            let fault = FAULTS[profile::below(&mut self.traffic.rng, FAULTS.len() as u32) as usize];
            self.write(buf, n, &draft, fault);
            if fault == Fault::Truncated {
                // A non-empty strict prefix of a JSON object is never JSON.
                let cut = 1 + profile::below(&mut self.traffic.rng, buf.len() as u32 - 1);
                buf.truncate(cut as usize);
            }
            LineKind::Malformed
        } else if r < self.malformed_share + self.duplicate_share && !self.recent.is_empty() {
            let i = profile::below(&mut self.traffic.rng, self.recent.len() as u32) as usize;
            buf.extend_from_slice(&self.recent[i]);
            LineKind::Duplicate
        } else {
            let draft = self.traffic.draft(n);
            self.write(buf, n, &draft, Fault::None);
            if self.duplicate_share > 0.0 {
                self.remember(buf);
            }
            if draft.late {
                LineKind::Late
            } else {
                LineKind::Valid
            }
        };
        let s = &mut self.stats;
        s.lines += 1;
        s.bytes += buf.len() as u64 + 1;
        match kind {
            LineKind::Malformed => s.malformed += 1,
            LineKind::Duplicate => s.duplicates += 1,
            LineKind::Late => s.late += 1,
            LineKind::Valid => {}
        }
        s.valid = s.lines - s.malformed;
        Some(kind)
    }

    fn remember(&mut self, line: &[u8]) {
        if self.recent.len() < RECENT {
            self.recent.push(line.to_vec());
        } else {
            // Reuse the slot's allocation: no allocation after warm-up.
            let slot = &mut self.recent[self.recent_next];
            slot.clear();
            slot.extend_from_slice(line);
            self.recent_next = (self.recent_next + 1) % RECENT;
        }
    }

    /// Writes `d` as line `n`: one JSON object, keys in the documented order,
    /// broken as `fault` says.
    fn write(&mut self, buf: &mut Vec<u8>, n: u64, d: &Draft, fault: Fault) {
        if fault == Fault::NotObject {
            buf.push(b'[');
        }
        buf.extend_from_slice(b"{\"event_id\":\"e-");
        push_u64(buf, self.seed);
        buf.push(b'-');
        push_u64(buf, n);
        buf.push(b'"');
        if fault != Fault::MissingUser {
            buf.extend_from_slice(b",\"user_id\":\"u");
            push_u64(buf, u64::from(d.user));
            if fault == Fault::NotUtf8 {
                buf.extend_from_slice(b"\xff\xfe");
            }
            buf.push(b'"');
        }
        let quoted = fault != Fault::NumericProduct;
        buf.extend_from_slice(if quoted { b",\"product_id\":\"p".as_slice() } else { b",\"product_id\":" });
        push_u64(buf, u64::from(d.product));
        if quoted {
            buf.push(b'"');
        }
        buf.extend_from_slice(b",\"event_type\":\"");
        if fault != Fault::EmptyType {
            buf.extend_from_slice(d.kind.as_str().as_bytes());
        }
        buf.push(b'"');
        match fault {
            Fault::MissingTimestamp => {}
            Fault::BadTimestamp => {
                buf.extend_from_slice(b",\"timestamp\":\"");
                buf.extend_from_slice(BAD_TIMESTAMPS[(n % 4) as usize].as_bytes());
                buf.push(b'"');
            }
            _ => {
                buf.extend_from_slice(b",\"timestamp\":");
                self.ts.push(buf, d.time_us, d.form);
            }
        }
        if d.category {
            buf.extend_from_slice(b",\"category\":\"");
            buf.extend_from_slice(category_of(d.product).as_bytes());
            buf.push(b'"');
        }
        if let Some(session) = d.session {
            buf.extend_from_slice(b",\"session_id\":\"s");
            push_u64(buf, u64::from(d.user));
            buf.push(b'-');
            push_u64(buf, u64::from(session));
            buf.push(b'"');
        }
        if matches!(d.kind, Kind::Cart | Kind::Purchase) {
            let cents = price_cents_of(d.product);
            buf.extend_from_slice(b",\"price\":");
            push_u64(buf, u64::from(cents / 100));
            buf.push(b'.');
            profile::push_padded(buf, cents % 100, 2);
        }
        if d.kind == Kind::Purchase {
            buf.extend_from_slice(b",\"quantity\":");
            push_u64(buf, u64::from(d.quantity));
        }
        if let Some(extra) = d.extra {
            buf.extend_from_slice(EXTRA_FIELDS[extra % EXTRA_FIELDS.len()].as_bytes());
        }
        buf.push(b'}');
        if fault == Fault::NotObject {
            buf.push(b']');
        }
    }
}

impl Iterator for EventLines {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        self.next_into(&mut line)?;
        Some(line)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.events - self.n).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Writes `cfg.events` JSON lines to `out`, calling `progress` with the line
/// count every [`PROGRESS_EVERY`] lines and once at the end. Flushes `out`
/// before every rate-limiting sleep and at the end. An invalid `cfg` is an
/// `InvalidInput` error (callers should have validated it for a better message).
pub fn generate(cfg: &GenerateConfig, out: &mut dyn Write, progress: &mut dyn FnMut(u64)) -> io::Result<GenerateStats> {
    cfg.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut lines = EventLines::new(cfg);
    let pacer = cfg.rate.map(Pacer::new);
    let mut buf = Vec::with_capacity(LINE_CAPACITY);
    while lines.next_into(&mut buf).is_some() {
        buf.push(b'\n');
        out.write_all(&buf)?;
        let done = lines.stats().lines;
        if done.is_multiple_of(PROGRESS_EVERY) {
            progress(done);
        }
        if let Some(wait) = pacer.as_ref().and_then(|p| p.delay(done)) {
            out.flush()?;
            std::thread::sleep(wait);
        }
    }
    out.flush()?;
    progress(lines.stats().lines);
    Ok(*lines.stats())
}

/// Keeps an average rate of lines per second by sleeping in small batches
/// (about 200 checks a second), so sleeping costs nothing at high rates.
/// Public so in-process producers (Kafka) can pace [`EventLines`] the same way.
pub struct Pacer {
    rate: f64,
    every: u64,
    start: Instant,
}

impl Pacer {
    /// `rate` > 0 lines per second; the clock starts now.
    pub fn new(rate: f64) -> Pacer {
        Pacer { rate, every: (rate / 200.0).clamp(1.0, 10_000.0) as u64, start: Instant::now() }
    }

    /// After `done` lines in total: how long to sleep to stay on rate, if at
    /// all. Behind schedule it returns `None`, so a slow consumer is caught
    /// up with a burst (the average is what the rate promises).
    pub fn delay(&self, done: u64) -> Option<Duration> {
        if !done.is_multiple_of(self.every) {
            return None;
        }
        let due = Duration::try_from_secs_f64(done as f64 / self.rate).ok()?;
        due.checked_sub(self.start.elapsed()).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// Every line of a run with its kind, through `next_into`.
    pub(crate) fn run(cfg: &GenerateConfig) -> (Vec<Vec<u8>>, Vec<LineKind>) {
        let (mut it, mut buf) = (EventLines::new(cfg), Vec::new());
        std::iter::from_fn(|| it.next_into(&mut buf).map(|k| (buf.clone(), k))).unzip()
    }

    /// The SPEC §2 facts the tests look at.
    pub(crate) struct Parsed {
        pub(crate) user_id: String,
        pub(crate) product_id: String,
        pub(crate) event_type: String,
        pub(crate) time_us: i64,
        pub(crate) json: Value,
    }

    /// SPEC §2 validity, checked independently of `crate::event` (serde_json
    /// and chrono only): `None` for a line the pipeline must refuse.
    pub(crate) fn parse_valid(line: &[u8]) -> Option<Parsed> {
        let json: Value = serde_json::from_slice(line).ok()?;
        let text = |k: &str| json.get(k)?.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        let time_us = match json.get("timestamp")? {
            Value::String(t) => chrono::DateTime::parse_from_rfc3339(t).ok()?.timestamp_micros(),
            Value::Number(n) => n.as_i64()? * 1000,
            _ => return None,
        };
        Some(Parsed {
            user_id: text("user_id")?,
            product_id: text("product_id")?,
            event_type: text("event_type")?,
            time_us,
            json,
        })
    }

    pub(crate) fn messy(events: u64) -> GenerateConfig {
        let (late_share, duplicate_share, malformed_share) = (0.02, 0.05, 0.1);
        GenerateConfig {
            events,
            seed: 5,
            span_ms: 3_600_000,
            late_share,
            duplicate_share,
            malformed_share,
            ..Default::default()
        }
    }

    #[test]
    fn same_config_same_bytes_and_generate_matches_the_iterator() {
        let cfg = messy(20_000);
        let mut out = Vec::new();
        let mut calls = Vec::new();
        let stats = generate(&cfg, &mut out, &mut |n| calls.push(n)).expect("writing to a Vec cannot fail");
        let mut joined: Vec<u8> = EventLines::new(&cfg).flat_map(|l| l.into_iter().chain([b'\n'])).collect();
        assert_eq!(out, joined, "generate() is the iterator plus newlines");
        assert_eq!(calls, vec![20_000], "progress: every 100k lines and at the end");
        assert_eq!((stats.lines, stats.bytes), (20_000, out.len() as u64));
        generate(&cfg, &mut joined, &mut |_| {}).expect("Vec");
        assert_eq!(joined[..out.len()], joined[out.len()..], "same seed, same bytes");
        assert_ne!(run(&GenerateConfig { seed: 6, ..cfg.clone() }).0, run(&cfg).0, "another seed differs");
    }

    #[test]
    fn lines_are_valid_unless_malformed() {
        let (lines, kinds) = run(&messy(50_000));
        let limits = crate::event::Limits::default();
        let (mut reasons, mut variety) = (BTreeMap::<&str, usize>::new(), BTreeMap::<&str, usize>::new());
        for (line, kind) in lines.iter().zip(&kinds) {
            let (parsed, text) = (parse_valid(line), String::from_utf8_lossy(line));
            assert_eq!(parsed.is_some(), *kind != LineKind::Malformed, "{kind:?}: {text}");
            // The pipeline's own decoder agrees, and says why.
            match crate::event::decode(line, &limits, 0) {
                Ok(_) => assert!(parsed.is_some(), "{text}"),
                Err(e) => *reasons.entry(e.reason.as_str()).or_default() += 1,
            }
            let Some(Parsed { event_type, json, .. }) = parsed else { continue };
            let has = |k: &str| json.get(k).is_some();
            assert!(text.starts_with(r#"{"event_id":"e-5-"#), "{text}");
            assert_eq!(has("price"), event_type == "add_to_cart" || event_type == "purchase", "{text}");
            assert_eq!(has("quantity"), event_type == "purchase", "{text}");
            let keys =
                ["user_id", "product_id", "event_type", "timestamp", "category", "session_id", "price", "quantity"];
            let at: Vec<usize> = keys.iter().filter_map(|k| text.find(&format!("\"{k}\":"))).collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "key order: {text}");
            for (name, seen) in [
                ("epoch_millis", json["timestamp"].is_i64()),
                ("zulu", text.contains("Z\"")),
                ("wishlist", event_type == "wishlist"),
                ("extra_field", has("referrer") || has("ab_test")),
                ("no_category", !has("category")),
                ("no_session", !has("session_id")),
            ] {
                *variety.entry(name).or_default() += usize::from(seen);
            }
        }
        let malformed = kinds.iter().filter(|k| **k == LineKind::Malformed).count();
        assert!((4500..5500).contains(&malformed), "{malformed} malformed of 50k at 10 %");
        assert_eq!(reasons.values().sum::<usize>(), malformed, "{reasons:?}");
        assert!(reasons.len() == 6 && reasons.values().all(|&n| n > 100), "{reasons:?}");
        assert!(variety.values().all(|&n| n > 20), "{variety:?}");
        // Duplicates repeat a recent valid line, event_id and all.
        for (i, _) in kinds.iter().enumerate().filter(|(_, k)| **k == LineKind::Duplicate) {
            assert!(lines[i.saturating_sub(2 * RECENT)..i].contains(&lines[i]), "line {i}");
        }
    }

    #[test]
    fn validation_names_the_bad_option() {
        assert_eq!(GenerateConfig::default().validate(), Ok(()));
        let bad = |cfg: GenerateConfig| cfg.validate().expect_err("should be refused").to_string();
        assert_eq!(
            bad(GenerateConfig { late_share: 1.5, ..Default::default() }),
            "--late-share must be within [0, 1], got 1.5"
        );
        assert!(bad(GenerateConfig { rate: Some(0.0), ..Default::default() }).starts_with("--rate"));
        assert!(bad(GenerateConfig { hot_products: 2000, ..Default::default() }).starts_with("--hot-products"));
        assert!(bad(GenerateConfig { users: 0, ..Default::default() }).starts_with("--users"));
        assert!(bad(GenerateConfig { span_ms: 0, ..Default::default() }).starts_with("--span"));
        let err =
            generate(&GenerateConfig { malformed_share: f64::NAN, ..Default::default() }, &mut Vec::new(), &mut |_| {});
        assert_eq!(err.map_err(|e| e.kind()).err(), Some(io::ErrorKind::InvalidInput));
    }

    #[test]
    fn rate_limits_the_average_pace() {
        let cfg = GenerateConfig { events: 300, rate: Some(3000.0), ..Default::default() };
        let started = Instant::now();
        generate(&cfg, &mut io::sink(), &mut |_| {}).expect("sink");
        let took = started.elapsed().as_secs_f64();
        assert!((0.09..1.0).contains(&took), "300 lines at 3000/s took {took}s");
    }

    /// `cargo test --release --lib generate::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn speed() {
        let cfg = GenerateConfig { events: 5_000_000, ..messy(0) };
        let mut out = io::BufWriter::new(io::sink());
        let started = Instant::now();
        let stats = generate(&cfg, &mut out, &mut |_| {}).expect("sink");
        let (secs, mb) = (started.elapsed().as_secs_f64(), stats.bytes >> 20);
        println!("{} lines, {mb} MB in {secs:.2}s: {:.2} M lines/s", stats.lines, stats.lines as f64 / secs / 1e6);
    }
}
