"""Reconstruction grids at each validation epoch: TensorBoard image + PNG in the run dir."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image

from aelightning.models.base import AutoencoderModule


class ReconstructionGrid(L.Callback):
    """Log inputs (top row), noisy inputs (middle, when noise is on) and outputs (bottom).

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
        grid = self.make_grid(pl_module.val_examples)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/reconstructions", grid, trainer.global_step)
        if self.save_dir is not None and trainer.is_global_zero:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            save_image(
                grid, self.save_dir / f"reconstructions_epoch{trainer.current_epoch:03d}.png"
            )

    @staticmethod
    def make_grid(examples: dict[str, torch.Tensor]) -> torch.Tensor:
        """Stack the rows input / noisy / output into one [C, H, W] float image in [0, 1]."""
        rows = [examples[k] for k in ("input", "noisy", "output") if k in examples]
        n = rows[0].shape[0]
        images = torch.cat([r.detach().float().clamp(0, 1).cpu() for r in rows])
        return make_grid(images, nrow=n, padding=2, pad_value=1.0)
