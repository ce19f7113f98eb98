"""Sweep summaries: one row per job (its overrides, status and final metrics), a plot and
``report.html`` (the jobs side by side: :mod:`aelightning.evaluation.report`).

Registered as a Hydra callback in ``conf/hydra/default.yaml``. Each job records itself in
``<job dir>/job.json`` when it ends and the sweep-level files are rebuilt from all the
records then, so the summary exists (failed jobs included) even when Hydra stops the
sweep with an error after its last job — ``on_multirun_end`` is not called in that case.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from aelightning.checkpointing.atomic import read_json, write_json, write_text_atomic
from aelightning.cli.reporting import find_user_error
from aelightning.evaluation.metrics import HEADLINE_METRICS
from aelightning.evaluation.report import REPORT_FILE, write_report
from aelightning.runtime.lightning_compat import job_exception

log = logging.getLogger("aelightning")


class SweepSummary(Callback):
    """Write ``summary.csv``, ``summary.md``, ``summary.png`` and ``report.html`` into the
    sweep dir, each time a job ends."""

    def __init__(self, metric: str = "test/loss"):
        self.metric = metric

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        record = job_record(job_dir, job_return, int(config.hydra.job.num))
        write_json(job_dir / "job.json", record)
        if record["status"] == "failed":
            log.error("job %s failed (%s): %s", record["num"], record["overrides"], record["error"])
        self.write(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.write(Path(config.hydra.sweep.dir))

    def write(self, sweep_dir: Path) -> list[dict[str, Any]]:
        records = collect_records(sweep_dir)
        if not records:
            return records
        common = shorten_overrides(records)
        columns = metric_columns(records)
        write_text_atomic(sweep_dir / "summary.csv", to_csv(records, columns))
        markdown = to_markdown(records, columns)
        if common:
            markdown = f"Common to all jobs: `{' '.join(common)}`\n\n{markdown}"
        write_text_atomic(sweep_dir / "summary.md", markdown)
        plot_metric(
            records,
            self.metric if self.metric in columns else columns[0],
            sweep_dir / "summary.png",
        )
        try:  # the page is a view of the jobs' files: never the reason a sweep fails
            write_report([sweep_dir], sweep_dir / REPORT_FILE, f"Sweep {sweep_dir}")
        except Exception:
            log.exception("report.html was not written")
        return records


def job_record(job_dir: Path, job_return: JobReturn, num: int) -> dict[str, Any]:
    ok = job_return.status == JobStatus.COMPLETED
    metrics_file = job_dir / "metrics.json"
    metrics = read_json(metrics_file)["metrics"] if ok and metrics_file.is_file() else {}
    error = None
    if not ok:
        exc = job_exception(job_return)
        error = (str(find_user_error(exc) or exc).strip().splitlines() or [repr(exc)])[0]
    return {
        "num": num,
        "overrides": " ".join(job_return.overrides or []),
        "status": "ok" if ok else "failed",
        "error": error,
        "metrics": metrics,
        "dir": str(job_dir),
    }


def shorten_overrides(records: list[dict[str, Any]]) -> list[str]:
    """Keep in each record only the overrides that vary; return the ones all jobs share."""
    tokens = [r["overrides"].split() for r in records]
    common = [t for t in tokens[0] if all(t in other for other in tokens[1:])]
    if len(records) > 1:
        for record, toks in zip(records, tokens, strict=True):
            record["overrides"] = " ".join(t for t in toks if t not in common)
    return common if len(records) > 1 else []


def collect_records(sweep_dir: Path) -> list[dict[str, Any]]:
    records = [read_json(p) for p in Path(sweep_dir).glob("*/job.json")]
    return sorted(records, key=lambda r: r["num"])


def metric_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    present = {k for r in records for k in r["metrics"]}
    return [m for m in HEADLINE_METRICS if m in present] or sorted(present)[:6]


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else str(value))


def to_csv(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["job", "overrides", "status", *columns, "error"])
    for r in records:
        writer.writerow(
            [
                r["num"],
                r["overrides"],
                r["status"],
                *(_cell(r["metrics"].get(c)) for c in columns),
                r["error"] or "",
            ]
        )
    return buffer.getvalue()


def to_markdown(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    header = ["job", "overrides", "status", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        status = r["status"] if r["status"] == "ok" else f"failed: {r['error']}"
        cells = [
            str(r["num"]),
            f"`{r['overrides']}`",
            status,
            *(_cell(r["metrics"].get(c)) for c in columns),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_metric(records: Sequence[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """Horizontal bars of ``metric`` per job (failed jobs shown as such)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['num']}: {r['overrides'] or '(defaults)'}" for r in records]
    values = [r["metrics"].get(metric, math.nan) for r in records]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(records) + 1.2))
    bars = ax.barh(
        range(len(records)),
        [0 if math.isnan(v) else v for v in values],
        color=["tab:blue" if r["status"] == "ok" else "tab:red" for r in records],
    )
    for bar, value, r in zip(bars, values, records, strict=True):
        text = "failed" if r["status"] != "ok" else f"{value:.4g}"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {text}", va="center")
    ax.set_yticks(range(len(records)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(f"sweep: {metric} per job")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
