"""Input corruptions applied to a batch on its own device; the target stays the clean image.

Each corruption is a small callable configured from ``conf/noise/``. They are applied
inside the LightningModule (never baked into the data), in training and evaluation alike.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aelightning.errors import check


class Noise:
    """No corruption. Subclasses override :meth:`__call__`; ``enabled`` says if they act."""

    enabled = False

    def __call__(self, x: Tensor) -> Tensor:
        return x

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class NoNoise(Noise):
    """Identity: plain reconstruction."""


def _check_probability(p: float, key: str) -> float:
    p = float(p)
    check(0.0 <= p <= 1.0, f"{key} must be a probability in [0, 1], got {p}.")
    return p


class GaussianNoise(Noise):
    """``x + std * N(0, 1)``, clamped to [0, 1] when ``clip`` (the seeds' recipe with std 0.5)."""

    enabled = True

    def __init__(self, std: float = 0.5, clip: bool = True):
        std = float(std)
        check(
            math.isfinite(std) and std >= 0.0, f"noise.std must be a finite number >= 0, got {std}."
        )
        self.std = std
        self.clip = bool(clip)

    def __call__(self, x: Tensor) -> Tensor:
        noisy = x + self.std * torch.randn_like(x)
        return noisy.clamp_(0.0, 1.0) if self.clip else noisy


class SaltPepperNoise(Noise):
    """Each pixel becomes 0 or 1 (equally likely) with probability ``p``."""

    enabled = True

    def __init__(self, p: float = 0.2):
        self.p = _check_probability(p, "noise.p")

    def __call__(self, x: Tensor) -> Tensor:
        u = torch.rand_like(x)
        salt = (u < self.p / 2).to(x.dtype)
        pepper = ((u >= self.p / 2) & (u < self.p)).to(x.dtype)
        keep = 1.0 - salt - pepper
        return x * keep + salt


class MaskingNoise(Noise):
    """Each pixel is set to 0 with probability ``p`` (the classic denoising-AE corruption)."""

    enabled = True

    def __init__(self, p: float = 0.3):
        self.p = _check_probability(p, "noise.p")

    def __call__(self, x: Tensor) -> Tensor:
        return x * (torch.rand_like(x) >= self.p).to(x.dtype)
