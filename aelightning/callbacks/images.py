"""Reconstruction grids at each validation epoch: TensorBoard image + PNG in the run dir,
drawn by the same :func:`~aelightning.evaluation.plots.reconstruction_grid` as the gallery."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from aelightning.callbacks.figures import tensorboard_writer
from aelightning.evaluation.plots import FigureSink, reconstruction_grid
from aelightning.models.base import AutoencoderModule


class ReconstructionGrid(L.Callback):
    """Log inputs (top row), noisy inputs (middle, when noise is on) and outputs (bottom) as
    ``val/reconstructions`` and ``<save_dir>/reconstructions_epoch<NNN>.png``.

    Args:
        every_n_epochs: log every n-th validation epoch.
        save_dir: folder for PNG copies (``<run>/figures``); None keeps TensorBoard only.
    """

    def __init__(self, every_n_epochs: int = 1, save_dir: str | None = None):
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.save_dir = Path(save_dir) if save_dir else None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(pl_module, AutoencoderModule):
            return
        if trainer.current_epoch % self.every_n_epochs or not pl_module.val_examples:
            return
        if not trainer.is_global_zero:
            return
        writer = tensorboard_writer(trainer)
        if writer is None and self.save_dir is None:
            return
        sink = FigureSink(self.save_dir, writer, trainer.global_step, prefix="val")
        sink.add(
            f"reconstructions_epoch{trainer.current_epoch:03d}",
            reconstruction_grid(pl_module.val_examples),
        )
