"""Dropout autoencoder (``model=dropout``): inputs and hidden units are dropped at random
while training, so the net must reconstruct from partial information; off at eval."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from aelightning.errors import check
from aelightning.models.base import AutoencoderModule


class DropoutAutoencoder(AutoencoderModule):
    """Dropout on the input (``p_input``) and after every hidden activation (``p_hidden``).

    Hidden dropout uses the nets' generic hook (:meth:`AutoencoderNet.set_hidden_dropout`),
    so it works on every architecture; both are inverted dropout (kept units scaled by
    ``1 / (1 - p)``), so evaluation needs no rescaling.
    """

    config_name = "dropout"

    def __init__(self, *args: Any, p_input: float = 0.1, p_hidden: float = 0.1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        check(0.0 <= p_input < 1.0, f"model.p_input must be in [0, 1), got {p_input}.")
        self.p_input = float(p_input)
        self.p_hidden = float(p_hidden)
        self.net.set_hidden_dropout(self.p_hidden)

    def forward_step(self, x_in: Tensor) -> tuple[Tensor, Tensor]:
        return super().forward_step(F.dropout(x_in, self.p_input, self.training))
