#!/usr/bin/env python3
"""Checks a clickwatch Parquet archive against its JSONL input with readers
clickwatch did not write: pyarrow (hive-partitioned dataset) and DuckDB.

The expected rows come from an independent reading of the input with
Python's json and datetime modules and SPEC §2's rules: every valid line
exactly once (late events and repeated event_ids included), refused lines
never. Exits non-zero with a description of the first differences.

    check_archive.py --input events.jsonl --archive DIR
"""

import argparse
import collections
import datetime as dt
import json
import sys

import duckdb
import pyarrow.dataset as ds

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v * 1000 if v >= 0 else None
    if not isinstance(v, str):
        return None
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    d = t - EPOCH
    us = (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
    return us if us >= 0 else None


def ident(v):
    return isinstance(v, str) and 1 <= len(v) <= 128


def opt_str(v):
    return v if isinstance(v, str) and v != "" else None


def expected_rows(path):
    rows = collections.Counter()
    with open(path, "rb") as f:
        for offset_line in f:
            line = offset_line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                e = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if not isinstance(e, dict):
                continue
            if not (ident(e.get("user_id")) and ident(e.get("product_id"))):
                continue
            et = e.get("event_type")
            if not isinstance(et, str) or et == "":
                continue
            t = parse_time(e.get("timestamp"))
            if t is None:
                continue
            price, qty = e.get("price"), e.get("quantity")
            if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))):
                continue
            if qty is not None and (isinstance(qty, bool) or not isinstance(qty, int)):
                continue
            for k in ("event_id", "category", "session_id"):
                if e.get(k) is not None and not isinstance(e.get(k), str):
                    break
            else:
                rows[(opt_str(e.get("event_id")), e["user_id"], e["product_id"], et,
                      opt_str(e.get("category")) or "unknown", opt_str(e.get("session_id")), t,
                      None if price is None else float(price), qty)] += 1
    return rows


def us(ts):
    if ts is None:
        return None
    d = ts - EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def pyarrow_rows(root):
    table = ds.dataset(f"{root}/events", format="parquet", partitioning="hive").to_table()
    cols = table.to_pydict()
    rows = collections.Counter()
    for i in range(table.num_rows):
        t = us(cols["event_time"][i])
        date = cols["event_date"][i]
        date = date if isinstance(date, str) else date.isoformat()
        if date != (EPOCH + dt.timedelta(microseconds=t)).date().isoformat():
            sys.exit(f"row in partition {date} has event_time {cols['event_time'][i]}")
        rows[(cols["event_id"][i], cols["user_id"][i], cols["product_id"][i], cols["event_type"][i],
              cols["category"][i], cols["session_id"][i], t, cols["price"][i], cols["quantity"][i])] += 1
    types = {f.name: str(f.type) for f in table.schema}
    return rows, types


def duckdb_rows(root):
    con = duckdb.connect()
    got = con.execute(f"""
        SELECT event_id, user_id, product_id, event_type, category, session_id,
               epoch_us(event_time), price, quantity
        FROM read_parquet('{root}/events/*/*.parquet', hive_partitioning = true)""").fetchall()
    return collections.Counter(tuple(r) for r in got)


def diff(name, got, want):
    if got == want:
        return True
    extra, missing = got - want, want - got
    print(f"{name}: {sum(got.values())} rows, expected {sum(want.values())}; "
          f"{sum(extra.values())} unexpected, {sum(missing.values())} missing", file=sys.stderr)
    for r in list(extra)[:3]:
        print(f"  unexpected: {r}", file=sys.stderr)
    for r in list(missing)[:3]:
        print(f"  missing: {r}", file=sys.stderr)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--archive", required=True)
    args = ap.parse_args()
    want = expected_rows(args.input)
    got_pa, types = pyarrow_rows(args.archive)
    if types.get("event_time") != "timestamp[us, tz=UTC]":
        sys.exit(f"event_time has type {types.get('event_time')}")
    ok = diff("pyarrow", got_pa, want)
    ok = diff("duckdb", duckdb_rows(args.archive), want) and ok
    if not ok:
        sys.exit(1)
    print(f"archive OK: {sum(want.values())} rows, exactly once, read by pyarrow and DuckDB")


if __name__ == "__main__":
    main()
