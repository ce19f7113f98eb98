"""What every in-memory data module shares: split tensors, placement, whole-batch loaders.

A subclass implements ``_load`` (fill ``<split>_images`` / ``<split>_labels`` and
``split_sizes``); this class validates the batching options, moves the tensors once to the
trainer's device and serves them through :class:`InMemoryBatchLoader` (each DDP rank its shard).
"""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch

from aelightning.data.loader import InMemoryBatchLoader
from aelightning.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: ``on_device=auto`` moves a data set to a GPU only when it takes at most this share of the
#: free memory there; the rest is left for the model (a 224 px image folder can be 10 GB)
AUTO_DEVICE_MEMORY_SHARE = 0.5


def is_int(x: object) -> bool:
    """An integer config value (``True`` is not one)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


class InMemoryDataModule(L.LightningDataModule):
    """Base of data modules whose splits are uint8 ``[N, C, H, W]`` tensors plus ``[N]`` labels.

    Args:
        batch_size: training batch size.
        eval_batch_size: val/test batch size; ``None`` = :meth:`default_eval_batch_size`.
        seed: base seed of the per-epoch batch order.
        on_device: ``true`` puts the whole set on the trainer's accelerator once in ``setup``;
            ``auto`` does so when it fits (see ``AUTO_DEVICE_MEMORY_SHARE``); ``false`` keeps it
            on the CPU.
        drop_last: drop the last incomplete training batch.
    """

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        seed: int = 0,
        on_device: str | bool = "auto",
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (not is_int(value) or value < 1):
                raise ConfigError(f"data.{key}={value!r} must be an integer >= 1")
        if not is_int(seed):
            raise ConfigError(f"data.seed={seed!r} must be an integer")
        if on_device not in ("auto", True, False):
            raise ConfigError(f"data.on_device={on_device!r} must be auto, true or false")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or self.default_eval_batch_size(batch_size))
        self.seed = int(seed)
        self.on_device = on_device
        self.drop_last = bool(drop_last)
        self.source_description = ""
        self.split_sizes: dict[str, int] = {}
        self.train_images: torch.Tensor | None = None
        self.train_labels: torch.Tensor | None = None
        self.val_images: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None
        self.test_images: torch.Tensor | None = None
        self.test_labels: torch.Tensor | None = None
        self._is_loaded = False

    def default_eval_batch_size(self, batch_size: int) -> int:
        """Val/test batch size when none is configured: the training one."""
        return batch_size

    def _load(self) -> None:
        """Fill the split tensors and ``split_sizes`` (called once, by ``setup``)."""
        raise NotImplementedError

    # -- Lightning hooks -----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load once (later calls only re-place the tensors for the current trainer)."""
        if not self._is_loaded:
            self._load()
            self._is_loaded = True
        self._place_on_device()

    def train_dataloader(self) -> InMemoryBatchLoader:
        # Lightning cannot turn shuffling off in a non-DataLoader for overfit_batches: do it here.
        overfit = self.trainer is not None and self.trainer.overfit_batches > 0
        return self._loader("train", self.batch_size, shuffle=not overfit, drop_last=self.drop_last)

    def val_dataloader(self) -> InMemoryBatchLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> InMemoryBatchLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    # -- placement and loaders -----------------------------------------------------------------
    def _target_device(self) -> torch.device:
        if self.trainer is None or self.on_device is False:
            return torch.device("cpu")
        root = self.trainer.strategy.root_device
        if root.type == "cpu":
            return root
        if self.on_device == "auto" and root.type == "cuda":
            nbytes = sum(
                t.nbytes
                for s in SPLITS
                for t in (getattr(self, f"{s}_images"), getattr(self, f"{s}_labels"))
                if t is not None and t.device.type == "cpu"
            )
            free, _ = torch.cuda.mem_get_info(root)
            if nbytes > AUTO_DEVICE_MEMORY_SHARE * free:
                log.info(
                    "Data: %.1f GB stay on the CPU (more than %.0f%% of the %.1f GB free on %s); "
                    "set data.on_device=true to move them anyway",
                    nbytes / 1e9,
                    100 * AUTO_DEVICE_MEMORY_SHARE,
                    free / 1e9,
                    root,
                )
                return torch.device("cpu")
        return root

    def _place_on_device(self) -> None:
        """Move all split tensors once to where the trainer computes (no per-batch copies)."""
        device = self._target_device()
        for split in SPLITS:
            for kind in ("images", "labels"):
                t = getattr(self, f"{split}_{kind}")
                if t is not None and t.device != device:
                    setattr(self, f"{split}_{kind}", t.to(device))

    def _loader(
        self, split: str, batch_size: int, shuffle: bool, drop_last: bool = False
    ) -> InMemoryBatchLoader:
        if not self._is_loaded:
            self.setup()
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        return InMemoryBatchLoader(
            getattr(self, f"{split}_images"),
            getattr(self, f"{split}_labels"),
            batch_size=batch_size,
            shuffle=shuffle,
            seed=self.seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world,
        )
