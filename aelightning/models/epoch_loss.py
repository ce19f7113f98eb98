"""The epoch's mean training loss over samples, with no per-step work beyond a list append.

Each step's loss is counted once per sample of its batch (a short last batch weighs less), as
torchmetrics' ``MeanMetric`` would count ``loss.expand(batch_size)``. Updating a metric costs a
few tensor operations and some Python per step, measurable at the seeds' MLP's ~2 ms steps, so
:meth:`EpochLoss.add` only keeps the detached loss
(:class:`~aelightning.runtime.step_values.StepValues`); the kept losses are summed into the
metric's states in one go by :meth:`EpochLoss.settle`, when the kept ones reach the limit and
before the states are read (the module settles before ``compute``; a checkpoint's state dict
settles itself), never in between. Those points do not depend on how steps are grouped into
Lightning steps (``runtime.steps_per_call``), so neither do the bits of the mean.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import MeanMetric

from aelightning.runtime.lightning_compat import add_to_mean
from aelightning.runtime.step_values import StepValues


class EpochLoss(MeanMetric):
    """A ``MeanMetric`` (``nan_strategy="disable"``: the divergence guard handles NaN) whose
    per-step update is :meth:`add`; its states are in the state dict (a mid-epoch checkpoint
    carries the running sum over)."""

    def __init__(self) -> None:
        super().__init__(nan_strategy="disable")
        self.persistent(True)
        self._kept = StepValues()

    def add(self, loss: Tensor, batch_size: int) -> None:
        """Count ``loss`` (a batch's mean, detached) once per sample of the batch."""
        if self._kept.add(loss, batch_size):
            self.settle()

    def settle(self) -> None:
        """Sum the kept losses into the states: ``mean_value += sum(loss * size)``."""
        taken = self._kept.take()
        if taken is not None:
            losses, sizes, size_list = taken
            add_to_mean(self, (losses * sizes.to(losses.dtype)).sum(), sum(size_list))

    def reset(self) -> None:
        self._kept.clear()
        super().reset()

    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        self.settle()
        super()._save_to_state_dict(destination, prefix, keep_vars)
