"""The adversarial autoencoder's critic: tells codes from samples of the prior."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from aelightning.errors import check
from aelightning.nets.activations import make_activation


class CodeDiscriminator(nn.Module):
    """MLP on the flattened code (vector or feature map) -> one logit "from the prior".

    Args:
        code_shape: shape of one code without the batch dimension.
        hidden_dims: widths of the hidden layers (the AAE paper uses 1000-1000 on MNIST).
        activation: hidden activation (leaky ReLU is the usual GAN choice).
        dropout: dropout after each hidden activation (regularises the critic).
    """

    def __init__(
        self,
        code_shape: Sequence[int],
        hidden_dims: Sequence[int] = (512, 512),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        hidden = [int(h) for h in hidden_dims]
        check(
            len(hidden) >= 1 and all(h >= 1 for h in hidden),
            f"model.discriminator.hidden_dims must list positive widths, got {hidden}.",
        )
        check(
            0.0 <= dropout < 1.0, f"model.discriminator.dropout must be in [0, 1), got {dropout}."
        )
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(int(s) for s in code_shape)
        for width in hidden:
            layers += [
                nn.Linear(fan_in, width),
                make_activation(activation, "model.discriminator.activation"),
                nn.Dropout(dropout),
            ]
            fan_in = width
        layers.append(nn.Linear(fan_in, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, code: Tensor) -> Tensor:
        """Logits ``[B]``: large when ``code`` looks like a prior sample."""
        return self.net(code).squeeze(1)
