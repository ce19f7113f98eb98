"""Figures that compare trained decoders: the seed's bottleneck comparison and its open question.

- :func:`bottleneck_comparison`: the same test images through models that differ in their
  code's activation (none vs sigmoid), side by side, each labelled with its mean brightness and
  PSNR, so "sharp but dim" vs "bright but soft" is measured, not only seen.
- :func:`decoder_random_codes`: what the decoder draws from codes it was never given, drawn
  per channel at the mean and spread of real codes (a standard normal would be far off the
  scale a plain autoencoder's codes live on). For SegNet nets a real code is also decoded
  without its pooling indices, to separate "random code" from "no switches".
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from matplotlib.figure import Figure
from torch import Tensor

from aelightning.evaluation import analysis, plots
from aelightning.evaluation.metrics import psnr
from aelightning.models.base import AutoencoderModule


def brightness_and_psnr(x_hat: Tensor, x: Tensor) -> dict[str, float]:
    """Mean pixel value (0 black .. 1 white) of ``x_hat`` and its mean PSNR against ``x``."""
    return {"brightness": float(x_hat.float().mean()), "psnr": float(psnr(x_hat, x).mean())}


def bottleneck_comparison(
    models: Mapping[str, AutoencoderModule], images: Tensor
) -> tuple[Figure, dict[str, dict[str, float]]]:
    """Rows: the input images, then each model's reconstructions; returns the figure and
    ``{"input": {brightness}, label: {brightness, psnr}, ...}``."""
    x = analysis.to_unit_float(images, "cpu")
    stats: dict[str, dict[str, float]] = {"input": {"brightness": float(x.mean())}}
    rows, names = [x], [f"input ({stats['input']['brightness']:.3f})"]
    for label, model in models.items():
        out = analysis.reconstruct(model, images).clamp(0, 1)
        stats[label] = brightness_and_psnr(out, x)
        rows.append(out)
        names.append(f"{label} ({stats[label]['brightness']:.3f}, {stats[label]['psnr']:.1f} dB)")
    fig = plots.image_grid(
        torch.cat(rows),
        nrow=len(x),
        title="bottleneck activation: same test images (mean brightness, PSNR)",
        row_labels=names,
    )
    return fig, stats


def random_codes_like(codes: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` codes drawn per channel from N(mean, std) of ``codes`` ``[N, C, ...]``: the scale
    of real codes (channel statistics pooled over the batch and any spatial positions)."""
    flat = codes.float().transpose(0, 1).flatten(1)  # [C, N * positions]
    mean = flat.mean(1).view(1, -1, *([1] * (codes.dim() - 2)))
    std = flat.std(1).view(1, -1, *([1] * (codes.dim() - 2)))
    noise = torch.randn((n, *codes.shape[1:]), generator=generator)
    return mean + std * noise


def decoder_random_codes(
    model: AutoencoderModule, images: Tensor, n: int = 8, seed: int = 0
) -> Figure:
    """Rows: real images, their reconstructions, (SegNet: the real codes decoded without pooling
    indices,) and the decoder fed random codes at the scale of the real codes."""
    x = analysis.to_unit_float(images[:n], "cpu")
    with analysis.inference(model):
        device = model.device
        code, skips = model.net.encode_with_skips(x.to(device))
        latent = code[:, : model.net.latent_shape[0]]  # a VAE's code is [mean, log-variance]
        rows = [x, model.net.decode(latent, skips).float().cpu()]
        names = ["input", "reconstruction"]
        if skips is not None:
            rows.append(model.net.decode(latent).float().cpu())
            names.append("code, no indices")
    reference = analysis.encode_images(model, images).view(len(images), *latent.shape[1:])
    generator = torch.Generator().manual_seed(seed)
    rows.append(analysis.decode_latents(model, random_codes_like(reference, n, generator)))
    names.append("random code")
    return plots.image_grid(
        torch.cat([r.clamp(0, 1) for r in rows]),
        nrow=n,
        title="decoder fed random codes (per-channel mean and std of real codes)",
        row_labels=names,
    )
