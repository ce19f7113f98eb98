"""The contract every architecture fulfils, so objectives never depend on a network's shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from aelightning.errors import check


def check_divisible(height: int, width: int, multiple: int, why: str, fix: str) -> None:
    """Reject image sizes an architecture cannot mirror exactly, saying what to change."""
    check(
        height % multiple == 0 and width % multiple == 0,
        f"{why}, so image height and width must be divisible by {multiple}; "
        f"got {height}x{width}. {fix}",
    )


class HiddenDropout(nn.Dropout):
    """Dropout after a hidden activation; off (``p=0``) until an objective switches it on.

    Nets place one after every hidden activation so that an objective (``model=dropout``)
    can turn dropout on with :meth:`AutoencoderNet.set_hidden_dropout` without knowing the
    architecture. With ``p=0`` it returns its input unchanged (no copy, no mask).
    """

    def __init__(self) -> None:
        super().__init__(p=0.0)


class PadToMultiple(nn.Module):
    """Zero-pad height and width up to a multiple of ``multiple`` (centred), e.g. 28 -> 32."""

    def __init__(self, height: int, width: int, multiple: int):
        super().__init__()
        pad_h = -height % multiple
        pad_w = -width % multiple
        self.padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        self.padded_size = (height + pad_h, width + pad_w)

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.padding) if any(self.padding) else x


class CropTo(nn.Module):
    """Undo :class:`PadToMultiple`: cut the padded border off the reconstruction."""

    def __init__(self, pad: PadToMultiple):
        super().__init__()
        self.padding = pad.padding

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = self.padding
        if not any(self.padding):
            return x
        return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


class AutoencoderNet(nn.Module):
    """An encoder and a decoder: ``encode(x) -> code`` and ``decode(latent) -> x_hat``.

    ``code_multiplier`` lets an objective ask for a wider code than the decoder reads:
    a VAE asks for 2 and splits the code into mean and log-variance along dim 1.
    ``code_shape`` is the encoder's output shape (without batch), ``latent_shape`` the
    decoder's input shape. Subclasses keep every encoder parameter under ``self.encoder``
    (an adversarial AE trains the encoder alone as its generator).

    Optional capabilities, with defaults that always work:

    - :meth:`encode_with_skips` returns what the decoder may reuse from the same pass
      (SegNet's max-pool indices); ``decode(latent)`` without it must still work.
    - :meth:`encoder_jacobian` gives ``d code / d x`` in closed form where the net allows it.
    - :class:`HiddenDropout` modules after hidden activations, for :meth:`set_hidden_dropout`.
    """

    input_shape: tuple[int, int, int]
    output_activation: str = "none"
    bottleneck_activation: str = "none"
    code_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    encoder: nn.Module

    def __init__(self, input_shape: tuple[int, int, int] | list[int], code_multiplier: int = 1):
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        check(
            len(shape) == 3 and all(s >= 1 for s in shape),
            f"input shape must be (channels, height, width) with positive sizes, got {shape}.",
        )
        check(code_multiplier >= 1, f"code_multiplier must be >= 1, got {code_multiplier}.")
        self.input_shape = shape  # type: ignore[assignment]
        self.code_multiplier = int(code_multiplier)

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, latent: Tensor, skips: Any = None) -> Tensor:
        raise NotImplementedError

    def encode_with_skips(self, x: Tensor) -> tuple[Tensor, Any]:
        """The code and what the decoder may reuse from this pass (None for most nets)."""
        return self.encode(x), None

    def forward(self, x: Tensor) -> Tensor:
        code, skips = self.encode_with_skips(x)
        return self.decode(code, skips)

    def encoder_jacobian(self, x: Tensor) -> Tensor | None:
        """``d code / d x`` per image as ``[B, code size, input size]``, or None when this
        net has no closed form (callers then use autograd)."""
        return None

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def set_hidden_dropout(self, p: float) -> int:
        """Set the dropout probability after every hidden activation; returns how many."""
        check(0.0 <= p < 1.0, f"model.p_hidden must be in [0, 1), got {p}.")
        layers = [m for m in self.modules() if isinstance(m, HiddenDropout)]
        check(
            p == 0.0 or bool(layers),
            f"{type(self).__name__} has no hidden layers to drop out; set model.p_hidden=0.",
        )
        for layer in layers:
            layer.p = float(p)
        return len(layers)
