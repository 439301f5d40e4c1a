#!/usr/bin/env python3
"""Speed-layer benchmark: clickwatch `stream` (1 and 2 workers) against
DuckDB's equivalent sliding-window alert query, on the same JSONL file, in
one run on this machine.

Before printing any timing it checks that both engines raise exactly the
same alerts (product, window, views, purchases). The input has no late
events and no repeated ids (jitter below the watermark delay, no
duplicates), so DuckDB's plain GROUP BY and clickwatch's streaming
semantics must agree exactly.

Usage: bench/speed.sh [--events N] [--runs R]   (builds, makes the venv)

Each of the R rounds (5 by default) runs every engine once, in turn; the
table gives each engine's median.
"""

import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import duckdb

L_US, S_US = 600_000_000, 300_000_000
MIN_VIEWS, MAX_PURCHASES = 100, 5


def peak_rss(pid, name, out, stop):
    """Polls /proc/PID/status into out[0]: the largest VmHWM (MiB) seen
    while the process is `name`. The rusage of wait4 would not do: a
    child's ru_maxrss starts from this Python process's own peak (DuckDB
    runs in it), carried over by fork and exec."""
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            return
        if fields.get("Name", "").strip() == name and "VmHWM" in fields:
            out[0] = max(out[0], int(fields["VmHWM"].split()[0]) / 1024)
        stop.wait(0.005)


def timed(cmd):
    """Runs cmd; returns (wall seconds, peak RSS MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rss, stop = [0.0], threading.Event()
    poller = threading.Thread(target=peak_rss, args=(proc.pid, os.path.basename(cmd[0])[:15], rss, stop))
    poller.start()
    err = proc.stderr.read().decode()  # until it exits (nothing is written unless it fails)
    _, status, _ = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    poller.join()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return wall, rss[0]


def median(values):
    """The middle of `values` once sorted (the upper one of an even count)."""
    return sorted(values)[len(values) // 2]


def archive_size(root):
    """(files, bytes) of the Parquet files under root/events."""
    files = total = 0
    for d, _, names in os.walk(os.path.join(root, "events")):
        for n in names:
            if n.endswith(".parquet"):
                files += 1
                total += os.path.getsize(os.path.join(d, n))
    return files, total


def clickwatch_alerts(path):
    out = set()
    with open(path) as f:
        for line in f:
            a = json.loads(line)
            out.add((a["product_id"], a["window_start"], a["views"], a["purchases"]))
    return out


DUCKDB_QUERY = f"""
WITH raw AS (
  SELECT * FROM read_json('{{path}}', format = 'newline_delimited',
    columns = {{{{event_id: 'VARCHAR', user_id: 'VARCHAR', product_id: 'VARCHAR',
               event_type: 'VARCHAR', timestamp: 'VARCHAR', category: 'VARCHAR'}}}})
), ev AS (
  SELECT product_id, event_type,
         CASE WHEN regexp_full_match(timestamp, '[0-9]+')
              THEN CAST(timestamp AS BIGINT) * 1000
              ELSE epoch_us(CAST(timestamp AS TIMESTAMPTZ)) END AS t
  FROM raw
), w AS (
  SELECT product_id, event_type, (t // {S_US}) * {S_US} - k * {S_US} AS ws
  FROM ev, range(0, {L_US // S_US}) r(k)
)
SELECT product_id, strftime(make_timestamp(ws), '%Y-%m-%dT%H:%M:%SZ') AS window_start,
       count(*) FILTER (WHERE event_type = 'view') AS views,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases
FROM w GROUP BY product_id, ws
HAVING views > {MIN_VIEWS} AND purchases < {MAX_PURCHASES}
"""


def duckdb_alerts(path):
    con = duckdb.connect()
    start = time.perf_counter()
    rows = con.execute(DUCKDB_QUERY.format(path=path)).fetchall()
    wall = time.perf_counter() - start
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    return wall, {(p, w, v, pu) for p, w, v, pu in rows}, int(threads)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/clickwatch")
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="clickwatch-bench-")
    if not args.workdir:
        atexit.register(shutil.rmtree, work, True)  # also when a run fails
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, f"events-{args.events}.jsonl")
    if not os.path.exists(data):
        subprocess.run([args.binary, "generate", "--events", str(args.events), "--seed", "2026",
                        "--profile", "skewed", "--jitter", "30s", "--output", data],
                       check=True, stderr=subprocess.DEVNULL)
    size = os.path.getsize(data)

    # Each round runs every engine once, in turn: this VM's speed drifts
    # over minutes, and runs of one engine back to back would carry that
    # drift into the comparison (the archive's cost above all).
    configs = [(1, False), (2, False), (1, True), (2, True)]
    walls = {c: [] for c in configs}
    duck_walls = []
    reference = None
    archive_stats = None
    threads = None
    for _ in range(args.runs):
        for workers, archive in configs:
            alerts = os.path.join(work, f"alerts-w{workers}.jsonl")
            cmd = [args.binary, "stream", "--input", data, "--no-console", "--alerts-file", alerts,
                   "--dead-letter", os.path.join(work, "dead.jsonl"), "--workers", str(workers)]
            if archive:
                # A fresh archive each run: a re-run would skip every row.
                adir = os.path.join(work, "archive")
                shutil.rmtree(adir, ignore_errors=True)
                walls[(workers, archive)].append(timed(cmd + ["--archive", adir]))
                archive_stats = archive_size(adir)
            else:
                walls[(workers, archive)].append(timed(cmd))
            got = clickwatch_alerts(alerts)
            if reference is None:
                reference = got
            elif got != reference:
                sys.exit(f"clickwatch with {workers} workers disagrees with 1 worker")
        wall, got, threads = duckdb_alerts(data)
        duck_walls.append(wall)
        if got != reference:
            only_duck, only_cw = sorted(got - reference)[:5], sorted(reference - got)[:5]
            sys.exit(f"DuckDB and clickwatch disagree:\n only DuckDB: {only_duck}\n only clickwatch: {only_cw}")

    results = []
    for workers, archive in configs:
        wall, rss = median(walls[(workers, archive)])  # the RSS of the median-wall run
        name = f"clickwatch stream -w {workers}" + (" --archive" if archive else "")
        results.append((name, workers, wall, rss))
    results.append((f"DuckDB {duckdb.__version__} (threads={threads})", threads, median(duck_walls), None))

    n = args.events
    print(f"\n{n:,} events, {size / 2**20:.0f} MiB JSONL, {len(reference)} alerts (identical in all engines); "
          f"median of {args.runs} interleaved rounds; {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| engine | cores | wall s | events/s | events/s per core | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, cores, wall, rss in results:
        rss_s = f"{rss:.0f}" if rss is not None else "n/a (in-process)"
        print(f"| {name} | {cores} | {wall:.2f} | {n / wall:,.0f} | {n / wall / cores:,.0f} | {rss_s} |")
    files, total = archive_stats
    wall = {name: w for name, _, w, _ in results}

    def cost(workers):
        # The measure: the share of the speed layer's throughput
        # (events/s) that turning the archive on takes away.
        plain, archived = (wall[f"clickwatch stream -w {workers}" + a] for a in ("", " --archive"))
        return f"{1 - plain / archived:.0%} with {workers} worker{'s' if workers > 1 else ''} ({archived / plain - 1:+.0%} wall time)"

    print(f"\nArchive: {files} Parquet files, {total / 2**20:.1f} MiB = {total / n:.1f} bytes/event "
          f"(JSONL: {size / n:.0f} bytes/event); throughput cost of --archive: {cost(1)}, {cost(2)}")

if __name__ == "__main__":
    main()
