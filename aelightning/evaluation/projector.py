"""TensorBoard's embedding projector: codes of test images with thumbnails and labels.

Written once at the end of training (and by ``ae-evaluate``): ``projector_config.pbtxt`` in the
log dir, and per embedding the code matrix (``tensors.tsv``), the label of each point
(``metadata.tsv``) and a sprite of the images, so the PROJECTOR tab shows PCA/t-SNE/UMAP of the
codes with each point drawn as its digit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
from torch import Tensor

from aelightning.callbacks.figures import tensorboard_writer
from aelightning.evaluation import analysis
from aelightning.evaluation.gallery import class_names_of
from aelightning.models.base import AutoencoderModule

log = logging.getLogger("aelightning")


def write_projector(
    writer: Any,
    model: AutoencoderModule,
    images: Tensor,
    labels: Tensor,
    class_names: Sequence[str] = (),
    num_images: int = 1000,
    step: int = 0,
    tag: str = "codes",
    seed: int = 0,
    batch_size: int = 1000,
) -> int:
    """Add the codes of a seeded subsample of ``images`` to ``writer``; returns how many."""
    idx = analysis.subsample(len(images), num_images, seed)
    chosen = images[idx.to(images.device)]
    codes = analysis.encode_images(model, chosen, batch_size)
    picked = labels[idx.to(labels.device)].cpu().tolist()
    metadata = None
    if len(set(picked)) > 1:
        metadata = [class_names[c] if 0 <= c < len(class_names) else str(c) for c in picked]
    thumbnails = analysis.to_unit_float(chosen, "cpu")
    writer.add_embedding(codes, metadata=metadata, label_img=thumbnails, global_step=step, tag=tag)
    writer.flush()
    return len(codes)


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
        self.num_images = int(num_images)
        self.split = split
        self.tag = tag
        self.seed = int(seed)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or trainer.fast_dev_run or not trainer.is_global_zero:
            return
        if not isinstance(pl_module, AutoencoderModule) or trainer.datamodule is None:
            return
        images, labels = analysis.split_tensors(trainer.datamodule, self.split)
        n = write_projector(
            writer,
            pl_module,
            images,
            labels,
            class_names_of(trainer.datamodule),
            self.num_images,
            trainer.global_step,
            self.tag,
            self.seed,
        )
        log.info("Projector: codes of %d %s images in TensorBoard", n, self.split)
