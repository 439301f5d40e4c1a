#!/usr/bin/env python3
"""Kafka benchmark: a real broker (bin/kafka, KRaft, on this machine) →
clickwatch `stream` → alerts (+ Parquet archive), in events/s.

It produces N generated events to a 6-partition topic (timing the producer
too), then checks that reading the topic raises exactly the alerts of
reading the same events from a file, before timing `stream --until-end`
with 1 and 2 workers, with and without the archive. Every run reads the
whole topic from the beginning (a fresh consumer group and archive).

Usage: bench/kafka.sh [--events N] [--runs R]   (builds, starts the broker)
"""

import argparse
import atexit
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd):
    """Runs cmd; returns (wall seconds, peak RSS MiB, stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024, err


def alerts(path):
    with open(path) as f:
        return sorted((a["product_id"], a["window_start"], a["views"], a["purchases"])
                      for a in map(json.loads, f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/clickwatch"))
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="clickwatch-kafka-bench-")
    atexit.register(shutil.rmtree, work, True)  # also when a run fails
    port, cport = free_port(), free_port()
    brokers = f"127.0.0.1:{port}"
    log = open(os.path.join(work, "broker.log"), "w")
    broker = subprocess.Popen([os.path.join(ROOT, "bin/kafka"), "--dir", os.path.join(work, "broker"),
                               "--port", str(port), "--controller-port", str(cport)],
                              stdout=log, stderr=log)
    try:
        deadline = time.time() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if broker.poll() is not None or time.time() > deadline:
                    sys.exit(f"the broker did not start; see {log.name}")
                time.sleep(0.3)
        gen = ["generate", "--events", str(args.events), "--seed", "2026", "--profile", "skewed"]
        produce_s, _, _ = timed([args.binary, *gen, "--kafka", brokers, "--topic", "bench", "--partitions", "6"])
        data = os.path.join(work, "events.jsonl")
        subprocess.run([args.binary, *gen, "--output", data], check=True, stderr=subprocess.DEVNULL)

        def stream(workers, archive, tag):
            out = os.path.join(work, tag)
            os.makedirs(out, exist_ok=True)
            cmd = [args.binary, "stream", "--kafka", brokers, "--topic", "bench", "--until-end", "--no-console",
                   "--group", tag, "--alerts-file", os.path.join(out, "alerts.jsonl"),
                   "--dead-letter", os.path.join(out, "dead.jsonl"), "-w", str(workers)]
            if archive:
                cmd += ["--archive", os.path.join(out, "archive")]
            return cmd, out

        # Same alerts from the topic as from the file, before any timing.
        cmd, out = stream(2, False, "check")
        timed(cmd)
        file_alerts = os.path.join(work, "file-alerts.jsonl")
        timed([args.binary, "stream", "--input", data, "--no-console", "--alerts-file", file_alerts,
               "--dead-letter", os.path.join(work, "file-dead.jsonl")])
        if alerts(os.path.join(out, "alerts.jsonl")) != alerts(file_alerts):
            sys.exit("alerts from Kafka differ from alerts from the file")
        n_alerts = len(alerts(file_alerts))

        rows = []
        for workers, archive in ((1, False), (2, False), (1, True), (2, True)):
            walls, rss = [], 0.0
            for r in range(args.runs):
                cmd, out = stream(workers, archive, f"w{workers}-a{int(archive)}-r{r}")
                wall, peak, _ = timed(cmd)
                walls.append(wall)
                rss = max(rss, peak)
                shutil.rmtree(out)
            walls.sort()
            wall = walls[len(walls) // 2]
            rows.append((f"stream -w {workers}" + (" --archive" if archive else ""), wall, args.events / wall, rss))
    finally:
        broker.terminate()
        broker.wait(timeout=60)

    print(f"Kafka {args.events:,} events, 6 partitions, broker on the same machine "
          f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}); {n_alerts} alerts, "
          f"identical to the file run. Producer: {args.events / produce_s:,.0f} events/s.\n")
    print("| run (median of %d) | wall s | events/s | peak RSS MiB |" % args.runs)
    print("|---|---:|---:|---:|")
    for name, wall, rate, rss in rows:
        print(f"| {name} | {wall:.2f} | {rate:,.0f} | {rss:.0f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
