"""clickwatch daily batch (Airflow 3, `airflow.sdk` + the standard provider).

For the logical date D (a day in UTC; the run starts once the day is over):

    check_data ──▶ run_batch ──▶ verify_reports ──┐
        └────────▶ no_data ───────────────────────┴──▶ notify ──▶ cleanup

- check_data: does the archive hold committed Parquet files for D? Branches
  to the no-data path otherwise (a day without traffic is not a failure).
- run_batch: `clickwatch batch --archive A --date D --reports R`. Idempotent:
  clickwatch replaces the date's reports atomically, so retries, re-runs and
  backfills (`catchup`, `airflow backfill create`) are safe.
- verify_reports: every report file is there and report.json is for D.
- notify: a log line, and a POST of the summary to `clickwatch_notify_url`
  (Variable) or the `clickwatch_notify` HTTP connection, when configured.
- cleanup: deletes report folders older than `retention_days` before D.

Settings, first found wins: the run's params (trigger with `--conf`), the
Airflow Variables `clickwatch_<name>`, environment variables
`CLICKWATCH_<NAME>`, then the defaults below. Names: `bin`, `archive`,
`reports`, `retention_days`, `notify_url`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pathlib
import shutil
import urllib.request

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Param, Variable, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)

DEFAULTS = {
    "bin": "clickwatch",
    "archive": "/data/archive",
    "reports": "/data/reports",
    "retention_days": "30",
    "notify_url": "",
}
REPORT_FILES = [
    "segment_summary.csv",
    "user_segments.csv",
    "top_products.csv",
    "conversion_rates.csv",
    "summary.txt",
    "report.json",
    "report.html",
]


def setting(name: str) -> str:
    """A setting for this run: params, Variable, environment, default."""
    params = get_current_context()["params"]
    if params.get(name) not in (None, ""):
        return str(params[name])
    value = Variable.get(f"clickwatch_{name}", default=None)
    if value not in (None, ""):
        return str(value)
    return os.environ.get(f"CLICKWATCH_{name.upper()}", DEFAULTS[name])


def day() -> str:
    """The UTC day this run is for: its logical date (scheduled runs: the
    day that just ended; `airflow dags test clickwatch_daily D`: D)."""
    return get_current_context()["logical_date"].strftime("%Y-%m-%d")


@dag(
    dag_id="clickwatch_daily",
    description="clickwatch batch layer: segments, top products, conversion rates for one day",
    # Classic daily intervals: the run for day D starts when D is over.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
    catchup=os.environ.get("CLICKWATCH_DAG_CATCHUP", "false").lower() == "true",
    max_active_runs=4,
    default_args={
        "retries": 3,
        "retry_delay": dt.timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=15),
    },
    params={name: Param(None, type=["null", "string"]) for name in DEFAULTS},
    tags=["clickwatch"],
)
def clickwatch_daily():
    @task.branch
    def check_data() -> str:
        folder = pathlib.Path(setting("archive")) / "events" / f"event_date={day()}"
        # Hidden files are uncommitted temporaries; only committed parts count.
        files = [f for f in folder.glob("*.parquet") if not f.name.startswith(".")] if folder.is_dir() else []
        log.info("archive %s: %d Parquet files for %s", folder, len(files), day())
        return "run_batch" if files else "no_data"

    run_batch = BashOperator(
        task_id="run_batch",
        bash_command='"$CLICKWATCH_BIN" batch --archive "$CLICKWATCH_ARCHIVE" --date "$DAY" --reports "$CLICKWATCH_REPORTS"',
        env={
            "CLICKWATCH_BIN": "{{ ti.xcom_pull(task_ids='settings')['bin'] }}",
            "CLICKWATCH_ARCHIVE": "{{ ti.xcom_pull(task_ids='settings')['archive'] }}",
            "CLICKWATCH_REPORTS": "{{ ti.xcom_pull(task_ids='settings')['reports'] }}",
            "DAY": "{{ logical_date.strftime('%Y-%m-%d') }}",
        },
        append_env=True,
    )

    @task
    def settings() -> dict:
        """Resolves the settings once, for the Bash task and the log."""
        resolved = {name: setting(name) for name in DEFAULTS}
        log.info("clickwatch settings: %s", {k: v for k, v in resolved.items() if k != "notify_url"})
        return resolved

    @task
    def no_data() -> dict:
        log.warning("clickwatch: no archived events for %s; no report", day())
        return {"date": day(), "status": "no data"}

    @task
    def verify_reports() -> dict:
        folder = pathlib.Path(setting("reports")) / day()
        missing = [f for f in REPORT_FILES if not (folder / f).is_file()]
        if missing:
            raise RuntimeError(f"reports for {day()} are missing {missing} in {folder}")
        report = json.loads((folder / "report.json").read_text())
        if report.get("date") != day():
            raise RuntimeError(f"{folder}/report.json is for {report.get('date')}, not {day()}")
        segments = {s["segment"]: s["user_count"] for s in report.get("segment_summary", [])}
        return {"date": day(), "status": "ok", "events": report.get("event_count"), "segments": segments,
                "report": str(folder / "report.html")}

    @task(trigger_rule="none_failed_min_one_success")
    def notify() -> None:
        # The summary of whichever path the branch took.
        ti = get_current_context()["ti"]
        summary = ti.xcom_pull(task_ids="verify_reports") or ti.xcom_pull(task_ids="no_data")
        log.info("clickwatch daily batch: %s", json.dumps(summary, sort_keys=True))
        url = setting("notify_url")
        if not url:
            try:
                from airflow.sdk import BaseHook

                url = BaseHook.get_connection("clickwatch_notify").get_uri()
            except Exception:  # no such connection: notification is optional
                url = ""
        if url:
            request = urllib.request.Request(url, data=json.dumps(summary).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                log.info("notified %s: HTTP %s", url, response.status)

    @task(trigger_rule="none_failed_min_one_success")
    def cleanup() -> list[str]:
        root = pathlib.Path(setting("reports"))
        keep_after = dt.date.fromisoformat(day()) - dt.timedelta(days=int(setting("retention_days")))
        removed = []
        for folder in sorted(root.glob("????-??-??")) if root.is_dir() else []:
            try:
                date = dt.date.fromisoformat(folder.name)
            except ValueError:
                continue
            if folder.is_dir() and date < keep_after:
                shutil.rmtree(folder)
                removed.append(folder.name)
        log.info("removed reports older than %s: %s", keep_after, removed or "none")
        return removed

    resolved = settings()
    branch = check_data()
    resolved >> branch
    verified = verify_reports()
    branch >> run_batch >> verified
    empty = no_data()
    branch >> empty
    [verified, empty] >> notify() >> cleanup()


clickwatch_daily()
