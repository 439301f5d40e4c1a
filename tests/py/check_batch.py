#!/usr/bin/env python3
"""Recomputes one day's batch metrics with DuckDB SQL on the Parquet
archive and compares them with clickwatch's CSV reports, cell by cell.

    check_batch.py --archive DIR --date YYYY-MM-DD --reports DIR
"""

import argparse
import csv
import sys
from decimal import ROUND_HALF_UP, Decimal

import duckdb


def r2(num, den):
    """num/den rounded to 2 decimals half away from zero, as text."""
    if den == 0:
        return "0.00"
    return str((Decimal(num) / Decimal(den)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--reports", required=True)
    a = ap.parse_args()
    con = duckdb.connect()
    con.execute(f"""
        CREATE VIEW ev AS SELECT event_id, user_id, product_id, event_type, category, session_id
        FROM read_parquet('{a.archive}/events/event_date={a.date}/*.parquet');
        CREATE VIEW d AS
          SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY user_id, product_id, category, event_type, session_id) AS rn
            FROM ev WHERE event_id IS NOT NULL) WHERE rn = 1
          UNION ALL SELECT * FROM ev WHERE event_id IS NULL;
    """)
    users = con.execute("""
        SELECT user_id,
               count(*) FILTER (WHERE event_type = 'view'),
               count(*) FILTER (WHERE event_type = 'add_to_cart'),
               count(*) FILTER (WHERE event_type = 'purchase'),
               count(DISTINCT product_id), count(DISTINCT session_id)
        FROM d GROUP BY user_id ORDER BY user_id""").fetchall()
    want_users = []
    seg = {}
    for u, v, c, p, up, s in users:
        segment = "Buyer" if p > 0 else "Window Shopper"
        eng = v + 3 * c + 10 * p
        want_users.append([u, str(v), str(c), str(p), str(up), str(s), segment, str(eng)])
        acc = seg.setdefault(segment, [0, 0, 0, 0])
        acc[0] += 1
        acc[1] += v
        acc[2] += p
        acc[3] += eng
    want_seg = [[k, str(n), r2(v, n), r2(p, n), r2(e, n)] for k, (n, v, p, e) in sorted(seg.items())]
    want_top = [[p, c, str(vc), str(uv)] for p, c, vc, uv in con.execute("""
        SELECT product_id, category, count(*) AS vc, count(DISTINCT user_id)
        FROM d WHERE event_type = 'view' GROUP BY 1, 2
        ORDER BY vc DESC, product_id, category LIMIT 5""").fetchall()]
    cats = con.execute("""
        SELECT category,
               count(*) FILTER (WHERE event_type = 'view'),
               count(*) FILTER (WHERE event_type = 'add_to_cart'),
               count(*) FILTER (WHERE event_type = 'purchase'),
               count(DISTINCT user_id)
        FROM d GROUP BY category""").fetchall()
    rows = [[c, str(v), str(k), str(p), str(u), r2(100 * k, v), r2(100 * p, k), r2(100 * p, v)]
            for c, v, k, p, u in cats]
    want_conv = sorted(rows, key=lambda r: (-Decimal(r[7]), r[0]))

    base = f"{a.reports}/{a.date}"
    ok = True
    for name, want in [("user_segments", want_users), ("segment_summary", want_seg),
                       ("top_products", want_top), ("conversion_rates", want_conv)]:
        got = read_csv(f"{base}/{name}.csv")
        if got != want:
            ok = False
            diffs = [(g, w) for g, w in zip(got, want) if g != w][:3]
            print(f"{name}: {len(got)} rows vs DuckDB {len(want)}; first differences: {diffs}", file=sys.stderr)
    if not ok:
        sys.exit(1)
    print(f"batch OK: {len(want_users)} users, {len(want_conv)} categories agree with DuckDB")


if __name__ == "__main__":
    main()
