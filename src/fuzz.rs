//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer),
//! kept in the library so the regression test (`tests/fuzz_regressions.rs`)
//! replays every input the fuzzers ever found with the same code on stable.
//!
//! Each function takes untrusted bytes, must not panic, and checks the
//! invariants that hold whatever the input:
//!
//! - [`events`]: lines through the whole speed-layer path that has no
//!   threads (decode → partition clock → window engine → alerts): every
//!   line is either a valid event or a dead letter, every counted event is
//!   in exactly `L/S` closed windows' totals or skipped by lateness, and the
//!   state is empty once the input ends;
//! - [`config`]: a TOML configuration is parsed and validated, or refused
//!   with an error naming a key;
//! - [`collect`]: a `POST /collect` body is accepted or refused.

use crate::alert::{EmitMode, Emitter, FlashSaleRule};
use crate::archive::columns::Spares;
use crate::config::StreamConfig;
use crate::event::timestamp::MAX_MICROS;
use crate::event::Limits;
use crate::metrics::Metrics;
use crate::sources::ingest::{decode_chunk, Batch, Ingestor, RawBody, RawChunk};
use crate::window::clock::ClockConfig;
use crate::window::engine::WindowEngine;
use crate::window::WindowSpec;

/// A fixed wall clock, so runs are reproducible.
const NOW: i64 = 1_764_000_000_000_000;

/// Lines of `data` through decode, the clock and the window engine.
pub fn events(data: &[u8]) {
    // Small windows (L = 2 min, S = 1 min, D = 30 s) reach more edge cases.
    let spec = WindowSpec::new(120_000_000, 60_000_000).expect("valid spec");
    let clock = ClockConfig { spec, delay: 30_000_000, idle_timeout: 10_000_000 };
    let limits = Limits { max_event_bytes: 4096, max_future_skew: data.first().map(|b| i64::from(*b) * 1_000_000) };
    let metrics = Metrics::default();
    let mut ingestor = Ingestor::new(clock, "fuzz".into(), true);
    ingestor.clock().add_partition(0, NOW);
    let mut engine = WindowEngine::new(spec);
    let mut emitter = Emitter::new(FlashSaleRule { min_views: 2, max_purchases: 1 }, EmitMode::OnClose);

    let lines = data.split(|&b| b == b'\n').count();
    let mut batch = Batch::default();
    let mut counted = 0u64;
    // Two chunks, so a watermark set by the first applies to the second.
    let cut = data.len() / 2;
    let cut = data[cut..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| cut + i + 1);
    let mut seq = 0;
    for (offset, part) in [(0, &data[..cut]), (cut, &data[cut..])] {
        if part.is_empty() {
            continue;
        }
        let raw = RawChunk { seq, partition: 0, offset: offset as u64, body: RawBody::Lines(part.to_vec()) };
        seq += 1;
        let decoded = decode_chunk(raw, &limits, "fuzz", NOW, Some(&Spares::default()), &metrics);
        ingestor.classify(decoded, NOW, &mut batch);
        for (at, ev) in batch.windows.drain(..) {
            assert!((0..=MAX_MICROS).contains(&ev.time), "event time out of range: {}", ev.time);
            // Sent at its pane, or later if the watermark is already past it.
            assert!(at >= spec.pane_of(ev.time), "sent at {at}, before the pane of {}", ev.time);
            engine.on_event(&ev);
            counted += 1;
        }
        if let Some(w) = ingestor.clock().advance(NOW) {
            let closed = engine.on_frontier(Some(w));
            emitter.on_closed(&closed, Some(w), NOW);
        }
    }
    ingestor.publish(&metrics);
    // Valid events include repeated ids (archived, not counted) and late ones.
    let valid = metrics.valid_events();
    let refused = metrics.refused();
    assert!(valid + refused <= lines as u64, "{valid} valid + {refused} refused > {lines} lines");
    assert_eq!(batch.archive.len() as u64, valid, "every valid event is archived");

    // The end of the input closes everything; the state is then empty.
    let closed = engine.on_frontier(None);
    emitter.on_closed(&closed, None, NOW);
    assert_eq!(engine.cells(), 0, "state left after the input ended");
    let in_windows: u64 = closed.iter().map(|w| w.counts.total).sum();
    assert!(in_windows <= counted * u64::from(spec.panes()), "{in_windows} counts from {counted} events");
}

/// A configuration file: parsed and validated, or refused naming a key.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match StreamConfig::from_toml_str(text, std::path::Path::new("fuzz.toml")).and_then(|c| c.validate().map(|_| c)) {
        Ok(c) => {
            // Whatever validated must also serve and read Kafka settings without panicking.
            let _ = c.http.socket_addr();
            let _ = c.kafka.validate(false);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A `POST /collect` body in either framing.
pub fn collect(data: &[u8]) {
    use crate::serve::collect::{collect, CollectChannel, CollectLimits, Framing};
    let limits = CollectLimits {
        max_body_bytes: 1 << 16,
        max_batch_events: 100,
        event: Limits { max_event_bytes: 4096, max_future_skew: None },
    };
    // The first byte picks the framing; the rest is the body.
    let Some((first, body)) = data.split_first() else { return };
    let framing = if first % 2 == 0 { Framing::Json } else { Framing::Lines };
    let channel = CollectChannel::default();
    if let Ok(a) = collect(body, framing, &limits, &channel, NOW) {
        assert!(a.accepted + a.rejected.len() <= limits.max_batch_events);
        assert!(a.rejected.windows(2).all(|r| r[0].index < r[1].index));
    }
}
