#!/usr/bin/env bash
# Kafka benchmark (README "Performance"): broker → stream → alerts (+ archive).
#   bench/kafka.sh [--events N] [--runs R]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/kafka.py --binary "${CARGO_TARGET_DIR:-target}/release/clickwatch" "$@"
