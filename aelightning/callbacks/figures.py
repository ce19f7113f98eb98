"""Figures during and at the end of training: PNGs in ``<run>/figures`` and TensorBoard images.

Each validation epoch: a map of the validation codes (the direct scatter for codes of at most
3 numbers, else PCA), so TensorBoard's slider shows the code space taking shape. At the end of
training: the whole gallery of :mod:`aelightning.evaluation.gallery` on the test split
(reconstructions, loss and learning-rate curves, code maps with t-SNE, samples, interpolation,
manifold, noise curve). Skipped under ``fast_dev_run`` (a smoke test), like Lightning's own
logging callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from aelightning.evaluation import analysis
from aelightning.evaluation.gallery import (
    GalleryOptions,
    class_names_of,
    code_figures,
    render_gallery,
)
from aelightning.evaluation.history import TrainingHistory
from aelightning.evaluation.plots import FigureSink
from aelightning.models.base import AutoencoderModule

log = logging.getLogger("aelightning")


def tensorboard_writer(trainer: L.Trainer) -> Any:
    """The ``SummaryWriter`` of the trainer's first TensorBoard logger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class TrainingFigures(L.Callback):
    """Per-epoch code maps and the end-of-training gallery.

    Args:
        save_dir: folder for the PNGs (``<run>/figures``); None logs to TensorBoard only.
        every_n_epochs: draw the code map every n-th validation epoch; 0 switches it off.
        final: draw the gallery when training ends.
        noise_levels: levels of the noise curve for noisy runs: ``auto`` (the noise type's
            defaults), a list, or null to skip it.
        noise_images: test images per noise level.
        batch_size: images per forward pass while drawing.
        **gallery: :class:`~aelightning.evaluation.gallery.GalleryOptions` (max_points, ...).
    """

    def __init__(
        self,
        save_dir: str | None = None,
        every_n_epochs: int = 1,
        final: bool = True,
        noise_levels: Sequence[float] | str | None = "auto",
        noise_images: int = 1000,
        batch_size: int = 1000,
        **gallery: Any,
    ):
        self.save_dir = Path(save_dir) if save_dir else None
        self.every_n_epochs = max(0, int(every_n_epochs))
        self.final = bool(final)
        self.noise_levels = noise_levels
        self.noise_images = int(noise_images)
        self.batch_size = int(batch_size)
        self.options = GalleryOptions(**gallery).validate("callbacks.figures")

    def _active(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        return (
            not trainer.fast_dev_run
            and not trainer.sanity_checking
            and trainer.is_global_zero
            and isinstance(pl_module, AutoencoderModule)
            and trainer.datamodule is not None
        )

    def _sink(self, trainer: L.Trainer) -> FigureSink:
        return FigureSink(self.save_dir, tensorboard_writer(trainer), trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.every_n_epochs or not self._active(trainer, pl_module):
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        images, labels = analysis.split_tensors(trainer.datamodule, "val")
        code_figures(
            self._sink(trainer),
            pl_module,  # type: ignore[arg-type]
            images,
            labels,
            class_names_of(trainer.datamodule),
            self.options,
            suffix=f"_epoch{trainer.current_epoch:03d}",
            tsne=False,
            batch_size=self.batch_size,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.final or not self._active(trainer, pl_module):
            return
        model: AutoencoderModule = pl_module  # type: ignore[assignment]
        sink = self._sink(trainer)
        history = None
        for logger in trainer.loggers:
            logger.save()  # the last epoch's scalars, for the curves
            if isinstance(logger, CSVLogger):
                history = TrainingHistory.from_run_dir(logger.log_dir)
        images, labels = analysis.split_tensors(trainer.datamodule, "test")
        rows = []
        if model.noise.enabled:
            levels = analysis.noise_levels(model.noise, self.noise_levels)
            idx = analysis.subsample(len(images), self.noise_images, self.options.seed)
            with analysis.seeded(self.options.seed, model.device):
                rows = analysis.noise_sweep(
                    model, images[idx.to(images.device)], levels, self.batch_size
                )
        render_gallery(
            sink,
            model,
            images,
            labels,
            class_names_of(trainer.datamodule),
            history,
            rows,
            self.options,
            self.batch_size,
        )
        if sink.writer is not None:
            sink.writer.flush()
