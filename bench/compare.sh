#!/usr/bin/env bash
# clickwatch vs Spark Structured Streaming + PySpark vs DuckDB, same data,
# one run (see bench/compare.py; the table goes in the README).
#   bench/compare.sh [--sizes 2000000,10000000] [--workdir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
venv="$(bench/venv.sh bench/requirements-spark.txt)"
export SPARK_LOCAL_IP=127.0.0.1
exec "$venv/bin/python" bench/compare.py --binary "${CARGO_TARGET_DIR:-target}/release/clickwatch" "$@"
