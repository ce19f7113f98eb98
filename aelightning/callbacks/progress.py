"""Lightning's Rich progress bar, redrawn a few times per second instead of after every batch.

The stock bar updates its task and re-reads the progress-bar metrics after every training
batch, calling ``.item()`` on each: on a GPU that is a host sync per step (the CPU waits for
the step to finish instead of queueing the next), on a CPU a few hundred microseconds of
Python per step. A person reads the bar a few times per second, so this one updates at most
every ``update_interval_s`` seconds, and always on an epoch's last batch (so the final
numbers shown are exact). Everything else (validation, test bars, themes) is Lightning's.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class ThrottledRichProgressBar(RichProgressBar):
    """``RichProgressBar`` whose per-batch training update runs at most every
    ``update_interval_s`` seconds (0 = every batch, Lightning's behaviour).

    Other arguments are ``RichProgressBar``'s (``refresh_rate``, ``leave``, ``theme``, ...).
    """

    def __init__(self, update_interval_s: float = 0.5, **kwargs: Any):
        super().__init__(**kwargs)
        self.update_interval_s = max(0.0, float(update_interval_s))
        self._next_update = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._next_update = 0.0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        now = time.monotonic()
        last = trainer.is_last_batch  # (batch_idx is a fused group's first index)
        if now < self._next_update and not last:
            return
        self._next_update = now + self.update_interval_s
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
