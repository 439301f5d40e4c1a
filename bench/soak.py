"""Soak benchmark: a live stream at a sustained rate for a long time, with
its memory and state sampled from /metrics, to show they stay flat.

    generate --rate R --realtime --events N  |  stream --input - --http PORT --archive DIR

Event times are the wall clock, so windows open and close as in
production; the archive rolls files by age. Every `--every` seconds the
script reads clickwatch_process_resident_bytes, clickwatch_window_state_cells,
clickwatch_dedup_ids and the event counter, prints a row, and at the end a
verdict: the resident memory of the last third of the run against the
middle third (the first third is warm-up: allocator arenas, the first
windows filling up, and the de-duplication memory, which holds the ids of
the last L + D of event time: at R events/s about R × (L + D) ids).
"""

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--rate", type=int, default=200_000, help="events per second")
    ap.add_argument("--every", type=int, default=30, help="seconds between samples")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port", type=int, default=18421)
    ap.add_argument("--window", default="10m", help="window length L")
    ap.add_argument("--slide", default="5m")
    ap.add_argument("--delay", default="2m", help="watermark delay D")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="clickwatch-soak-")
    atexit.register(shutil.rmtree, work, True)  # also when a run fails
    events = args.rate * (args.seconds + 30)
    gen = subprocess.Popen(
        [args.binary, "generate", "--events", str(events), "--rate", str(args.rate), "--realtime",
         "--products", "20000", "--users", "500000", "--output", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    stream = subprocess.Popen(
        [args.binary, "stream", "--input", "-", "--no-console", "-w", str(args.workers),
         "--window", args.window, "--slide", args.slide, "--watermark-delay", args.delay,
         "--http", str(args.port), "--archive", os.path.join(work, "archive"),
         "--alerts-file", os.path.join(work, "alerts.jsonl"), "--dead-letter", os.path.join(work, "dead.jsonl")],
        stdin=gen.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    gen.stdout.close()
    time.sleep(3)
    start = time.monotonic()
    rows = []
    print(f"soak: {args.rate} events/s for {args.seconds}s, {args.workers} workers, L={args.window} "
          f"S={args.slide} D={args.delay}, work dir {work}")
    print("| t (s) | events | events/s | resident MiB | window cells | dedup ids | archive files |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    last = None
    try:
        while time.monotonic() - start < args.seconds:
            time.sleep(args.every)
            m = scrape(args.port)
            t = time.monotonic() - start
            n = sum(v for k, v in m.items() if k.startswith("clickwatch_events_total{"))
            rate = (n - last[1]) / (t - last[0]) if last else float("nan")
            last = (t, n)
            row = (t, n, rate, m.get("clickwatch_process_resident_bytes", 0) / 2**20,
                   m.get("clickwatch_window_state_cells", 0), m.get("clickwatch_dedup_ids", 0),
                   m.get("clickwatch_archive_files_total", 0))
            rows.append(row)
            print(f"| {row[0]:.0f} | {row[1]:,.0f} | {row[2]:,.0f} | {row[3]:.1f} | {row[4]:,.0f} | {row[5]:,.0f} | {row[6]:.0f} |",
                  flush=True)
            if stream.poll() is not None:
                sys.exit(f"soak: the stream exited early with {stream.returncode}")
    finally:
        gen.terminate()
        stream.wait(timeout=120)
    third = max(1, len(rows) // 3)
    mid = [r[3] for r in rows[third:2 * third]] or [rows[0][3]]
    end = [r[3] for r in rows[2 * third:]]
    growth = (sum(end) / len(end)) / (sum(mid) / len(mid)) - 1
    print(f"soak: resident memory, last third vs middle third: {growth:+.1%}; "
          f"stream exit status {stream.returncode}")
    if stream.returncode != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
