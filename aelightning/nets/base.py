"""The contract every architecture fulfils, so objectives never depend on a network's shape."""

from __future__ import annotations

from torch import Tensor, nn

from aelightning.errors import check


class AutoencoderNet(nn.Module):
    """An encoder and a decoder: ``encode(x) -> code`` and ``decode(latent) -> x_hat``.

    ``code_multiplier`` lets an objective ask for a wider code than the decoder reads:
    a VAE asks for 2 and splits the code into mean and log-variance along dim 1.
    ``code_shape`` is the encoder's output shape (without batch), ``latent_shape`` the
    decoder's input shape.
    """

    input_shape: tuple[int, int, int]
    output_activation: str = "none"
    code_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]

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

    def decode(self, latent: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
