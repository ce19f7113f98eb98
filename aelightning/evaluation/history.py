"""A run's training history read back from its TensorBoard event files.

The events are the record every run already writes (``train/loss_epoch`` and ``val/loss``
once per epoch, ``lr-*`` from ``LearningRateMonitor``), also for resumed runs (one event
file per session in the same folder), so the curves need no extra bookkeeping in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

EVENT_GLOB = "events.out.tfevents.*"
TRAIN_LOSS = "train/loss_epoch"
#: the per-step training loss (every ``trainer.log_every_n_steps`` steps)
TRAIN_LOSS_STEP = "train/loss"
VAL_LOSS = "val/loss"
LR_PREFIX = "lr-"

#: (x, value) points; x is the epoch (1 = end of the first) or the optimizer step
Points = list[tuple[float, float]]


def find_event_dir(run_dir: Path | str) -> Path | None:
    """The folder under ``run_dir`` holding TensorBoard event files (the newest one)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    files = sorted(run_dir.rglob(EVENT_GLOB), key=lambda p: p.stat().st_mtime_ns)
    return files[-1].parent if files else None


@dataclass
class TrainingHistory:
    """Per-epoch losses, the per-step training loss and per-step learning rates of one run."""

    train_loss: Points = field(default_factory=list)
    val_loss: Points = field(default_factory=list)
    learning_rates: dict[str, Points] = field(default_factory=dict)
    #: what the loss x values count: ``epoch``, or ``step`` for event files without epochs
    loss_x: str = "epoch"
    #: (optimizer step, training loss): a curve even for a one-epoch run
    train_loss_steps: Points = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.train_loss or self.val_loss or self.learning_rates or self.train_loss_steps
        )

    @classmethod
    def from_event_dir(cls, log_dir: Path | str | None) -> TrainingHistory:
        """Read the scalars back with tensorboard's own reader (empty when there are none)."""
        if log_dir is None or not any(Path(log_dir).glob(EVENT_GLOB)):
            return cls()
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
        quiet = logging.getLogger("tensorboard")  # it logs each event file it opens at INFO
        level = quiet.level
        quiet.setLevel(max(level, logging.WARNING))
        try:
            acc.Reload()
        finally:
            quiet.setLevel(level)
        tags = set(acc.Tags().get("scalars", []))
        epochs = _epoch_lookup(acc) if "epoch" in tags else {}

        def per_epoch(tag: str) -> Points:
            if tag not in tags:
                return []
            points = []
            for e in acc.Scalars(tag):
                epoch = _nearest_epoch(epochs.get(e.step, []), e.wall_time)
                points.append((epoch + 1 if epoch is not None else e.step, e.value))
            return _last_per_x(points)

        lrs = {
            tag: _last_per_x([(e.step, e.value) for e in acc.Scalars(tag)])
            for tag in sorted(tags)
            if tag.startswith(LR_PREFIX)
        }
        steps = (
            _last_per_x([(e.step, e.value) for e in acc.Scalars(TRAIN_LOSS_STEP)])
            if TRAIN_LOSS_STEP in tags
            else []
        )
        return cls(
            per_epoch(TRAIN_LOSS), per_epoch(VAL_LOSS), lrs, "epoch" if epochs else "step", steps
        )


def _epoch_lookup(acc: object) -> dict[int, list[tuple[float, float]]]:
    """step -> [(wall_time, epoch)] of Lightning's ``epoch`` scalar, logged with each call."""
    table: dict[int, list[tuple[float, float]]] = {}
    for e in acc.Scalars("epoch"):  # type: ignore[attr-defined]
        table.setdefault(e.step, []).append((e.wall_time, e.value))
    return table


def _nearest_epoch(candidates: list[tuple[float, float]], wall_time: float) -> int | None:
    """The ``epoch`` value logged in the same ``log_metrics`` call (closest wall time)."""
    if not candidates:
        return None
    return int(min(candidates, key=lambda c: abs(c[0] - wall_time))[1])


def _last_per_x(points: Points) -> Points:
    """Sorted by x, keeping the last value written for each x (a resumed run rewrites some)."""
    return sorted(dict(points).items())
