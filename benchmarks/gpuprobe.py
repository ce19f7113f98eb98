"""What ``make gpu-check`` watches inside a real fit: copies of images, layout, outputs, steps.

:class:`FitProbe` is added to a composed config as ``callbacks.gpucheck_probe`` (so ``train``
builds it like any callback) and writes what it saw to ``out`` as JSON plus the probe batch's
outputs as a ``.pt`` file; :class:`ShardProbe` records what each DDP rank trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.measure import sync

aten = torch.ops.aten
#: the ops every host<->device copy of a tensor goes through (``Tensor.to``, ``.cuda()``,
#: ``copy_`` into a device buffer); ``aten.to`` decomposes into ``_to_copy`` before dispatch
COPY_OPS = (aten._to_copy.default, aten.copy_.default)


class ImageCopies(TorchDispatchMode):
    """Count copies of tensors of at least ``min_numel`` elements (one image) while active.

    ``seen`` counts every such copy (on a GPU the uint8 -> float conversion of each batch is
    one, on the device), so a zero ``host_to_device`` is known to come from watched steps;
    ``host_to_device`` counts those whose source is in host memory and whose result is on a
    ``device_type`` device.
    """

    def __init__(self, device_type: str, min_numel: int):
        super().__init__()
        self.device_type, self.min_numel = device_type, min_numel
        self.seen = 0
        self.host_to_device = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in COPY_OPS:
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0] if func is aten.copy_.default else out
            if isinstance(src, Tensor) and src.numel() >= self.min_numel:
                self.seen += 1
                if src.device.type == "cpu" and dst.device.type == self.device_type != "cpu":
                    self.host_to_device += 1
        return out


def is_channels_last(module: torch.nn.Module) -> bool | None:
    """Whether every 4-d (conv) weight is stored NHWC; None for a net without one."""
    weights = [p for p in module.parameters() if p.dim() == 4]
    if not weights:
        return None
    return all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)


class FitProbe(L.Callback):
    """Watch one fit: image copies from ``on_train_start`` to ``on_train_end`` (training and
    validation steps), per-step wall times (synchronised), the conv weights' layout, and the
    model's outputs on the first validation batch at the end (as the trainer computes them,
    i.e. under its precision's autocast)."""

    def __init__(self, out: str, count_copies: bool = True):
        self.out = Path(out)
        self.count_copies = count_copies
        self.copies: ImageCopies | None = None
        self.step_s: list[float] = []
        self._t = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.count_copies:
            dm = trainer.datamodule
            numel = math.prod(dm.dims) if dm is not None else 1
            self.copies = ImageCopies(pl_module.device.type, numel)
            self.copies.__enter__()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any):
        sync(pl_module.device)
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any):
        sync(pl_module.device)
        self.step_s.append(time.perf_counter() - self._t)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.copies is not None:
            self.copies.__exit__(None, None, None)
        batch = next(iter(trainer.datamodule.val_dataloader()))
        x = pl_module.on_after_batch_transfer(
            pl_module.transfer_batch_to_device(batch, pl_module.device, 0), 0
        )[0]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            y = pl_module(x)
        pl_module.train(was_training)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"x": x.float().cpu(), "y": y.float().cpu()}, self.out.with_suffix(".pt"))
        report = {
            "device": str(pl_module.device),
            "data_device": str(getattr(trainer.datamodule, "train_images", x).device),
            "precision": str(trainer.precision),
            "channels_last": is_channels_last(pl_module),
            "image_copies_seen": self.copies.seen if self.copies else None,
            "host_to_device_image_copies": self.copies.host_to_device if self.copies else None,
            "step_s": self.step_s,
        }
        self.out.write_text(json.dumps(report))


class ShardProbe(L.Callback):
    """Per rank and epoch: a hash of every training image seen; at the end a hash of the
    weights. One JSON file per rank in ``out_dir``."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.seen: dict[int, list[str]] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        images = batch[0].detach().cpu()
        hashes = [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images]
        self.seen.setdefault(trainer.current_epoch, []).extend(hashes)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = hashlib.sha1()
        # parameters and buffers: a metric's state (the epoch mean) is each rank's own by design
        weights = [*pl_module.named_parameters(), *pl_module.named_buffers()]
        for name, tensor in sorted(weights, key=lambda item: item[0]):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = {
            "world_size": trainer.world_size,
            "seen": {str(k): v for k, v in self.seen.items()},
            "weights_sha1": digest.hexdigest(),
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
