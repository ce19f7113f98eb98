"""Image-quality numbers computed on device, without host synchronisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure


def per_image_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error of each image in the batch (shape ``[B]``), in float32."""
    diff = x_hat.float() - x.float()
    return diff.pow(2).flatten(1).mean(dim=1)


def psnr(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of each image (dB, shape ``[B]``).

    The batch mean of this is the "average PSNR over test images" papers report; a
    perfect reconstruction is capped at 100 dB instead of +inf.
    """
    mse = per_image_mse(x_hat, x).clamp_min(1e-10)
    return 10.0 * torch.log10(torch.as_tensor(data_range**2, device=mse.device) / mse)


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
    with torch.autocast(device_type=x.device.type, enabled=False):
        return structural_similarity_index_measure(
            x_hat.float(), x.float(), data_range=data_range, reduction="none"
        )
