#!/usr/bin/env bash
# Speed-layer benchmark: clickwatch stream (1 and 2 workers) vs DuckDB on
# the same generated JSONL. Prints a markdown table (see README).
#   bench/speed.sh [--events N] [--runs R] [--workdir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
venv="$(bench/venv.sh)"
exec "$venv/bin/python" bench/speed.py --binary "${CARGO_TARGET_DIR:-target}/release/clickwatch" "$@"
