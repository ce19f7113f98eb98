"""Small convolutional autoencoder: strided convs to a vector code, transposed convs back.

Each stage halves height and width exactly (kernel 4, stride 2, padding 1), and the
decoder mirrors it with transposed convolutions, so an image size is supported honestly
when it is divisible by ``2 ** len(channels)``: 28x28 with two stages (28 -> 14 -> 7),
64x64 with up to six. Other sizes are rejected, or zero-padded up to the next multiple
with ``pad_input=true`` (the padding is cropped off the reconstruction again).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from torch import Tensor, nn

from aelightning.errors import check
from aelightning.nets.activations import OUTPUT_ACTIVATIONS, make_activation
from aelightning.nets.base import (
    AutoencoderNet,
    CropTo,
    HiddenDropout,
    PadToMultiple,
    check_divisible,
)


class ConvNet(AutoencoderNet):
    """``[Conv(k4, s2) -> BN? -> act] x N -> Linear -> code``; the decoder mirrors it.

    Args:
        channels: output channels of each stride-2 stage, e.g. ``[32, 64]``.
        latent_dim: width of the vector code the decoder reads.
        batch_norm: batch norm after every hidden convolution.
        pad_input: zero-pad inputs whose size is not a multiple of ``2 ** len(channels)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        latent_dim: int = 20,
        hidden_activation: str = "relu",
        bottleneck_activation: str = "relu",
        output_activation: str = "sigmoid",
        batch_norm: bool = False,
        pad_input: bool = False,
        code_multiplier: int = 1,
    ):
        super().__init__(input_shape, code_multiplier)
        widths = [int(c) for c in channels]
        check(len(widths) >= 1, "net.channels must list at least one width, e.g. [32, 64].")
        check(all(c >= 1 for c in widths), f"net.channels must be positive, got {widths}.")
        check(int(latent_dim) >= 1, f"net.latent_dim must be >= 1, got {latent_dim}.")
        self.latent_dim = int(latent_dim)
        self.output_activation = str(output_activation).lower()
        self.bottleneck_activation = str(bottleneck_activation).lower()
        c_img, height, width = self.input_shape
        factor = 2 ** len(widths)
        pad = PadToMultiple(height, width, factor if pad_input else 1)
        padded_h, padded_w = pad.padded_size
        check_divisible(
            padded_h,
            padded_w,
            factor,
            f"net=conv halves the image {len(widths)} times (net.channels={widths})",
            "Use fewer net.channels or net.pad_input=true.",
        )
        grid = (widths[-1], padded_h // factor, padded_w // factor)
        flat = grid[0] * grid[1] * grid[2]
        code_width = self.latent_dim * self.code_multiplier

        def stage(conv: nn.Module, out: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(out)] if batch_norm else []
            return [conv, *norm, make_activation(hidden_activation, "net.hidden_activation")]

        encoder: list[nn.Module] = [pad]
        for c_in, c_out in pairwise([c_img, *widths]):
            conv = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm)
            encoder += [*stage(conv, c_out), HiddenDropout()]
        self.encoder = nn.Sequential(
            *encoder,
            nn.Flatten(),
            nn.Linear(flat, code_width),
            make_activation(bottleneck_activation, "net.bottleneck_activation"),
        )
        decoder: list[nn.Module] = [
            nn.Linear(self.latent_dim, flat),
            make_activation(hidden_activation, "net.hidden_activation"),
            HiddenDropout(),
            nn.Unflatten(1, grid),
        ]
        for c_in, c_out in pairwise(reversed(widths)):
            deconv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm)
            decoder += [*stage(deconv, c_out), HiddenDropout()]
        self.decoder = nn.Sequential(
            *decoder,
            nn.ConvTranspose2d(widths[0], c_img, 4, stride=2, padding=1),
            make_activation(output_activation, "net.output_activation", OUTPUT_ACTIVATIONS),
            CropTo(pad),
        )
        self.code_shape = (code_width,)
        self.latent_shape = (self.latent_dim,)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, latent: Tensor, skips: Any = None) -> Tensor:
        return self.decoder(latent)
