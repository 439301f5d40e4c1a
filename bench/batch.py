#!/usr/bin/env python3
"""Batch-layer benchmark: clickwatch `batch` (one-shot, and the refresh of
`batch --follow` after 1 % more events land) against DuckDB's equivalent
queries on the same Parquet archive, in one run on this machine.

Usage: bench/batch.sh [--events N]
"""

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import duckdb

QUERIES = {
    "users": """SELECT user_id, count(*) FILTER (WHERE event_type='view'), count(*) FILTER (WHERE event_type='add_to_cart'),
                count(*) FILTER (WHERE event_type='purchase'), count(DISTINCT product_id), count(DISTINCT session_id)
                FROM d GROUP BY user_id""",
    "top": """SELECT product_id, category, count(*) vc, count(DISTINCT user_id) FROM d WHERE event_type='view'
              GROUP BY 1, 2 ORDER BY vc DESC, product_id LIMIT 5""",
    "conversion": """SELECT category, count(*) FILTER (WHERE event_type='view'), count(*) FILTER (WHERE event_type='add_to_cart'),
                     count(*) FILTER (WHERE event_type='purchase'), count(DISTINCT user_id) FROM d GROUP BY category""",
}


def run(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def duckdb_day(archive, date):
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(f"""CREATE TEMP TABLE d AS SELECT * EXCLUDE (rn) FROM (
        SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY user_id) rn
        FROM read_parquet('{archive}/events/event_date={date}/*.parquet') WHERE event_id IS NOT NULL) WHERE rn = 1
        UNION ALL SELECT * FROM read_parquet('{archive}/events/event_date={date}/*.parquet') WHERE event_id IS NULL""")
    for q in QUERIES.values():
        con.execute(q).fetchall()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/clickwatch")
    ap.add_argument("--events", type=int, default=2_000_000)
    a = ap.parse_args()
    b, day = a.binary, "2026-11-24"
    work = tempfile.mkdtemp(prefix="clickwatch-batch-bench-")
    atexit.register(shutil.rmtree, work, True)  # also when a run fails
    archive, reports = f"{work}/archive", f"{work}/reports"
    main_in, extra_in = f"{work}/day.jsonl", f"{work}/extra.jsonl"
    subprocess.run([b, "generate", "--events", str(a.events), "--seed", "31", "--output", main_in], check=True, stderr=subprocess.DEVNULL)
    subprocess.run([b, "generate", "--events", str(a.events // 100), "--seed", "32", "--output", extra_in], check=True, stderr=subprocess.DEVNULL)
    run([b, "stream", "--no-console", "-w", "2", "--input", main_in, "--archive", archive, "--dead-letter", f"{work}/d.jsonl"])

    one_shot = min(run([b, "batch", "--archive", archive, "--date", day, "--reports", reports]) for _ in range(3))
    duck = min(duckdb_day(archive, day) for _ in range(3))

    # Incremental: a follower is up to date; 1 % more events are committed;
    # how long until its report reflects them?
    follow_reports = f"{work}/followed"
    f = subprocess.Popen([b, "batch", "--follow", "--poll", "50ms", "--archive", archive, "--date", day, "--reports", follow_reports],
                         stderr=subprocess.DEVNULL)
    rj = f"{follow_reports}/{day}/report.json"
    while not os.path.exists(rj):
        time.sleep(0.05)
    before = json.load(open(rj))["event_count"]
    run([b, "stream", "--no-console", "--input", extra_in, "--archive", archive, "--dead-letter", f"{work}/d2.jsonl"])
    t = time.perf_counter()
    while True:
        try:
            if json.load(open(rj))["event_count"] != before:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    incremental = time.perf_counter() - t
    f.kill()

    n = a.events
    print(f"\n{n:,} events of one day in the archive; one-shot runs best of 3; {os.cpu_count()} cores\n")
    print("| run | wall s | ratio to DuckDB |")
    print("|---|---:|---:|")
    print(f"| DuckDB {duckdb.__version__}: dedup + the three metric queries | {duck:.2f} | 1.0 |")
    print(f"| clickwatch batch, one-shot | {one_shot:.2f} | {one_shot / duck:.1f} |")
    print(f"| clickwatch batch --follow, refresh after +1 % events (poll 50 ms) | {incremental:.2f} | {incremental / duck:.1f} |")
    print(f"\nIncremental refresh = {incremental / one_shot:.0%} of a one-shot run (goal <= 5 %).")


if __name__ == "__main__":
    sys.exit(main())
