"""``report.html``: runs side by side on one self-contained page (no network, images inline).

For any set of runs (a sweep, several sweeps, single runs): a sortable table of the final
metrics (failed runs with their error line), the reconstructions of the same fixed test images
per run, the loss curves of all runs overlaid (from each run's ``metrics.csv``), the final
metrics against each swept numeric key (a line per value of the other swept keys) and, for
models that sample (VAE), samples per run. Runs are labelled by the values of the keys their
overrides vary (:mod:`aelightning.evaluation.runs`). Written by every multirun
(:class:`aelightning.cli.sweep.SweepSummary`) and by ``ae-report``.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from aelightning.checkpointing.atomic import write_text_atomic
from aelightning.evaluation import plots
from aelightning.evaluation.history import TRAIN_LOSS, VAL_LOSS, TrainingHistory
from aelightning.evaluation.runs import (
    RunRecord,
    common_overrides,
    is_number,
    label,
    load_runs,
    varying_keys,
)

REPORT_FILE = "report.html"
#: table columns first in this order (others follow, sorted)
TABLE_ORDER = (
    "val/loss",
    "val/neg_elbo",
    "test/loss",
    "test/mse",
    "test/psnr",
    "test/ssim",
    "test/neg_elbo",
    "test/iw_nll",
    "probe/linear_acc",
)
#: metrics drawn against the swept numeric keys (the first ones present)
AXIS_METRICS = ("test/loss", "test/psnr", "test/neg_elbo", "val/loss")
HIGHER_IS_BETTER = ("psnr", "ssim", "acc", "auroc")


# ------------------------------------------------------------------------------ pieces
def reconstruction_image(run: RunRecord) -> tuple[Path, str] | None:
    """The run's final reconstructions of the first test images (the gallery's), else its
    last per-epoch grid of the first validation images; with what they show."""
    final = run.dir / "figures" / "reconstructions.png"
    if final.is_file():
        return final, "test images"
    grids = sorted((run.dir / "figures").glob("reconstructions_epoch*.png"))
    if grids:
        epoch = grids[-1].stem.removeprefix("reconstructions_epoch")
        return grids[-1], f"validation images, epoch {int(epoch)}"
    return None


def _colors(n: int) -> list[str]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(cmap(i % cmap.N)) for i in range(n)]


def curves_figure(runs: Sequence[RunRecord], labels: Sequence[str]) -> Figure | None:
    """Train and validation loss per epoch, every run overlaid in its own colour."""
    histories = [TrainingHistory.from_run_dir(r.dir) for r in runs]
    if all(h.empty for h in histories):
        return None
    fig = plots.new_figure(12, 4.2)
    axes = fig.subplots(1, 2, sharex=True)
    for ax, tag, title in zip(
        axes, (TRAIN_LOSS, VAL_LOSS), ("train loss", "val loss"), strict=True
    ):
        for history, name, color in zip(histories, labels, _colors(len(runs)), strict=True):
            points = history.epochs.get(tag, [])
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, color=color, label=name, marker="o" if len(x) <= 30 else None, ms=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("loss")
    _shared_legend(fig, axes)
    return fig


def _shared_legend(fig: Figure, axes: Iterable) -> None:
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="upper left",
            bbox_to_anchor=(1.0, 0.95),
            fontsize=8,
            frameon=False,
        )


def axis_metrics(runs: Sequence[RunRecord]) -> list[str]:
    present = {m for r in runs for m in r.final_metrics}
    return [m for m in AXIS_METRICS if m in present][:3]


def axis_figure(runs: Sequence[RunRecord], axis: str, varying: Sequence[str]) -> Figure | None:
    """The final metrics against the numeric key ``axis``; one line per combination of the
    other varying keys' values (``net=conv``)."""
    ok = [r for r in runs if r.status == "ok" and is_number(r.value(axis))]
    metrics = axis_metrics(ok)
    if len({r.value(axis) for r in ok}) < 2 or not metrics:
        return None
    others = [k for k in varying if k != axis]
    groups: dict[str, list[RunRecord]] = {}
    for run in ok:
        groups.setdefault(label(run, others) if others else "all runs", []).append(run)
    fig = plots.new_figure(4.6 * len(metrics), 3.8)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    values = [float(r.value(axis)) for r in ok]  # type: ignore[arg-type]
    log_x = min(values) > 0 and max(values) / min(values) >= 100
    for ax, metric in zip(axes, metrics, strict=True):
        for (name, members), color in zip(groups.items(), _colors(len(groups)), strict=True):
            points = sorted(
                (float(r.value(axis)), r.metrics[metric])  # type: ignore[arg-type]
                for r in members
                if metric in r.metrics
            )
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, marker="o", color=color, label=name)
        ax.set_xlabel(axis)
        ax.set_title(metric)
        ax.grid(True, alpha=0.3)
        if log_x:
            ax.set_xscale("log")
    if others:
        _shared_legend(fig, axes)
    return fig


# ------------------------------------------------------------------------------- html
def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_html(fig: Figure | None, alt: str) -> str:
    if fig is None:
        return ""
    return f'<img class="plot" alt="{html.escape(alt)}" src="{_data_uri(plots.figure_png(fig))}">'


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def table_columns(runs: Sequence[RunRecord]) -> list[str]:
    present = {m for r in runs for m in r.final_metrics}
    return [m for m in TABLE_ORDER if m in present] + sorted(present - set(TABLE_ORDER))


def _best(runs: Sequence[RunRecord], metric: str) -> float | None:
    values = [r.metrics[metric] for r in runs if r.status == "ok" and metric in r.metrics]
    if len(values) < 2 or "noisy" in metric:  # the noisy input's score, not the model's
        return None
    return max(values) if any(h in metric for h in HIGHER_IS_BETTER) else min(values)


def summary_table(runs: Sequence[RunRecord], varying: Sequence[str]) -> str:
    columns = table_columns(runs)
    best = {m: _best(runs, m) for m in columns}
    head = ["run", *varying, "status", *columns, "error"]
    rows = []
    for run in runs:
        cells = [f"<td>{html.escape(run.name)}</td>"]
        for key in varying:
            value = run.value(key)
            cells.append(f"<td>{html.escape('' if value is None else str(value))}</td>")
        cells.append(f"<td>{html.escape(run.status)}</td>")
        for metric in columns:
            value = run.metrics.get(metric)
            mark = ' class="best"' if value is not None and value == best[metric] else ""
            cells.append(f"<td{mark}>{_cell(value)}</td>")
        cells.append(f'<td class="error">{html.escape(run.error or "")}</td>')
        status = "" if run.status == "ok" else f' class="{html.escape(run.status)}"'
        rows.append(f"<tr{status}>{''.join(cells)}</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f'<table class="sortable"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def image_cards(runs: Sequence[RunRecord], labels: Sequence[str], kind: str) -> str:
    """One card per run with its reconstructions (``kind="reconstructions"``) or samples."""
    cards = []
    for run, name in zip(runs, labels, strict=True):
        if kind == "samples":
            path = run.dir / "figures" / "samples.png"
            found = (path, "samples from the prior") if path.is_file() else None
        else:
            found = reconstruction_image(run)
        if found is None:
            continue
        path, what = found
        cards.append(
            f'<figure class="card"><figcaption><b>{html.escape(name)}</b><br>'
            f"<small>{html.escape(run.name)} · {html.escape(what)}</small></figcaption>"
            f'<img alt="{html.escape(name)}" src="{_data_uri(path.read_bytes())}"></figure>'
        )
    return f'<div class="cards">{"".join(cards)}</div>' if cards else ""


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 .3em; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; white-space: nowrap; }
th { background: #eef; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[data-order=asc]::after { content: " ▲"; } th[data-order=desc]::after { content: " ▼"; }
td:first-child, td.error { text-align: left; }
td.error { white-space: normal; max-width: 40em; color: #a00; }
tr.failed td { background: #fde8e8; } tr.incomplete td { background: #fff6dd; }
td.best { font-weight: bold; background: #e6f4e6; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
.card { margin: 0; border: 1px solid #ddd; padding: .5em; background: #fafafa; }
.card img { max-width: 560px; display: block; margin-top: .3em; }
img.plot { max-width: 100%; }
.note { color: #666; font-size: .9em; }
"""

SORT_SCRIPT = """
const headers = document.querySelectorAll("table.sortable th");
headers.forEach((th, i) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const asc = th.dataset.order !== "asc";
  th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.order);
  th.dataset.order = asc ? "asc" : "desc";
  const key = row => row.cells[i].textContent.trim();
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === "" || y === "") return (x === "") - (y === "");  // blanks last
    const nx = Number(x), ny = Number(y);
    const cmp = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y, undefined, {numeric: true});
    return asc ? cmp : -cmp;
  });
  rows.forEach(row => body.appendChild(row));
}));
"""


def build_report(runs: Sequence[RunRecord], title: str) -> str:
    """The whole page as one HTML string."""
    varying = varying_keys(runs)
    labels = [label(r, varying) for r in runs]
    ok = sum(r.status == "ok" for r in runs)
    common = common_overrides(runs, varying)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{len(runs)} runs ({ok} finished, {len(runs) - ok} failed or '
        f"unfinished), written {time.strftime('%Y-%m-%d %H:%M:%S')}. Swept: "
        + (", ".join(f"<code>{html.escape(k)}</code>" for k in varying) or "nothing")
        + (
            f". Common to all: <code>{html.escape(' '.join(common))}</code>"
            if len(runs) > 1 and common
            else ""
        )
        + ". Click a column header to sort.</p>",
        "<h2>Summary</h2>",
        summary_table(runs, varying),
    ]
    sections = [
        (
            "Reconstructions",
            image_cards(runs, labels, "reconstructions"),
            "Top row the inputs (the same images in every run), then the noisy inputs of "
            "denoising runs, then the outputs.",
        ),
        (
            "Loss curves",
            _figure_html(curves_figure(runs, labels), "loss curves"),
            "From each run's metrics.csv.",
        ),
    ]
    numeric = [k for k in varying if any(is_number(r.value(k)) for r in runs)]
    for axis in numeric:
        sections.append(
            (
                f"Final metrics against {axis}",
                _figure_html(axis_figure(runs, axis, varying), f"metrics against {axis}"),
                "",
            )
        )
    sections.append(("Samples", image_cards(runs, labels, "samples"), ""))
    for heading, body, note in sections:
        if body:
            parts += [
                f"<h2>{html.escape(heading)}</h2>",
                f'<p class="note">{note}</p>' if note else "",
                body,
            ]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + f"<script>{SORT_SCRIPT}</script></body></html>\n"
    )


def write_report(paths: Iterable[Path | str], out: Path | str, title: str | None = None) -> Path:
    """Build the page for every run under ``paths`` and write it to ``out``."""
    paths = [Path(p) for p in paths]
    runs = load_runs(paths)
    title = title or "Runs: " + ", ".join(str(p) for p in paths)
    return write_text_atomic(Path(out), build_report(runs, title))
