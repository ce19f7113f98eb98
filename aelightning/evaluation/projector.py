"""TensorBoard's embedding projector: codes of test images with thumbnails and labels.

Written by :func:`~aelightning.evaluation.pipeline.inspect_model` (``ae-evaluate`` and the end
of training): ``projector_config.pbtxt`` in the
log dir, and per embedding the code matrix (``tensors.tsv``), the label of each point
(``metadata.tsv``) and a sprite of the images, so the PROJECTOR tab shows PCA/t-SNE/UMAP of the
codes with each point drawn as its digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from aelightning.evaluation import analysis
from aelightning.models.base import AutoencoderModule


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
