"""The block printed at the end of a run: what data, which numbers, where the files are."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from aelightning.evaluation.metrics import HEADLINE_METRICS


def print_summary(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    table.add_row("data", str(result["data"]))
    metrics = result["metrics"]
    for name in HEADLINE_METRICS:
        if name in metrics:
            table.add_row(name, f"{metrics[name]:.6g}")
    table.add_row("run dir", str(result["output_dir"]))
    if result.get("best_checkpoint"):
        table.add_row("best checkpoint", str(result["best_checkpoint"]))
    table.add_row("time", f"{result['seconds']:.1f} s")
    table.add_row("tensorboard", f"tensorboard --logdir {result['output_dir']}/tensorboard")
    title = "aelightning run interrupted" if result.get("interrupted") else "aelightning run"
    console.print(Panel(table, title=title, expand=False))
