"""Priors an adversarial autoencoder shapes its codes into: samples on the module's device."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from aelightning.errors import check

PRIORS = ("normal", "mixture")


class CodePrior(nn.Module):
    """A distribution over codes of shape ``code_shape`` (vector or feature map).

    ``normal``: ``N(0, I)``. ``mixture``: ``num_components`` equally likely Gaussians of
    standard deviation ``std`` whose means lie evenly spaced on a circle of ``radius`` in
    the plane of the first two code units (the AAE paper's 10-component mixture; the
    other units are ``N(0, std^2)``). Parameters are buffers, so they follow ``.to()``.
    """

    def __init__(
        self,
        code_shape: Sequence[int],
        kind: str = "normal",
        num_components: int = 10,
        radius: float = 4.0,
        std: float = 0.5,
    ):
        super().__init__()
        check(
            kind in PRIORS, f"model.prior={kind!r} is not supported; choose one of normal, mixture."
        )
        self.code_shape = tuple(int(s) for s in code_shape)
        self.kind = kind
        dim = math.prod(self.code_shape)
        if kind == "mixture":
            check(dim >= 2, f"model.prior=mixture needs a code of 2 or more units, got {dim}.")
            check(num_components >= 1, "model.prior_components must be >= 1.")
            check(radius >= 0 and std > 0, "model.prior_radius >= 0 and model.prior_std > 0.")
        angles = 2 * math.pi * torch.arange(num_components) / num_components
        means = torch.zeros(num_components, dim)
        means[:, 0], means[:, 1] = radius * torch.cos(angles), radius * torch.sin(angles)
        self.register_buffer("means", means if kind == "mixture" else means[:0], persistent=False)
        self.std = float(std)

    def mixture(self) -> MixtureSameFamily:
        components = Independent(
            Normal(self.means, torch.full_like(self.means, self.std), validate_args=False), 1
        )
        weights = Categorical(logits=self.means.new_zeros(len(self.means)), validate_args=False)
        return MixtureSameFamily(weights, components, validate_args=False)

    def sample(self, n: int) -> Tensor:
        """``n`` codes, shape ``[n, *code_shape]``."""
        if self.kind == "normal":
            return torch.randn(n, *self.code_shape, device=self.means.device)
        return self.mixture().sample((n,)).view(n, *self.code_shape)
