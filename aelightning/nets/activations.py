"""Activation names used in configs, mapped to modules, with a clear error for typos."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aelightning.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "none": nn.Identity,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


def make_activation(
    name: str | None, key: str, allowed: tuple[str, ...] | None = None
) -> nn.Module:
    """Build the activation called ``name``; ``key`` is the config key reported on error."""
    choices = allowed or tuple(ACTIVATIONS)
    normalised = "none" if name is None else str(name).lower()
    if normalised not in choices:
        raise ConfigError(
            f"{key}={name!r} is not a known activation; choose one of {', '.join(choices)}."
        )
    return ACTIVATIONS[normalised]()


OUTPUT_ACTIVATIONS = ("sigmoid", "none", "tanh", "relu")


def activation_derivative(activation: nn.Module, pre: Tensor, post: Tensor) -> Tensor | None:
    """Elementwise ``d post / d pre`` for the activations with a cheap closed form, else None.

    ``pre`` is the activation's input and ``post`` its output; used by closed-form encoder
    Jacobians (the contractive penalty).
    """
    if isinstance(activation, nn.Identity):
        return torch.ones_like(pre)
    if isinstance(activation, nn.ReLU):
        return (pre > 0).to(pre.dtype)
    if isinstance(activation, nn.LeakyReLU):
        slope = activation.negative_slope
        return (pre > 0).to(pre.dtype) * (1.0 - slope) + slope
    if isinstance(activation, nn.Sigmoid):
        return post * (1.0 - post)
    if isinstance(activation, nn.Tanh):
        return 1.0 - post * post
    if isinstance(activation, nn.ELU):
        return torch.where(pre > 0, torch.ones_like(pre), post + activation.alpha)
    if isinstance(activation, nn.Softplus) and activation.beta == 1:
        return torch.sigmoid(pre)
    return None
