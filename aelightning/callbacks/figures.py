"""Figures during and at the end of training: PNGs in ``<run>/figures`` and TensorBoard images.

Each validation epoch: a map of the validation codes (the direct scatter for codes of at most
3 numbers, else PCA), so TensorBoard's slider shows the code space taking shape. At the end of
training, through the inspection ``ae-evaluate`` runs
(:func:`~aelightning.evaluation.pipeline.inspect_model`): the whole gallery on the test split
(reconstructions, loss and learning-rate curves, code maps with t-SNE, samples, interpolation,
manifold, noise curve), and the codes in TensorBoard's projector. Skipped under
``fast_dev_run`` (a smoke test), like Lightning's own logging callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from aelightning.evaluation import analysis
from aelightning.evaluation.gallery import GalleryOptions, class_names_of, code_figures
from aelightning.evaluation.history import TrainingHistory
from aelightning.evaluation.pipeline import InspectionOptions, inspect_model
from aelightning.evaluation.plots import FigureSink
from aelightning.loggers import flush_loggers
from aelightning.models.base import AutoencoderModule

log = logging.getLogger("aelightning")


def tensorboard_writer(trainer: L.Trainer) -> Any:
    """The ``SummaryWriter`` of the trainer's first TensorBoard logger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _inspects(trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
    """Whether this process draws: a real run (not a smoke test or the sanity check), rank
    zero, one of our models with a data module to read images from."""
    return (
        not trainer.fast_dev_run
        and not trainer.sanity_checking
        and trainer.is_global_zero
        and isinstance(pl_module, AutoencoderModule)
        and trainer.datamodule is not None
    )


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
        **gallery: :class:`~aelightning.evaluation.gallery.GalleryOptions` (the sizes in
            ``conf/gallery/default.yaml``).
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
        gallery_options = GalleryOptions(**gallery).validate("callbacks.figures")
        self.options = InspectionOptions(
            figures=gallery_options,
            noise_levels=noise_levels,
            noise_images=int(noise_images),
            seed=gallery_options.seed,
            batch_size=int(batch_size),
        )

    def _sink(self, trainer: L.Trainer) -> FigureSink:
        return FigureSink(self.save_dir, tensorboard_writer(trainer), trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.every_n_epochs or not _inspects(trainer, pl_module):
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
            self.options.figures,  # type: ignore[arg-type]
            suffix=f"_epoch{trainer.current_epoch:03d}",
            tsne=False,
            batch_size=self.options.batch_size,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.final or not _inspects(trainer, pl_module):
            return
        sink = self._sink(trainer)
        history = None
        flush_loggers(trainer)  # the last epoch's scalars, for the curves
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                history = TrainingHistory.from_run_dir(logger.log_dir)
        inspect_model(pl_module, trainer.datamodule, self.options, sink, history)  # type: ignore[arg-type]
        if sink.writer is not None:
            sink.writer.flush()


class EmbeddingProjector(L.Callback):
    """At the end of training, put the codes of ``num_images`` test images in the projector.

    Args:
        num_images: points in the projector (a seeded subsample of the test split; the sprite
            of thumbnails grows with it: 1,000 28x28 digits make a 896x896 image).
        split: which split's images to embed.
        tag: the embedding's name in the PROJECTOR tab.
        seed: of the subsample.
    """

    def __init__(
        self, num_images: int = 1000, split: str = "test", tag: str = "codes", seed: int = 0
    ):
        self.options = InspectionOptions(
            projector_images=int(num_images), split=split, projector_tag=tag, seed=int(seed)
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or not _inspects(trainer, pl_module):
            return
        sink = FigureSink(None, writer, trainer.global_step)
        found = inspect_model(pl_module, trainer.datamodule, self.options, sink)  # type: ignore[arg-type]
        log.info(
            "Projector: codes of %d %s images in TensorBoard",
            found.projector_points,
            self.options.split,
        )
