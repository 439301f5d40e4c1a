#!/usr/bin/env bash
# Batch-layer benchmark vs DuckDB (see README). bench/batch.sh [--events N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
venv="$(bench/venv.sh)"
exec "$venv/bin/python" bench/batch.py --binary "${CARGO_TARGET_DIR:-target}/release/clickwatch" "$@"
