//! Replays the fuzz seeds and every input the fuzzers found
//! (`fuzz/regressions/<target>/`) through the fuzz entry points on stable
//! Rust: a crash found once stays fixed.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|f| f == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            if let Err(e) = std::panic::catch_unwind(|| run(&data)) {
                std::panic::resume_unwind(Box::new(format!("{}: {:?}", path.display(), e.downcast_ref::<String>())));
            }
            n += 1;
        }
    }
    n
}

#[test]
fn events_inputs_replay_cleanly() {
    assert!(replay("events", clickwatch::fuzz::events) >= 3, "the seeds are there");
}

#[test]
fn config_inputs_replay_cleanly() {
    assert!(replay("config", clickwatch::fuzz::config) >= 2);
}

#[test]
fn collect_inputs_replay_cleanly() {
    assert!(replay("collect", clickwatch::fuzz::collect) >= 3);
}

#[test]
fn hand_picked_edge_cases() {
    let ev =
        |ts: &str| format!(r#"{{"event_id":"x","user_id":"u","product_id":"p","event_type":"view","timestamp":{ts}}}"#);
    for ts in ["0", "-1", "9223372036854775807", "253402300799999", "\"9999-12-31T23:59:59.999999Z\"", "1e300"] {
        clickwatch::fuzz::events(format!("{}\n{}\n", ev(ts), ev("\"2026-11-24T10:00:00Z\"")).as_bytes());
    }
    clickwatch::fuzz::events(b"");
    clickwatch::fuzz::events(b"\n\n\xff\n{}\n[]\n");
    clickwatch::fuzz::config(b"[window]\nlength = \"0s\"\n");
    clickwatch::fuzz::config(b"[window]\nslide = \"18446744073709551615s\"\n");
    clickwatch::fuzz::collect(b"\x00[[[[[[[[[[");
}
