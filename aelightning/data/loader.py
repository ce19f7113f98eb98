"""Whole-batch iteration over tensors held in memory (CPU or accelerator).

A torch ``DataLoader`` calls ``__getitem__`` once per sample and collates in Python; for data that
already sits in one uint8 tensor that is pure overhead. Here a batch is one gather,
``images.index_select(0, idx)`` (a row copy each: on a CPU ~15x faster than ``images[idx]``'s
general indexing kernel for a batch of 256 MNIST images), with ``idx`` on the same device as the
data, so a dataset resident on a GPU never travels through the host.

The order of an epoch depends only on ``(seed, epoch)``: a resumed or re-run job sees the same
batches. Lightning's loops call ``set_epoch`` on ``loader.sampler`` at the start of every epoch
(``lightning.fabric.utilities.data._set_sampler_epoch``), so the loader exposes a ``sampler``
whose ``set_epoch`` forwards here, and ``batch_sampler = None`` for Lightning's shuffle check.
``state_dict``/``load_state_dict`` make it a resumable loader: Lightning stores the state in
checkpoints and restores it, so a resume from a mid-epoch checkpoint continues at the next batch.
With ``binarize`` each training batch is re-drawn as Bernoulli(pixel) on the data's device from
``(seed, epoch, batch, rank)`` (dynamically binarised MNIST), so a resume redraws it exactly.

Fused steps (``runtime.steps_per_call``): while ``group_size`` is set, each item the loader
yields is the next ``group_size()`` batches together, as a :class:`BatchGroup` (a single batch
stays a plain tuple), so one Lightning step can run several optimiser steps
(:mod:`aelightning.runtime.fused_steps`). ``len()`` and ``state_dict`` still count batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from aelightning.data.binarize import bernoulli_images, seeded_generator
from aelightning.errors import ConfigError

#: last key of a dynamic binarisation's seed, keeping its draws apart from the permutations'
_BINARIZE_KEY = 0xB1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch)`` through numpy's SeedSequence.

    Mixing both numbers (instead of ``seed + epoch``) keeps run ``seed=1`` from replaying run
    ``seed=0`` shifted by one epoch.
    """
    return seeded_generator(seed, epoch)


class BatchGroup(list):
    """Consecutive batches yielded as one item, for one fused Lightning step."""


class InMemoryBatchLoader:
    """Yield ``(images[idx], labels[idx])`` batches from tensors already in memory.

    Args:
        images: ``[N, ...]`` tensor (uint8 images stay uint8; the model converts on device).
        labels: ``[N]`` tensor on the same device.
        batch_size: samples per batch.
        shuffle: a fresh permutation per epoch from ``(seed, epoch)``; otherwise stored order.
        seed: base seed of the permutations.
        drop_last: drop this rank's last incomplete batch.
        rank, world_size: DDP shard; rank ``r`` takes ``perm[r::world_size]`` of the epoch's
            order, padded by wrapping (like ``DistributedSampler``) so every rank gets the same
            number of batches and the ranks together cover the whole epoch.
        binarize: yield each batch's uint8 images re-drawn as 0/255 Bernoulli(pixel / 255)
            samples, seeded from ``(seed, epoch, batch, rank)`` (see the module docstring).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        binarize: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ConfigError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
        if images.device != labels.device:
            raise ConfigError(f"images are on {images.device} but labels on {labels.device}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be an integer >= 1, got {batch_size!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in 0..world_size-1 (world_size={world_size})")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.rank = rank
        self.world_size = world_size
        self.binarize = bool(binarize)
        self.epoch = 0
        self._batches_done = 0  # batches of the current epoch yielded so far (for state_dict)
        self._resume_at = 0  # set by load_state_dict: where the next iteration starts
        #: when set, how many batches the next item holds (fused steps; see the module doc)
        self.group_size: Callable[[], int] | None = None
        # Lightning's hooks look these two up; see the module docstring.
        self.sampler = _EpochSampler(self)
        self.batch_sampler = None

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def dataset_size(self) -> int:
        """Samples in the whole dataset (all ranks together)."""
        return len(self.images)

    @property
    def _shard_size(self) -> int:
        return math.ceil(self.dataset_size / self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.drop_last:
            return self._shard_size // self.batch_size
        return math.ceil(self._shard_size / self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples this rank yields per epoch (after DDP padding and ``drop_last``)."""
        return min(len(self) * self.batch_size, self._shard_size)

    @property
    def device(self) -> torch.device:
        return self.images.device

    # -- order ---------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration uses (Lightning calls this)."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches_done = 0
            self._resume_at = 0

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's sample indices for ``epoch`` (default: the current one), on ``device``."""
        epoch = self.epoch if epoch is None else epoch
        n = self.dataset_size
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, epoch))
        else:
            order = torch.arange(n)
        if self.world_size > 1 and n:
            total = self._shard_size * self.world_size
            if total > n:  # wrap around, as torch's DistributedSampler does
                order = torch.cat([order, order.repeat(math.ceil(total / n))[: total - n]])
            order = order[self.rank : total : self.world_size]
        return order.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A generator: its body runs at the first next(), so a set_epoch or load_state_dict
        # that Lightning issues after iter() still applies.
        start, self._resume_at = min(self._resume_at, len(self)), 0
        self._batches_done = start
        order = self.epoch_indices()
        b, end = start, len(self)
        while b < end:
            size = 1 if self.group_size is None else max(1, min(self.group_size(), end - b))
            if size == 1:
                b += 1
                self._batches_done = b
                yield self._batch(order, b - 1)
                continue
            group = self._group(order, b, size)
            b += size
            self._batches_done = b
            yield group

    def _batch(self, order: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``b`` of the epoch whose order is ``order``."""
        idx = order[b * self.batch_size : (b + 1) * self.batch_size]
        images = self.images.index_select(0, idx)
        if self.binarize:
            images = bernoulli_images(images, self.batch_generator(b))
        return images, self.labels.index_select(0, idx)

    def _group(self, order: torch.Tensor, b: int, size: int) -> BatchGroup:
        """Batches ``b .. b + size - 1`` as views of one gather (a few operations for the
        group instead of a few per batch); the same values as ``_batch`` for each."""
        bs = self.batch_size
        idx = order[b * bs : (b + size) * bs]
        images = self.images.index_select(0, idx).split(bs)
        labels = self.labels.index_select(0, idx).split(bs)
        if self.binarize:
            images = tuple(
                bernoulli_images(x, self.batch_generator(b + i)) for i, x in enumerate(images)
            )
        return BatchGroup(zip(images, labels, strict=True))

    def batch_generator(self, batch: int) -> torch.Generator:
        """The generator of batch ``batch``'s binarisation in the current epoch, on ``device``."""
        keys = (self.seed, self.epoch, batch, self.rank, _BINARIZE_KEY)
        return seeded_generator(*keys, device=self.device)

    # -- resume --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """Where iteration stands: the epoch and how many of its batches were yielded."""
        return {"epoch": self.epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration runs epoch ``state['epoch']`` from batch ``batches_done``.

        Only that one iteration is shortened (later passes over the same epoch, e.g. repeated
        validation, start at 0), and a ``set_epoch`` to another epoch cancels it.
        """
        self.epoch = int(state["epoch"])
        self._batches_done = self._resume_at = int(state["batches_done"])

    # -- device --------------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> InMemoryBatchLoader:
        """A loader over the same data on ``device`` (same order, epoch and resume point)."""
        other = InMemoryBatchLoader(
            self.images.to(device),
            self.labels.to(device),
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=self.drop_last,
            rank=self.rank,
            world_size=self.world_size,
            binarize=self.binarize,
        )
        other.epoch = self.epoch
        other.group_size = self.group_size
        other._batches_done, other._resume_at = self._batches_done, self._resume_at
        return other

    def __repr__(self) -> str:
        return (
            f"InMemoryBatchLoader(n={self.dataset_size}, batch_size={self.batch_size}, "
            f"batches={len(self)}, shuffle={self.shuffle}, seed={self.seed}, "
            f"rank={self.rank}/{self.world_size}, binarize={self.binarize}, device={self.device})"
        )


class _EpochSampler(Sampler[int]):
    """What Lightning finds as ``loader.sampler``: forwards ``set_epoch``, lists the order."""

    def __init__(self, loader: InMemoryBatchLoader) -> None:
        self._loader = loader

    def set_epoch(self, epoch: int) -> None:
        self._loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self._loader.epoch_indices()[: self._loader.num_samples].tolist())

    def __len__(self) -> int:
        return self._loader.num_samples
