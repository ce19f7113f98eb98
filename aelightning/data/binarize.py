"""Binarised MNIST: every pixel drawn as Bernoulli(intensity), the likelihood literature's data.

Two protocols for the training images (``data.binarize``): ``dynamic`` draws every training
batch afresh (Burda et al. 2015; the model never sees the same binary image twice), ``static``
draws each image once (Larochelle & Murray 2011's fixed set). Validation and test images are
always binarised once, with ``data.binarize_seed`` (not the run's seed), so runs with different
seeds are scored on the same binary test set.

Images stay uint8, 0 or 255, so the model's usual ``/ 255`` conversion gives exact 0/1 floats.
Every draw comes from a generator seeded by a tuple of numbers through numpy's SeedSequence,
so a draw is a function of those numbers alone: a resumed run redraws the same batches.
"""

from __future__ import annotations

import numpy as np
import torch

BINARIZE_MODES = ("none", "dynamic", "static")
#: keys that keep the fixed binarisations of the three splits independent of one another
_SPLIT_KEYS = {"train": 1, "val": 2, "test": 3}
#: images binarised per step when a whole split is binarised (bounds the float buffer)
_CHUNK = 10_000


def seeded_generator(*keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` whose state is a function of ``keys`` alone."""
    words = [int(k) & 0xFFFF_FFFF_FFFF_FFFF for k in keys]
    state = np.random.SeedSequence(words).generate_state(2)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def bernoulli_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 images in 0..255 -> uint8 0/255, each pixel 255 with probability ``pixel / 255``.

    Drawn on the images' device (the generator must live there too).
    """
    u = torch.rand(images.shape, generator=generator, device=images.device)
    return (u < images.float().div_(255.0)).to(torch.uint8).mul_(255)


def fixed_binarization(images: torch.Tensor, seed: int, split: str) -> torch.Tensor:
    """One seeded binarisation of a whole split (on the CPU, in chunks), a function of
    ``(seed, split)`` and the images alone."""
    g = seeded_generator(seed, _SPLIT_KEYS[split])
    if not len(images):
        return images.clone()
    chunks = [bernoulli_images(images[i : i + _CHUNK], g) for i in range(0, len(images), _CHUNK)]
    return torch.cat(chunks)


def describe_protocol(mode: str, seed: int) -> str:
    """The protocol in words, for the run summary and ``metrics.json``."""
    if mode == "dynamic":
        train = "train re-drawn every batch from (seed, epoch, batch)"
    elif mode == "static":
        train = f"train drawn once (binarize_seed {seed})"
    else:
        return "grey levels in [0, 1]"
    return f"binarised: {train}, val/test drawn once (binarize_seed {seed})"
