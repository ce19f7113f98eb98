"""Per-step scalars kept on their device and used in one go (no tensor work per step).

A training step's loss is read by the epoch mean (:mod:`aelightning.models.epoch_loss`) and
the divergence guard (:mod:`aelightning.callbacks.nan_guard`); each needs it with one host
number (a batch size, a step index). A few tensor operations per step for each is measurable
at the seeds' MLP's ~2 ms steps, so both keep the detached values here and take them out
together, as one stacked tensor, when they are read (or when :data:`LIMIT` are kept).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: how many values are kept at most before the owner must take them (bounded memory)
LIMIT = 256


class StepValues:
    """Scalars with a host integer each, in the order added."""

    def __init__(self) -> None:
        self._values: list[Tensor] = []
        self._numbers: list[int] = []

    def add(self, value: Tensor, number: int) -> bool:
        """Keep ``value`` (detached, one element) with ``number``; True when :data:`LIMIT`
        values are kept and the owner should take them now."""
        self._values.append(value)
        self._numbers.append(number)
        return len(self._values) >= LIMIT

    def take(self) -> tuple[Tensor, Tensor, list[int]] | None:
        """The kept values stacked (float32), their numbers as int64 on the same device and as
        a list, and forget them; None when nothing is kept."""
        if not self._values:
            return None
        values = torch.stack(self._values).float()
        # from pageable memory: copied at once, without waiting for the device
        numbers = torch.tensor(self._numbers).to(values.device, non_blocking=True)
        taken = (values, numbers, self._numbers)
        self.clear()
        return taken

    def clear(self) -> None:
        self._values, self._numbers = [], []

    def __len__(self) -> int:
        return len(self._values)
