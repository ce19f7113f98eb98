"""Stop a diverging run at once, and never let a non-finite state reach a checkpoint.

Before every backward pass the guard keeps the detached loss
(:class:`~aelightning.runtime.step_values.StepValues`: no kernel, no host sync); the kept
losses are folded into a device-side "first bad step" tensor in one go (a few tiny kernels for
all of them) before each check. The host reads that tensor back only every
``check_every_n_steps`` steps, at the end of each epoch and before every checkpoint save, so a
GPU run keeps queueing work ahead instead of waiting for each step. The save-time check also
covers the weights, which is what keeps ``last.ckpt`` at the last finite state: a save that
would write non-finite weights raises instead, and the file on disk stays the previous, finite
one.

Because the loss is kept before the backward pass, any save later in the same step (a batch-end
checkpoint of any callback) already sees it and is refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from aelightning.errors import AELightningError, check
from aelightning.runtime.step_values import StepValues

_NONE = torch.iinfo(torch.int64).max  # "no bad step yet"
KEY = "callbacks.divergence_guard.check_every_n_steps"


class DivergenceError(AELightningError):
    """Training produced a non-finite loss or weights; the run stops without saving them."""


class DivergenceGuard(L.Callback):
    """Raise :class:`DivergenceError` naming the step and the loss term that went non-finite.

    Args:
        check_every_n_steps: how often the host looks at the device-side flag. 1 stops at the
            very step (one host sync per step: free on CPU, a small stall on GPU); larger values
            stop within that many steps, still report the first bad step exactly, and name the
            terms that are non-finite when the check runs. Saves and epoch ends always check.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        check(
            isinstance(check_every_n_steps, int)
            and not isinstance(check_every_n_steps, bool)
            and check_every_n_steps >= 1,
            f"{KEY} must be an integer >= 1, got {check_every_n_steps!r}.",
        )
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: Tensor | None = None  # device int64: first bad batch index, or _NONE
        self._index = 0  # the current batch's index over the whole fit
        self._kept = StepValues()  # losses since the last fold, with their batch indices
        self._batches: Any = None

    # ------------------------------------------------------------------------------- hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_bad = None
        self._kept.clear()
        # the fit's batch counter (restored in place on resume), looked up once
        self._batches = trainer.fit_loop.epoch_loop.batch_progress.total

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        """Keep this loss for the next check before it can change any weight; runs for every
        backward (also manual optimisation, and each step of a fused group), ahead of any
        batch-end checkpoint."""
        # 0-based over the whole fit (resume-aware), the step axis TensorBoard shows
        batches = self._batches or trainer.fit_loop.epoch_loop.batch_progress.total
        self._index = batches.ready - 1
        value = loss.detach()
        if value.dim():  # a loss with several elements: non-finite if any of them is
            value = torch.where(torch.isfinite(value).all(), 0.0, math.nan)
        if self._kept.add(value, self._index):
            self._fold()

    def _fold(self) -> None:
        """The kept losses into the device-side flag: a few kernels for all of them, no sync."""
        taken = self._kept.take()
        if taken is None:
            return
        losses, indices, _ = taken
        candidate = torch.where(torch.isfinite(losses), _NONE, indices).min()
        self._first_bad = (
            candidate if self._first_bad is None else torch.minimum(self._first_bad, candidate)
        )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if (self._index + 1) % self.check_every_n_steps == 0:
            self.raise_if_diverged(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.raise_if_diverged(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Runs inside every save, before anything is written: refuse non-finite states."""
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        self.raise_if_diverged(trainer)
        name = _first_nonfinite_parameter(pl_module)
        if name is not None:
            raise DivergenceError(
                f"training diverged: parameter {name} became non-finite by step {self._index} "
                f"although the loss stayed finite; {_kept(trainer)} — lower model.optimizer.lr "
                "or set trainer.gradient_clip_val."
            )

    # ------------------------------------------------------------------------------- check
    def raise_if_diverged(self, trainer: L.Trainer) -> None:
        """One host sync: raise :class:`DivergenceError` if any step so far was non-finite."""
        self._fold()
        if self._first_bad is None:
            return
        first = self._first_bad
        diverged = trainer.strategy.reduce_boolean_decision(bool(first < _NONE), all=False)
        if not diverged:
            return
        step = int(first.item())
        where = f"at step {step}" if step < _NONE else "on another process"
        raise DivergenceError(
            f"training diverged: {_nonfinite_terms(trainer)} went non-finite {where}; "
            f"{_kept(trainer)} — lower model.optimizer.lr or set trainer.gradient_clip_val."
        )


# ------------------------------------------------------------------------------- helpers
def _nonfinite_terms(trainer: L.Trainer) -> str:
    """``train/<term>`` names whose latest value is non-finite, components first: the module's
    latest step terms (``last_train_terms``, every step) or else the latest logged ones."""
    terms = getattr(trainer.lightning_module, "last_train_terms", None) or {}
    latest = {f"train/{k}": v for k, v in terms.items()} or trainer.callback_metrics
    found = []
    for key, value in latest.items():
        if key.startswith("train/") and isinstance(value, Tensor) and value.numel() == 1:
            number = float(value)
            if not math.isfinite(number):
                found.append(f"{key}={number}")
    components = [f for f in found if not f.startswith(("train/loss=", "train/loss_epoch="))]
    return ", ".join(components or found) or "train/loss"


def _kept(trainer: L.Trainer) -> str:
    """What the user still has: the newest last checkpoint on disk (it predates the damage)."""
    paths = [
        Path(cb.last_model_path)
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint) and cb.last_model_path
    ]
    existing = [p for p in paths if p.is_file()]
    if not existing:
        return "the run stopped and no checkpoint had been saved yet"
    newest = max(existing, key=lambda p: p.stat().st_mtime_ns)
    return f"the run stopped without saving it, so '{newest}' keeps the last finite state"


def _first_nonfinite_parameter(module: torch.nn.Module) -> str | None:
    params = [(n, p) for n, p in module.named_parameters() if p.numel()]
    if not params:
        return None
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in params])
    if bool(finite.all()):
        return None
    return next(n for (n, _), ok in zip(params, finite.tolist(), strict=True) if not ok)
