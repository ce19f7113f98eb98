"""The epoch's mean training loss over samples, with no per-step work beyond a list append.

Each step's loss is counted once per sample of its batch (a short last batch weighs less), as
torchmetrics' ``MeanMetric`` would count ``loss.expand(batch_size)``. Updating a metric costs a
few tensor operations and some Python per step, measurable at the seeds' MLP's ~2 ms steps, so
:meth:`EpochLoss.add` only keeps the detached loss; the kept losses are summed into the metric's
states in one go by :meth:`EpochLoss.settle`, after every :data:`SETTLE_EVERY` of them, before
the states are read (the module settles before ``compute``; a checkpoint's state dict settles
itself) and never in between. Those
points do not depend on how steps are grouped into Lightning steps
(``runtime.steps_per_call``), so neither do the bits of the mean.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from aelightning.runtime.lightning_compat import add_to_mean

#: kept losses are summed into the states at the latest after this many (bounded memory)
SETTLE_EVERY = 256


class EpochLoss(MeanMetric):
    """A ``MeanMetric`` (``nan_strategy="disable"``: the divergence guard handles NaN) whose
    per-step update is :meth:`add`; its states are in the state dict (a mid-epoch checkpoint
    carries the running sum over)."""

    def __init__(self) -> None:
        super().__init__(nan_strategy="disable")
        self.persistent(True)
        self._losses: list[Tensor] = []
        self._sizes: list[int] = []

    def add(self, loss: Tensor, batch_size: int) -> None:
        """Count ``loss`` (a batch's mean, detached) once per sample of the batch."""
        self._losses.append(loss)
        self._sizes.append(batch_size)
        if len(self._losses) >= SETTLE_EVERY:
            self.settle()

    def settle(self) -> None:
        """Sum the kept losses into the states: ``mean_value += sum(loss * size)``."""
        if not self._losses:
            return
        losses = torch.stack(self._losses).float()
        # from pageable memory: copied at once, without waiting for the device
        sizes = torch.tensor(self._sizes, dtype=losses.dtype).to(losses.device, non_blocking=True)
        add_to_mean(self, (losses * sizes).sum(), sum(self._sizes))
        self._losses, self._sizes = [], []

    def reset(self) -> None:
        self._losses, self._sizes = [], []
        super().reset()

    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        self.settle()
        super()._save_to_state_dict(destination, prefix, keep_vars)
