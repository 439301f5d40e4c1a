//! The archive's Parquet encoding timed alone: `cargo bench --bench
//! archive_encode [-- EVENTS RUNS]`.
//!
//! Generates the speed benchmark's events (skewed profile, seed 42),
//! decodes them into the archive's column pieces exactly as a decoding
//! worker does (one piece per ~1.5 k rows, its strings spans into the
//! piece's lines), then writes them into one
//! Parquet file per run through [`PartWriter`], the archive thread's code
//! path. Prints CPU ns per row (this thread only, so other load on the
//! machine inflates it less than wall time), wall ns per row and bytes per
//! row, and per column the compressed and uncompressed bytes. This is the
//! cost the archive thread adds on top of the speed layer; `bench/speed.sh`
//! measures it end to end.

use std::time::Instant;

use clickwatch::archive::columns::{ArchiveColumns, Origin};
use clickwatch::archive::parquet::{Encoders, PartWriter};
use clickwatch::event::decode::{check, Limits};
use clickwatch::generate::{EventLines, GenerateConfig};
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Rows per piece: what one 256 KiB input chunk holds.
const PIECE: usize = 1500;

fn pieces(events: u64) -> Vec<ArchiveColumns> {
    let cfg = GenerateConfig { events, ..GenerateConfig::default() };
    let mut lines = EventLines::new(&cfg);
    let (mut out, mut chunk, mut line, mut n) = (Vec::new(), Vec::new(), Vec::new(), 0u64);
    let mut more = true;
    while more {
        // A chunk of PIECE lines, then its rows with their strings where
        // they lie in it, as `ingest::decode_chunk` builds them.
        chunk.clear();
        for _ in 0..PIECE {
            more = lines.next_into(&mut line).is_some();
            if !more {
                break;
            }
            chunk.extend_from_slice(&line);
            chunk.push(b'\n');
        }
        let mut piece = ArchiveColumns::default();
        for l in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            n += 1;
            let Ok(checked) = check(l, &Limits::default(), 0) else { continue };
            let at = Origin { ingest_time: 1_795_478_400_000_000 + n as i64, partition: 0, position: n * 181 };
            piece.push_from(checked.fields(), at, &chunk);
        }
        piece.adopt(std::mem::take(&mut chunk));
        out.push(piece);
    }
    out
}

/// CPU time of this thread, in nanoseconds.
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: u64 = args.first().map_or(Ok(1_000_000), |s| s.parse())?;
    let runs: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let input = pieces(events);
    let rows: usize = input.iter().map(ArchiveColumns::len).sum();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.parquet");
    let (mut cpu, mut wall, mut bytes) = (Vec::new(), Vec::new(), 0);
    // Kept from run to run, as the archive thread keeps them from file to
    // file: the runs after the first measure its steady state.
    let mut encoders = Encoders::new()?;
    for _ in 0..runs {
        let copy = input.clone();
        let (c0, w0) = (thread_cpu_ns(), Instant::now());
        let mut w = PartWriter::create(&path, encoders)?;
        for piece in copy {
            w.write(piece)?;
        }
        (bytes, encoders) = w.finish()?;
        cpu.push((thread_cpu_ns() - c0) as f64 / rows as f64);
        wall.push(w0.elapsed().as_nanos() as f64 / rows as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "archive encode: {rows} rows, {runs} runs: median {:.0} CPU ns/row, {:.0} wall ns/row, {:.2} bytes/row",
        median(&mut cpu),
        median(&mut wall),
        bytes as f64 / rows as f64
    );
    let reader = SerializedFileReader::new(std::fs::File::open(&path)?)?;
    let meta = reader.metadata();
    println!("{:<18} {:>12} {:>12}", "column", "compressed", "plain");
    for i in 0..meta.file_metadata().schema_descr().num_columns() {
        let (mut z, mut u) = (0, 0);
        for rg in meta.row_groups() {
            z += rg.column(i).compressed_size();
            u += rg.column(i).uncompressed_size();
        }
        let name = meta.file_metadata().schema_descr().column(i).path().string();
        println!("{name:<18} {z:>12} {u:>12}");
    }
    Ok(())
}
