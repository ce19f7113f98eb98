"""The plain autoencoder (``model=ae``) and the denoising one (``model=dae``)."""

from __future__ import annotations

from typing import Any

from aelightning.errors import check
from aelightning.models.base import AutoencoderModule


class Autoencoder(AutoencoderModule):
    """Reconstruction only; with ``noise=...`` it is a denoising autoencoder."""


class DenoisingAutoencoder(Autoencoder):
    """Reconstruct the clean image from a corrupted one (``model=dae``).

    The corruption is the ``noise`` group (``conf/model/dae.yaml`` selects the seeds'
    ``noise=gaussian noise.std=0.5``); without any, this would silently be a plain AE.
    """

    config_name = "dae"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        check(
            self.noise.enabled,
            "model=dae needs an input corruption: choose noise=gaussian, salt_pepper or "
            "masking (or use model=ae for plain reconstruction).",
        )
