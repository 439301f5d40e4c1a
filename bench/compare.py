#!/usr/bin/env python3
"""clickwatch against Spark (Structured Streaming + the PySpark batch job)
and DuckDB, on the same generated data, in one run on this machine.

For each dataset size (skewed profile, 30 s of disorder — below the 2-minute
watermark delay, so no event is late — no duplicates, no malformed lines):

  speed layer   clickwatch stream -w 1 / -w 2      the JSONL file
                Spark Structured Streaming         the same lines split in files
                DuckDB sliding-window query         the JSONL file
  batch layer   clickwatch batch                    the Parquet archive of the day
                PySpark daily job                   the same archive
                DuckDB queries                      the same archive

Before printing any timing it checks that the engines agree: the same
alerts (product, window, views, purchases) — Spark's append mode emits a
window only once its watermark passes the window's end, so its alerts are
compared on the windows closed by its final watermark — and the same batch
metrics (every user's counts and segment, top 5, per-category funnel).
Wall time is of the whole process (JVM and Python start-up included);
peak memory is the resident set of the process tree, sampled every 50 ms.

Usage: bench/compare.sh [--sizes 2000000,10000000] [--workdir DIR]
"""

import argparse
import atexit
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from decimal import ROUND_HALF_UP, Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from speed import DUCKDB_QUERY  # noqa: E402  (the sliding-window alert query)

DAY = "2026-11-24"
DELAY_US = 120_000_000


def tree_rss(pid):
    """Resident bytes of pid and all its descendants."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * 4096
        except (OSError, IndexError, ValueError):
            pass
    return total


def timed(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak tree RSS MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    t.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err.decode()[-3000:]}")
    return wall, peak[0] / 2**20, out.decode()


def r2(num, den):
    if den == 0:
        return "0.00"
    return str((Decimal(num) / Decimal(den)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def batch_rows(users, top, cats):
    """The report's tables, from raw counts, formatted as clickwatch's CSVs."""
    want_users, seg = [], {}
    for u, v, c, p, up, s in sorted(users):
        segment = "Buyer" if p > 0 else "Window Shopper"
        eng = v + 3 * c + 10 * p
        want_users.append([u, str(v), str(c), str(p), str(up), str(s), segment, str(eng)])
        acc = seg.setdefault(segment, [0, 0, 0, 0])
        for i, x in enumerate((1, v, p, eng)):
            acc[i] += x
    return {
        "user_segments": want_users,
        "segment_summary": [[k, str(n), r2(v, n), r2(p, n), r2(e, n)] for k, (n, v, p, e) in sorted(seg.items())],
        "top_products": [[p, c, str(vc), str(uv)] for p, c, vc, uv in top],
        "conversion_rates": sorted(
            ([c, str(v), str(k), str(p), str(u), r2(100 * k, v), r2(100 * p, k), r2(100 * p, v)] for c, v, k, p, u in cats),
            key=lambda r: (-Decimal(r[7]), r[0])),
    }


def clickwatch_batch_rows(reports):
    import csv
    out = {}
    for name in ("user_segments", "segment_summary", "top_products", "conversion_rates"):
        with open(f"{reports}/{DAY}/{name}.csv", newline="") as f:
            out[name] = list(csv.reader(f))[1:]
    return out


# --- DuckDB, run as child processes of this script so they are timed alike ---

def duck_alerts(path, out):
    import duckdb
    con = duckdb.connect()
    rows = con.execute(DUCKDB_QUERY.format(path=path)).fetchall()
    with open(out, "w") as f:
        json.dump([list(r) for r in rows], f)


def duck_batch(archive, out):
    import duckdb
    con = duckdb.connect()
    con.execute(f"""
        CREATE VIEW ev AS SELECT * FROM read_parquet('{archive}/events/event_date={DAY}/*.parquet');
        CREATE TEMP TABLE d AS
          SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY event_id) AS rn
                                     FROM ev WHERE event_id IS NOT NULL) WHERE rn = 1
          UNION ALL SELECT * FROM ev WHERE event_id IS NULL""")
    users = con.execute("""SELECT user_id, count(*) FILTER (WHERE event_type = 'view'),
        count(*) FILTER (WHERE event_type = 'add_to_cart'), count(*) FILTER (WHERE event_type = 'purchase'),
        count(DISTINCT product_id), count(DISTINCT session_id) FROM d GROUP BY user_id""").fetchall()
    top = con.execute("""SELECT product_id, category, count(*) AS vc, count(DISTINCT user_id) FROM d
        WHERE event_type = 'view' GROUP BY 1, 2 ORDER BY vc DESC, product_id, category LIMIT 5""").fetchall()
    cats = con.execute("""SELECT category, count(*) FILTER (WHERE event_type = 'view'),
        count(*) FILTER (WHERE event_type = 'add_to_cart'), count(*) FILTER (WHERE event_type = 'purchase'),
        count(DISTINCT user_id) FROM d GROUP BY category""").fetchall()
    with open(out, "w") as f:
        json.dump({"users": users, "top": top, "categories": cats}, f)


def max_event_us(path):
    import duckdb
    return duckdb.connect().execute(f"""
        SELECT max(CASE WHEN regexp_full_match(timestamp, '[0-9]+') THEN CAST(timestamp AS BIGINT) * 1000
                        ELSE epoch_us(CAST(timestamp AS TIMESTAMPTZ)) END)
        FROM read_json('{path}', format = 'newline_delimited', columns = {{timestamp: 'VARCHAR'}})""").fetchone()[0]


def iso(us):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us // 1_000_000))


def split(path, parts_dir, lines_per_file):
    os.makedirs(parts_dir, exist_ok=True)
    with open(path, "rb") as f:
        i, buf = 0, []
        for line in f:
            buf.append(line)
            if len(buf) == lines_per_file:
                with open(f"{parts_dir}/part-{i:05d}.json", "wb") as o:
                    o.writelines(buf)
                i, buf = i + 1, []
        if buf:
            with open(f"{parts_dir}/part-{i:05d}.json", "wb") as o:
                o.writelines(buf)


def one_size(n, args, work):
    b, py = args.binary, sys.executable
    data = f"{work}/events-{n}.jsonl"
    if not os.path.exists(data):
        subprocess.run([b, "generate", "--events", str(n), "--seed", "2026", "--profile", "skewed", "--jitter", "30s",
                        "--output", data], check=True, stderr=subprocess.DEVNULL)
    parts = f"{work}/parts-{n}"
    if not os.path.isdir(parts):
        split(data, parts, 250_000)
    rows = []  # (task, engine, cores, wall, rss)

    # Speed layer.
    alerts = {}
    for w in (1, 2):
        out = f"{work}/cw-alerts-{n}-w{w}.jsonl"
        wall, rss, _ = timed([b, "stream", "--input", data, "--no-console", "--alerts-file", out,
                              "--dead-letter", f"{work}/dead.jsonl", "-w", str(w)])
        with open(out) as f:
            alerts[f"w{w}"] = {(a["product_id"], a["window_start"], a["views"], a["purchases"])
                               for a in map(json.loads, f)}
        rows.append(("stream", f"clickwatch stream -w {w}", w, wall, rss))
    out = f"{work}/duck-alerts-{n}.json"
    wall, rss, _ = timed([py, __file__, "duck-alerts", data, out])
    with open(out) as f:
        alerts["duckdb"] = {tuple(r) for r in json.load(f)}
    rows.append(("stream", "DuckDB sliding-window query (JSONL)", 2, wall, rss))
    spark_out = f"{work}/spark-alerts-{n}"
    shutil.rmtree(spark_out, ignore_errors=True)
    shutil.rmtree(spark_out + "-checkpoint", ignore_errors=True)
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=py)
    wall, rss, _ = timed([py, f"{HERE}/spark_jobs.py", "stream", "--input", parts, "--out", spark_out], env=env)
    spark = set()
    for p in glob.glob(f"{spark_out}/part-*.json"):
        with open(p) as f:
            spark |= {(a["product_id"], a["window_start"], a["views"], a["purchases"]) for a in map(json.loads, f)}
    rows.append(("stream", "Spark Structured Streaming, local[2]", 2, wall, rss))

    # Agreement on alerts.
    ref = alerts["w1"]
    for name in ("w2", "duckdb"):
        if alerts[name] != ref:
            sys.exit(f"{name} disagrees with clickwatch -w 1: only {name}: {sorted(alerts[name] - ref)[:3]}, "
                     f"only clickwatch: {sorted(ref - alerts[name])[:3]}")
    closed_by = max_event_us(data) - DELAY_US  # Spark's final watermark
    ends_before = {a for a in ref if _end_us(a[1]) <= closed_by}
    if spark != ends_before:
        sys.exit(f"Spark disagrees: only Spark {sorted(spark - ends_before)[:3]}, "
                 f"only clickwatch {sorted(ends_before - spark)[:3]}")

    # Batch layer, on the archive the stream writes.
    archive, reports = f"{work}/archive-{n}", f"{work}/reports-{n}"
    shutil.rmtree(archive, ignore_errors=True)
    subprocess.run([b, "stream", "--input", data, "--no-console", "-w", "2", "--archive", archive,
                    "--dead-letter", f"{work}/dead.jsonl"], check=True, stderr=subprocess.DEVNULL)
    wall, rss, _ = timed([b, "batch", "--archive", archive, "--date", DAY, "--reports", reports])
    rows.append(("batch", "clickwatch batch (reader + worker thread)", 2, wall, rss))
    got = {"clickwatch": clickwatch_batch_rows(reports)}
    out = f"{work}/duck-batch-{n}.json"
    wall, rss, _ = timed([py, __file__, "duck-batch", archive, out])
    with open(out) as f:
        d = json.load(f)
    got["DuckDB"] = batch_rows([tuple(u) for u in d["users"]], d["top"], d["categories"])
    rows.append(("batch", "DuckDB queries (Parquet)", 2, wall, rss))
    out = f"{work}/spark-batch-{n}.json"
    wall, rss, _ = timed([py, f"{HERE}/spark_jobs.py", "batch", "--archive", archive, "--date", DAY, "--out", out],
                         env=env)
    with open(out) as f:
        d = json.load(f)
    got["PySpark"] = batch_rows([tuple(u) for u in d["users"]], d["top"], d["categories"])
    rows.append(("batch", "PySpark daily job, local[2]", 2, wall, rss))
    for name in ("DuckDB", "PySpark"):
        for table, want in got["clickwatch"].items():
            if got[name][table] != want:
                diff = [(a, b) for a, b in zip(got[name][table], want) if a != b][:2]
                sys.exit(f"{name} disagrees with clickwatch on {table}: {diff}")
    agree = (f"{len(ref)} alerts identical in clickwatch and DuckDB; the {len(spark)} of windows ending by "
             f"Spark's final watermark ({iso(closed_by)}) identical in Spark; batch tables identical in all three "
             f"({len(got['clickwatch']['user_segments'])} users)")
    return rows, agree, os.path.getsize(data)


def _end_us(window_start):
    import calendar
    t = calendar.timegm(time.strptime(window_start, "%Y-%m-%dT%H:%M:%SZ"))
    return (t + 600) * 1_000_000


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "duck-alerts":
        return duck_alerts(sys.argv[2], sys.argv[3])
    if len(sys.argv) > 1 and sys.argv[1] == "duck-batch":
        return duck_batch(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/clickwatch")
    ap.add_argument("--sizes", default="2000000,10000000")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="clickwatch-compare-")
    if not args.workdir:
        atexit.register(shutil.rmtree, work, True)  # also when a run fails
    os.makedirs(work, exist_ok=True)
    import duckdb
    import pyspark
    print(f"clickwatch vs Spark {pyspark.__version__} vs DuckDB {duckdb.__version__}; "
          f"{platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
          f"{time.strftime('%Y-%m-%d')}")
    for n in (int(s) for s in args.sizes.split(",")):
        rows, agree, size = one_size(n, args, work)
        print(f"\n{n:,} events ({size / 2**20:.0f} MiB JSONL). Checked first: {agree}.\n")
        print("| task | engine | cores | wall s | events/s | events/s per core | peak RSS MiB | wall / clickwatch |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        best = {task: min(w for t, eng, _, w, _ in rows if t == task and eng.startswith("clickwatch"))
                for task, *_ in rows}
        for task, engine, cores, wall, rss in rows:
            print(f"| {task} | {engine} | {cores} | {wall:.2f} | {n / wall:,.0f} | {n / wall / cores:,.0f} | "
                  f"{rss:,.0f} | {wall / best[task]:.1f}× |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
