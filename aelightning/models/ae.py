"""The plain autoencoder: reconstruction loss only (``model=ae``)."""

from __future__ import annotations

from aelightning.models.base import AutoencoderModule


class Autoencoder(AutoencoderModule):
    """Reconstruction only; with ``noise=...`` it is a denoising autoencoder."""
