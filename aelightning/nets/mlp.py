"""Fully connected encoder/decoder: the seeds' 784-256-64-20 AE and its relatives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from aelightning.errors import check
from aelightning.nets.activations import (
    OUTPUT_ACTIVATIONS,
    activation_derivative,
    make_activation,
)
from aelightning.nets.base import AutoencoderNet, HiddenDropout


def _dense_stack(widths: Sequence[int], activation: str, key: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), make_activation(activation, key), HiddenDropout()]
    return layers


class MLPNet(AutoencoderNet):
    """Flatten -> hidden layers -> code; the decoder mirrors the hidden widths.

    ``bottleneck_activation`` is applied to the code (the seeds use ReLU; use ``none``
    for unconstrained codes), ``output_activation`` to the reconstruction. ``hidden_dims=[]``
    is one layer each way (784-32-784, the Keras blog's simple autoencoder).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden_dims: Sequence[int] = (256, 64),
        latent_dim: int = 20,
        hidden_activation: str = "relu",
        bottleneck_activation: str = "relu",
        output_activation: str = "sigmoid",
        code_multiplier: int = 1,
    ):
        super().__init__(input_shape, code_multiplier)
        hidden = [int(h) for h in hidden_dims]
        check(
            all(h >= 1 for h in hidden), f"net.hidden_dims must be positive widths, got {hidden}."
        )
        check(int(latent_dim) >= 1, f"net.latent_dim must be >= 1, got {latent_dim}.")
        self.latent_dim = int(latent_dim)
        self.output_activation = str(output_activation).lower()
        self.bottleneck_activation = str(bottleneck_activation).lower()
        n_in = math.prod(self.input_shape)
        code_width = self.latent_dim * self.code_multiplier
        self.encoder = nn.Sequential(
            nn.Flatten(),
            *_dense_stack([n_in, *hidden], hidden_activation, "net.hidden_activation"),
            nn.Linear(([n_in, *hidden])[-1], code_width),
            make_activation(bottleneck_activation, "net.bottleneck_activation"),
        )
        self.decoder = nn.Sequential(
            *_dense_stack(
                [self.latent_dim, *reversed(hidden)], hidden_activation, "net.hidden_activation"
            ),
            nn.Linear(([self.latent_dim, *reversed(hidden)])[-1], n_in),
            make_activation(output_activation, "net.output_activation", OUTPUT_ACTIVATIONS),
            nn.Unflatten(1, self.input_shape),
        )
        self.code_shape = (code_width,)
        self.latent_shape = (self.latent_dim,)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, latent: Tensor, skips: Any = None) -> Tensor:
        return self.decoder(latent)

    def encoder_jacobian(self, x: Tensor) -> Tensor | None:
        """Closed form ``J = D_L W_L ... D_1 W_1`` (D: activation slopes), ``[B, code, pixels]``.

        Accumulated from the code end, so the cost is that of ``code`` backward passes
        through the linear layers, with no autograd graph of its own.
        """
        weights: list[Tensor] = []
        slopes: list[Tensor] = []
        h = pre = x.flatten(1)
        for module in list(self.encoder)[1:]:  # after Flatten: Linear, activation, dropout...
            if isinstance(module, nn.Linear):
                pre = module(h)
                weights.append(module.weight)
            elif isinstance(module, HiddenDropout):
                if module.p > 0 and self.training:
                    return None  # random masks: no closed form
            else:
                h = module(pre)
                slope = activation_derivative(module, pre, h)
                if slope is None:
                    return None
                slopes.append(slope)
        jac = slopes[-1].unsqueeze(2) * weights[-1]  # [B, code, h_L]
        for weight, slope in zip(reversed(weights[:-1]), reversed(slopes[:-1]), strict=True):
            jac = torch.matmul(jac * slope.unsqueeze(1), weight)  # [B, code, h_{l-1}]
        return jac
