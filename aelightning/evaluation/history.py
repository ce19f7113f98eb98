"""A run's training history read back from its ``metrics.csv``.

Every logger config includes ``logger=csv`` (:class:`aelightning.loggers.RunCSVLogger`), which
writes each logged scalar to ``<run dir>/metrics.csv``: ``train/loss_epoch`` and ``val/loss``
once per epoch (with Lightning's ``epoch`` column), ``lr-*`` from ``LearningRateMonitor`` per
step. A resumed run appends to the same file, so the curves need no extra bookkeeping.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from aelightning.loggers import METRICS_FILE

TRAIN_LOSS = "train/loss_epoch"
#: the per-step training loss (every ``trainer.log_every_n_steps`` steps)
TRAIN_LOSS_STEP = "train/loss"
VAL_LOSS = "val/loss"
LR_PREFIX = "lr-"

#: (x, value) points; x is the epoch (1 = end of the first) or the optimizer step
Points = list[tuple[float, float]]


def metrics_file(run_dir: Path | str) -> Path:
    """Where a run's ``metrics.csv`` is (it may not exist: ``logger=none``, or still running)."""
    return Path(run_dir) / METRICS_FILE


@dataclass
class TrainingHistory:
    """Per-epoch metrics, the per-step training loss and per-step learning rates of one run."""

    #: metric name -> per-epoch points (every column logged with an epoch, e.g. val/loss)
    epochs: dict[str, Points] = field(default_factory=dict)
    learning_rates: dict[str, Points] = field(default_factory=dict)
    #: (optimizer step, training loss): a curve even for a one-epoch run
    train_loss_steps: Points = field(default_factory=list)

    @property
    def train_loss(self) -> Points:
        return self.epochs.get(TRAIN_LOSS, [])

    @property
    def val_loss(self) -> Points:
        return self.epochs.get(VAL_LOSS, [])

    @property
    def empty(self) -> bool:
        return not (
            self.train_loss or self.val_loss or self.learning_rates or self.train_loss_steps
        )

    @classmethod
    def from_run_dir(cls, run_dir: Path | str | None) -> TrainingHistory:
        """Read ``<run_dir>/metrics.csv`` (an empty history when there is none)."""
        if run_dir is None or not metrics_file(run_dir).is_file():
            return cls()
        return cls.from_csv(metrics_file(run_dir))

    @classmethod
    def from_csv(cls, path: Path | str) -> TrainingHistory:
        """Epoch metrics at x = epoch + 1, ``lr-*`` and the step loss at x = step; the last row
        of an x wins."""
        epochs: dict[str, dict[float, float]] = {}
        lrs: dict[str, dict[float, float]] = {}
        steps: dict[float, float] = {}
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                epoch, step = _number(row.get("epoch")), _number(row.get("step"))
                for name, text in row.items():
                    value = _number(text)
                    if name in ("epoch", "step") or value is None:
                        continue
                    if name.startswith(LR_PREFIX) and step is not None:
                        lrs.setdefault(name, {})[step] = value
                    elif name == TRAIN_LOSS_STEP and step is not None:
                        steps[step] = value
                    elif epoch is not None and not name.endswith("_step"):
                        epochs.setdefault(name, {})[epoch + 1] = value
        return cls(_sorted(epochs), _sorted(lrs), sorted(steps.items()))


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _sorted(table: dict[str, dict[float, float]]) -> dict[str, Points]:
    return {name: sorted(points.items()) for name, points in sorted(table.items())}
