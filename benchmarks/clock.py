"""The clock inside a real ``Trainer.fit``: per-epoch times and, when profiling, a step split
into data / forward / backward / optimiser / logging / callbacks / the rest."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from aelightning.data.loader import BatchGroup
from benchmarks.measure import CallCounter, sync

#: callback hooks that run inside the optimiser step (inside ``training_step`` when the module
#: optimises manually, as under ``runtime.steps_per_call``)
STEP_HOOKS = (".on_before_backward", ".on_after_backward", ".on_before_optimizer_step")


class EpochClock(L.Callback):
    """Times each training epoch of a real fit: from its start to the start of its validation.

    Added to the composed config as ``callbacks.bench_clock`` (so ``train`` builds it like any
    callback) and writes what it measured to ``out`` as JSON when the fit ends. With
    ``profile=true`` it also splits each step into parts, reading Lightning's SimpleProfiler
    (data fetch and transfer, ``training_step``, callbacks) and timing forward (the module's
    ``model_step``), backward and the optimiser step itself; on a GPU each timed part is
    synchronised, which is why only the profile run does it. With ``count_calls=true`` the
    last epoch is not timed but run under a call counter.
    """

    def __init__(self, out: str, profile: bool = False, count_calls: bool = False):
        self.out = Path(out)
        self.profile = profile
        self.count_calls = count_calls
        self._counter: CallCounter | None = None
        self.epochs: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._marks: dict[str, int] = {}
        self._t_backward = 0.0
        self._t_step = 0.0
        self._device = torch.device("cpu")
        if profile:  # only then: a hook on the class would cost (a) two calls every step
            self.on_before_backward = self._before_backward
            self.on_after_backward = self._after_backward

    # -- window ----------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._device = pl_module.device
        if self.profile:
            self._wrap_model_step(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.profile:
            for optimizer in trainer.optimizers:
                optimizer.register_step_post_hook(self._after_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(self._device)
        self._open = {"samples": 0, "steps": 0, "lightning_steps": 0, "parts": defaultdict(float)}
        if self.profile:
            self._marks = {k: len(v) for k, v in self._recorded(trainer).items()}
        if self.count_calls and trainer.current_epoch == trainer.max_epochs - 1:
            self._counter = CallCounter().__enter__()
        self._open["t0"] = time.perf_counter()
        self._open["cpu0"] = time.process_time()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if self._open is not None:  # a fused group (runtime.steps_per_call) holds several
            batches = batch if type(batch) is BatchGroup else (batch,)
            self._open["samples"] += sum(int(b[0].shape[0]) for b in batches)
            self._open["steps"] += len(batches)  # optimiser steps
            self._open["lightning_steps"] += 1

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._close(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close(trainer)

    def _close(self, trainer: L.Trainer) -> None:
        if self._open is None:
            return
        sync(self._device)
        epoch, self._open = self._open, None
        epoch["seconds"] = time.perf_counter() - epoch.pop("t0")
        epoch["cpu_seconds"] = time.process_time() - epoch.pop("cpu0")
        if self._counter is not None:
            self._counter.__exit__()
            epoch["calls"], self._counter = self._counter.calls, None
        if self.profile:
            epoch["parts"].update(self._profiler_parts(trainer))
            if not trainer.lightning_module.automatic_optimization:
                # manual optimisation runs backward, the step and their hooks inside
                # training_step: not "logging"
                parts = epoch["parts"]
                inside = parts["backward"] + parts["optimizer"] + parts.pop("step_callbacks", 0.0)
                parts["training_step"] = max(0.0, parts["training_step"] - inside)
            else:
                epoch["parts"].pop("step_callbacks", None)
        epoch["parts"] = dict(epoch["parts"])
        self.epochs.append(epoch)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.out.parent.mkdir(parents=True, exist_ok=True)
            payload = {"epochs": self.epochs, "cpu_threads": torch.get_num_threads()}
            self.out.write_text(json.dumps(payload))

    # -- profile parts -----------------------------------------------------------------------
    def _add(self, part: str, seconds: float) -> None:
        if self._open is not None:
            self._open["parts"][part] += seconds

    def _wrap_model_step(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        inner = pl_module.model_step

        def model_step(batch: Any) -> Any:
            if not trainer.training:
                return inner(batch)
            sync(self._device)
            t = time.perf_counter()
            out = inner(batch)
            sync(self._device)
            self._add("forward", time.perf_counter() - t)
            return out

        pl_module.model_step = model_step  # type: ignore[method-assign]

    def _before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        sync(self._device)
        self._t_backward = time.perf_counter()

    def _after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(self._device)
        self._t_step = time.perf_counter()
        self._add("backward", self._t_step - self._t_backward)

    def _after_step(self, *args: Any) -> None:
        # Lightning runs training_step and backward as the closure *inside* optimizer.step,
        # so the update itself is what follows the backward pass until the step returns
        sync(self._device)
        self._add("optimizer", time.perf_counter() - self._t_step)

    @staticmethod
    def _recorded(trainer: L.Trainer) -> dict[str, list[float]]:
        return getattr(trainer.profiler, "recorded_durations", {})

    def _profiler_parts(self, trainer: L.Trainer) -> dict[str, float]:
        """Seconds per part from the SimpleProfiler entries added during this epoch."""
        parts: dict[str, float] = defaultdict(float)
        for action, durations in self._recorded(trainer).items():
            seconds = sum(durations[self._marks.get(action, 0) :])
            if action == "[_TrainingEpochLoop].train_dataloader_next" or action.endswith(
                (".batch_to_device", ".on_before_batch_transfer")
            ):
                parts["data"] += seconds
            elif action.startswith("[Strategy]") and action.endswith(".training_step"):
                parts["training_step"] += seconds
            elif action.endswith(".optimizer_zero_grad"):
                parts["zero_grad"] += seconds
            elif action.startswith("[Callback]") and not action.startswith("[Callback]EpochClock"):
                parts["callbacks"] += seconds
                if action.endswith(STEP_HOOKS):
                    parts["step_callbacks"] += seconds
        return parts


def framework_parts(ms: dict[str, float]) -> dict[str, float]:
    """Regroup the framework's profile into the columns shared with the plain loops."""
    forward = ms.get("forward", 0.0)
    logging_ms = max(0.0, ms.get("training_step", 0.0) - forward)
    out = {
        "data": ms.get("data", 0.0),
        "forward": forward,
        "backward": ms.get("backward", 0.0),
        "optimizer": ms.get("optimizer", 0.0) + ms.get("zero_grad", 0.0),
        "logging": logging_ms,
        "callbacks": ms.get("callbacks", 0.0),
    }
    out["other"] = max(0.0, ms["total"] - sum(out.values()))
    out["total"] = ms["total"]
    return out
