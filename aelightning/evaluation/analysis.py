"""What inspection computes from a trained model: codes, per-image scores, noise sweeps,
latent walks and 2-D maps of codes.

Everything here runs batched on the model's device in eval mode without gradients and
returns CPU tensors, so callers (``ae-evaluate``, the training callbacks) only plot or
tabulate. Random draws use the global generator; callers seed it (or fork it) first.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aelightning.errors import ConfigError
from aelightning.evaluation.metrics import per_image_bce, per_image_mse, psnr, ssim
from aelightning.models.base import AutoencoderModule
from aelightning.models.noise import Noise

#: the attribute that holds a corruption's strength, by noise type (std or probability)
NOISE_LEVEL_ATTRS = ("std", "p")
#: default levels of the noise curve: std for Gaussian noise, a probability for the others
DEFAULT_NOISE_LEVELS = {
    "std": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "p": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
}


@contextlib.contextmanager
def inference(model: AutoencoderModule) -> Iterator[AutoencoderModule]:
    """Eval mode (dropout off, batch-norm running stats) without gradients; restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block on torch's global generators seeded with ``seed`` and restore them after,
    so inspection draws are reproducible and leave the caller's random state untouched."""
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def split_tensors(datamodule: Any, split: str) -> tuple[Tensor, Tensor]:
    """A split's images ``[N, C, H, W]`` and labels ``[N]`` as the data module holds them.

    In-memory data modules expose ``<split>_images``/``<split>_labels``; any other data
    module is read through its dataloader once.
    """
    images = getattr(datamodule, f"{split}_images", None)
    labels = getattr(datamodule, f"{split}_labels", None)
    if images is None and hasattr(datamodule, "setup"):
        datamodule.setup("test" if split == "test" else "fit")
        images = getattr(datamodule, f"{split}_images", None)
        labels = getattr(datamodule, f"{split}_labels", None)
    if images is None:
        batches = list(getattr(datamodule, f"{split}_dataloader")())
        images = torch.cat([b[0] for b in batches])
        labels = torch.cat([b[1] for b in batches]) if len(batches[0]) > 1 else None
    if labels is None:
        labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    return images, labels


def subsample(n_total: int, n: int | None, seed: int = 0) -> Tensor:
    """Sorted seeded choice of ``min(n, n_total)`` indices (all of them when n is None)."""
    if n is None or n >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def to_unit_float(images: Tensor, device: torch.device | str) -> Tensor:
    """uint8 ``0..255`` or float images -> float32 in [0, 1] on ``device`` (as the model sees)."""
    images = images.to(device, non_blocking=True)
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def batches(images: Tensor, batch_size: int, device: torch.device | str) -> Iterator[Tensor]:
    """Consecutive float batches of ``images`` on ``device``."""
    if batch_size < 1:
        raise ConfigError(f"evaluation batch size must be >= 1, got {batch_size}.")
    for start in range(0, len(images), batch_size):
        yield to_unit_float(images[start : start + batch_size], device)


def encode_images(model: AutoencoderModule, images: Tensor, batch_size: int = 1000) -> Tensor:
    """The representation ``model.encode(x)`` of every image, flattened to ``[N, D]`` (CPU).

    Feature-map codes (``[C, h, w]``) become vectors, so one code is one row for probes,
    PCA/t-SNE and the projector.
    """
    with inference(model):
        codes = [
            model.encode(x).float().flatten(1).cpu()
            for x in batches(images, batch_size, model.device)
        ]
    return torch.cat(codes)


def reconstruct(model: AutoencoderModule, images: Tensor, batch_size: int = 1000) -> Tensor:
    """``model(x)``: the deterministic reconstruction of clean inputs (CPU, float)."""
    with inference(model):
        out = [model(x).float().cpu() for x in batches(images, batch_size, model.device)]
    return torch.cat(out)


def reconstruction_scores(
    model: AutoencoderModule, images: Tensor, batch_size: int = 1000, with_ssim: bool = True
) -> dict[str, Tensor]:
    """Per-image ``mse``, ``bce``, ``psnr`` (and ``ssim``) of the model's test-time pass.

    Each batch goes through ``model.model_step`` exactly as in ``trainer.test``: the run's
    corruption is applied when it has one (the target is the clean image) and a VAE decodes a
    posterior sample. With the generator seeded as before ``trainer.test``, the batches see
    the same draws, so the mean ``mse`` equals the logged ``test/mse``.
    """
    scores: dict[str, list[Tensor]] = {"mse": [], "bce": [], "psnr": []}
    if with_ssim:
        scores["ssim"] = []
    with inference(model):
        for x in batches(images, batch_size, model.device):
            x_hat = model.model_step((x,)).x_hat.float()
            scores["mse"].append(per_image_mse(x_hat, x).cpu())
            scores["bce"].append(per_image_bce(x_hat, x).cpu())
            scores["psnr"].append(psnr(x_hat, x).cpu())
            if with_ssim:
                scores["ssim"].append(ssim(x_hat.clamp(0, 1), x).cpu())
    return {k: torch.cat(v) for k, v in scores.items()}


def reconstruction_errors(
    model: AutoencoderModule, images: Tensor, batch_size: int = 1000
) -> Tensor:
    """Per-image MSE of the deterministic reconstruction of clean inputs (anomaly score)."""
    with inference(model):
        errors = [
            per_image_mse(model(x), x).cpu() for x in batches(images, batch_size, model.device)
        ]
    return torch.cat(errors)


# ----------------------------------------------------------------------------- noise curve
def noise_level_attr(noise: Noise) -> str | None:
    """The attribute holding this corruption's strength (``std`` or ``p``), if any."""
    return next((a for a in NOISE_LEVEL_ATTRS if hasattr(noise, a)), None)


def noise_levels(noise: Noise, levels: Sequence[float] | str | None) -> list[float]:
    """The levels to sweep: the configured list, or the defaults for this noise type."""
    attr = noise_level_attr(noise)
    if attr is None or levels is None:
        return []
    if isinstance(levels, str):
        if levels != "auto":
            raise ConfigError(
                f"metrics.noise_levels={levels!r} must be auto, null or a list of levels."
            )
        return list(DEFAULT_NOISE_LEVELS[attr])
    out = [float(v) for v in levels]
    if any(not np.isfinite(v) or v < 0 for v in out) or (attr == "p" and any(v > 1 for v in out)):
        raise ConfigError(
            f"metrics.noise_levels={out} must be finite levels >= 0"
            + (" and probabilities <= 1" if attr == "p" else "")
            + "."
        )
    return out


def with_level(noise: Noise, level: float) -> Noise:
    """A copy of ``noise`` at another strength (same type, same other settings)."""
    attr = noise_level_attr(noise)
    if attr is None:
        raise ConfigError(f"{type(noise).__name__} has no level to vary (std or p).")
    other = copy.copy(noise)
    setattr(other, attr, float(level))
    return other


def noise_sweep(
    model: AutoencoderModule, images: Tensor, levels: Sequence[float], batch_size: int = 1000
) -> list[dict[str, float]]:
    """Mean PSNR of the noisy input and of the model's output, per noise level.

    The corruption is the run's own type (Gaussian std or a probability); the output is
    ``model(noisy)`` (deterministic), scored against the clean image. A denoiser's curve
    stays well above the identity line ``psnr_out = psnr_noisy`` at high noise.
    """
    rows = []
    with inference(model):
        for level in levels:
            noise = with_level(model.noise, level)
            sums = torch.zeros(2, dtype=torch.float64, device=model.device)  # summed on device
            for x in batches(images, batch_size, model.device):
                x_in = noise(x)
                sums += torch.stack([psnr(x_in, x).sum(), psnr(model(x_in), x).sum()]).double()
            noisy, out = (sums / len(images)).tolist()
            rows.append(
                {"level": float(level), "psnr_noisy": noisy, "psnr_out": out, "gain": out - noisy}
            )
    return rows


def noise_curve(
    model: AutoencoderModule,
    images: Tensor,
    levels: Sequence[float] | str | None,
    num_images: int | None,
    seed: int = 0,
    batch_size: int = 1000,
) -> list[dict[str, float]]:
    """:func:`noise_sweep` of a noisy run on a seeded subsample of ``num_images`` images (all
    when None) at ``levels`` (see :func:`noise_levels`); no rows for a run without noise."""
    if not model.noise.enabled:
        return []
    chosen = noise_levels(model.noise, levels)
    idx = subsample(len(images), num_images, seed)
    with seeded(seed, model.device):
        return noise_sweep(model, images[idx.to(images.device)], chosen, batch_size)


# -------------------------------------------------------------------------- latent space
def decode_latents(model: AutoencoderModule, latents: Tensor, batch_size: int = 1000) -> Tensor:
    """Decode latent vectors ``[N, *latent_shape]`` into images (CPU, clamped to [0, 1])."""
    with inference(model):
        out = [
            model.net.decode(z.to(model.device)).float().clamp(0, 1).cpu()
            for z in latents.split(batch_size)
        ]
    return torch.cat(out)


def interpolate(model: AutoencoderModule, x_a: Tensor, x_b: Tensor, steps: int = 10) -> Tensor:
    """Images decoded along the straight line between the codes of ``x_a`` and ``x_b``.

    ``x_a``, ``x_b``: ``[P, C, H, W]`` pairs; returns ``[P * steps, C, H, W]``, one row of
    ``steps`` images per pair (the ends are the reconstructions of the pair).
    """
    with inference(model):
        device = model.device
        z_a = model.encode(to_unit_float(x_a, device)).float()
        z_b = model.encode(to_unit_float(x_b, device)).float()
    t = torch.linspace(0, 1, steps, device=z_a.device).view(1, steps, *[1] * (z_a.dim() - 1))
    path = z_a.unsqueeze(1) * (1 - t) + z_b.unsqueeze(1) * t  # [P, steps, *latent]
    return decode_latents(model, path.flatten(0, 1))


def has_standard_normal_prior(model: AutoencoderModule) -> bool:
    """A VAE's latent prior is N(0, I) (it exposes ``posterior``)."""
    return callable(getattr(model, "posterior", None))


def manifold_grid(model: AutoencoderModule, codes: Tensor, size: int = 15) -> Tensor:
    """Decode a ``size x size`` grid over a 2-D latent space (Kingma & Welling's figure).

    For a N(0, I) prior the grid sits at the normal quantiles of 5%..95%; otherwise it spans
    the 1st..99th percentiles of the given codes on each axis. Row ``i`` varies the second
    latent unit (top = high), column ``j`` the first. Returns ``[size * size, C, H, W]``.
    """
    if tuple(model.net.latent_shape) != (2,):
        raise ConfigError(
            f"the manifold grid needs a 2-D latent (net.latent_dim=2); this one is "
            f"{tuple(model.net.latent_shape)}."
        )
    if has_standard_normal_prior(model):
        q = torch.linspace(0.05, 0.95, size)
        axis0 = axis1 = torch.distributions.Normal(0.0, 1.0).icdf(q)
    else:
        lo = torch.quantile(codes.float(), 0.01, dim=0)
        hi = torch.quantile(codes.float(), 0.99, dim=0)
        axis0 = torch.linspace(float(lo[0]), float(hi[0]), size)
        axis1 = torch.linspace(float(lo[1]), float(hi[1]), size)
    grid_y, grid_x = torch.meshgrid(axis1.flip(0), axis0, indexing="ij")
    latents = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)
    return decode_latents(model, latents)


@contextlib.contextmanager
def single_threaded_sklearn() -> Iterator[None]:
    """One OpenMP/BLAS thread for scikit-learn's small problems (a few thousand points).

    Its OpenMP threads busy-wait: on a CPU shared with other work, t-SNE of 200 points took
    20 s of CPU with 2 threads against 1.2 s with one, and problems this small gain nothing
    from threads.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def embed_2d(codes: Tensor, method: str, seed: int = 0) -> np.ndarray:
    """2-D map of codes ``[N, D]``: ``pca`` (linear, fast) or ``tsne`` (local structure)."""
    x = codes.float().cpu().numpy()
    if method not in ("pca", "tsne"):
        raise ConfigError(f"unknown 2-D embedding {method!r}; use pca or tsne.")
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    with single_threaded_sklearn():
        if method == "pca":
            return PCA(n_components=2, random_state=seed).fit_transform(x)
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
        return tsne.fit_transform(x)
