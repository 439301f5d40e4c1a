#!/usr/bin/env bash
# Prints the path of a Python venv with bench/requirements.txt (or the
# requirements file given as argument) installed,
# creating it on first use. Cached under ~/.cache/clickwatch, keyed by the
# requirements file's hash, so CI reuses it across clones but never
# depends on it existing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
req="${1:-$here/requirements.txt}"
key="$(sha256sum "$req" | cut -c1-16)"
venv="${CLICKWATCH_CACHE:-$HOME/.cache/clickwatch}/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
