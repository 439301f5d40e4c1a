"""The seed's Spark jobs, for the comparison benchmark (bench/compare.py).

    spark_jobs.py stream --input DIR --out DIR     # Structured Streaming alerts
    spark_jobs.py batch --archive DIR --date D --out FILE.json

`stream`: the seed's speed layer: a JSON file source (one file per
micro-batch), event time with a 2-minute watermark, 10-minute windows
sliding by 5 minutes per product, the flash-sale rule (views > 100 and
purchases < 5) in append mode, run with the availableNow trigger.
`batch`: the seed's daily job on the Parquet archive: per-user metrics and
segments, top 5 viewed products, per-category conversion.

Each prints one JSON line: {"seconds": time after the session started}.
"""

import argparse
import json
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

SCHEMA = StructType([
    StructField("event_id", StringType()),
    StructField("user_id", StringType()),
    StructField("product_id", StringType()),
    StructField("event_type", StringType()),
    StructField("timestamp", StringType()),
    StructField("category", StringType()),
    StructField("session_id", StringType()),
    StructField("price", DoubleType()),
    StructField("quantity", LongType()),
])


def session(name):
    return (SparkSession.builder.master("local[2]").appName(name)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", "4g")
            .getOrCreate())


def stream(args):
    spark = session("clickwatch-bench-stream")
    start = time.perf_counter()
    raw = spark.readStream.schema(SCHEMA).option("maxFilesPerTrigger", 1).json(args.input)
    ts = F.col("timestamp")
    events = raw.withColumn(
        "event_time",
        F.when(ts.rlike("^[0-9]+$"), F.timestamp_millis(ts.cast("long"))).otherwise(F.to_timestamp(ts)),
    )
    counts = (events.withWatermark("event_time", "2 minutes")
              .groupBy(F.window("event_time", "10 minutes", "5 minutes"), "product_id")
              .agg(F.sum(F.when(F.col("event_type") == "view", 1).otherwise(0)).alias("views"),
                   F.sum(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).alias("purchases")))
    alerts = (counts.filter((F.col("views") > 100) & (F.col("purchases") < 5))
              .select("product_id", F.date_format("window.start", "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("window_start"),
                      "views", "purchases"))
    query = (alerts.writeStream.outputMode("append").format("json")
             .option("path", args.out).option("checkpointLocation", args.out + "-checkpoint")
             .trigger(availableNow=True).start())
    query.awaitTermination()
    print(json.dumps({"seconds": time.perf_counter() - start}))
    spark.stop()


def batch(args):
    spark = session("clickwatch-bench-batch")
    start = time.perf_counter()
    ev = spark.read.parquet(f"{args.archive}/events/event_date={args.date}")
    # One row per event_id per day (SPEC §5); events without an id all count.
    d = ev.filter(F.col("event_id").isNotNull()).dropDuplicates(["event_id"]).unionByName(
        ev.filter(F.col("event_id").isNull()))
    d = d.cache()
    kind = F.col("event_type")
    n = lambda k: F.sum(F.when(kind == k, 1).otherwise(0))  # noqa: E731
    users = d.groupBy("user_id").agg(
        n("view").alias("v"), n("add_to_cart").alias("c"), n("purchase").alias("p"),
        F.countDistinct("product_id").alias("up"), F.countDistinct("session_id").alias("s"))
    top = (d.filter(kind == "view").groupBy("product_id", "category")
           .agg(F.count("*").alias("vc"), F.countDistinct("user_id").alias("uv"))
           .orderBy(F.desc("vc"), "product_id", "category").limit(5))
    cats = d.groupBy("category").agg(n("view").alias("v"), n("add_to_cart").alias("c"), n("purchase").alias("p"),
                                     F.countDistinct("user_id").alias("u"))
    out = {
        "users": [list(r) for r in users.collect()],
        "top": [list(r) for r in top.collect()],
        "categories": [list(r) for r in cats.collect()],
    }
    seconds = time.perf_counter() - start
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(json.dumps({"seconds": seconds}))
    spark.stop()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="job", required=True)
    s = sub.add_parser("stream")
    s.add_argument("--input", required=True)
    s.add_argument("--out", required=True)
    b = sub.add_parser("batch")
    b.add_argument("--archive", required=True)
    b.add_argument("--date", required=True)
    b.add_argument("--out", required=True)
    args = ap.parse_args()
    {"stream": stream, "batch": batch}[args.job](args)


if __name__ == "__main__":
    main()
