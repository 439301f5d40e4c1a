#!/usr/bin/env bash
# Prints the path of a Python venv with Apache Airflow (airflow/requirements.txt,
# pinned by airflow/constraints.txt: a `pip freeze` of a working install,
# since Airflow's own constraint files are not reachable from here),
# creating it on first use. Cached under ~/.cache/clickwatch keyed by both
# files' hash; nothing depends on the cache existing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -c1-16)"
venv="${CLICKWATCH_CACHE:-$HOME/.cache/clickwatch}/airflow-venv-$key"
if [ ! -x "$venv/bin/airflow" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" -c "$here/constraints.txt" >&2
  touch "$venv/.complete"
fi
echo "$venv"
