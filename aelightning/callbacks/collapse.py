"""Warn when every input gets (nearly) the same reconstruction: a collapse to the mean image.

A collapsed autoencoder still has a finite, even plausible loss (on faces, the mean image's MSE
~0.08), so neither the divergence guard nor the loss curve catches it. After each validation
epoch this callback compares, on the validation images the module keeps for its figures, the
variance of the outputs across the batch with that of the inputs. Below ``min_ratio`` it warns
once per run, naming the epoch and the likely cause, and lets the run go on (a collapse early in
training sometimes recovers, and a run should never die of a heuristic).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
import torch
from torch import Tensor

from aelightning.errors import check
from aelightning.models.base import AutoencoderModule

log = logging.getLogger(__name__)

KEY = "callbacks.collapse_warning"


class CollapseWarning(UserWarning):
    """The reconstructions hardly differ from one input to the next."""


def batch_variance(x: Tensor) -> float:
    """Variance across the batch per pixel, averaged over pixels (0 when every image is equal)."""
    return float(x.detach().float().flatten(1).var(dim=0).mean())


def dead_code_fraction(code: Tensor, eps: float = 1e-6) -> float:
    """Share of code units that take the same value for every input (e.g. a ReLU switched off)."""
    flat = code.detach().float().flatten(1)
    return float((flat.std(dim=0) <= eps * (1.0 + flat.abs().amax(dim=0))).float().mean())


class CollapseDetector(L.Callback):
    """Warn once when the outputs' variance across a batch falls below a fraction of the inputs'.

    Args:
        min_ratio: output variance / input variance (across the validation images) below which
            the reconstructions count as collapsed; healthy runs are far above 0.05 after a few
            hundred steps, a collapsed one far below.
        min_steps: judge only after this many optimiser steps (an untrained decoder's output is
            flat on purpose: see the SegNet output initialisation).
    """

    def __init__(self, min_ratio: float = 0.05, min_steps: int = 100) -> None:
        check(
            isinstance(min_ratio, (int, float)) and 0.0 < min_ratio < 1.0,
            f"{KEY}.min_ratio must be a number in (0, 1), got {min_ratio!r}.",
        )
        check(
            isinstance(min_steps, int) and not isinstance(min_steps, bool) and min_steps >= 0,
            f"{KEY}.min_steps must be an integer >= 0, got {min_steps!r}.",
        )
        self.min_ratio = float(min_ratio)
        self.min_steps = min_steps
        self.warned = False
        #: output / input batch variance at the latest judged validation epoch
        self.last_ratio: float | None = None

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints, so a resumed run that already warned stays quiet."""
        return {"warned": self.warned, "last_ratio": self.last_ratio}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.warned = bool(state_dict.get("warned", False))
        self.last_ratio = state_dict.get("last_ratio")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(pl_module, AutoencoderModule):
            return
        examples = pl_module.val_examples
        if "input" not in examples or len(examples["input"]) < 2:
            return
        if trainer.global_step < self.min_steps:
            return
        x, x_hat = examples["input"], examples["output"]
        input_var = batch_variance(x)
        if input_var <= 0:  # identical inputs: nothing to compare with
            return
        self.last_ratio = batch_variance(x_hat) / input_var
        if self.warned or self.last_ratio >= self.min_ratio:
            return
        self.warned = True
        message = (
            f"epoch {trainer.current_epoch}: the reconstructions are nearly the same image for "
            f"every input (output variance across the validation batch is "
            f"{self.last_ratio:.1%} of the input's, below {KEY}.min_ratio={self.min_ratio:g}); "
            f"likely cause: {self._likely_cause(trainer, pl_module, x)}. Training continues."
        )
        warnings.warn(message, CollapseWarning, stacklevel=2)
        log.warning(message)

    @staticmethod
    def _likely_cause(trainer: L.Trainer, pl_module: AutoencoderModule, x: Tensor) -> str:
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            code = pl_module.net.encode(x.to(pl_module.device, torch.float32))
        pl_module.train(was_training)
        dead = dead_code_fraction(code)
        if dead >= 0.5:
            return (
                f"dead code units ({dead:.0%} of the code is the same for every input; with "
                f"net.bottleneck_activation={pl_module.net.bottleneck_activation} try none, or a "
                "lower model.optimizer.lr)"
            )
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        lr = f"{max(lrs):.3g}" if lrs else "?"
        return (
            f"the learning rate is too high for this net (now {lr}): the decoder learned to "
            "ignore the code; lower model.optimizer.lr or lengthen the warm-up "
            "(model.scheduler.warmup_fraction)"
        )
