"""Activation names used in configs, mapped to modules, with a clear error for typos."""

from __future__ import annotations

from torch import nn

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
