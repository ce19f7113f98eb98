"""Image-quality numbers computed on device, without host synchronisation."""

from __future__ import annotations

import torch
from torch import Tensor


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
