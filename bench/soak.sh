#!/usr/bin/env bash
# Soak: a live stream at a sustained rate with memory and state sampled
# from /metrics (see bench/soak.py; numbers in the README).
#   bench/soak.sh [--seconds 600] [--rate 200000] [--every 30] [--workers 2]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/soak.py --binary "${CARGO_TARGET_DIR:-target}/release/clickwatch" "$@"
