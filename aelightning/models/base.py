"""The step every autoencoder variant shares: corrupt, encode, decode, score, log.

A variant overrides only what differs: :meth:`AutoencoderModule.forward_step` (how the
code is produced, e.g. a VAE's reparameterised sample) and :meth:`AutoencoderModule.loss`
(its named loss terms). Metric names follow ``<stage>/<term>``; ``loss`` is the total.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LRScheduler

from aelightning.data.loader import BatchGroup
from aelightning.errors import ConfigError, check
from aelightning.evaluation.metrics import per_image_mse, psnr
from aelightning.models.epoch_loss import EpochLoss
from aelightning.models.noise import Noise, NoNoise
from aelightning.nets.base import AutoencoderNet
from aelightning.runtime.fused_steps import FusedSteps
from aelightning.runtime.lightning_compat import (
    BLOCKING_DEVICE_TYPES,
    BatchCounters,
    call_batch_start_hooks,
    carry_optimizer_steps,
    loggers_write_this_step,
    trainer_of,
)
from aelightning.runtime.precision import full_precision

RECON_LOSSES = ("mse", "bce")

# The module moves and converts batches itself (transfer_batch_to_device,
# on_after_batch_transfer) for any datamodule, on purpose.
warnings.filterwarnings(
    "ignore",
    message="You have overridden `(on_after_batch_transfer|transfer_batch_to_device)` in "
    "`LightningModule`",
)

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[..., LRScheduler | None]


def optimizer_or_default(factory: OptimizerFactory | None, key: str) -> OptimizerFactory:
    """The configured optimizer factory (Adam 1e-3 if None), its arguments and learning rate
    checked now, not at the first step of the fit."""
    factory = factory if factory is not None else partial(Adam, lr=1e-3)
    func = getattr(factory, "func", None)
    if func is not None:
        try:  # a mistyped argument (betaz=...) fails here, naming the key
            inspect.signature(func).bind(None, *factory.args, **factory.keywords)
        except TypeError as exc:
            raise ConfigError(f"{key}: {func.__name__} {exc}.") from None
        except ValueError:  # no signature to check (a builtin): the optimiser itself will
            pass
    lr = getattr(factory, "keywords", {}).get("lr")
    if lr is not None:
        check(
            isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0,
            f"{key}.lr must be a finite number > 0, got {lr}.",
        )
    return factory


@dataclass
class StepOutput:
    """What one forward pass produced: the loss terms and the tensors behind them."""

    terms: dict[str, Tensor]
    x_in: Tensor
    code: Tensor
    x_hat: Tensor

    @property
    def loss(self) -> Tensor:
        return self.terms["loss"]


class AutoencoderModule(L.LightningModule):
    """Shared training logic for every objective; the plain AE is this with no extras.

    Args:
        net: the architecture (encoder + decoder), built for this objective's
            ``code_multiplier``.
        noise: corruption applied to each batch on device (the target stays clean).
        recon_loss: ``mse`` (mean per pixel, the seeds' ``nn.MSELoss``) or ``bce``
            (mean per pixel; needs ``net.output_activation=sigmoid``).
        optimizer: factory ``params -> Optimizer`` (Hydra ``_partial_``), Adam 1e-3 if None.
        scheduler: factory ``(optimizer, total_steps) -> LRScheduler``, stepped per batch.
        num_example_images: validation images kept for the reconstruction grid.
    """

    #: how many times wider than the decoder's input the encoder's code must be
    code_multiplier: ClassVar[int] = 1
    #: the objective reads the raw code (a Gaussian's mean, a prior's support), so the
    #: net must not squash it: ``net.bottleneck_activation`` has to be ``none``
    needs_unconstrained_code: ClassVar[bool] = False
    #: the name users select this objective by (``model=<name>``), for error messages
    config_name: ClassVar[str] = "ae"

    def __init__(
        self,
        net: AutoencoderNet,
        noise: Noise | None = None,
        recon_loss: str = "mse",
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        num_example_images: int = 16,
    ):
        super().__init__()
        check(
            recon_loss in RECON_LOSSES,
            f"model.recon_loss={recon_loss!r} is not supported; "
            f"choose one of {', '.join(RECON_LOSSES)}.",
        )
        if recon_loss == "bce":
            check(
                net.output_activation == "sigmoid",
                "model.recon_loss=bce needs outputs in [0, 1]: set net.output_activation=sigmoid "
                f"(it is {net.output_activation!r}) or use model.recon_loss=mse.",
            )
        check(
            net.code_multiplier == self.code_multiplier,
            f"{type(self).__name__} needs a net built with code_multiplier={self.code_multiplier}.",
        )
        if self.needs_unconstrained_code:
            check(
                net.bottleneck_activation == "none",
                f"model={self.config_name} needs an unconstrained code: set "
                f"net.bottleneck_activation=none (it is {net.bottleneck_activation!r}).",
            )
        self.net = net
        self.noise = noise if noise is not None else NoNoise()
        self.recon_loss = recon_loss
        self.optimizer_factory = optimizer_or_default(optimizer, "model.optimizer")
        self.scheduler_factory = scheduler
        self.num_example_images = int(num_example_images)
        #: first validation batch of the epoch (input, noisy input, output) for figures
        self.val_examples: dict[str, Tensor] = {}
        #: the run's resolved config, stored in every checkpoint so it can be rebuilt
        self.run_config: dict[str, Any] | None = None
        #: the latest training step's loss terms, detached (the divergence guard names them)
        self.last_train_terms: dict[str, Tensor] = {}
        #: this epoch's mean training loss over samples, accumulated on the device (no host
        #: sync per step); in the state dict, so a mid-epoch checkpoint carries it over
        self.train_loss_epoch = EpochLoss()
        #: set by ``configure_runtime`` when ``runtime.steps_per_call`` fuses optimiser steps
        #: (the module then optimises manually, :meth:`optimization_step` per batch)
        self.fused_steps: FusedSteps | None = None

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct ``x`` (no corruption); what users call at inference."""
        return self.forward_step(x)[1]

    def encode(self, x: Tensor) -> Tensor:
        """The representation used for plots and probes (a VAE returns its mean)."""
        return self.net.encode(x)

    def forward_step(self, x_in: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(code, x_hat)`` for a (possibly corrupted) input."""
        code, skips = self.net.encode_with_skips(x_in)
        return code, self.net.decode(code, skips)

    def reconstruction_loss(self, x_hat: Tensor, x: Tensor, per_image: bool = False) -> Tensor:
        """Reconstruction error in float32 (safe under bf16 autocast).

        The mean per pixel by default (the seeds' ``nn.MSELoss``); with ``per_image`` the
        sum over each image's pixels, averaged over the batch (nats per image for ``bce``).
        """
        # one fused reduction (no per-pixel tensor to write, read back and differentiate)
        reduction = "sum" if per_image else "mean"
        with full_precision(x.device.type):
            x_hat, x = x_hat.float(), x.float()
            if self.recon_loss == "bce":
                loss = F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x, reduction=reduction)
            else:
                loss = F.mse_loss(x_hat, x, reduction=reduction)
            return loss / x.shape[0] if per_image else loss

    def loss(self, x: Tensor, x_in: Tensor, code: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        """Named loss terms; ``loss`` is the total that is optimised."""
        recon = self.reconstruction_loss(x_hat, x)
        return {"loss": recon, "recon": recon}

    def model_step(self, batch: tuple[Tensor, ...]) -> StepOutput:
        x = batch[0]
        x_in = self.noise(x)
        code, x_hat = self.forward_step(x_in)
        return StepOutput(self.loss(x, x_in, code, x_hat), x_in, code, x_hat)

    # ------------------------------------------------------------------ hooks
    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """A tuple or list of tensors (what every datamodule here yields) moves tensor by
        tensor; a tensor already on ``device`` (data resident on the GPU, or any CPU run) is
        returned as it is, no copy. Lightning's generic walk over the collection does the same
        in ~100 Python calls per step; any other batch still takes it. A group of batches
        (fused steps) moves batch by batch."""
        if type(batch) is BatchGroup:
            return BatchGroup(
                self.transfer_batch_to_device(b, device, dataloader_idx) for b in batch
            )
        if type(batch) in (tuple, list) and all(type(t) is Tensor for t in batch):
            non_blocking = device.type not in BLOCKING_DEVICE_TYPES  # as Lightning's
            return type(batch)(t.to(device, non_blocking=non_blocking) for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Images travel as uint8 (4x less to move); convert to [0, 1] floats on device.

        A group of batches (fused steps) is returned as it came: :meth:`run_optimization_steps`
        converts each of its batches just before that batch's step, while the floats are still
        in the CPU's cache (converting all K up front writes K float batches, several MB at
        batch 256, that are evicted before their step reads them: a few % of the MLP's time at
        batch 256 on one thread, measured; no change seen at 2 threads). The group then holds
        the converted batches, as one step per call would see them.
        """
        if type(batch) is BatchGroup:
            return batch
        return self.prepare_batch(batch)

    def prepare_batch(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """One batch as the steps use it: uint8 images become [0, 1] floats."""
        images, *rest = batch
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return (images, *rest)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if not self.automatic_optimization:
            self.run_optimization_steps(batch, batch_idx)
            return None
        out = self.model_step(batch)
        self.log_train_terms(out.terms, batch[0].shape[0])
        return out.loss

    # ------------------------------------------------------- manual optimisation
    def run_optimization_steps(self, batch: Any, batch_idx: int) -> None:
        """Manual optimisation: one :meth:`optimization_step` per batch of ``batch`` (a
        :class:`BatchGroup` under ``runtime.steps_per_call``, else one batch).

        Between two steps the loop's counters move as Lightning's loop moves them, and the
        group's last step gets the ``on_train_batch_start`` hooks with its own batch and index
        (the planner ends every group at a step where a callback or logger acts), so every
        count and every logged step is the one-step-per-call run's
        (:mod:`aelightning.runtime.fused_steps`)."""
        fused = self.fused_steps
        if fused is not None:
            fused.group_started()
        if type(batch) is BatchGroup:
            self._run_group(batch, batch_idx)
            steps = len(batch)
        else:
            self.log_train_terms(self.optimization_step(batch), batch[0].shape[0])
            steps = 1
        if fused is not None:
            fused.group_finished(steps)

    def _run_group(self, group: BatchGroup, batch_idx: int) -> None:
        """The steps of a fused group, each batch converted just before its step and put back."""
        trainer = trainer_of(self)
        last = len(group) - 1
        if last:
            # the steps no logger writes at and no callback looks at (per-step Python adds up)
            counters, epoch_loss = BatchCounters(trainer), self.train_loss_epoch
            for i in range(last):
                one = group[i] = self.prepare_batch(group[i])
                epoch_loss.add(self.optimization_step(one)["loss"].detach(), one[0].shape[0])
                counters.advance()
        one = group[last] = self.prepare_batch(group[last])
        if last:
            call_batch_start_hooks(trainer, one, batch_idx + last)
        self.log_train_terms(self.optimization_step(one), one[0].shape[0])

    def optimization_step(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """One full optimiser step on ``batch`` (what Lightning's automatic optimisation does:
        zero the gradients, forward, backward, clip, step, step the per-step LR schedulers);
        returns the loss terms. Objectives with several optimisers override it (the AAE)."""
        fused = self.fused_steps
        optimizer = (fused and fused.optimizer) or self.optimizers()
        out = self.model_step(batch)
        optimizer.zero_grad()
        self.backward_manually(out.loss)
        clip = fused.clip if fused is not None else None
        if clip is not None:
            self.configure_gradient_clipping(optimizer, clip[0], clip[1])
        self.step_manually(optimizer)
        self.step_schedulers()
        return out.terms

    def step_schedulers(self) -> None:
        """Step the LR schedulers due after this optimiser step (manual optimisation; only
        per-step ones, :mod:`aelightning.runtime.fused_steps`)."""
        fused = self.fused_steps
        if fused is not None:
            schedulers = fused.schedulers
        else:
            schedulers = [(c.scheduler, c.frequency) for c in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return
        batch_idx = self.trainer.fit_loop.epoch_loop.batch_idx
        for scheduler, frequency in schedulers:
            if (batch_idx + 1) % frequency == 0:
                self.lr_scheduler_step(scheduler, None)

    @property
    def _lean_steps(self) -> Any:
        """The fit's :class:`~aelightning.runtime.lightning_compat.LeanManualSteps`, or None
        where Lightning's own manual step must run."""
        return self.fused_steps.lean if self.fused_steps is not None else None

    def backward_manually(self, loss: Tensor) -> None:
        """``self.manual_backward(loss)``, the lean way inside fused steps where it is the same."""
        lean = self._lean_steps
        if lean is None:
            self.manual_backward(loss)
        else:
            lean.backward(loss)

    def step_manually(self, optimizer: Any) -> None:
        """``optimizer.step()`` of a manual step, the lean way where it is the same."""
        lean = self._lean_steps
        if lean is None:
            optimizer.step()
        else:
            lean.step(optimizer)

    def log_train_terms(self, terms: dict[str, Tensor], batch_size: int) -> None:
        """``train/<term>`` at the steps the logger writes (and the epoch's last), and the epoch
        mean of the total as ``train/loss_epoch`` (an :class:`EpochLoss`).

        ``self.log`` costs a few hundred microseconds of Python per call, a third of the seeds'
        MLP step at batch 32 (measured), and Lightning drops step values between its
        ``log_every_n_steps`` writes anyway. So step values are logged only when they will be
        written, and the epoch mean is kept on the device (no host sync) and logged once per
        epoch. ``last_train_terms`` keeps the latest Lightning step's terms for callbacks
        (under fused steps the group's last: the steps before it reach no callback).
        """
        detached = {k: v.detach() for k, v in terms.items()}
        self.last_train_terms = detached
        self.train_loss_epoch.add(detached["loss"], batch_size)
        if self.logger_will_write():
            self.log_dict(
                {f"train/{k}": v for k, v in detached.items()},
                on_step=True,
                on_epoch=False,
                batch_size=batch_size,
            )

    def logger_will_write(self) -> bool:
        """Whether this training step's ``on_step`` values are worth logging: the logger
        writes them (every ``trainer.log_every_n_steps`` batches, and when training stops),
        or it is the epoch's last batch (the run summary shows the latest values)."""
        trainer = trainer_of(self)
        return trainer is None or loggers_write_this_step(trainer) or trainer.is_last_batch

    def on_train_start(self) -> None:
        if self.fused_steps is not None:
            self.fused_steps.attach(self.trainer)

    def on_train_end(self) -> None:
        if self.fused_steps is not None:
            self.fused_steps.detach()

    def on_train_epoch_start(self) -> None:
        # not called for an epoch resumed in the middle: the checkpoint restored its state
        self.train_loss_epoch.reset()

    def on_train_epoch_end(self) -> None:
        self.train_loss_epoch.settle()
        if self.train_loss_epoch.weight > 0:  # compute() sums over the processes of a DDP run
            mean = self.train_loss_epoch.compute()
            self.log("train/loss_epoch", mean, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        out = self._evaluate("val", batch)
        if batch_idx == 0:
            n = self.num_example_images
            self.val_examples = {"input": batch[0][:n].detach(), "output": out.x_hat[:n].detach()}
            if self.noise.enabled:
                self.val_examples["noisy"] = out.x_in[:n].detach()

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._evaluate("test", batch)

    def _evaluate(self, stage: str, batch: tuple[Tensor, ...]) -> StepOutput:
        x = batch[0]
        out = self.model_step(batch)
        metrics = {f"{stage}/{k}": v for k, v in out.terms.items() if k != "loss"}
        metrics[f"{stage}/mse"] = per_image_mse(out.x_hat, x).mean()
        metrics[f"{stage}/psnr"] = psnr(out.x_hat, x).mean()
        if self.noise.enabled:
            metrics[f"{stage}/psnr_noisy"] = psnr(out.x_in, x).mean()
            metrics[f"{stage}/psnr_out"] = metrics[f"{stage}/psnr"]
        self.log_dict(
            metrics,
            on_step=False,
            on_epoch=True,
            batch_size=x.shape[0],
            prog_bar=False,
            sync_dist=True,
        )
        self.log(
            f"{stage}/loss",
            out.loss,
            on_step=False,
            on_epoch=True,
            batch_size=x.shape[0],
            prog_bar=True,
            sync_dist=True,
        )
        return out

    # -------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        schedulers = self.schedulers_for([optimizer])
        if schedulers is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedulers[0], "interval": "step", "frequency": 1},
        }

    def schedulers_for(self, optimizers: list[Optimizer]) -> list[LRScheduler] | None:
        """One scheduler per optimiser over the fit's steps; None when there is nothing to
        step (no factory, or ``model/scheduler=none``, whose factory gives None)."""
        if self.scheduler_factory is None:
            return None
        total_steps = int(self.trainer.estimated_stepping_batches)
        schedulers = [self.scheduler_factory(o, total_steps=total_steps) for o in optimizers]
        if any(s is None for s in schedulers):
            return None
        return schedulers  # type: ignore[return-value]

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["aelightning_config"] = self.run_config
        # with the config, enough to rebuild the model (aelightning.checkpointing.checkpoint)
        checkpoint["aelightning_input_shape"] = list(self.net.input_shape)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a checkpoint of the other optimisation mode (steps_per_call 1 <-> K): same global_step
        carry_optimizer_steps(checkpoint, manual=not self.automatic_optimization)
        # checkpoints of earlier versions kept the epoch's loss sum and count under their own key
        legacy = checkpoint.get("aelightning_epoch_loss")
        state = checkpoint.get("state_dict", {})
        if legacy is not None and "train_loss_epoch.weight" not in state:
            state["train_loss_epoch.mean_value"] = torch.tensor(float(legacy[0]))
            state["train_loss_epoch.weight"] = torch.tensor(float(legacy[1]))
