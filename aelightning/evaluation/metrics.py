"""Image-quality numbers (torchmetrics' functional metrics, one value per image), computed on
device without host synchronisation, and the metric names every summary shows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from aelightning.runtime.precision import full_precision

#: the headline numbers of a run, in this order, where it has them: the end-of-run summary,
#: TensorBoard's HPARAMS tab and a sweep's summary table show these
HEADLINE_METRICS = (
    "val/loss",
    "val/neg_elbo",
    "test/loss",
    "test/mse",
    "test/psnr",
    "test/neg_elbo",
)
#: the smallest MSE PSNR is computed from: a perfect reconstruction is 100 dB, not +inf
PSNR_MIN_MSE = 1e-10


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of ``metrics`` (e.g. ``trainer.callback_metrics``) as floats."""
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def per_image_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error of each image in the batch (shape ``[B]``), in float32.

    torchmetrics' ``mean_squared_error`` with one output per image (pixels along dim 0).
    """
    with full_precision(x.device.type):
        pixels_first = x_hat.float().flatten(1).T, x.float().flatten(1).T
        return mean_squared_error(*pixels_first, num_outputs=len(x)).reshape(len(x))


def psnr(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of each image (dB, shape ``[B]``), via torchmetrics.

    The batch mean of this is the "average PSNR over test images" papers report; a
    reconstruction closer than ``PSNR_MIN_MSE`` (e.g. perfect) is capped at the PSNR of that
    MSE (100 dB for ``data_range`` 1) instead of +inf.
    """
    cap = 10.0 * math.log10(data_range**2 / PSNR_MIN_MSE)
    with full_precision(x.device.type):
        values = peak_signal_noise_ratio(
            x_hat.float(),
            x.float(),
            data_range=data_range,
            reduction="none",
            dim=tuple(range(1, x.dim())),
        )
    return values.clamp_max(cap)


def per_image_bce(x_hat: Tensor, x: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean binary cross-entropy per pixel of each image (shape ``[B]``, nats), in float32.

    The reconstruction clamped to ``[eps, 1 - eps]`` as ``model.recon_loss=bce`` does, so an
    output outside (0, 1) (a linear or tanh decoder) still gives a finite number.
    """
    x_hat = x_hat.float().clamp(eps, 1.0 - eps)
    pixels = F.binary_cross_entropy(x_hat, x.float().clamp(0.0, 1.0), reduction="none")
    return pixels.flatten(1).mean(dim=1)


def ssim(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity of each image (shape ``[B]``; 1 is identical), via torchmetrics.

    The standard settings of Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5,
    ``K1 = 0.01``, ``K2 = 0.03``; colour images average over channels. Computed in float32
    outside autocast.
    """
    with full_precision(x.device.type):
        return structural_similarity_index_measure(
            x_hat.float(), x.float(), data_range=data_range, reduction="none"
        )
